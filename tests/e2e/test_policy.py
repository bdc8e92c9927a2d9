"""Node settings and the cluster policy: two daemons on one database with
different files, `parleyd --apply-policy` changing the rules on both without
a SIGHUP, a stale --expect-version refused, the same policy twice unchanged,
a bad policy file refused before anything is stored."""
import json
import re
import time

from parley_testlib import http, query, sign

SECRET = "policy-secret"


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def node_config(dsn, plugin_dir, **extra):
    cfg = {"database": {"dsn": dsn}, "plugin_dir": plugin_dir, "log": {"level": "info"},
           "channels": [{"name": "site", "plugin": "webhook", "config": {"secret": SECRET}}]}
    cfg.update(extra)
    return cfg


def post(d, payload):
    body = json.dumps(payload).encode()
    return http("POST", d.url + "/webhooks/site", body,
                {"Content-Type": "application/json", "X-Parley-Signature": sign(SECRET, body)})[0]


def write_policy(tmp_path, name, policy):
    path = tmp_path / name
    path.write_text(policy if isinstance(policy, str) else json.dumps(policy))
    return str(path)


def readyz_policy(d):
    # /healthz answers before the pool's first connection is up: wait for ready.
    answer = []
    assert wait_for(lambda: answer.append(http("GET", d.url + "/readyz")) or answer[-1][0] == 200), \
        answer[-1][2]
    return json.loads(answer[-1][2])["policy"]


def metric(d, name):
    text = http("GET", d.url + "/metrics")[2].decode()
    m = re.search(r"^%s (\S+)$" % name, text, re.M)
    return float(m.group(1)) if m else None


def versions(dsn):
    return [r[0] for r in query(dsn, "SELECT version FROM cluster_policy ORDER BY version")]


def case_numbers(dsn):
    return [r[0] for r in query(dsn, "SELECT case_number FROM support_case ORDER BY id")]


