"""The job runner (outbox): jobs enqueued with parley_job_enqueue are carried
out by real daemons through the job_probe test sink (its message text
scripts the outcome) and the webhook channel, and their outcomes land in
PostgreSQL. The probe appends one line per call and per completion to a
shared file, so order, overlap and attempts can be checked across daemons."""
import json
import os
import re
import signal
import time

import pytest

from parley_testlib import http, query, sign

SECRET = "jobs-secret"

LINE = re.compile(r"^job_probe: (?P<op>\S+) key=(?P<key>\S+)(?: text=(?P<text>\S*))?"
                  r"(?: outcome=(?P<outcome>\S+))? label=(?P<label>\S+) t=(?P<t>\d+)$")


# ------------------------------------------------------------------ helpers

@pytest.fixture
def probe_plugins(plugin_dir, test_plugin_dir, tmp_path):
    """A plugin directory with the job_probe sink, the notice_probe notifier and
    the webhook channel."""
    d = tmp_path / "plugins"
    d.mkdir()
    os.symlink(os.path.join(test_plugin_dir, "job_probe.so"), d / "job_probe.so")
    os.symlink(os.path.join(test_plugin_dir, "notice_probe.so"), d / "notice_probe.so")
    os.symlink(os.path.join(plugin_dir, "webhook.so"), d / "webhook.so")
    return str(d)


@pytest.fixture
def probe_log(tmp_path):
    return str(tmp_path / "probe.log")


def runner_config(dsn, plugins, probe_log, label="a", jobs=None, probe=None, channels=(), **extra):
    """A daemon whose sink "probe" is the job_probe plugin logging to probe_log."""
    probe_cfg = {"log_file": probe_log, "label": label}
    probe_cfg.update(probe or {})
    jobs_cfg = {"sweep_interval_ms": 200, "backoff_base_ms": 50, "backoff_max_ms": 1000}
    jobs_cfg.update(jobs or {})
    cfg = {"database": {"dsn": dsn}, "plugin_dir": plugins, "log": {"level": "info"},
           "jobs": jobs_cfg, "channels": list(channels),
           "sinks": [{"name": "probe", "plugin": "job_probe", "config": probe_cfg}]}
    cfg.update(extra)
    return cfg


def ticket_payload(text, conversation_id="c-1"):
    return {"conversation": {"conversation_id": conversation_id, "visibility": "private",
                             "customer": {"customer_id": "cu-1", "display_name": "Ann"}},
            "message": {"message_id": "m-1", "text": text, "inbound": True}}


def enqueue(dsn, text=None, key=None, ordering=None, max_attempts=None, kind="sink",
            instance="probe", operation="open_ticket", payload=None, run_at=None):
    """One job; its id."""
    if payload is None:
        payload = ticket_payload(text)
    return query(dsn, "SELECT parley_job_enqueue(%s, %s, %s, %s::jsonb, %s, %s, "
                      "coalesce(%s::timestamptz, now()), %s)",
                 (kind, instance, operation, json.dumps(payload), key, ordering, run_at,
                  max_attempts))[0][0]


def enqueue_many(dsn, jobs):
    """Several (text, key, ordering_key) in one statement (one transaction, one
    notification), ids in list order; returns {key: id}."""
    texts = [j[0] for j in jobs]
    keys = [j[1] for j in jobs]
    orderings = [j[2] for j in jobs]
    rows = query(dsn,
                 "SELECT t.key, parley_job_enqueue('sink', 'probe', 'open_ticket', "
                 "  jsonb_build_object('conversation', jsonb_build_object('conversation_id', 'c-1', "
                 "    'visibility', 'private'), 'message', jsonb_build_object('message_id', 'm-' || t.n, "
                 "    'text', t.text)), t.key, t.okey) "
                 "FROM unnest(%s::text[], %s::text[], %s::text[]) WITH ORDINALITY AS t(text, key, okey, n) "
                 "ORDER BY t.n", (texts, keys, orderings))
    return dict(rows)


def job(dsn, job_id):
    rows = query(dsn, "SELECT state, attempts, last_error, external_id, idempotency_key, claimed_by, "
                      "run_at, finished_at, lease_until FROM job WHERE id = %s", (job_id,))
    names = ("state", "attempts", "last_error", "external_id", "idempotency_key", "claimed_by",
             "run_at", "finished_at", "lease_until")
    return dict(zip(names, rows[0]))


def wait_for(what, predicate, timeout=20.0, interval=0.05):
    """Poll predicate() until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def wait_state(dsn, job_id, states=("done", "dead"), timeout=20.0):
    return wait_for("job %d to be %s" % (job_id, "/".join(states)),
                    lambda: (lambda j: j if j["state"] in states else None)(job(dsn, job_id)),
                    timeout=timeout)


def lines(path):
    """The probe's lines as dicts (t as int ms)."""
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for raw in f:
            m = LINE.match(raw.rstrip("\n"))
            assert m, "unexpected probe line: %r" % raw
            d = m.groupdict()
            d["t"] = int(d["t"])
            out.append(d)
    return out


