"""A small client for Parley's HTTP API that checks every answer, and every
JSON body it sends, against docs/api/openapi.yaml (openapi_check).

    api = ApiClient(d.url, token="...")             # Authorization: Bearer
    status, headers, body = api.get("/api/v1/conversations", params={"limit": 10})
    api.post(path, json={...})                     # body checked against requestBody
    api.post(path, json={"bad": 1}, validate_request=False)   # deliberately wrong input

    browser = ApiClient(d.url)                     # cookie jar: keeps parley_session
    browser.post("/api/v1/login", json={...})      # (whatever sets the cookie)
    browser.csrf_token = "..."                     # sent as X-CSRF-Token on unsafe methods

    with api.events(last_event_id="41") as stream:  # GET /api/v1/events
        event = stream.next_event(timeout=5)        # Event(id, event, data), held to
                                                    # the document's LiveEvent schema

headers is an http.client.HTTPMessage (case-insensitive; get_all("Set-Cookie")).
body is the parsed JSON for JSON answers, else text ("" when empty).
"""

import io
import json as jsonlib
import re
import socket
import time
import urllib.parse
from collections import namedtuple
from http.client import HTTPConnection, parse_headers

import openapi_check

SESSION_COOKIE = "parley_session"
UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
EVENTS_PATH = "/api/v1/events"

Event = namedtuple("Event", "id event data")
LINE_END = re.compile(rb"\r\n|\n|\r")