def test_two_nodes_share_one_policy_and_apply_a_new_one_without_sighup(
        fresh_db, daemon, plugin_dir, run_parleyd, tmp_path):
    # The first node stores version 1 from its file; the second node's file
    # disagrees: it says so, stays ready, and uses the cluster's rules.
    a = daemon.start(node_config(fresh_db, plugin_dir, ingest={"case_prefix": "AA-"}))
    b = daemon.start(node_config(fresh_db, plugin_dir, ingest={"case_prefix": "BB-"}))
    assert versions(fresh_db) == [1]
    assert "cluster policy version 1 stored from" in a.log_text()
    assert "differs from cluster policy version 1 in ingest.case_prefix" in b.log_text()
    assert "differs from" not in a.log_text()
    assert readyz_policy(a) == {"version": 1, "file_differs": False}
    assert readyz_policy(b) == {"version": 1, "file_differs": True,
                                "differing_keys": "ingest.case_prefix"}
    assert metric(a, "parley_policy_version") == 1 and metric(a, "parley_policy_file_differs") == 0
    assert metric(b, "parley_policy_version") == 1 and metric(b, "parley_policy_file_differs") == 1

    assert post(b, {"id": "m1", "author": {"id": "ann"}, "text": "hello"}) == 200
    assert case_numbers(fresh_db) == ["AA-10000"]

    # A policy with a new case prefix and a notice rule: both nodes take it
    # without a signal, and the routing the database reads follows.
    policy = write_policy(tmp_path, "policy.json", {
        "ingest": {"case_prefix": "CC-"},
        "notices": [{"notifier": "ops", "kinds": ["conversation.created"]}]})
    code, out, err = run_parleyd(["--apply-policy", policy, "--expect-version", "1"],
                                 config=a.config)
    assert (code, out) == (0, "policy version 2 applied (was 1)\n"), err
    for d in (a, b):
        assert wait_for(lambda: "cluster policy version 2 applied (was 1)" in d.log_text())
    assert query(fresh_db, "SELECT value FROM parley_settings WHERE key = 'routing'")[0][0] == \
        {"sinks": [], "notices": [{"notifier": "ops", "kinds": ["conversation.created"]}]}
    assert post(a, {"id": "m2", "author": {"id": "bob"}, "text": "hi"}) == 200
    assert post(b, {"id": "m3", "author": {"id": "cy"}, "text": "hey"}) == 200
    assert case_numbers(fresh_db) == ["AA-10000", "CC-10001", "CC-10002"]

    # Now both files differ (each once per version), and neither node loads "ops".
    for d, text in ((a, "AA-"), (b, "BB-")):
        assert wait_for(lambda: readyz_policy(d).get("file_differs") is True)
        detail = readyz_policy(d)
        assert detail["version"] == 2
        assert detail["differing_keys"] == "ingest.case_prefix, notices"
        assert detail["unknown_instances"] == 'notices[0].notifier "ops"'
        assert metric(d, "parley_policy_version") == 2
        assert "cluster policy version 2 names instances this node does not load: " \
               'notices[0].notifier "ops"' in d.log_text()
    # Another look (a notification makes every node check): still logged once.
    query(fresh_db, "SELECT pg_notify('parley_policy', '2')")
    time.sleep(0.5)
    assert b.log_text().count("differs from cluster policy version 2") == 1

    # A node whose file has no cluster keys leaves them to the policy.
    c = daemon.start(node_config(fresh_db, plugin_dir))
    assert readyz_policy(c) == {"version": 2, "file_differs": False,
                                "unknown_instances": 'notices[0].notifier "ops"'}
    assert "differs from" not in c.log_text()
    assert post(c, {"id": "m4", "author": {"id": "dee"}, "text": "yo"}) == 200
    assert case_numbers(fresh_db)[-1] == "CC-10003"

    # The same file again: nothing stored. A stale version: refused, exit 1.
    code, out, err = run_parleyd(["--apply-policy", policy], config=a.config)
    assert (code, out) == (0, "policy unchanged (version 2)\n"), err
    other = write_policy(tmp_path, "other.json", {"ingest": {"case_prefix": "DD-"}})
    code, out, err = run_parleyd(["--apply-policy", other, "--expect-version", "1"],
                                 config=a.config)
    assert code == 1 and out == ""
    assert ("parleyd: apply policy: the cluster policy is at version 2, not the expected "
            "version 1; nothing applied") in err
    assert versions(fresh_db) == [1, 2]
    assert "differs from cluster policy version 2 in ingest.case_prefix" in b.log_text()

    code, out, err = run_parleyd(["--show-policy"], config=a.config)
    assert code == 0, err
    head, body = out.split("\n", 1)
    assert head.startswith("policy version 2 (applied ")
    assert json.loads(body)["ingest"]["case_prefix"] == "CC-"


def test_a_bad_policy_file_is_refused_naming_file_key_and_reason(
        fresh_db, daemon, plugin_dir, run_parleyd, tmp_path):
    node = node_config(fresh_db, plugin_dir)
    daemon.start(node)
    assert versions(fresh_db) == [1]
    cases = [
        ({"ingest": {"case_prefix": "no spaces"}}, "ingest.case_prefix",
         "must be 1..16 of A-Z a-z 0-9 - _"),
        ({"ingest": {"reopen_window_s": -1}}, "ingest.reopen_window_s", "must be"),
        ({"ingest": {"batch_max_events": 10}}, "ingest.batch_max_events",
         "a node setting: it belongs in each node's file, not in the cluster policy"),
        ({"listen": "127.0.0.1:1"}, "listen", "a node setting"),
        ({"sinks": [{"name": "desk", "plugin": "zendesk"}]}, "sinks[0].plugin", "unknown key"),
        ({"notices": [{"notifier": "ops", "kinds": ["nope"]}]}, "notices[0].kinds[0]",
         "unknown notice kind"),
        ({"ingest": {"case_prefx": "X-"}}, "ingest.case_prefx", "unknown key"),
        ('{"ingest": ', None, "invalid JSON"),
    ]
    for policy, key, reason in cases:
        path = write_policy(tmp_path, "bad.json", policy)
        code, out, err = run_parleyd(["--apply-policy", path], config=node)
        assert code == 2 and out == "", (policy, err)
        prefix = "parleyd: %s: %s: " % (path, key) if key else "parleyd: %s: " % path
        assert err.startswith(prefix) and reason in err, (policy, err)
    assert versions(fresh_db) == [1]

    code, _, err = run_parleyd(["--apply-policy", path, "--expect-version", "x"], config=node)
    assert code == 2 and "--expect-version takes a version number" in err
    code, _, err = run_parleyd(["--migrate", "--expect-version", "1"], config=node)
    assert code == 2 and "--expect-version goes with --apply-policy" in err


