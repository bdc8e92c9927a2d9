"""The fake platform server the end-to-end tests stand on (fake_http.py):
what it records, in which order it answers, and that its hang really makes
a client time out. No daemon, no database."""
import json
import socket
import threading
import time
from http.client import HTTPConnection

import pytest

from fake_http import Answer, FakeHTTPServer, hang, servers
from parley_testlib import http


def test_records_every_field_of_a_request(fake_http):
    api = fake_http()
    status, _, _ = http("POST", api.url + "/v1/send?to=ann&to=bo&empty=",
                        b'{"text": "h\xc3\xa9"}', {"Content-Type": "application/json",
                                                   "X-Trace": "abc"})
    assert status == 200
    http("GET", api.url + "/v1/status")
    first, second = api.requests
    assert (first.n, first.method, first.path) == (1, "POST", "/v1/send?to=ann&to=bo&empty=")
    assert first.bare_path == "/v1/send"
    assert first.query == {"to": ["ann", "bo"], "empty": [""]}
    assert first.body == b'{"text": "h\xc3\xa9"}'
    assert first.json() == {"text": "h\u00e9"}
    assert first.text() == '{"text": "h\u00e9"}'
    # Header names as sent, looked up in any case.
    assert first.headers["X-Trace"] == first.headers["x-trace"] == "abc"
    assert "x-TRACE" in first.headers and "X-Other" not in first.headers
    assert "X-Trace" in list(first.headers)
    # Arrival times: monotonic for pacing, wall clock for signed timestamps.
    assert first.at <= second.at
    assert abs(first.wall - time.time()) < 5
    # The dict-style view reads the same fields.
    assert (first["path"], first["body"], first["at"]) == (first.path, first.body, first.at)
    with pytest.raises(KeyError):
        first["nope"]
    assert (second.method, second.body, second.query) == ("GET", b"", {})
    assert api.matching(method="GET") == [second]
    assert api.matching(path=r"^/v1/send\?") == [first]


