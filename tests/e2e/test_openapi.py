"""docs/api/openapi.yaml against the daemon, and the checker that holds every
API test to it (openapi_check) and its client (api_client)."""
import copy
import json
import socket
import threading
import time

import pytest

import openapi_check
from api_client import ApiClient, Event
from openapi_check import OpenApiDoc, check_response
from parley_testlib import http, parleyd_config, query

JSON = {"Content-Type": "application/json"}
READY = {"status": "ready", "schema_version": 3, "policy": {"version": 1, "file_differs": False}}


def rejects(fn, *args, match):
    """fn(*args) raises AssertionError whose message contains `match`; the message."""
    with pytest.raises(AssertionError) as e:
        fn(*args)
    assert match in str(e.value), str(e.value)
    return str(e.value)


def error_json(ref="#/components/schemas/Error"):
    return {"content": {"application/json": {"schema": {"$ref": ref}}}, "description": "error"}


# A small document of its own for the lookup rules.
SMALL = {
    "openapi": "3.1.0",
    "info": {"title": "t", "version": "1"},
    "components": {
        "schemas": {
            "Error": {"type": "object", "required": ["error"],
                      "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
                      "additionalProperties": False},
            "Thing": {"type": "object", "required": ["id"],
                      "properties": {"id": {"type": "string"}}, "additionalProperties": False},
        },
        "responses": {"NotFound": error_json()},
    },
    "paths": {},
}
for _template, _tag in [("/a/{id}", "templated"), ("/a/new", "literal"), ("/a/{id}/b", "deep"),
                        ("/x/{p}/c", "late-literal"), ("/x/b/{q}", "early-literal")]:
    SMALL["paths"][_template] = {"get": {
        "operationId": _tag, "summary": _tag,
        "parameters": [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                       for n in ("id", "p", "q") if "{%s}" % n in _template],
        "responses": {
            "200": {"description": "ok", "content": {"application/json": {"schema": {"const": _tag}}}},
            "404": {"$ref": "#/components/responses/NotFound"},
            "4XX": {"description": "a 4xx", "content": {"application/json": {"schema": {
                "allOf": [{"$ref": "#/components/schemas/Error"},
                          {"properties": {"error": {"const": "range"}}}]}}}},
            "default": {"description": "else", "content": {"application/json": {"schema": {
                "allOf": [{"$ref": "#/components/schemas/Error"},
                          {"properties": {"error": {"const": "default"}}}]}}}},
        }}}
SMALL["paths"]["/things"] = {"post": {
    "operationId": "makeThing", "summary": "make one",
    "requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Thing"}}}},
    "responses": {
        "201": {"description": "made", "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Thing"}}}},
        "429": {"description": "slow down", "headers": {"Retry-After": {
            "required": True, "schema": {"type": "integer", "minimum": 0}}}, **error_json()},
        "503": {"description": "busy", "headers": {"Retry-After": {
            "schema": {"type": "integer", "minimum": 0}}}, **error_json()},
    }}, "get": {
    "operationId": "thingEvents", "summary": "events",
    "responses": {"200": {"description": "stream", "content": {"text/event-stream": {}}},
                  "401": error_json()}}}


@pytest.fixture
def small():
    return OpenApiDoc(copy.deepcopy(SMALL), name="small.yaml")


# ------------------------------------------------------------- the document

def test_the_document_keeps_the_house_rules():
    assert openapi_check.lint_document() == []
    assert OpenApiDoc(copy.deepcopy(SMALL)).lint() == []