def test_a_file_that_agreed_stores_its_change_on_sighup(fresh_db, daemon, plugin_dir):
    import signal
    cfg = node_config(fresh_db, plugin_dir, ingest={"case_prefix": "AA-"})
    a = daemon.start(cfg)
    b = daemon.start(node_config(fresh_db, plugin_dir, ingest={"case_prefix": "BB-"}))
    cfg["ingest"]["case_prefix"] = "EE-"
    a.rewrite_config(cfg)
    a.signal(signal.SIGHUP)
    assert wait_for(lambda: "stored as cluster policy version 2" in a.log_text())
    assert wait_for(lambda: "cluster policy version 2 applied (was 1)" in b.log_text())
    assert post(b, {"id": "m1", "author": {"id": "ann"}, "text": "hello"}) == 200
    assert case_numbers(fresh_db) == ["EE-10000"]
    # b's file did not agree with the version in force: its change is not stored.
    b.rewrite_config(node_config(fresh_db, plugin_dir, ingest={"case_prefix": "FF-"}))
    b.signal(signal.SIGHUP)
    assert wait_for(lambda: b.log_text().count("reloaded: log level") == 1)
    time.sleep(0.5)
    assert versions(fresh_db) == [1, 2]
    assert "differs from cluster policy version 2 in ingest.case_prefix" in b.log_text()


class Refuser:
    """The brand's side of the webhook channel, refusing every reply (HTTP 400)."""

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        import threading

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                data = b'{"error": "refused"}'
                self.send_response(400)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/cb" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_new_policy_changes_who_hears_of_failed_deliveries_without_sighup(
        fresh_db, daemon, plugin_dir, test_plugin_dir, run_parleyd, tmp_path):
    import os
    both = tmp_path / "plugins"
    both.mkdir()
    os.symlink(os.path.join(plugin_dir, "webhook.so"), both / "webhook.so")
    os.symlink(os.path.join(test_plugin_dir, "notice_probe.so"), both / "notice_probe.so")
    log = tmp_path / "notices.jsonl"
    refuser = Refuser()
    try:
        cfg = {"database": {"dsn": fresh_db}, "plugin_dir": str(both),
               "jobs": {"sweep_interval_ms": 100, "max_attempts": 1},
               "channels": [{"name": "site", "plugin": "webhook",
                             "config": {"secret": SECRET, "callback_url": refuser.url}}],
               "notifiers": [{"name": "ops", "plugin": "notice_probe",
                              "config": {"log_file": str(log)}}]}
        d = daemon.start(cfg)

        def dead_sends():
            return query(fresh_db, "SELECT count(*) FROM job WHERE target_kind = 'channel' "
                                   "AND state = 'dead'")[0][0]

        def failure_notices():
            return query(fresh_db, "SELECT count(*) FROM job WHERE target_kind = 'notifier'")[0][0]

        assert post(d, {"id": "c1", "author": {"id": "ann"}, "text": "hi", "thread": "t1"}) == 200
        [(conv,)] = query(fresh_db, "SELECT id FROM conversation")
        assert run_parleyd(["--reply", str(conv), "--text", "one"], config=cfg)[0] == 0
        assert wait_for(lambda: dead_sends() == 1)
        time.sleep(0.3)
        assert failure_notices() == 0   # version 1: nobody is told

        policy = write_policy(tmp_path, "policy.json", {"jobs": {"notify_delivery_failed": ["ops"]}})
        code, out, err = run_parleyd(["--apply-policy", policy], config=cfg)
        assert (code, out) == (0, "policy version 2 applied (was 1)\n"), err
        assert wait_for(lambda: "cluster policy version 2 applied (was 1)" in d.log_text())
        assert run_parleyd(["--reply", str(conv), "--text", "two"], config=cfg)[0] == 0
        assert wait_for(lambda: dead_sends() == 2)
        assert wait_for(lambda: failure_notices() == 1)
        assert "differs from" not in d.log_text()   # the file has no cluster keys
    finally:
        refuser.close()


