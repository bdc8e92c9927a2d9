r"""A local HTTP server that plays a platform's API in end-to-end tests.

The daemon under test talks to Graph, X, Telegram, Zendesk, a brand's
callback URL ... ; the tests point it at a FakeHTTPServer on 127.0.0.1 that
records every request and answers the way the test says:

    with FakeHTTPServer(answer=lambda req: {"id": "p-%d" % req.n}) as api:
        api.queue(Answer(429, {"error": "slow down"}, {"Retry-After": "1"}))
        ... start parleyd with api.url ...
        first, second = api.wait_for_requests(2)
        assert second.at - first.at >= 0.9
        assert second.json()["text"] == "hi"

How a request is answered, in this order:

 1. The request is recorded (a Request: method, path, query, headers, raw
    body, arrival times) and waiters are woken.
 2. The answer is chosen, holding `server.lock`: what `server.override`
    says, if it is set and does not return None (an outage or a rate-limit
    storm that answers everything while it lasts), else the first entry of
    the queued script whose method and path pattern match the request
    (entries are used once, in the order queued), else the answer function
    given as `answer=` (or assigned to `server.answer` later), else 200
    with `{}`.
    Answer functions and script entries may change the fake's own state
    without further locking: only one of them runs at a time.
 3. Without the lock: the answer's `before` action, then the server's
    `before_answer` hook, each called with the Request. This is the moment
    between "the request arrived" and "its answer left", e.g. to deliver
    the platform's webhook before the API call returns.
 4. `hang=N`: sleep N seconds and close the connection without a word, to
    provoke the client's timeout. Otherwise sleep `delay` seconds, if any,
    and send the answer. A client that gave up meanwhile is not an error.

An answer can be written as an Answer, a tuple (status, body[, headers[,
delay]]) or a bare body (status 200). Bodies: dict or list -> JSON (application/json),
str -> UTF-8 (text/plain), bytes -> as they are (no Content-Type), None ->
empty. Headers given with the answer are sent after the defaults and
replace a default of the same name.

An answer function, script entry or action that raises is a bug in the
test (an assert in an action counts): the client gets a 500 whose body
names the exception, the traceback is printed and kept in `server.errors`,
and leaving the `with` block (or the fixture) raises AssertionError with it,
so it does not pass unseen.

For pytest, conftest.py's `fake_http` fixture is a factory whose servers
are closed after the test; `servers()` below is the same for any code.

Recipes (the shapes the platform fakes need):

    # per-route scripts: only POSTs to /notes take these
    api.queue((429, {"error": "rate"}, {"Retry-After": "2"}), method="POST",
              path=r"^/api/v2/tickets/\d+/notes$")
    # pacing: the second call came no sooner than Retry-After
    first, second = api.wait_for_requests(2)
    assert second.at - first.at >= 1.9
    # the client's timeout: the request arrives, the answer never does
    api.queue(hang(3))
    # the platform applies the call, fires its webhook, and the answer is
    # lost (late past the client's timeout): a callable entry computes the
    # answer from the fake's state, `before` fires the webhook
    api.queue(lambda req: Answer(*fake.apply(req), delay=3, before=fire_webhook),
              method="POST", path=r"/notes$")
    # a stateful platform: subclass and answer from its state
    class FakeDesk(FakeHTTPServer):
        def __init__(self):
            self.tickets = []
            super().__init__(answer=self.serve)
        def serve(self, req):          # runs holding self.lock
            ...
"""
import contextlib
import json
import re
import sys
import threading
import time
import traceback
import urllib.parse
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

__all__ = ["Answer", "FakeHTTPServer", "Headers", "Request", "hang", "servers"]

# What a fake's code may raise: any error, and pytest.fail()/skip() (which
# are BaseExceptions); not KeyboardInterrupt or SystemExit.
_TEST_FAILURES = (Exception, pytest.fail.Exception, pytest.skip.Exception)

