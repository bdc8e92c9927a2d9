"""Group commit: the events of concurrent requests are written together, each
request is answered only after its batch committed, and a failure never
leaves half a batch or loses an acknowledged event."""
import json
import os
import re
import subprocess
import threading
import time

import pytest

from parley_testlib import http, query, sign

SECRET = "batching-secret"


def config(dsn, plugin_dir, ingest=None, **extra):
    cfg = {"database": {"dsn": dsn, "connect_timeout_ms": 1000, "query_timeout_ms": 5000},
           "plugin_dir": plugin_dir,
           "jobs": {"enabled": False},
           "channels": [{"name": "site", "plugin": "webhook", "config": {"secret": SECRET}}]}
    if ingest is not None:
        cfg["ingest"] = ingest
    cfg.update(extra)
    return cfg


def msg(mid, author=None, text=None, **extra):
    m = {"id": mid, "author": {"id": author or ("c-" + mid)}, "text": text or ("hello " + mid)}
    m.update(extra)
    return m


def post(d, payload):
    body = json.dumps(payload).encode()
    return http("POST", d.url + "/webhooks/site", body,
                {"Content-Type": "application/json", "X-Parley-Signature": sign(SECRET, body)})


def metric(d, name, labels):
    text = http("GET", d.url + "/metrics")[2].decode()
    m = re.search(r"^%s\{%s\} (\S+)$" % (re.escape(name), re.escape(labels)), text, re.M)
    return float(m.group(1)) if m else 0.0


def post_concurrently(d, payloads):
    """POST every payload at once from its own thread; the answers' statuses in order."""
    statuses = [None] * len(payloads)
    barrier = threading.Barrier(len(payloads))

    def one(i):
        barrier.wait()
        statuses[i] = post(d, payloads[i])[0]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(payloads))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def test_concurrent_requests_share_transactions(fresh_db, daemon, plugin_dir):
    # A long gathering window makes the sharing certain rather than likely.
    d = daemon.start(config(fresh_db, plugin_dir, ingest={"batch_max_delay_ms": 300,
                                                          "max_inflight_batches": 1}))
    statuses = post_concurrently(d, [msg("m%d" % i) for i in range(24)])
    assert statuses == [200] * 24
    assert query(fresh_db, "SELECT count(*) FROM inbound_event")[0][0] == 24
    assert query(fresh_db, "SELECT count(*) FROM message")[0][0] == 24
    batches = metric(d, "parley_ingest_batches_total", 'result="committed"')
    assert 1 <= batches < 24, batches
    assert metric(d, "parley_ingest_events_total", 'instance="site"') == 24


def test_batch_max_events_flushes_at_the_limit(fresh_db, daemon, plugin_dir):
    # One event per batch: every request is its own transaction, however long the window.
    d = daemon.start(config(fresh_db, plugin_dir, ingest={"batch_max_events": 1,
                                                          "batch_max_delay_ms": 1000}))
    statuses = post_concurrently(d, [msg("m%d" % i) for i in range(6)])
    assert statuses == [200] * 6
    assert metric(d, "parley_ingest_batches_total", 'result="committed"') == 6


def test_a_lone_request_is_flushed_by_the_timer(fresh_db, daemon, plugin_dir):
    d = daemon.start(config(fresh_db, plugin_dir, ingest={"batch_max_events": 10000,
                                                          "batch_max_delay_ms": 50}))
    status, _, body = post(d, msg("alone"))
    assert status == 200, body
    assert query(fresh_db, "SELECT count(*) FROM message WHERE external_id = 'alone'")[0][0] == 1


POISON = """
CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'poisoned event %', NEW.external_id; END $$;
CREATE TRIGGER poison BEFORE INSERT ON inbound_event FOR EACH ROW
    WHEN (NEW.external_id LIKE 'poison%') EXECUTE FUNCTION poison();
"""