def test_a_stored_version_this_node_cannot_read_leaves_the_last_one_in_force(
        fresh_db, daemon, plugin_dir):
    d = daemon.start(node_config(fresh_db, plugin_dir))
    # Another release (or a hand edit) stored a body this parleyd refuses.
    query(fresh_db, "INSERT INTO cluster_policy (version, body, checksum, applied_by) "
                    "VALUES (2, '{\"ingest\": {\"case_prefix\": \"\"}}', 'x', 'test'); "
                    "SELECT pg_notify('parley_policy', '2')")
    want = ("cluster policy version 2 is not applied, version 1 stays in force: cluster policy "
            "version 2: ingest.case_prefix: must be 1..16 of A-Z a-z 0-9 - _")
    assert wait_for(lambda: want in d.log_text())
    query(fresh_db, "SELECT pg_notify('parley_policy', '2')")   # look again: logged once
    time.sleep(0.5)
    assert d.log_text().count(want) == 1
    assert readyz_policy(d)["version"] == 1
    assert post(d, {"id": "m1", "author": {"id": "ann"}, "text": "hello"}) == 200
    assert case_numbers(fresh_db) == ["PC-10000"]


def test_a_sink_the_policy_does_not_route_is_reported(fresh_db, daemon, test_plugin_dir,
                                                      run_parleyd, tmp_path):
    base = {"database": {"dsn": fresh_db}, "plugin_dir": test_plugin_dir}
    a = daemon.start(dict(base))
    b = daemon.start(dict(base, sinks=[{"name": "probe", "plugin": "probe_sink",
                                        "config": {"label": "x"}}]))
    assert readyz_policy(a) == {"version": 1, "file_differs": False}
    assert readyz_policy(b) == {"version": 1, "file_differs": False, "unrouted_sinks": "probe"}
    assert ("cluster policy version 1 has no route for sinks probe: they take no conversations"
            in b.log_text())
    policy = write_policy(tmp_path, "policy.json", {"sinks": [{"name": "probe",
                                                              "route": {"visibility": "private"}}]})
    assert run_parleyd(["--apply-policy", policy], config=a.config)[0] == 0
    assert wait_for(lambda: readyz_policy(b) == {"version": 2, "file_differs": False})
    assert readyz_policy(a) == {"version": 2, "file_differs": False,
                                "unknown_instances": 'sinks[0].name "probe"'}
    assert query(fresh_db, "SELECT value -> 'sinks' FROM parley_settings WHERE key = 'routing'") == \
        [([{"name": "probe", "visibility": "private"}],)]


def test_a_node_without_a_job_runner_takes_a_new_policy(fresh_db, daemon, plugin_dir, run_parleyd,
                                                        tmp_path):
    d = daemon.start(node_config(fresh_db, plugin_dir, jobs={"enabled": False}))
    policy = write_policy(tmp_path, "policy.json", {"jobs": {"notify_delivery_failed": []},
                                                    "ingest": {"case_prefix": "NJ-"}})
    assert run_parleyd(["--apply-policy", policy], config=d.config)[0] == 0
    assert wait_for(lambda: "cluster policy version 2 applied (was 1)" in d.log_text())
    assert post(d, {"id": "m1", "author": {"id": "ann"}, "text": "hello"}) == 200
    assert case_numbers(fresh_db) == ["NJ-10000"]
    # Teardown stops it with SIGTERM and checks the exit and the sanitizers' report.