def test_lint_names_each_broken_rule(small):
    doc = small.doc
    get = doc["paths"]["/a/{id}"]["get"]
    del get["operationId"]
    get["parameters"] = []                                        # {id} undeclared
    doc["paths"]["/a/new"]["get"]["responses"] = {"200": {"description": "ok"}}  # no error answer
    doc["paths"]["/a/{id}/b"]["get"]["responses"]["404"] = error_json("#/components/schemas/Thing")
    doc["paths"]["/x/{p}/c"]["get"]["responses"][500] = error_json()            # unquoted code
    doc["paths"]["/x/b/{q}"]["get"]["responses"]["409"] = {"$ref": "#/components/responses/Gone"}
    doc["paths"]["/x/b/{q}"]["get"]["parameters"].append(
        {"name": "zz", "in": "path", "required": False})
    doc["paths"]["/things"]["post"]["responses"].pop("201")
    doc["paths"]["/things"]["get"]["operationId"] = "makeThing"
    doc["paths"]["/a/{other}"] = doc["paths"]["/a/{id}"]
    doc["security"] = [{"bearerAuth": []}]
    problems = "\n".join(small.lint())
    for expected in ["GET /a/{id}: no operationId",
                     "GET /a/{id}: path parameter {id} is not declared",
                     "GET /a/new: no error response",
                     "GET /a/{id}/b: error response 404 does not use #/components/schemas/Error",
                     "GET /x/{p}/c: response codes must be quoted",
                     "'#/components/responses/Gone' does not resolve",
                     "GET /x/b/{q}: path parameter zz must say required: true",
                     "GET /x/b/{q}: declares path parameter zz that the path does not have",
                     "POST /things: no 2xx response",
                     "operationId makeThing is used twice",
                     "paths /a/{id} and /a/{other} are the same path",
                     "GET /a/new: needs a login but documents no 401"]:
        assert expected in problems, problems
    assert "GET /things: needs a login" not in problems  # it documents 401


# --------------------------------------------------------------- lookups

def test_literal_segments_win_over_templated_ones(small):
    assert small.match_path("/a/new") == "/a/new"
    assert small.match_path("/a/42") == "/a/{id}"
    assert small.match_path("/a/new?limit=5") == "/a/new"
    assert small.match_path("/a/new/b") == "/a/{id}/b"
    # The leftmost difference decides: /x/b/{q} beats /x/{p}/c for /x/b/c.
    assert small.match_path("/x/b/c") == "/x/b/{q}"
    assert small.match_path("/x/y/c") == "/x/{p}/c"
    for path in ("/a", "/a/", "/a/1/2", "/a/1/b/", "/A/new"):
        assert small.match_path(path) is None, path
    body = json.dumps("literal").encode()
    assert small.check_response("GET", "/a/new", 200, JSON, body) == "literal"
    rejects(small.check_response, "GET", "/a/7", 200, JSON, body, match="'templated' was expected")


def test_status_lookup_exact_then_range_then_default(small):
    def error(code):
        return json.dumps({"error": code}).encode()
    assert small.response("GET", "/a/1", 404)[0] == "/components/responses/NotFound"
    assert small.response("GET", "/a/1", 409)[0] == "/paths/~1a~1{id}/get/responses/4XX"
    assert small.response("GET", "/a/1", 500)[0] == "/paths/~1a~1{id}/get/responses/default"
    small.check_response("GET", "/a/1", 404, JSON, error("anything"))
    small.check_response("GET", "/a/1", 409, JSON, error("range"))
    rejects(small.check_response, "GET", "/a/1", 409, JSON, error("default"), match="4XX")
    small.check_response("GET", "/a/1", 503, JSON, error("default"))
    # Without default, what no code or range covers is undocumented.
    del small.doc["paths"]["/a/{id}"]["get"]["responses"]["default"]
    rejects(small.check_response, "GET", "/a/1", 500, JSON, error("default"),
            match="GET /a/1: status 500 not documented for GET /a/{id} (documented: 200, 404, 4XX)")


def test_path_items_by_reference(small):
    small.doc["components"]["pathItems"] = {"Things": small.doc["paths"].pop("/things")}
    small.doc["paths"]["/v2/things"] = {"$ref": "#/components/pathItems/Things"}
    small = OpenApiDoc(small.doc)
    assert small.lint() == []
    assert small.response("POST", "/v2/things", 201)[0] == \
        "/components/pathItems/Things/post/responses/201"
    rejects(small.check_response, "POST", "/v2/things", 201, JSON, b'{"id": 1}',
            match="#/components/pathItems/Things/post/responses/201/content/application~1json/schema")


def test_head_is_checked_as_get_without_a_body(small):
    small.check_response("HEAD", "/a/new", 200, JSON, b"")
    rejects(small.check_response, "HEAD", "/a/new", 200, {"Content-Type": "text/html"}, b"",
            match="content type 'text/html' not documented")


def test_required_and_declared_headers(small):
    body = json.dumps({"error": "slow_down"}).encode()
    small.check_response("POST", "/things", 429, dict(JSON, **{"Retry-After": "3"}), body)
    rejects(small.check_response, "POST", "/things", 429, JSON, body,
            match="POST /things -> 429: required header Retry-After missing")
    rejects(small.check_response, "POST", "/things", 429, [("content-type", "application/json"),
            ("retry-after", "soon")], body, match="header Retry-After: 'soon' does not match")
    small.check_response("POST", "/things", 503, JSON, body)  # optional there
    rejects(small.check_response, "POST", "/things", 503, dict(JSON, **{"Retry-After": "-1"}), body,
            match="less than the minimum")