def calls(path, key=None):
    """The probe's operation calls (not completions), optionally of one key."""
    return [l for l in lines(path) if l["op"] != "done" and (key is None or l["key"] == key)]


def executions(path):
    """{key: [(start_ms, done_ms, label), ...]} pairing each call with its completion."""
    open_calls, out = {}, {}
    for l in lines(path):
        if l["op"] == "done":
            start = open_calls.pop((l["key"], l["label"]))
            out.setdefault(l["key"], []).append((start, l["t"], l["label"]))
        else:
            assert (l["key"], l["label"]) not in open_calls, "one runner called %s twice at once" % l["key"]
            open_calls[(l["key"], l["label"])] = l["t"]
    return out


def metric(d, name, labels=None):
    text = http("GET", d.url + "/metrics")[2].decode()
    pattern = r"^%s%s (\S+)$" % (re.escape(name), r"\{%s\}" % re.escape(labels) if labels else "")
    m = re.search(pattern, text, re.M)
    return float(m.group(1)) if m else None


# ------------------------------------------------------------------ outcomes

def test_ok_completes_with_external_id_woken_by_notify(fresh_db, daemon, probe_plugins, probe_log):
    # The sweep is a minute away: only the NOTIFY of the insert can wake the runner.
    d = daemon.start(runner_config(fresh_db, probe_plugins, probe_log,
                                   jobs={"sweep_interval_ms": 60000}))
    wait_for("the runner to listen", lambda: "listening for new jobs" in d.log_text())
    opened = enqueue(fresh_db, "ok", key="k-ok")
    appended = enqueue(fresh_db, payload={"external_ticket_id": "T-k-ok", **ticket_payload("ok")},
                       operation="append_message", key="k-append")
    j = wait_state(fresh_db, opened, timeout=10)
    assert (j["state"], j["attempts"], j["external_id"], j["last_error"]) == ("done", 1, "T-k-ok", None)
    assert j["finished_at"] is not None and j["lease_until"] is None
    assert j["claimed_by"].endswith(":%d" % d.pid())
    assert wait_state(fresh_db, appended, timeout=10)["state"] == "done"
    assert [(c["op"], c["key"], c["text"]) for c in calls(probe_log)] == \
        [("open_ticket", "k-ok", "ok"), ("append_message", "k-append", "ok")]


@pytest.mark.skipif("PARLEY_TEST_PG_STOP" not in os.environ, reason="needs a restartable PostgreSQL")
def test_listen_again_after_the_server_restarts(fresh_db, daemon, probe_plugins, probe_log, pg_server):
    d = daemon.start(runner_config(fresh_db, probe_plugins, probe_log,
                                   jobs={"sweep_interval_ms": 60000}))
    wait_for("the runner to listen", lambda: "listening for new jobs" in d.log_text())
    pg_server.stop()
    wait_for("the runner to notice", lambda: "lost the LISTEN connection" in d.log_text())
    pg_server.start()
    wait_for("the LISTEN to be back", lambda: "listening for new jobs again" in d.log_text(),
             timeout=30)
    # Woken by NOTIFY on the new connection (the sweep is a minute away).
    j = wait_state(fresh_db, enqueue(fresh_db, "ok", key="k-restart"), timeout=10)
    assert j["state"] == "done"


