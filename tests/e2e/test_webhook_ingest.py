"""The running daemon with the real webhook channel: what a platform (or a
brand's site) sees over HTTP, and what lands in PostgreSQL."""
import json
import re
import socket
import time

import pytest

from parley_testlib import http, query, sign

SECRET = "s3cret-for-tests"


@pytest.fixture
def site(fresh_db, daemon, plugin_dir):
    cfg = {
        "database": {"dsn": fresh_db},
        "plugin_dir": plugin_dir,
        "limits": {"max_body_bytes": 65536, "max_header_bytes": 4096, "read_timeout_ms": 500},
        "channels": [{"name": "site", "plugin": "webhook", "config": {"secret": SECRET}}],
    }
    d = daemon.start(cfg)
    d.dsn = fresh_db
    return d


def post(d, payload, secret=SECRET, signature=None, raw=None, path="/webhooks/site"):
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if signature is not False:
        headers["X-Parley-Signature"] = signature or sign(secret, body)
    return http("POST", d.url + path, body, headers)


def message(mid="m-1", text="My order never arrived", **extra):
    m = {"id": mid, "author": {"id": "cust-1", "name": "Ann", "email": "ann@example.com"},
         "text": text, "visibility": "private", "created_at": "2026-11-23T10:00:00Z"}
    m.update(extra)
    return m


def count(d):
    return query(d.dsn, "SELECT count(*) FROM inbound_event")[0][0]


def error_of(body):
    return json.loads(body)["error"]


def test_health_ready_and_metrics(site):
    assert http("GET", site.url + "/healthz")[0] == 200
    status, _, body = http("GET", site.url + "/readyz")
    assert status == 200 and json.loads(body)["schema_version"] >= 3
    status, headers, body = http("GET", site.url + "/metrics")
    text = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    # The fixture polled /healthz until it answered, so the count is at least 1.
    assert re.search(r'^parley_http_requests_total\{route="/healthz",method="GET",status="200"\} [1-9]', text, re.M)
    assert re.search(r'^parley_http_requests_total\{route="/readyz",method="GET",status="200"\} [1-9][0-9]*$', text, re.M)
    assert "parley_http_request_duration_seconds_bucket" in text
    assert 'parley_db_connections{state="idle"}' in text
    assert 'parley_plugin_instances{kind="channel"} 1' in text


def test_signed_message_is_committed_before_200(site):
    status, _, body = post(site, message())
    assert status == 200, body
    assert json.loads(body) == {"accepted": 1}
    rows = query(site.dsn, "SELECT channel_instance, dedupe_key, event_type, external_id, author_external_id, "
                           "event, raw, platform_time FROM inbound_event")
    assert len(rows) == 1
    inst, key, etype, ext, author, event, raw, ptime = rows[0]
    assert (inst, key, etype, ext, author) == ("site", "m-1", "message_created", "m-1", "cust-1")
    assert event["text"] == "My order never arrived"
    assert event["visibility"] == "private"
    assert event["author"]["email"] == "ann@example.com"
    assert raw["id"] == "m-1"
    assert ptime.isoformat().startswith("2026-11-23T10:00:00")


def test_replay_is_a_no_op_and_still_2xx(site):
    assert post(site, message())[0] == 200
    assert post(site, message())[0] == 200
    assert count(site) == 1


def test_batch_is_all_or_nothing(site):
    assert post(site, [message("a"), message("b"), message("c")])[0] == 200
    assert count(site) == 3
    status, _, body = post(site, [message("d"), {"id": "e", "text": "no author"}])
    assert status == 400 and "[1].author" in json.loads(body)["detail"]
    assert count(site) == 3


def test_missing_signature_is_401_and_stores_nothing(site):
    status, _, body = post(site, message(), signature=False)
    assert status == 401 and error_of(body) == "missing_signature"
    assert count(site) == 0


def test_wrong_signature_is_401_and_stores_nothing(site):
    status, _, body = post(site, message(), secret="not-the-secret")
    assert status == 401 and error_of(body) == "bad_signature"
    status, _, body = post(site, message(), signature="sha256=zz")
    assert status == 401 and error_of(body) == "bad_signature"
    assert count(site) == 0


def test_signature_is_over_the_raw_bytes(site):
    # Signed with \u00e9 escaped, sent with the raw character: a re-serialized body must fail.
    escaped = b'{"id":"u1","author":{"id":"c"},"text":"caf\\u00e9"}'
    unescaped = '{"id":"u1","author":{"id":"c"},"text":"café"}'.encode()
    status, _, body = post(site, None, raw=unescaped, signature=sign(SECRET, escaped))
    assert status == 401
    assert post(site, None, raw=escaped)[0] == 200
    assert query(site.dsn, "SELECT event->>'text' FROM inbound_event")[0][0] == "café"