class ApiClient:
    def __init__(self, base_url, token=None, csrf_token=None, timeout=10, spec=None):
        """spec: an openapi_check.OpenApiDoc; default the project's document."""
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme != "http":
            raise ValueError("only http:// URLs: %r" % base_url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.token = token
        self.csrf_token = csrf_token
        self.timeout = timeout
        self.spec = spec or openapi_check.document()
        self.cookies = {}   # name -> value, from Set-Cookie; all sent back

    # ---------------------------------------------------------- requests

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, json=None, **kw):
        return self.request("POST", path, json=json, **kw)

    def put(self, path, json=None, **kw):
        return self.request("PUT", path, json=json, **kw)

    def patch(self, path, json=None, **kw):
        return self.request("PATCH", path, json=json, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def request(self, method, path, json=None, body=None, params=None, headers=None,
                validate_request=True):
        """One request on a fresh connection: (status, headers, json_or_text).
        json: sent as application/json (and checked unless validate_request is
        False); body: raw bytes or str sent as they are (not checked)."""
        method = method.upper()
        target = self._target(path, params)
        send_headers = self._headers(method, headers)
        if json is not None:
            if validate_request:
                self.spec.check_request_body(method, target, json)
            body = jsonlib.dumps(json).encode()
            send_headers.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode()
        conn = HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, target, body=body, headers=send_headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        self._keep_cookies(resp.headers)
        parsed = self.spec.check_response(method, target, resp.status, resp.headers, data)
        if parsed is None:
            ctype = openapi_check.media_type(resp.headers.get("Content-Type", ""))
            parsed = jsonlib.loads(data) if data and openapi_check.is_json(ctype) \
                else data.decode("utf-8", "replace")
        return resp.status, resp.headers, parsed

    def _target(self, path, params):
        if params:
            path += ("&" if "?" in path else "?") + urllib.parse.urlencode(params)
        return path

    def _headers(self, method, extra):
        h = {}
        if self.token is not None:
            h["Authorization"] = "Bearer " + self.token
        if self.cookies:
            h["Cookie"] = "; ".join("%s=%s" % kv for kv in self.cookies.items())
        if self.csrf_token is not None and method in UNSAFE_METHODS:
            h["X-CSRF-Token"] = self.csrf_token
        h.update(extra or {})
        return h

    def _keep_cookies(self, headers):
        """A deliberately simple jar: name=value kept per name, whatever the
        Domain, Path or Secure; an empty value or Max-Age=0 removes it."""
        for line in headers.get_all("Set-Cookie") or ():
            first, *attrs = [p.strip() for p in line.split(";")]
            name, _, value = first.partition("=")
            expired = any(a.lower().replace(" ", "") == "max-age=0" for a in attrs)
            if value == "" or expired:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value

    @property
    def session(self):
        """The parley_session cookie's value, or None."""
        return self.cookies.get(SESSION_COOKIE)

    # ------------------------------------------------------------ events

    def events(self, last_event_id=None, timeout=None, path=EVENTS_PATH):
        """Open the event stream (GET, Accept: text/event-stream): an EventStream,
        its status and headers checked against the document."""
        return EventStream(self, path, last_event_id, timeout or self.timeout)


class EventStream:
    """An open text/event-stream answer on a socket of its own (http.client
    cannot go on reading after a timeout). status and headers are set at once;
    a non-200 answer has its parsed body in .body and yields no events."""

    def __init__(self, client, path, last_event_id, timeout):
        self.timeout = timeout
        self.last_id = last_event_id  # SSE: an id holds until an event sets another
        self._raw, self._buf, self._eof = b"", b"", False
        headers = client._headers("GET", {"Host": "%s:%d" % (client.host, client.port),
                                          "Accept": "text/event-stream", "Connection": "close"})
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self.sock = socket.create_connection((client.host, client.port), timeout=timeout)
        try:
            self._open(client, path, headers, timeout)
        except BaseException:
            self.close()
            raise

    def _open(self, client, path, headers, timeout):
        lines = "".join("%s: %s\r\n" % kv for kv in headers.items())
        request = "GET %s HTTP/1.1\r\n%s\r\n" % (path, lines)
        self.sock.sendall(request.encode())
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self._raw:
            if not self._recv(deadline, "the answer's headers"):
                raise AssertionError("GET %s: connection closed before the answer's headers" % path)
        head, self._raw = self._raw.split(b"\r\n\r\n", 1)
        status_line, _, header_text = head.partition(b"\r\n")
        self.status = int(status_line.split()[1])
        self.headers = parse_headers(io.BytesIO(header_text + b"\r\n\r\n"))
        self._chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        self.body = None
        if self.status == 200:
            client.spec.check_response("GET", path, self.status, self.headers, b"")
            self._spec = client.spec
            self._event_schema = self._schema_pointer(client.spec, path)
            return
        length = self.headers.get("Content-Length")
        while not self._eof and (length is None or len(self._buf) < int(length)):
            self._fill(deadline)
        self.body = client.spec.check_response("GET", path, self.status, self.headers, self._buf)
        self.close()

    @staticmethod
    def _schema_pointer(spec, path):
        """Where the document describes one event of this stream, or None."""
        resp_ptr, resp = spec.response("GET", path, 200)
        for key, media in (resp.get("content") or {}).items():
            if openapi_check.media_type(key) == "text/event-stream" and "schema" in media:
                return resp_ptr + "/content/" + key.replace("~", "~0").replace("/", "~1") + "/schema"
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.sock.close()

    def __iter__(self):
        """Events until the server ends the stream; TimeoutError when one
        takes longer than the stream's timeout."""
        while True:
            try:
                yield self.next_event()
            except EOFError:
                return

    def next_event(self, timeout=None):
        """The next event: Event(id, event, data) with data parsed as JSON;
        comments (keep-alives) skipped. TimeoutError when none is complete
        within `timeout` seconds (the stream stays usable); EOFError when
        the stream ended."""
        if self.status != 200:
            raise EOFError("the stream answered %d, not events" % self.status)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        event, data = None, []
        while True:
            line = self._line(deadline)
            if line == "":  # a blank line ends an event; one without data is none
                if data:
                    text = "\n".join(data)
                    try:
                        value = jsonlib.loads(text)
                    except ValueError:
                        raise AssertionError("event %r: data is not JSON: %r" % (event, text))
                    ev = Event(self.last_id, event or "message", value)
                    self._check_event(ev)
                    return ev
                event = None
                continue
            field, _, value = line.partition(":")
            if field == "":
                continue  # a comment
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                data.append(value)
            elif field == "event":
                event = value
            elif field == "id" and "\0" not in value:
                self.last_id = value

    def _check_event(self, ev):
        """Every event is held to the document's schema for the stream's events."""
        if self._event_schema is None:
            return
        problems = self._spec.schema_errors(self._event_schema, ev._asdict())
        if problems:
            raise AssertionError("event %s %r does not match %s#%s:\n  %s\ndata: %s"
                                 % (ev.id, ev.event, self._spec.name, self._event_schema,
                                    "\n  ".join(problems), jsonlib.dumps(ev.data)[:500]))

    def _line(self, deadline):
        """One line without its ending (\\r\\n, \\n or \\r)."""
        while True:
            m = LINE_END.search(self._buf)
            # A \r at the very end may be the first half of \r\n.
            if m and not (m.group() == b"\r" and m.end() == len(self._buf) and not self._eof):
                line, self._buf = self._buf[:m.start()], self._buf[m.end():]
                return line.decode("utf-8")
            if self._eof:
                raise EOFError("the server ended the event stream")
            self._fill(deadline)

    def _fill(self, deadline):
        """Move at least one more body byte into _buf (or reach the end)."""
        before = len(self._buf)
        while len(self._buf) == before and not self._eof:
            if not self._chunked:
                self._buf += self._raw
                self._raw = b""
            else:
                self._dechunk()
            if len(self._buf) == before and not self._eof:
                if not self._recv(deadline, "a complete event"):
                    self._eof = True

    def _dechunk(self):
        """Move the complete chunks in _raw to _buf; the last chunk ends the body."""
        while True:
            size_line, sep, rest = self._raw.partition(b"\r\n")
            if not sep:
                return
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                self._eof = True
                return
            if len(rest) < size + 2:
                return
            self._buf += rest[:size]
            self._raw = rest[size + 2:]

    def _recv(self, deadline, what):
        """Read what the socket has into _raw; False at the end of the connection."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no %s within the timeout" % what)
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no %s within the timeout" % what)
        self._raw += chunk
        return bool(chunk)