def test_event_streams_are_checked_for_status_and_type_only(small):
    small.check_response("GET", "/things", 200, {"Content-Type": "text/event-stream"}, b"data: x\n\n")
    rejects(small.check_response, "GET", "/things", 200, JSON, b"{}",
            match="content type 'application/json' not documented (documented: text/event-stream)")


def test_request_bodies(small):
    small.check_request_body("POST", "/things", {"id": "t1"})
    rejects(small.check_request_body, "POST", "/things", {"id": 1},
            match="POST /things request body: body does not match")
    rejects(small.check_request_body, "POST", "/things", {},
            match="'id' is a required property")
    rejects(small.check_request_body, "POST", "/things", None, match="the operation requires one")
    rejects(small.check_request_body, "GET", "/things", {"id": "t1"},
            match="the operation documents no request body")


# ------------------------------------------------------ the real daemon

def readyz_once_connected(api, timeout=10):
    """/readyz's answer once the pool has a connection (each answer is checked)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = api.get("/readyz")
        if answer[0] == 200 or answer[2]["error"] != "database_unavailable" \
                or time.monotonic() > deadline:
            return answer
        time.sleep(0.05)


def test_real_health_readiness_and_metrics_answers_match(fresh_db, daemon):
    d = daemon.start(parleyd_config(fresh_db))
    api = ApiClient(d.url)
    assert api.get("/healthz")[::2] == (200, {"status": "ok"})
    status, headers, body = readyz_once_connected(api)
    assert status == 200 and body["status"] == "ready" and body["policy"]["version"] >= 0
    status, headers, body = api.get("/metrics")
    assert status == 200 and "parley_http_requests_total" in body
    status, headers, body = api.request("HEAD", "/readyz")
    assert status == 200 and body == "" and headers["Content-Type"] == "application/json"

    # What the checker must refuse, from real answers.
    rejects(check_response, "GET", "/nope", *http("GET", d.url + "/nope"),
            match="GET /nope: path not documented in openapi.yaml")
    status, headers, body = http("POST", d.url + "/healthz")
    assert status == 405
    rejects(check_response, "POST", "/healthz", status, headers, body,
            match="POST /healthz: method not documented for /healthz (documented: GET)")
    status, headers, body = http("GET", d.url + "/readyz")
    ready = json.loads(body)
    rejects(check_response, "GET", "/readyz", 404, headers, body,
            match="GET /readyz: status 404 not documented for GET /readyz (documented: 200, 503)")
    del ready["policy"]
    rejects(check_response, "GET", "/readyz", 200, headers, json.dumps(ready).encode(),
            match="at $: 'policy' is a required property")
    ready = json.loads(body)
    ready["schema_version"] = str(ready["schema_version"])
    rejects(check_response, "GET", "/readyz", 200, headers, json.dumps(ready).encode(),
            match="at $.schema_version: '%s' is not of type 'integer'" % ready["schema_version"])
    rejects(check_response, "GET", "/readyz", 200, dict(headers, **{"content-type": "text/html"}),
            body, match="content type 'text/html' not documented (documented: application/json)")
    rejects(check_response, "GET", "/readyz", 200, {}, body, match="body without Content-Type")
    rejects(check_response, "GET", "/healthz", 200, JSON, b"{not json",
            match="GET /healthz -> 200: body is not JSON")
    rejects(check_response, "GET", "/healthz", 503, JSON, b'{"error":"overloaded","why":"x"}',
            match="Additional properties are not allowed ('why' was unexpected)")


def test_real_not_ready_answer_matches(fresh_db, daemon):
    # Not migrated: alive, but /readyz says why not (the documented 503).
    query(fresh_db, "CREATE TABLE schema_migrations (version int PRIMARY KEY, name text NOT NULL, "
                    "applied_at timestamptz NOT NULL DEFAULT now())")
    d = daemon.start({"database": {"dsn": fresh_db, "migrate_on_start": False}})
    status, _, body = readyz_once_connected(ApiClient(d.url))
    assert status == 503 and body["error"] == "schema_outdated" and "detail" in body


# ----------------------------------------------------------- the client

def test_client_sends_credentials_and_checks_both_ways(small, fake_http):
    api_fake = fake_http()
    api_fake.queue((201, {"id": "t1"}, {"Set-Cookie": "parley_session=s1; HttpOnly; Path=/"}),
                   (201, {"id": "t2"}), (201, {"id": 2}), (201, {"id": "t4"}))
    api = ApiClient(api_fake.url, token="tok", spec=small)
    status, headers, body = api.post("/things", json={"id": "t1"})
    assert (status, body) == (201, {"id": "t1"}) and api.session == "s1"
    api.csrf_token = "c1"
    assert api.post("/things", json={"id": "t2"})[0] == 201
    first, second = api_fake.requests
    assert first.headers["Authorization"] == "Bearer tok" and "Cookie" not in first.headers
    assert "X-CSRF-Token" not in first.headers
    assert second.headers["Cookie"] == "parley_session=s1" and second.headers["X-CSRF-Token"] == "c1"
    # An answer that breaks the document fails the call.
    rejects(api.post, "/things", {"id": "t3"}, match="POST /things -> 201: body does not match")
    # Bad input is refused before sending, unless the test means it.
    rejects(api.post, "/things", {"id": 4}, match="POST /things request body")
    assert len(api_fake.requests) == 3
    assert api.post("/things", json={"id": 4}, validate_request=False)[0] == 201
    assert api_fake.requests[3].json() == {"id": 4}


class SseServer:
    """Accepts one connection, keeps its request, and writes `parts` (bytes,
    or a float: sleep that long) as they come, then closes."""

    def __init__(self, head, parts):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = "http://127.0.0.1:%d" % self.listener.getsockname()[1]
        self.request = b""
        self.thread = threading.Thread(target=self.serve, args=(head, parts), daemon=True)
        self.thread.start()

    def serve(self, head, parts):
        conn, _ = self.listener.accept()
        with conn:
            while b"\r\n\r\n" not in self.request:
                self.request += conn.recv(4096)
            conn.sendall(head)
            for part in parts:
                if isinstance(part, float):
                    time.sleep(part)
                else:
                    conn.sendall(part)
        self.listener.close()


SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"


def test_event_stream_reader(small):
    server = SseServer(SSE_HEAD, [
        b": keep-alive\r\n\r\nid: 7\r\nevent: message.created\r\ndata: {\"a\":", 0.2,
        b" 1}\r\n\r\n", b"data: [1,\ndata: 2]\n\n",  # no id: the last one holds; two data lines
        1.5, b"id: 9\revent: x\rdata: null\r\r"])
    api = ApiClient(server.url, token="tok", spec=small)
    with api.events(last_event_id="6", path="/things") as stream:
        assert stream.next_event(timeout=5) == Event("7", "message.created", {"a": 1})
        assert stream.next_event(timeout=5) == Event("7", "message", [1, 2])
        with pytest.raises(TimeoutError):
            stream.next_event(timeout=0.3)
        assert stream.next_event(timeout=5) == Event("9", "x", None)  # still usable
        with pytest.raises(EOFError):
            stream.next_event(timeout=5)
    request = server.request.decode()
    assert request.startswith("GET /things HTTP/1.1\r\n")
    assert "Last-Event-ID: 6\r\n" in request and "Authorization: Bearer tok\r\n" in request


def test_event_stream_chunked_and_refused(small):
    events = b"id: 1\ndata: {\"n\": 1}\n\nid: 2\ndata: {\"n\": 2}\n\n"
    chunked = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (10, events[:10], len(events) - 10, events[10:])
    head = SSE_HEAD.replace(b"Connection: close", b"Transfer-Encoding: chunked")
    server = SseServer(head, [chunked, 2.0])  # the terminal chunk ends it, not the close
    with ApiClient(server.url, spec=small).events(path="/things") as stream:
        assert [e.data["n"] for e in stream] == [1, 2]

    refused = b'{"error":"unauthorized"}'
    server = SseServer(b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
                       b"Content-Length: %d\r\n\r\n%s" % (len(refused), refused), [])
    stream = ApiClient(server.url, spec=small).events(path="/things")
    assert (stream.status, stream.body) == (401, {"error": "unauthorized"})
    server = SseServer(SSE_HEAD.replace(b"text/event-stream", b"text/plain"), [])
    rejects(ApiClient(server.url, spec=small).events, None, None, "/things",
            match="content type 'text/plain' not documented")