def test_a_repeated_header_keeps_its_first_value(fake_http):
    api = fake_http()
    with socket.create_connection(("127.0.0.1", api.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.0\r\nX-Dup: 1\r\nx-dup: 2\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.0 200")
    assert api.requests[0].headers["X-DUP"] == "1"
    assert len(api.requests[0].headers) == 1


def test_chunked_request_body_is_read_whole(fake_http):
    api = fake_http()
    conn = HTTPConnection("127.0.0.1", api.port, timeout=5)
    conn.request("PUT", "/up", body=iter([b"ab", b"cde"]), encode_chunked=True,
                 headers={"Transfer-Encoding": "chunked"})
    assert conn.getresponse().status == 200
    conn.close()
    assert api.requests[0].body == b"abcde"


def test_script_is_used_in_order_then_the_default_answer(fake_http):
    api = fake_http(answer=lambda req: (201, {"id": "p-%d" % req.n}, {"X-Default": "1"}),
                    script=[(503, "busy", {"Retry-After": "7"})])
    api.queue(Answer(200, [1, 2]), b"\x00raw")
    answers = [http("POST", api.url + "/x", b"{}") for _ in range(5)]
    assert [a[0] for a in answers] == [503, 200, 200, 201, 201]
    assert answers[0][1]["retry-after"] == "7"
    assert answers[0][1]["content-type"] == "text/plain" and answers[0][2] == b"busy"
    assert answers[1][1]["content-type"] == "application/json"
    assert json.loads(answers[1][2]) == [1, 2]
    assert answers[2][2] == b"\x00raw" and "content-type" not in answers[2][1]
    assert [json.loads(a[2]) for a in answers[3:]] == [{"id": "p-4"}, {"id": "p-5"}]
    assert answers[4][1]["x-default"] == "1"
    assert api.pending() == 0


def test_override_answers_before_the_script_while_it_says_so(fake_http):
    api = fake_http(answer=lambda req: "normal", script=["scripted"])
    storm = {"on": True}
    api.override = lambda req: (429, "storm", {"Retry-After": "7"}) if storm["on"] else None
    status, headers, body = http("GET", api.url)
    assert (status, headers["retry-after"], body) == (429, "7", b"storm")
    assert api.pending() == 1      # the script waits for the storm to pass
    storm["on"] = False
    assert [http("GET", api.url)[2] for _ in range(2)] == [b"scripted", b"normal"]


def test_without_answer_function_it_answers_200_with_an_empty_object(fake_http):
    api = fake_http()
    assert http("GET", api.url)[0::2] == (200, b"{}")
    api.answer = (204, None)     # a fixed answer instead of a function
    status, headers, body = http("DELETE", api.url + "/a")
    assert (status, body, headers["content-length"]) == (204, b"", "0")


def test_script_entries_only_answer_matching_requests(fake_http):
    api = fake_http(answer=lambda req: "default")
    api.queue((429, "later"), method="POST", path=r"^/2/tweets$")
    api.queue(lambda req: "computed for " + req.method, path=r"/search")
    assert http("GET", api.url + "/2/tweets")[2] == b"default"        # wrong method
    assert http("POST", api.url + "/2/tweets/x")[2] == b"default"     # path does not match
    assert http("GET", api.url + "/2/tweets/search?q=1")[2] == b"computed for GET"
    assert http("POST", api.url + "/2/tweets")[0:3:2] == (429, b"later")
    assert http("POST", api.url + "/2/tweets")[2] == b"default"


def test_hang_makes_the_client_time_out_and_the_next_request_is_answered(fake_http):
    api = fake_http(script=[hang(3)])
    started = time.monotonic()
    with pytest.raises((socket.timeout, TimeoutError)):
        http("POST", api.url + "/slow", b"x", timeout=0.5)
    assert time.monotonic() - started < 2.5
    # The hanging request was recorded; the next one is answered at once.
    assert http("POST", api.url + "/slow", b"y", timeout=2)[0] == 200
    assert [r.body for r in api.requests] == [b"x", b"y"]


def test_hang_closes_without_an_answer(fake_http):
    api = fake_http(script=[hang(0.2)])
    with socket.create_connection(("127.0.0.1", api.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert s.recv(100) == b""     # closed, not answered


def test_delay_holds_the_answer_back(fake_http):
    api = fake_http(script=[Answer(200, "late", delay=0.4)])
    started = time.monotonic()
    assert http("GET", api.url)[2] == b"late"
    assert time.monotonic() - started >= 0.4


def test_action_runs_after_the_request_is_recorded_and_before_the_answer(fake_http):
    api = fake_http(answer=lambda req: "the answer")
    seen = []

    def action(req):
        # The request is already recorded; its answer has not left yet.
        seen.append(("action", req.json(), len(api.requests), time.monotonic()))

    api.queue(Answer(200, "first", before=action))
    api.before_answer = lambda req: seen.append(("every", req.n))
    status, _, body = http("POST", api.url, {"k": 1})
    answered = time.monotonic()
    assert body == b"first"
    assert seen[0][:3] == ("action", {"k": 1}, 1) and seen[0][3] <= answered
    assert seen[1] == ("every", 1)
    http("POST", api.url, {"k": 2})
    assert seen[2:] == [("every", 2)]


def test_a_call_that_lands_fires_its_webhook_and_loses_its_answer(fake_http):
    """The shape a ticket system's lost answer takes: the entry applies the
    call to the fake's state, the action reports it (the platform's webhook)
    and the answer comes after the client gave up."""
    api = fake_http()
    notes, webhooks = [], []

    def apply(req):
        notes.append(req.json())
        return 201, {"id": len(notes)}

    api.queue(lambda req: Answer(*apply(req), delay=1.0,
                                 before=lambda req: webhooks.append(len(notes))),
              method="POST", path=r"/notes$")
    with pytest.raises((socket.timeout, TimeoutError)):
        http("POST", api.url + "/tickets/1/notes", {"body": "hi"}, timeout=0.3)
    assert notes == [{"body": "hi"}] and webhooks == [1]
    # The old 4-tuple (status, body, headers, delay) is an Answer too.
    api.queue((202, "later", {}, 0.2))
    started = time.monotonic()
    assert http("GET", api.url)[0] == 202 and time.monotonic() - started >= 0.2


def test_action_can_call_back_into_the_server_while_a_request_waits(fake_http):
    """The action runs without the server's lock: a second request (e.g. the
    client's follow-up) is answered while the first one's action still runs."""
    api = fake_http()
    released = threading.Event()
    api.queue(Answer(200, "first", before=lambda req: released.wait(5)))
    done = []
    t = threading.Thread(target=lambda: done.append(http("GET", api.url + "/1")))
    t.start()
    api.wait_for_requests(1)
    assert http("GET", api.url + "/2", timeout=2)[0] == 200
    released.set()
    t.join(5)
    assert done[0][2] == b"first"


def test_wait_for_requests_returns_them_or_says_what_came(fake_http):
    api = fake_http()
    threading.Timer(0.2, lambda: [http("POST", api.url + "/a") for _ in range(2)]).start()
    got = api.wait_for_requests(2, timeout=5, path="/a")
    assert [r.path for r in got] == ["/a", "/a"]
    with pytest.raises(AssertionError, match=r"3 request\(s\) \(POST any path\) expected "
                                             r"within 0.2s, got 2"):
        api.wait_for_requests(3, timeout=0.2, method="POST")
    assert api.wait_for(lambda: len(api.requests) == 2, timeout=0.1)
    assert not api.wait_for(lambda: False, timeout=0.1)


def test_an_answer_or_action_that_raises_is_a_loud_500(capsys):
    with pytest.raises(AssertionError, match=r"2 answer\(s\) raised:(.|\n)*KeyError: 'missing'"
                                             r"(.|\n)*the action failed"):
        with FakeHTTPServer(answer=lambda req: req.json()["missing"]) as api:
            status, _, body = http("POST", api.url, b"{}")
            assert status == 500 and b"KeyError" in body
            assert "KeyError: 'missing'" in api.errors[0]
            api.queue(Answer(200, "fine", before=lambda req: pytest.fail("the action failed")))
            status, _, body = http("POST", api.url, b"{}")
            assert status == 500 and b"the action failed" in body
    assert "fake_http: answering" in capsys.readouterr().err
    # The factory checks its servers the same way.
    with pytest.raises(AssertionError, match="ZeroDivisionError"):
        with servers() as make:
            http("GET", make(answer=lambda req: 1 // 0).url)


def test_http11_keeps_the_connection_open(fake_http):
    api = fake_http(http11=True, base_path="/hooks/x")
    assert api.url == api.origin + "/hooks/x"
    conn = HTTPConnection("127.0.0.1", api.port, timeout=5)
    for _ in range(2):
        conn.request("POST", "/hooks/x", body=b"{}")
        resp = conn.getresponse()
        assert resp.version == 11 and resp.read() == b"{}"
    conn.close()
    assert len(api.requests) == 2


def test_context_manager_and_factory_free_the_port():
    with FakeHTTPServer() as api:
        port = api.port
        assert http("GET", api.url)[0] == 200
    with pytest.raises(OSError):
        http("GET", "http://127.0.0.1:%d/" % port, timeout=2)
    api.close()   # a second close is harmless
    with servers() as make:
        a, b = make(), make()
        assert a.port != b.port
    for s in (a, b):
        with pytest.raises(OSError):
            http("GET", s.url, timeout=2)