def test_one_refused_request_does_not_fail_its_neighbours(fresh_db, daemon, plugin_dir):
    d = daemon.start(config(fresh_db, plugin_dir, ingest={"batch_max_delay_ms": 300,
                                                          "max_inflight_batches": 1}))
    assert post(d, msg("warmup"))[0] == 200   # the schema exists once the daemon answered
    query(fresh_db, POISON)
    payloads = [msg("good%d" % i) for i in range(8)]
    payloads.insert(4, [msg("ok-in-poisoned-request"), msg("poison-1")])
    statuses = post_concurrently(d, payloads)
    assert statuses[4] == 503
    assert statuses[:4] + statuses[5:] == [200] * 8
    ids = {r[0] for r in query(fresh_db, "SELECT external_id FROM inbound_event")}
    assert ids == {"warmup"} | {"good%d" % i for i in range(8)}
    # Nothing of the refused request was half-written anywhere.
    assert query(fresh_db, "SELECT count(*) FROM message WHERE external_id IN "
                           "('ok-in-poisoned-request', 'poison-1')")[0][0] == 0
    assert query(fresh_db, "SELECT count(*) FROM identity WHERE external_id IN "
                           "('c-ok-in-poisoned-request', 'c-poison-1')")[0][0] == 0
    assert query(fresh_db, "SELECT count(*) FROM customer")[0][0] == 9
    assert metric(d, "parley_ingest_batches_total", 'result="failed"') >= 1


def test_a_failed_batch_answers_503_with_retry_after(fresh_db, daemon, plugin_dir):
    d = daemon.start(config(fresh_db, plugin_dir))
    assert post(d, msg("warmup"))[0] == 200
    query(fresh_db, POISON)
    status, headers, body = post(d, [msg("fine"), msg("poison-2")])
    assert status == 503, body
    assert "retry-after" in headers
    assert query(fresh_db, "SELECT count(*) FROM inbound_event")[0][0] == 1
    assert query(fresh_db, "SELECT count(*) FROM message")[0][0] == 1


def pg_ctl(var):
    subprocess.run(os.environ[var], shell=True, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.skipif("PARLEY_TEST_PG_STOP" not in os.environ, reason="needs a restartable PostgreSQL")
def test_postgres_restart_under_load_loses_and_doubles_nothing(fresh_db, daemon, plugin_dir):
    d = daemon.start(config(fresh_db, plugin_dir))
    acked, lock, stop = {}, threading.Lock(), threading.Event()

    def worker(n):
        i = 0
        while not stop.is_set():
            # A platform retries what was not acknowledged with the same id.
            mid = "w%d-%d" % (n, i)
            try:
                status = post(d, msg(mid, author="user-%d" % (i % 5)))[0]
            except OSError:
                time.sleep(0.05)
                continue
            if status == 200:
                with lock:
                    acked[mid] = acked.get(mid, 0) + 1
                i += 1
            else:
                time.sleep(0.05)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 30
        while len(acked) < 150 and time.monotonic() < deadline:
            time.sleep(0.05)
        pg_ctl("PARLEY_TEST_PG_STOP")
        time.sleep(0.5)
    finally:
        pg_ctl("PARLEY_TEST_PG_START")
    before = len(acked)
    deadline = time.monotonic() + 30
    while len(acked) < before + 150 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) >= before + 150, "ingest did not resume after the restart"
    rows = query(fresh_db, "SELECT external_id, count(*) FROM message GROUP BY external_id")
    stored = dict(rows)
    missing = [m for m in acked if m not in stored]
    assert not missing, "acknowledged but lost: %r" % missing[:10]
    doubled = [m for m, n in stored.items() if n != 1]
    assert not doubled, doubled[:10]
    assert query(fresh_db, "SELECT count(*) FROM inbound_event")[0][0] == len(stored)
    # Five authors, five customers: the restart created no duplicates either.
    assert query(fresh_db, "SELECT count(*) FROM customer")[0][0] == 5


def test_a_shutdown_that_times_out_never_acknowledges_waiting_requests(fresh_db, daemon, plugin_dir):
    """Stopping at once (shutdown_timeout_ms 0) with a request still waiting
    for its batch: it is answered 503 or its connection is closed, never 2xx,
    and nothing of it is stored (the daemon's exit is also checked for leaks)."""
    import signal
    d = daemon.start(config(fresh_db, plugin_dir, ingest={"batch_max_delay_ms": 1000},
                            limits={"shutdown_timeout_ms": 0}))
    result = {}

    def one():
        try:
            result["status"] = post(d, msg("waiting"))[0]
        except OSError:
            result["status"] = "closed"

    t = threading.Thread(target=one)
    t.start()
    time.sleep(0.3)   # the request is parsed and waits for its batch (1 s)
    assert d.stop(signal.SIGTERM) == 0
    t.join()
    assert result["status"] in (503, "closed")
    assert query(fresh_db, "SELECT count(*) FROM inbound_event")[0][0] == 0
