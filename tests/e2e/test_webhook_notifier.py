"""The webhook notifier end to end: notifier/deliver jobs are enqueued
directly and the job runner hands them to a "webhook" notifier instance whose
url points at a local receiver. The receiver checks nothing itself: the tests
verify the signature the way docs/notifiers/webhook.md tells receivers to."""
import hashlib
import hmac
import json
import os
import subprocess
import threading
import time
from http.server import ThreadingHTTPServer
from signal import SIGHUP

from fake_http import Answer, FakeHTTPServer
from parley_testlib import query, run_parleyd

SECRET = "whsec-notifier-test-0123456789"
PATH_TOKEN = "hook-path-token-5150"
JOBS = {"backoff_base_ms": 50, "backoff_max_ms": 200, "sweep_interval_ms": 100}


class Receiver(FakeHTTPServer):
    """Records every request (keep-alive, as receivers usually are) and
    answers from a script; once the script is used up it answers 204."""

    def __init__(self, script=()):
        super().__init__(answer=(204, ""), script=script, base_path="/hooks/" + PATH_TOKEN,
                         http11=True)

    def posts(self):
        return self.requests


def verify(secret, headers, body, now=None, tolerance=300):
    """What a receiver does (docs/notifiers/webhook.md): parse t and v1,
    recompute, compare in constant time, refuse an old t."""
    parts = dict(p.split("=", 1) for p in headers["X-Parley-Signature"].split(","))
    t = int(parts["t"])
    mac = hmac.new(secret.encode(), str(t).encode() + b"." + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(mac, parts["v1"]):
        return False
    return abs((now or time.time()) - t) <= tolerance


def config(dsn, url, **opts):
    cfg = {"url": url, "secret": SECRET}
    cfg.update(opts)
    return {"database": {"dsn": dsn}, "log": {"level": "info"}, "jobs": dict(JOBS),
            "channels": [], "notifiers": [{"name": "hooks", "plugin": "webhook", "config": cfg}]}


def enqueue(dsn, payload, key=None, max_attempts=None):
    return query(dsn, "SELECT parley_job_enqueue('notifier', 'hooks', 'deliver', %s::jsonb, "
                      "%s, NULL, now(), %s)", (json.dumps(payload), key, max_attempts))[0][0]


def job(dsn, job_id):
    return query(dsn, "SELECT state, attempts, last_error FROM job WHERE id = %s", (job_id,))[0]


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def wait_state(dsn, job_id, state, timeout=20.0):
    assert wait_for(lambda: job(dsn, job_id)[0] == state, timeout), job(dsn, job_id)
    return job(dsn, job_id)


NOTICE = {"kind": "conversation.created", "title": "New conversation with Ann \u00e9",
          "text": "Parcel lost\nsecond line", "url": "https://parley.example/c/42",
          "conversation": {"conversation_id": 42, "visibility": "private",
                           "case_number": "PC-10042", "channel_instance": "site",
                           "channel_kind": "webhook", "status": "open",
                           "customer": {"customer_id": "7", "display_name": "Ann",
                                        "email": "ann@example.com"}},
          "payload": {"conversation_id": 42, "extra": [1, 2]}}


def test_notice_is_posted_signed_with_idempotency_key(fresh_db, daemon):
    with Receiver() as rx:
        d = daemon.start(config(fresh_db, rx.url))
        job_id = enqueue(fresh_db, NOTICE, key="notice-42-created")
        assert wait_state(fresh_db, job_id, "done")[1] == 1
        [req] = rx.posts()
        assert req["path"] == "/hooks/" + PATH_TOKEN
        h = req["headers"]
        assert h["Content-Type"] == "application/json"
        assert h["Idempotency-Key"] == "notice-42-created"
        assert verify(SECRET, h, req["body"], now=req["wall"])
        assert not verify("another-secret-0123456789", h, req["body"], now=req["wall"])
        # A replay of the same request five minutes later is refused.
        assert not verify(SECRET, h, req["body"], now=req["wall"] + 301)
        # The signature covers the body: one changed byte and it fails.
        assert not verify(SECRET, h, req["body"].replace(b"Ann", b"Bob"), now=req["wall"])
        assert json.loads(req["body"]) == {
            "idempotency_key": "notice-42-created",
            "kind": "conversation.created",
            "title": "New conversation with Ann \u00e9",
            "text": "Parcel lost\nsecond line",
            "url": "https://parley.example/c/42",
            "conversation": {"conversation_id": "42", "visibility": "private",
                             "case_number": "PC-10042", "channel_instance": "site",
                             "channel_kind": "webhook", "status": "open",
                             "customer": {"customer_id": "7", "display_name": "Ann",
                                          "email": "ann@example.com"}},
            "payload": {"conversation_id": 42, "extra": [1, 2]}}
        d.stop()
        log = d.log_text()
        assert SECRET not in log and PATH_TOKEN not in log


def test_minimal_notice_leaves_absent_fields_out(fresh_db, daemon):
    with Receiver() as rx:
        daemon.start(config(fresh_db, rx.url))
        payload = {"kind": "delivery.failed", "title": "A reply failed", "text": ""}
        job_id = enqueue(fresh_db, payload, key="k\u00fcy with space")
        wait_state(fresh_db, job_id, "done")
        [req] = rx.posts()
        # Bytes outside visible ASCII are percent-encoded in the header only.
        assert req["headers"]["Idempotency-Key"] == "k%C3%BCy%20with%20space"
        assert json.loads(req["body"]) == {
            "idempotency_key": "k\u00fcy with space", "kind": "delivery.failed",
            "title": "A reply failed", "text": "",
            # Without its own "payload", the whole job payload is the payload.
            "payload": payload}


def test_5xx_is_retried_with_the_same_body_after_retry_after(fresh_db, daemon):
    with Receiver([(503, "busy", {"Retry-After": "1"})]) as rx:
        daemon.start(config(fresh_db, rx.url))
        job_id = enqueue(fresh_db, NOTICE, key="notice-retry")
        state, attempts, _ = wait_state(fresh_db, job_id, "done")
        assert attempts == 1     # a wait the receiver named is a deferral, not an attempt
        first, second = rx.posts()
        assert first["body"] == second["body"]
        assert first["headers"]["Idempotency-Key"] == second["headers"]["Idempotency-Key"]
        assert verify(SECRET, second["headers"], second["body"], now=second["wall"])
        # Not before Retry-After (the backoff alone is at most 200 ms).
        assert second["at"] - first["at"] >= 0.9


def test_429_without_retry_after_uses_backoff(fresh_db, daemon):
    with Receiver([(429, "slow down"), (408, "")]) as rx:
        daemon.start(config(fresh_db, rx.url))
        job_id = enqueue(fresh_db, NOTICE)
        assert wait_state(fresh_db, job_id, "done")[1] == 3
        assert len(rx.posts()) == 3


def test_retry_reason_is_recorded(fresh_db, daemon):
    with Receiver([(500, "internal\nerror")] * 3) as rx:
        daemon.start(config(fresh_db, rx.url))
        job_id = enqueue(fresh_db, NOTICE, max_attempts=2)
        state, attempts, reason = wait_state(fresh_db, job_id, "dead")
        assert attempts == 2
        assert reason == "webhook receiver answered 500: internal?error"


def test_timeout_is_retried(fresh_db, daemon):
    with Receiver([Answer(200, "late", delay=3)]) as rx:
        daemon.start(config(fresh_db, rx.url, timeout_ms=500))
        job_id = enqueue(fresh_db, NOTICE, key="notice-slow", max_attempts=1)
        state, attempts, reason = wait_state(fresh_db, job_id, "dead")
        # With one attempt the timeout's RETRY ends the job: its reason shows.
        assert reason.startswith("webhook POST failed: "), reason
        assert len(rx.posts()) == 1


def test_timeout_then_success(fresh_db, daemon):
    with Receiver([Answer(200, "late", delay=3)]) as rx:
        daemon.start(config(fresh_db, rx.url, timeout_ms=500))
        job_id = enqueue(fresh_db, NOTICE, key="notice-slow-2")
        assert wait_state(fresh_db, job_id, "done")[1] == 2
        first, second = rx.posts()
        assert first["body"] == second["body"]


def test_4xx_fails_with_an_excerpt(fresh_db, daemon):
    with Receiver([(401, "bad signature " + "x" * 400)]) as rx:
        d = daemon.start(config(fresh_db, rx.url))
        job_id = enqueue(fresh_db, NOTICE)
        state, attempts, reason = wait_state(fresh_db, job_id, "dead")
        assert attempts == 1
        assert reason == "webhook receiver answered 401: bad signature " + "x" * 186
        assert len(rx.posts()) == 1
        d.stop()
        assert SECRET not in d.log_text()


def test_config_is_checked_and_secret_never_echoed(tmp_path, parleyd, plugin_dir, fresh_db):
    cfg = config(fresh_db, "ftp://example.com/" + PATH_TOKEN, secret="short-secret",
                 timeout_ms=0)
    cfg["plugin_dir"] = plugin_dir
    # The core checks the settings and stops at the first wrong one.
    expected = [("url", "must be an http:// or https:// URL", "https://example.com/hook"),
                ("secret", "must be at least 16 bytes long", SECRET),
                ("timeout_ms", "must be between 1 and 600000", 1000)]
    for key, message, fixed in expected:
        rc, out, err = run_parleyd(parleyd, ["--check-config"], config=cfg, workdir=tmp_path)
        assert rc == 2
        assert "notifiers[0].config.%s: %s" % (key, message) in err
        assert "short-secret" not in out + err and PATH_TOKEN not in out + err
        cfg["notifiers"][0]["config"][key] = fixed
    del cfg["notifiers"][0]["config"]["secret"]
    rc, out, err = run_parleyd(parleyd, ["--check-config"], config=cfg, workdir=tmp_path)
    assert rc == 2 and "secret" in err


def doc_block(src_dir, lang):
    """The first ```lang block of docs/notifiers/webhook.md."""
    with open("%s/docs/notifiers/webhook.md" % src_dir) as f:
        text = f.read()
    start = text.index("```%s\n" % lang) + len("```%s\n" % lang)
    return text[start:text.index("```", start)]


def test_documented_python_receiver_accepts_parley_and_nothing_else(fresh_db, daemon, src_dir,
                                                                    monkeypatch):
    """The receiver in docs/notifiers/webhook.md, run as written, in front of
    the notifier: right secret accepted (a duplicate dropped), wrong refused."""
    monkeypatch.setenv("PARLEY_WEBHOOK_SECRET", SECRET)
    ns = {"__name__": "parley_doc_receiver"}
    exec(compile(doc_block(src_dir, "python"), "webhook.md", "exec"), ns)
    server = ThreadingHTTPServer(("127.0.0.1", 0), ns["Receiver"])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = "http://127.0.0.1:%d/" % server.server_port
        d = daemon.start(config(fresh_db, url))
        first = enqueue(fresh_db, NOTICE, key="doc-1")
        wait_state(fresh_db, first, "done")
        assert ns["seen"] == {"doc-1"}
        d.stop()
        daemon.start(config(fresh_db, url, secret="not-the-shared-secret-42"))
        second = enqueue(fresh_db, NOTICE, key="doc-2")
        state, attempts, reason = wait_state(fresh_db, second, "dead")
        assert reason == "webhook receiver answered 401"
        assert ns["seen"] == {"doc-1"}
        # Replays and forgeries, checked directly.
        verify_doc = ns["verify_parley_signature"]
        body = b'{"idempotency_key":"x"}'
        t = int(time.time())
        good = "t=%d,v1=%s" % (t, hmac.new(SECRET.encode(), b"%d." % t + body,
                                          hashlib.sha256).hexdigest())
        assert verify_doc(SECRET.encode(), good, body)
        assert not verify_doc(SECRET.encode(), good, body, now=t + 301)
        assert not verify_doc(SECRET.encode(), good, body + b" ")
        assert not verify_doc(SECRET.encode(), "t=%d" % t, body)
        assert not verify_doc(SECRET.encode(), "garbage", body)
        assert not verify_doc(SECRET.encode(), good.replace("v1=", "v1=\u00e9"), body)
    finally:
        server.shutdown()
        server.server_close()


def test_documented_shell_check(fresh_db, daemon, src_dir, tmp_path):
    with Receiver() as rx:
        daemon.start(config(fresh_db, rx.url))
        wait_state(fresh_db, enqueue(fresh_db, NOTICE), "done")
        [req] = rx.posts()
    script = tmp_path / "verify-parley.sh"
    script.write_text(doc_block(src_dir, "sh"))
    body = tmp_path / "body.json"
    body.write_bytes(req["body"])
    env = dict(os.environ, PARLEY_WEBHOOK_SECRET=SECRET)

    def check(header, path):
        r = subprocess.run(["sh", str(script), header, str(path)], env=env,
                           capture_output=True, text=True)
        return r.returncode, r.stdout.strip()

    header = req["headers"]["X-Parley-Signature"]
    assert check(header, body) == (0, "signature ok")
    tampered = tmp_path / "tampered.json"
    tampered.write_bytes(req["body"].replace(b"Parcel", b"Pancake"))
    assert check(header, tampered) == (1, "signature refused")
    old = "t=%d,%s" % (int(header.split(",")[0][2:]) - 600, header.split(",")[1])
    assert check(old, body) == (1, "signature refused")
    assert check("nonsense", body) == (1, "signature refused: malformed header")


def test_reload_moves_to_the_new_url(fresh_db, daemon):
    with Receiver() as a, Receiver() as b:
        cfg = config(fresh_db, a.url)
        d = daemon.start(cfg)
        wait_state(fresh_db, enqueue(fresh_db, NOTICE, key="r1"), "done")
        cfg["notifiers"][0]["config"]["url"] = b.url
        d.rewrite_config(cfg)
        d.signal(SIGHUP)
        # The reloaded instance announces its settings once more.
        assert wait_for(lambda: d.log_text().count("posting signed notices") == 2)
        wait_state(fresh_db, enqueue(fresh_db, NOTICE, key="r2"), "done")
        assert [json.loads(p["body"])["idempotency_key"] for p in a.posts()] == ["r1"]
        assert [json.loads(p["body"])["idempotency_key"] for p in b.posts()] == ["r2"]