def test_malformed_json_is_400(site):
    status, _, body = post(site, None, raw=b'{"id": "x",')
    assert status == 400 and error_of(body) == "invalid_json"
    assert count(site) == 0


def test_missing_required_field_is_400_naming_it(site):
    m = message()
    del m["author"]["id"]
    status, _, body = post(site, m)
    assert status == 400
    assert error_of(body) == "invalid_field" and "author.id" in json.loads(body)["detail"]
    assert count(site) == 0


def test_unknown_channel_is_404(site):
    status, _, body = post(site, message(), path="/webhooks/nope")
    assert status == 404 and error_of(body) == "unknown_channel"


def test_unknown_route_is_404_and_wrong_method_405(site):
    status, _, body = http("GET", site.url + "/nothing-here")
    assert status == 404 and error_of(body) == "not_found"
    status, headers, body = http("POST", site.url + "/healthz", b"")
    assert status == 405 and error_of(body) == "method_not_allowed"
    status, _, body = http("GET", site.url + "/webhooks/site")
    assert status == 405


def test_oversized_body_is_413_json_and_stores_nothing(site):
    big = message(text="x" * 70000)
    status, headers, body = post(site, big)
    assert status == 413
    assert headers["content-type"].startswith("application/json")
    assert error_of(body) == "body_too_large"
    assert count(site) == 0


def test_oversized_headers_are_431(site):
    status, _, body = http("GET", site.url + "/healthz", headers={"X-Big": "y" * 8000})
    assert status == 431 and error_of(body) == "headers_too_large"


def test_half_sent_body_is_cut_off_and_stores_nothing(site):
    body = json.dumps(message()).encode()
    s = socket.create_connection(("127.0.0.1", site.port), timeout=5)
    s.sendall(b"POST /webhooks/site HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"X-Parley-Signature: " + sign(SECRET, body).encode() + b"\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[: len(body) // 2])
    start = time.monotonic()
    answer = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        answer += chunk
    s.close()
    assert time.monotonic() - start < 3
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"request_timeout" in answer
    assert count(site) == 0


def test_readyz_reports_an_outdated_schema(fresh_db, daemon, plugin_dir):
    # Not migrated (migrate_on_start off): alive, but not ready.
    query(fresh_db, "CREATE TABLE schema_migrations (version int PRIMARY KEY, name text NOT NULL, "
                    "applied_at timestamptz NOT NULL DEFAULT now())")
    d = daemon.start({"database": {"dsn": fresh_db, "migrate_on_start": False}, "plugin_dir": plugin_dir})
    assert http("GET", d.url + "/healthz")[0] == 200
    # Until the pool's first connection is up, readiness says so instead.
    deadline = time.monotonic() + 10
    while True:
        status, _, body = http("GET", d.url + "/readyz")
        if error_of(body) != "database_unavailable" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status == 503 and error_of(body) == "schema_outdated"


def test_json_log_format_is_one_json_object_per_line(fresh_db, daemon, plugin_dir):
    d = daemon.start({"database": {"dsn": fresh_db}, "plugin_dir": plugin_dir,
                      "log": {"level": "info", "format": "json"},
                      "channels": [{"name": "site", "plugin": "webhook", "config": {"secret": SECRET}}]})
    d.stop()
    lines = [l for l in d.log_text().splitlines() if l.strip()]
    assert len(lines) >= 3
    for line in lines:
        entry = json.loads(line)
        assert entry["level"] in ("error", "warn", "info", "debug") and entry["msg"] and entry["ts"]
    assert any(json.loads(l).get("component") == "channel/site" for l in lines)
    assert SECRET not in d.log_text()


def test_sighup_rotates_the_secret_and_a_bad_one_keeps_the_running_one(site):
    """The channel reads the settings the core filled: after SIGHUP it signs
    and checks with the new struct, and a refused reload leaves the old one
    in force (and never prints the secret)."""
    import signal

    def reload_and_wait(marker):
        before = site.log_text().count(marker)
        site.signal(signal.SIGHUP)
        deadline = time.time() + 15
        while site.log_text().count(marker) == before and time.time() < deadline:
            time.sleep(0.05)
        assert site.log_text().count(marker) > before, site.log_text()[-2000:]

    new_secret = "rotated-secret-42"
    cfg = json.loads(json.dumps(site.config))
    cfg["channels"][0]["config"]["secret"] = new_secret
    site.rewrite_config(cfg)
    reload_and_wait("channel/site: reloaded")
    assert post(site, message("m-rot-1"))[0] == 401
    assert post(site, message("m-rot-2"), secret=new_secret)[0] == 200

    cfg["channels"][0]["config"].update(secret="", callback_timeout_ms=0)
    site.rewrite_config(cfg)
    reload_and_wait("reload failed, keeping the old configuration")
    assert "channels[0].config.secret: must not be empty" in site.log_text()
    assert post(site, message("m-rot-3"), secret=new_secret)[0] == 200
    assert new_secret not in site.log_text()