# Bounds that keep a misbehaving client from eating the test's memory.
MAX_BODY = 64 * 1024 * 1024
POLL_S = 0.05


class Headers(Mapping):
    """Request headers: names kept as the client sent them, looked up in any
    case (headers["content-type"] is headers["Content-Type"]). A repeated
    header keeps its first value, as http.server's headers[name] does."""

    def __init__(self, pairs):
        self._items = {}
        for name, value in pairs:
            self._items.setdefault(name.lower(), (name, value))

    def __getitem__(self, name):
        return self._items[name.lower()][1]

    def __iter__(self):
        return (name for name, _ in self._items.values())

    def __len__(self):
        return len(self._items)

    def __contains__(self, name):
        return isinstance(name, str) and name.lower() in self._items

    def __repr__(self):
        return "Headers(%r)" % dict(self.items())


class Request:
    """One request as the fake received it (read-only by convention).

    n        1-based arrival number on this server
    method   "GET", "POST", ...
    path     the request target as sent, query string included
             (what BaseHTTPRequestHandler.path is)
    bare_path  the path without the query string
    query    the query string parsed: {name: [value, ...]}
    headers  Headers (case-insensitive lookup)
    body     the raw body bytes (b"" when there is none)
    at       time.monotonic() on arrival, for pacing checks
    wall     time.time() on arrival, for timestamps the client signed

    The fields can also be read as req["path"], req["body"], ... so checks
    written against request dicts read the same."""

    FIELDS = ("n", "method", "path", "bare_path", "query", "headers", "body", "at", "wall")

    def __init__(self, n, method, path, headers, body, at, wall):
        self.n = n
        self.method = method
        self.path = path
        parts = urllib.parse.urlsplit(path)
        self.bare_path = parts.path
        self.query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        self.headers = headers
        self.body = body
        self.at = at
        self.wall = wall

    def json(self):
        """The body parsed as JSON (raises ValueError when it is not)."""
        return json.loads(self.body)

    def text(self):
        return self.body.decode("utf-8")

    def __getitem__(self, field):
        if field not in self.FIELDS:
            raise KeyError(field)
        return getattr(self, field)

    def __repr__(self):
        return "<Request %d %s %s %d bytes>" % (self.n, self.method, self.path, len(self.body))


class Answer:
    """What the fake sends back.

    status   HTTP status (200)
    body     dict/list (JSON), str, bytes or None; see the module docstring
    headers  {name: value} sent with it
    delay    seconds to wait before answering
    hang     seconds to wait, then close without answering (None: answer)
    before   fn(Request) run before the delay/hang, without the lock held"""

    def __init__(self, status=200, body=None, headers=None, delay=0.0, hang=None, before=None):
        self.status = status
        self.body = body
        self.headers = dict(headers or {})
        self.delay = delay
        self.hang = hang
        self.before = before

    def encode(self):
        """(bytes, default Content-Type or None)"""
        if self.body is None:
            return b"", None
        if isinstance(self.body, bytes):
            return self.body, None
        if isinstance(self.body, str):
            return self.body.encode("utf-8"), "text/plain"
        return json.dumps(self.body).encode("utf-8"), "application/json"

    def __repr__(self):
        if self.hang is not None:
            return "<Answer hang %gs>" % self.hang
        return "<Answer %d %r>" % (self.status, self.body)


def hang(seconds, before=None):
    """An answer that never comes: wait `seconds`, then close the connection.
    Longer than the client's timeout, it makes the client give up."""
    return Answer(hang=seconds, before=before)


def as_answer(value):
    """Answer, (status, body[, headers[, delay]]) or a bare body -> Answer."""
    if isinstance(value, Answer):
        return value
    if isinstance(value, tuple):
        return Answer(*value)
    return Answer(200, value)