def test_listen_connection_comes_back_after_it_drops(fresh_db, daemon, probe_plugins, probe_log, pg):
    d = daemon.start(runner_config(fresh_db, probe_plugins, probe_log,
                                   jobs={"sweep_interval_ms": 60000}))
    wait_for("the runner to listen", lambda: "listening for new jobs" in d.log_text())
    dbname = query(fresh_db, "SELECT current_database()")[0][0]
    killed = query(pg, "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                       "WHERE datname = %s AND application_name = 'parleyd-jobs'", (dbname,))[0][0]
    assert killed == 1
    wait_for("the LISTEN connection to be back", lambda: "listening for new jobs again" in d.log_text())
    # Woken by NOTIFY on the new connection (the sweep is a minute away).
    j = wait_state(fresh_db, enqueue(fresh_db, "ok", key="k-relisten"), timeout=10)
    assert j["state"] == "done"
    assert "lost the LISTEN connection" in d.log_text()


def test_fail_is_dead_at_once(fresh_db, daemon, probe_plugins, probe_log):
    daemon.start(runner_config(fresh_db, probe_plugins, probe_log))
    j = wait_state(fresh_db, enqueue(fresh_db, "fail", key="k-fail"))
    assert (j["state"], j["attempts"], j["last_error"]) == ("dead", 1, "refused by probe")
    assert j["finished_at"] is not None
    assert len(calls(probe_log, "k-fail")) == 1


def test_retry_backs_off_within_full_jitter_bounds_then_dead(fresh_db, daemon, probe_plugins, probe_log):
    base = 300
    # Retries are woken by the next-run_at timer: the sweep is a minute away.
    daemon.start(runner_config(fresh_db, probe_plugins, probe_log,
                               jobs={"backoff_base_ms": base, "backoff_max_ms": 100000,
                                     "sweep_interval_ms": 60000}))
    job_id = enqueue(fresh_db, "retry", key="k-retry", max_attempts=4)
    seen = {}   # attempts -> run_at while queued between attempts

    def finished():
        j = job(fresh_db, job_id)
        if j["state"] == "queued" and j["attempts"] > 0:
            seen.setdefault(j["attempts"], j["run_at"])
        return j if j["state"] == "dead" else None

    j = wait_for("the job to die", finished, timeout=20, interval=0.01)
    assert (j["attempts"], j["last_error"]) == (4, "probe says retry")
    ts = [c["t"] for c in calls(probe_log, "k-retry")]
    assert len(ts) == 4
    # Full jitter: attempt k waits random(0, base * 2^(k-1)); allow for the
    # claim round trip and timer slack above that, nothing can be below 0.
    for k, gap in enumerate(b - a for a, b in zip(ts, ts[1:])):
        assert 0 <= gap <= base * 2 ** k + 400, (k + 1, gap, ts)
    # run_at moved forward with each attempt.
    run_ats = [seen[a] for a in sorted(seen)]
    assert run_ats == sorted(run_ats) and len(set(run_ats)) == len(run_ats)


def test_runner_default_max_attempts_applies_to_jobs_without_their_own(fresh_db, daemon, probe_plugins,
                                                                      probe_log):
    daemon.start(runner_config(fresh_db, probe_plugins, probe_log, jobs={"max_attempts": 2}))
    j = wait_state(fresh_db, enqueue(fresh_db, "retry", key="k-default"))
    assert (j["state"], j["attempts"]) == ("dead", 2)
    assert len(calls(probe_log, "k-default")) == 2


def test_retry_at_is_honoured_and_is_a_deferral(fresh_db, daemon, probe_plugins, probe_log):
    """A RETRY with the plugin's not-before time (a rate limit) waits exactly
    for it and does not use up an attempt: with max_attempts 1 the job is
    still alive after several of them."""
    daemon.start(runner_config(fresh_db, probe_plugins, probe_log,
                               jobs={"backoff_base_ms": 1, "sweep_interval_ms": 60000}))
    job_id = enqueue(fresh_db, "retry_at:700", key="k-later", max_attempts=1)
    deadline = time.monotonic() + 15
    while len(calls(probe_log, "k-later")) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    times = [c["t"] for c in calls(probe_log, "k-later")]
    assert len(times) >= 3
    # Not before the plugin's time (same clock), and woken for it promptly.
    for a, b in zip(times, times[1:]):
        assert 700 <= b - a <= 700 + 1000, b - a
    [(state, attempts, deferrals, error)] = query(
        fresh_db, "SELECT state, attempts, deferrals, last_error FROM job WHERE id = %s", (job_id,))
    assert state in ("queued", "running") and attempts <= 1 and deferrals >= 2
    assert error == "probe says retry later"


def test_idempotency_key_is_stable_across_retries(fresh_db, daemon, probe_plugins, probe_log):
    daemon.start(runner_config(fresh_db, probe_plugins, probe_log))
    given = enqueue(fresh_db, "fail_until:3", key="idem-1")
    generated = enqueue(fresh_db, "fail_until:2")
    j = wait_state(fresh_db, given)
    assert (j["state"], j["attempts"], j["external_id"]) == ("done", 3, "T-idem-1")
    assert [c["key"] for c in calls(probe_log) if c["key"] == "idem-1"] == ["idem-1"] * 3
    g = wait_state(fresh_db, generated)
    assert g["state"] == "done" and g["attempts"] == 2 and g["idempotency_key"].startswith("job-")
    assert len(calls(probe_log, g["idempotency_key"])) == 2
    assert g["external_id"] == "T-" + g["idempotency_key"]
    # Enqueueing the same key again is the same job, not a second one.
    assert enqueue(fresh_db, "ok", key="idem-1") == given
    assert query(fresh_db, "SELECT count(*) FROM job WHERE idempotency_key = 'idem-1'")[0][0] == 1


def test_bad_payloads_and_unknown_operations_are_dead_with_the_reason(fresh_db, daemon, probe_plugins,
                                                                     probe_log):
    site = {"name": "site", "plugin": "webhook", "config": {"secret": SECRET}}
    daemon.start(runner_config(fresh_db, probe_plugins, probe_log, channels=[site]))
    cases = {
        enqueue(fresh_db, payload={"conversation": {"conversation_id": "c", "visibility": "private"}}):
            "invalid payload: message: required key missing",
        enqueue(fresh_db, payload={"conversation": {"conversation_id": "c", "visibility": "loud"},
                                   "message": {"message_id": "m"}}):
            'invalid payload: conversation.visibility: must be "public" or "private"',
        enqueue(fresh_db, payload={"conversation": {"conversation_id": "c", "visibility": "public",
                                                    "customer": {"email": "a@b"}},
                                   "message": {"message_id": "m"}}):
            "invalid payload: conversation.customer.customer_id: required key missing",
        enqueue(fresh_db, payload={"message": {"message_id": "m"}, "conversation": {
            "conversation_id": "c", "visibility": "public"}}, operation="append_message"):
            "invalid payload: external_ticket_id: required key missing",
        enqueue(fresh_db, payload={"conversation_id": 7, "visibility": "private"}, kind="channel",
                instance="site", operation="send"):
            "invalid payload: text: required key missing",
        enqueue(fresh_db, payload={}, kind="core", instance="jobs", operation="bogus"):
            "operation bogus is not supported for target core/jobs",
    }
    for job_id, reason in cases.items():
        j = wait_state(fresh_db, job_id)
        assert (j["state"], j["attempts"], j["last_error"]) == ("dead", 1, reason)
    assert calls(probe_log) == []


# ------------------------------------------------------------------ targets

def notice_lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def test_a_job_no_node_can_take_waits_and_raises_one_notice(fresh_db, daemon, probe_plugins, probe_log,
                                                           tmp_path):
    notices = str(tmp_path / "notices.log")
    d = daemon.start(runner_config(
        fresh_db, probe_plugins, probe_log, jobs={"unclaimed_notice_ms": 600},
        notifiers=[{"name": "ops", "plugin": "notice_probe", "config": {"log_file": notices}}],
        notices=[{"notifier": "ops", "kinds": ["job.unclaimed"]}]))
    nope = enqueue(fresh_db, "ok", instance="nope", key="k-nope")
    pager = enqueue(fresh_db, payload={"kind": "x", "title": "t", "text": "t"}, kind="notifier",
                    instance="pager", operation="deliver")
    ok = enqueue(fresh_db, "ok", key="k-here")
    assert wait_state(fresh_db, ok)["state"] == "done"
    got = wait_for("the notices", lambda: (lambda n: n if len(n) == 2 else None)(
        [l for l in notice_lines(notices) if l["kind"] == "job.unclaimed"]))
    assert sorted(l["payload"]["target"] for l in got) == ["notifier/pager", "sink/nope"]
    assert "no running parleyd loads that instance" in got[0]["text"]
    assert "sink/nope have waited longer than 600 ms" in d.log_text()
    time.sleep(1.0)   # several more sweeps: still waiting, and noticed once
    for job_id in (nope, pager):
        j = job(fresh_db, job_id)
        assert (j["state"], j["attempts"], j["claimed_by"]) == ("queued", 0, None)
    assert len([l for l in notice_lines(notices) if l["kind"] == "job.unclaimed"]) == 2
    assert calls(probe_log, "k-nope") == []


def test_each_node_runs_the_jobs_of_the_instances_it_loads(fresh_db, daemon, probe_plugins, probe_log):
    def node(label, instance):
        cfg = runner_config(fresh_db, probe_plugins, probe_log, label=label)
        cfg["sinks"][0]["name"] = instance
        return cfg
    a = daemon.start(node("A", "alpha"))
    for_a = [enqueue(fresh_db, "ok", instance="alpha", key="a-%d" % i) for i in range(5)]
    for_b = [enqueue(fresh_db, "ok", instance="beta", key="b-%d" % i) for i in range(5)]
    for job_id in for_a:
        assert wait_state(fresh_db, job_id)["claimed_by"].endswith(":%d" % a.pid())
    time.sleep(0.6)   # A's sweeps pass beta's jobs by: they wait for a node that has beta
    assert all(job(fresh_db, j)["state"] == "queued" and job(fresh_db, j)["attempts"] == 0
               for j in for_b)
    b = daemon.start(node("B", "beta"))
    for job_id in for_b:
        j = wait_state(fresh_db, job_id)
        assert (j["state"], j["attempts"]) == ("done", 1)
        assert j["claimed_by"].endswith(":%d" % b.pid())
    assert {c["label"] for c in calls(probe_log) if c["key"].startswith("b-")} == {"B"}
    assert "unknown instance" not in a.log_text()


def test_a_core_job_is_claimed_run_and_finished(fresh_db, daemon, probe_plugins, probe_log):
    d = daemon.start(runner_config(fresh_db, probe_plugins, probe_log))
    ok = enqueue(fresh_db, payload={}, kind="core", instance="jobs", operation="noop")
    retried = enqueue(fresh_db, payload={"outcome": "retry", "reason": "later"}, kind="core",
                      instance="jobs", operation="noop", max_attempts=2)
    failed = enqueue(fresh_db, payload={"outcome": "fail", "reason": "no"}, kind="core",
                     instance="jobs", operation="noop")
    j = wait_state(fresh_db, ok)
    assert (j["state"], j["attempts"], j["last_error"]) == ("done", 1, None)
    assert j["claimed_by"].endswith(":%d" % d.pid())
    j = wait_state(fresh_db, retried)
    assert (j["state"], j["attempts"], j["last_error"]) == ("dead", 2, "later")
    j = wait_state(fresh_db, failed)
    assert (j["state"], j["attempts"], j["last_error"]) == ("dead", 1, "no")
    assert metric(d, "parley_job_attempts_total", 'target="core/jobs",outcome="ok"') == 1
    assert metric(d, "parley_job_attempts_total", 'target="core/jobs",outcome="retry"') == 2


def test_sql_backoff_is_full_jitter_capped_and_never_before_retry_at(fresh_db, run_parleyd):
    """parley_job_claim and parley_job_finish on their own, many jobs at a
    time, so the backoff's distribution can be checked, not just one draw."""
    code, _, err = run_parleyd(["--migrate"], config={"database": {"dsn": fresh_db}})
    assert code == 0, err
    n, base, cap = 400, 1000, 5000
    query(fresh_db, "INSERT INTO job (target_kind, target_instance, operation, idempotency_key) "
                    "SELECT 'sink', 'probe', 'open_ticket', 'b-' || g FROM generate_series(1, %s) g", (n,))

    def claim_all():
        query(fresh_db, "UPDATE job SET run_at = now() WHERE state = 'queued'")
        rows = query(fresh_db, "SELECT claimed, attempts FROM parley_job_claim(%s, 60000, 'test', 100)", (n,))
        assert len(rows) == n and all(claimed for claimed, _ in rows)
        return {attempts for _, attempts in rows}

    def retry_all(retry_at="NULL", max_attempts=100):
        return query(fresh_db, "SELECT f.new_state, f.retry_in_ms FROM job j, "
                               "LATERAL parley_job_finish(j.id, j.claim_token, 'retry', 'busy', NULL, "
                               + retry_at + ", %s, %s, %s) f", (base, cap, max_attempts))

    for attempt in (1, 2, 3, 4):
        assert claim_all() == {attempt}
        rows = retry_all()
        assert {state for state, _ in rows} == {"queued"}
        delays = [ms for _, ms in rows]
        bound = min(cap, base * 2 ** (attempt - 1))
        assert 0 <= min(delays) <= 0.1 * bound and 0.9 * bound <= max(delays) <= bound + 1, (attempt, bound)
        assert 0.4 * bound <= sum(delays) / n <= 0.6 * bound, (attempt, bound)

    # The plugin's not-before time wins over a shorter backoff.
    claim_all()
    rows = retry_all(retry_at="now() + interval '1 hour'")
    assert all(state == "queued" and 3600000 <= ms <= 3600000 + 1 for state, ms in rows)
    assert query(fresh_db, "SELECT count(*) FROM job WHERE last_error = 'busy' AND lease_until IS NULL "
                           "AND claim_token IS NULL")[0][0] == n

    # Out of attempts: dead. A stale claim token changes nothing. Release undoes the attempt.
    claim_all()
    # (The not-before retries above were deferrals: they used no attempt.)
    assert query(fresh_db, "SELECT DISTINCT deferrals FROM job") == [(1,)]
    query(fresh_db, "UPDATE job SET max_attempts = 5 WHERE idempotency_key = 'b-1'")
    stale = query(fresh_db, "SELECT f.* FROM job j, LATERAL parley_job_finish(j.id, gen_random_uuid(), 'ok', "
                            "NULL, NULL, NULL, 1, 1, 100) f")
    assert stale == []
    states = dict(query(fresh_db, "SELECT j.idempotency_key, f.new_state FROM job j, "
                                  "LATERAL parley_job_finish(j.id, j.claim_token, "
                                  "CASE WHEN j.idempotency_key IN ('b-1', 'b-2') THEN 'retry' "
                                  "ELSE 'release' END, 'busy', NULL, NULL, 1, 1, 100) f"))
    assert states["b-1"] == "dead" and states["b-2"] == "queued"
    assert {s for k, s in states.items() if k not in ("b-1", "b-2")} == {"queued"}
    assert query(fresh_db, "SELECT attempts FROM job WHERE idempotency_key IN ('b-2', 'b-3') "
                           "ORDER BY 1") == [(4,), (5,)]

    # A job whose runner died on its last attempt is made dead, not run again.
    query(fresh_db, "UPDATE job SET max_attempts = 6 WHERE idempotency_key = 'b-2'")
    query(fresh_db, "UPDATE job SET run_at = now() + interval '1 day' WHERE idempotency_key <> 'b-2'")
    assert query(fresh_db, "SELECT claimed FROM parley_job_claim(10, 0, 'gone', 100)") == [(True,)]
    rows = query(fresh_db, "SELECT claimed, idempotency_key, attempts "
                           "FROM parley_job_claim(10, 60000, 'next', 100)")
    assert rows == [(False, "b-2", 6)]
    j = query(fresh_db, "SELECT state, last_error FROM job WHERE idempotency_key = 'b-2'")[0]
    assert j[0] == "dead" and "lease expired" in j[1] and "gone" in j[1]


# ----------------------------------------------------------- leases, runners

def test_lease_expiry_after_a_killed_runner(fresh_db, daemon, probe_plugins, probe_log):
    lease = 1500
    a = daemon.start(runner_config(fresh_db, probe_plugins, probe_log, label="A",
                                   jobs={"lease_ms": lease}))
    job_id = enqueue(fresh_db, "hang", key="k-lease")
    wait_for("A to call the probe", lambda: calls(probe_log, "k-lease"))
    assert a.stop(signal.SIGKILL) == -signal.SIGKILL
    assert job(fresh_db, job_id)["state"] == "running"

    b = daemon.start(runner_config(fresh_db, probe_plugins, probe_log, label="B",
                                   jobs={"lease_ms": lease}, probe={"no_hang": True}))
    j = wait_state(fresh_db, job_id)
    assert (j["state"], j["attempts"], j["external_id"]) == ("done", 2, "T-k-lease")
    assert j["claimed_by"].endswith(":%d" % b.pid())
    first, second = calls(probe_log, "k-lease")
    assert (first["label"], second["label"]) == ("A", "B")
    # B took it only once A's lease was over.
    assert second["t"] - first["t"] >= lease - 200


def test_a_hung_delivery_times_out_before_its_lease_ends(fresh_db, daemon, probe_plugins, probe_log):
    d = daemon.start(runner_config(fresh_db, probe_plugins, probe_log, jobs={"lease_ms": 1000}))
    job_id = enqueue(fresh_db, "hang", key="k-hang", max_attempts=2)
    j = wait_state(fresh_db, job_id, timeout=15)
    assert (j["state"], j["attempts"], j["last_error"]) == ("dead", 2, "timed out")
    first, second = calls(probe_log, "k-hang")
    # The watchdog fires at 800 ms (lease minus a fifth); never after the lease.
    assert 700 <= second["t"] - first["t"] <= 1000 + 800, second["t"] - first["t"]
    # Both deliveries are still open in the plugin; on stop it completes them
    # and the runner ignores the late completions.
    assert d.stop() == 0
    assert d.log_text().count("completed after its timeout; ignored") == 2
    assert job(fresh_db, job_id)["state"] == "dead"


def test_sigterm_records_the_outcome_of_deliveries_in_flight(fresh_db, daemon, probe_plugins, probe_log):
    d = daemon.start(runner_config(fresh_db, probe_plugins, probe_log))
    job_id = enqueue(fresh_db, "hang", key="k-term")
    wait_for("the call", lambda: calls(probe_log, "k-term"))
    assert d.stop() == 0
    # The probe completes it on stop ("stopped", RETRY); the drain waited for that write.
    j = job(fresh_db, job_id)
    assert (j["state"], j["attempts"], j["last_error"], j["lease_until"]) == ("queued", 1, "stopped", None)


def test_an_outcome_that_cannot_be_written_is_written_later_not_run_again(fresh_db, daemon, probe_plugins,
                                                                         probe_log):
    d = daemon.start(runner_config(fresh_db, probe_plugins, probe_log, log={"level": "debug"}))
    job_id = enqueue(fresh_db, "slow:1000", key="k-rewrite")
    wait_for("the call", lambda: calls(probe_log, "k-rewrite"))
    signature = ("parley_job_finish(bigint, uuid, text, text, text, timestamptz, int, int, int, "
                 "text, text, jsonb)")
    query(fresh_db, "ALTER FUNCTION %s RENAME TO parley_job_finish_away" % signature)
    try:
        wait_for("a failed outcome write", lambda: "not recorded yet" in d.log_text(), timeout=10)
    finally:
        query(fresh_db, "ALTER FUNCTION parley_job_finish_away(bigint, uuid, text, text, text, timestamptz, "
                        "int, int, int, text, text, jsonb) RENAME TO parley_job_finish")
    j = wait_state(fresh_db, job_id)
    assert (j["state"], j["attempts"], j["external_id"]) == ("done", 1, "T-k-rewrite")
    assert len(calls(probe_log, "k-rewrite")) == 1


def test_two_runners_run_every_job_to_done_once_and_never_overlap(fresh_db, daemon, probe_plugins,
                                                                 probe_log):
    jobs = {"concurrency": 4}
    a = daemon.start(runner_config(fresh_db, probe_plugins, probe_log, label="A", jobs=jobs))
    b = daemon.start(runner_config(fresh_db, probe_plugins, probe_log, label="B", jobs=jobs))
    for d in (a, b):
        wait_for("both runners to listen", lambda: "listening for new jobs" in d.log_text())
    # 150 that succeed once after a while, 50 that need a second attempt
    # (the probe counts per process, so a job that moves between runners may
    # need a third).
    specs = [("slow:20", "two-%03d" % i, None) for i in range(150)]
    specs += [("fail_until:2", "two-r%02d" % i, None) for i in range(50)]
    ids = enqueue_many(fresh_db, specs)
    wait_for("every job to be done",
             lambda: query(fresh_db, "SELECT bool_and(state = 'done') FROM job")[0][0],
             timeout=60)
    rows = dict(query(fresh_db, "SELECT idempotency_key, attempts FROM job"))
    assert len(rows) == 200 == len(ids)
    runs = executions(probe_log)
    for key, n in rows.items():
        spans = sorted(runs[key])
        assert len(spans) == n, (key, spans)
        # Exactly one successful run of each job, and one job's runs never overlap.
        outcomes = [l["outcome"] for l in lines(probe_log) if l["op"] == "done" and l["key"] == key]
        assert outcomes.count("ok") == 1, (key, outcomes)
        for (s1, e1, _), (s2, e2, _) in zip(spans, spans[1:]):
            assert e1 <= s2, (key, spans)
    assert all(rows[k] == 1 for k in rows if not k.startswith("two-r"))
    labels = {l["label"] for l in calls(probe_log)}
    assert labels == {"A", "B"}, "both runners should have taken jobs"


def test_ordering_key_runs_jobs_one_at_a_time_in_id_order(fresh_db, daemon, probe_plugins, probe_log):
    daemon.start(runner_config(fresh_db, probe_plugins, probe_log, jobs={"concurrency": 8}))
    specs = []
    for n in range(5):
        for k in ("a", "b", "c", "d"):
            # The second job of "a" fails once: its successors wait for its retry.
            text = "fail_until:2" if (k, n) == ("a", 1) else "slow:40"
            specs.append((text, "ord-%s-%d" % (k, n), "conv-" + k))
    # A dead job does not hold up the rest of its key.
    specs += [("fail", "ord-e-0", "conv-e"), ("ok", "ord-e-1", "conv-e")]
    ids = enqueue_many(fresh_db, specs)
    wait_for("all jobs to finish",
             lambda: query(fresh_db, "SELECT bool_and(state IN ('done', 'dead')) FROM job")[0][0], timeout=30)
    assert dict(query(fresh_db, "SELECT idempotency_key, state FROM job WHERE ordering_key = 'conv-e'")) == \
        {"ord-e-0": "dead", "ord-e-1": "done"}
    runs = executions(probe_log)
    spans = {}
    for k in ("a", "b", "c", "d"):
        keys = sorted(("ord-%s-%d" % (k, n) for n in range(5)), key=lambda key: ids[key])
        chain = [span for key in keys for span in sorted(runs[key])]
        assert len(chain) == 6 if k == "a" else len(chain) == 5
        # Strictly one after the other, in id order: each starts after the previous ended.
        for (s1, e1, _), (s2, e2, _) in zip(chain, chain[1:]):
            assert e1 <= s2, (k, chain)
        spans[k] = chain
    # Different keys ran side by side.
    overlapping = any(s1 < e2 and s2 < e1
                      for x in spans for y in spans if x < y
                      for (s1, e1, _) in spans[x] for (s2, e2, _) in spans[y])
    assert overlapping


# ------------------------------------------------------------ channel send

@pytest.fixture
def callback_server(fake_http):
    """The brand's endpoint for the webhook channel's outbound messages."""
    return fake_http(answer={"id": "plat-77"}, base_path="/replies")


def test_channel_send_records_the_platform_id_on_job_and_message(fresh_db, daemon, probe_plugins, probe_log,
                                                                callback_server):
    site = {"name": "site", "plugin": "webhook",
            "config": {"secret": SECRET, "callback_url": callback_server.url}}
    daemon.start(runner_config(fresh_db, probe_plugins, probe_log, channels=[site]))
    message_id = query(fresh_db, "INSERT INTO message (channel_instance, direction, text, visibility) "
                                 "VALUES ('site', 'outbound', 'Sorry, on its way', 'private') "
                                 "RETURNING id")[0][0]
    job_id = enqueue(fresh_db, kind="channel", instance="site", operation="send", key="reply-1",
                     payload={"conversation_id": 42, "visibility": "private", "recipient_id": "cust-1",
                              "thread_id": "chat-9", "in_reply_to": "m-1", "text": "Sorry, on its way",
                              "message_id": message_id})
    j = wait_state(fresh_db, job_id)
    assert (j["state"], j["external_id"]) == ("done", "plat-77")
    assert query(fresh_db, "SELECT external_id, delivery_status FROM message WHERE id = %s",
                 (message_id,)) == [("plat-77", "sent")]
    [(headers, body)] = [(req.headers, req.json()) for req in callback_server.requests]
    assert headers["Idempotency-Key"] == "reply-1"
    assert body == {"idempotency_key": "reply-1", "conversation_id": "42", "visibility": "private",
                    "recipient_id": "cust-1", "thread": "chat-9", "in_reply_to": "m-1",
                    "text": "Sorry, on its way", "kind": "message", "message_id": str(message_id),
                    "last_inbound_ms": 0}


# ------------------------------------------------------------------ metrics

def test_metrics_expose_states_attempts_and_the_oldest_due_job(fresh_db, daemon, probe_plugins, probe_log):
    d = daemon.start(runner_config(fresh_db, probe_plugins, probe_log))
    wait_state(fresh_db, enqueue(fresh_db, "ok"))
    wait_state(fresh_db, enqueue(fresh_db, "fail"))
    enqueue(fresh_db, "ok", run_at="2999-01-01T00:00:00Z")       # queued, not due yet
    # The oldest due job: due since 2000, held back by a running predecessor
    # with its ordering key.
    blocker = enqueue(fresh_db, "hang", ordering="m-key")
    wait_for("the blocker to run", lambda: job(fresh_db, blocker)["state"] == "running")
    enqueue(fresh_db, "ok", ordering="m-key", run_at="2000-01-01T00:00:00Z")
    target = 'target="sink/probe"'
    wait_for("the gauges", lambda: metric(d, "parley_jobs", 'state="queued",' + target) == 2)
    assert metric(d, "parley_jobs", 'state="dead",' + target) == 1
    assert metric(d, "parley_jobs", 'state="running",' + target) == 1
    assert metric(d, "parley_job_attempts_total", target + ',outcome="ok"') == 1
    assert metric(d, "parley_job_attempts_total", target + ',outcome="fail"') == 1
    assert metric(d, "parley_jobs_dead_total", target) == 1
    assert metric(d, "parley_jobs_in_flight") == 1
    assert metric(d, "parley_jobs_oldest_due_seconds") > 20 * 365 * 86400


def test_cluster_gauges_are_exported_by_one_node(fresh_db, daemon, probe_plugins, probe_log):
    a = daemon.start(runner_config(fresh_db, probe_plugins, probe_log, label="A"))
    b = daemon.start(runner_config(fresh_db, probe_plugins, probe_log, label="B"))
    wait_state(fresh_db, enqueue(fresh_db, "fail"))
    dead = 'state="dead",target="sink/probe"'

    def one_reporter():
        flags = {d: metric(d, "parley_jobs_reporter") for d in (a, b)}
        reporters = [d for d, v in flags.items() if v == 1]
        if len(reporters) != 1 or None in flags.values():
            return None
        return reporters[0] if metric(reporters[0], "parley_jobs", dead) == 1 else None
    reporter = wait_for("one node to export the gauges", one_reporter)
    other = b if reporter is a else a
    time.sleep(0.5)   # more sweeps: the other node still exports none
    assert metric(other, "parley_jobs", dead) is None
    assert metric(other, "parley_jobs_oldest_due_seconds") is None
    assert metric(other, "parley_jobs_reporter") == 0
    # The reporter goes: the other node takes over once it is missed.
    assert reporter.stop() == 0
    assert wait_for("the other node to export them",
                    lambda: metric(other, "parley_jobs", dead) == 1, timeout=10)
    assert metric(other, "parley_jobs_reporter") == 1


# --------------------------------------------------------------- starvation

def test_ingest_is_not_starved_by_a_job_backlog(fresh_db, daemon, probe_plugins, probe_log):
    site = {"name": "site", "plugin": "webhook", "config": {"secret": SECRET}}
    cfg = runner_config(fresh_db, probe_plugins, probe_log, channels=[site],
                        jobs={"concurrency": 500})
    cfg["log"] = {"level": "warn"}   # 4000 jobs' probe lines are not worth logging twice
    d = daemon.start(cfg)
    backlog = 6000
    query(fresh_db, "SELECT parley_job_enqueue('sink', 'probe', 'open_ticket', "
                    "jsonb_build_object('conversation', jsonb_build_object('conversation_id', 'c', "
                    "'visibility', 'private'), 'message', jsonb_build_object('message_id', g::text, "
                    "'text', 'slow:1')), 'bulk-' || g) FROM generate_series(1, %s) g", (backlog,))
    wait_for("the runner to get going",
             lambda: query(fresh_db, "SELECT count(*) FROM job WHERE state = 'done'")[0][0] > 0)
    posts = 30
    for i in range(posts):
        payload = {"id": "star-%d" % i, "author": {"id": "cust-%d" % i}, "text": "hello %d" % i,
                   "visibility": "private"}
        body = json.dumps(payload).encode()
        status, _, answer = http("POST", d.url + "/webhooks/site", body,
                                 {"Content-Type": "application/json",
                                  "X-Parley-Signature": sign(SECRET, body)})
        assert status == 200, (i, status, answer)
    left = query(fresh_db, "SELECT count(*) FROM job WHERE state IN ('queued', 'running')")[0][0]
    stored = query(fresh_db, "SELECT count(*) FROM inbound_event WHERE dedupe_key LIKE 'star-%%'")[0][0]
    assert stored == posts
    # Every event was answered while most of the backlog was still waiting.
    assert left >= backlog // 2, "only %d of %d jobs were left" % (left, backlog)