class _Scripted:
    """A queued answer and which requests it is for (None: any)."""

    def __init__(self, answer, method, path):
        self.answer = answer
        self.method = method
        self.path = re.compile(path) if path is not None else None

    def matches(self, req):
        return ((self.method is None or self.method == req.method)
                and (self.path is None or self.path.search(req.path) is not None))


class FakeHTTPServer:
    """A threaded HTTP server on 127.0.0.1 (a free port) that records every
    request and answers from a script, then from an answer function.

    answer     the default answer: fn(Request) -> answer, or a fixed answer
               (Answer, tuple or body); None: 200 with {}
    script     answers queued at once (same as queue(*script))
    base_path  appended to `url` (e.g. "/cb" for a callback URL)
    http11     speak HTTP/1.1 (keep-alive) instead of closing after each
               answer as HTTP/1.0 does

    Settable at any time: answer, before_answer (fn(Request) run before
    every answer), override (fn(Request) -> answer or None, asked before
    the script). `lock` is the condition the fake's state may share."""

    def __init__(self, answer=None, script=(), base_path="", http11=False):
        self.answer = answer
        self.before_answer = None       # fn(Request), run for every request (step 3)
        self.override = None            # fn(Request) -> answer or None, before the script
        # One condition for the recorded requests, the script and the
        # answer functions; reentrant so a predicate may read .requests.
        self.lock = threading.Condition(threading.RLock())
        self._requests = []
        self._script = []
        self.errors = []
        self.base_path = base_path
        self.queue(*script)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class(http11))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="fake_http:%d" % self.port)
        self._thread.start()
        self._closed = False

    # ------------------------------------------------------------ address

    @property
    def port(self):
        return self._server.server_address[1]

    @property
    def origin(self):
        """http://127.0.0.1:PORT (without base_path)."""
        return "http://127.0.0.1:%d" % self.port

    @property
    def url(self):
        """origin + base_path: what the daemon's config points at."""
        return self.origin + self.base_path

    # ------------------------------------------------------------- script

    def queue(self, *answers, method=None, path=None):
        """Queue answers, used once each before the answer function. Only
        requests with this method and whose path (as sent, query included)
        matches the regular expression `path` (re.search) take them. An
        entry may also be fn(Request) -> answer, called when it is taken."""
        with self.lock:
            self._script.extend(_Scripted(a, method, path) for a in answers)

    def pending(self):
        """How many queued answers are still unused."""
        with self.lock:
            return len(self._script)

    # ---------------------------------------------------------- requests

    @property
    def requests(self):
        """Every request so far, in arrival order (a copy)."""
        with self.lock:
            return list(self._requests)

    def matching(self, method=None, path=None):
        """The requests with this method whose path matches `path` (re.search)."""
        rx = re.compile(path) if path is not None else None
        return [r for r in self.requests
                if (method is None or r.method == method)
                and (rx is None or rx.search(r.path) is not None)]

    def wait_for(self, predicate, timeout=15.0):
        """Poll predicate() until it is true or `timeout` seconds passed;
        returns its last value (so `assert server.wait_for(...)` reads well).
        A request arriving wakes the poll early."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()   # without the lock: it may be slow (SQL)
            left = deadline - time.monotonic()
            if value or left <= 0:
                return value
            with self.lock:
                self.lock.wait(min(left, POLL_S))

    def wait_for_requests(self, count, timeout=15.0, method=None, path=None):
        """Wait until at least `count` requests (matching method/path) have
        arrived and return them all; AssertionError naming what did arrive
        when they do not come in time."""
        got = self.wait_for(lambda: len(self.matching(method, path)) >= count, timeout)
        found = self.matching(method, path)
        if not got:
            raise AssertionError("%d request(s)%s expected within %gs, got %d: %r"
                                 % (count, _describe(method, path), timeout, len(found),
                                    self.requests))
        return found

    # ------------------------------------------------------------ closing

    def close(self):
        """Stop serving and free the port (idempotent). Requests being
        answered (a hang, a delay) finish on their own threads."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()

    def check(self):
        """AssertionError with the tracebacks if an answer function, script
        entry or action raised."""
        with self.lock:
            errors = list(self.errors)
        if errors:
            raise AssertionError("fake_http server %s: %d answer(s) raised:\n%s"
                                 % (self.url, len(errors), "\n".join(errors)))

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        if exc_type is None:
            self.check()

    # ---------------------------------------------------------- internals

    def _record(self, method, path, headers, body):
        with self.lock:
            req = Request(len(self._requests) + 1, method, path, headers, body,
                          time.monotonic(), time.time())
            self._requests.append(req)
            self.lock.notify_all()
            try:
                return req, self._choose(req)
            except _TEST_FAILURES as e:
                return req, self._failed(req, e)

    def _failed(self, req, e):
        """A bug in the test's fake: keep it, print it, answer 500."""
        text = "".join(traceback.format_exception(type(e), e, e.__traceback__))
        with self.lock:
            self.errors.append(text)
        sys.stderr.write("fake_http: answering %r raised:\n%s" % (req, text))
        return Answer(500, "fake_http: %s: %s" % (type(e).__name__, e))

    def _choose(self, req):
        """Called with the lock held: the override, else the script's first
        match, else the answer function."""
        if self.override is not None:
            chosen = self.override(req)
            if chosen is not None:
                return as_answer(chosen)
        for i, entry in enumerate(self._script):
            if entry.matches(req):
                del self._script[i]
                chosen = entry.answer
                break
        else:
            chosen = self.answer if self.answer is not None else Answer(200, {})
        if callable(chosen):
            chosen = chosen(req)
        return as_answer(chosen)

    def _handler_class(self, http11):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if http11 else "HTTP/1.0"

            def handle_one(self):
                body = self.read_body()
                req, answer = fake._record(self.command, self.path,
                                           Headers(self.headers.items()), body)
                try:
                    if answer.before is not None:
                        answer.before(req)
                    if fake.before_answer is not None:
                        fake.before_answer(req)
                except _TEST_FAILURES as e:
                    answer = fake._failed(req, e)
                if answer.hang is not None:
                    time.sleep(answer.hang)
                    self.close_connection = True
                    return
                if answer.delay:
                    time.sleep(answer.delay)
                self.send(answer)

            def read_body(self):
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    return self.read_chunked()
                n = int(self.headers.get("Content-Length") or 0)
                if n > MAX_BODY:
                    raise ValueError("request body of %d bytes" % n)
                return self.rfile.read(n) if n else b""

            def read_chunked(self):
                data = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline().strip():   # trailers
                            pass
                        return data
                    if len(data) + size > MAX_BODY:
                        raise ValueError("chunked request body over %d bytes" % MAX_BODY)
                    data += self.rfile.read(size)
                    self.rfile.readline()

            def send(self, answer):
                data, content_type = answer.encode()
                names = {name.lower() for name in answer.headers}
                try:
                    self.send_response(answer.status)
                    if content_type and "content-type" not in names:
                        self.send_header("Content-Type", content_type)
                    if "content-length" not in names:
                        self.send_header("Content-Length", str(len(data)))
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                except OSError:
                    self.close_connection = True   # the client gave up (timeout tests)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = handle_one

            def log_message(self, *args):
                pass

        return Handler


def _describe(method, path):
    if method is None and path is None:
        return ""
    return " (%s %s)" % (method or "any method", path or "any path")


@contextlib.contextmanager
def servers():
    """A factory of FakeHTTPServers, all closed on leaving the block (and
    checked, see FakeHTTPServer.check):

        with servers() as make:
            graph = make(answer=...)
    """
    made = []

    def make(*args, **kwargs):
        server = FakeHTTPServer(*args, **kwargs)
        made.append(server)
        return server

    try:
        yield make
    finally:
        for server in made:
            server.close()
    for server in made:   # reached only when the block ended without an exception
        server.check()
