"""Work caused by inbound messages is written as jobs in the same transaction
as the messages, and carried out by the job runner: here, a notice for each
new conversation (ingest.notify_new_conversation). Echoes of the brand's own
messages never cause work."""
import json
import time

from parley_testlib import http, query, sign

SECRET = "ingest-jobs-secret"


def post(d, payload):
    body = json.dumps(payload).encode()
    return http("POST", d.url + "/webhooks/site", body,
                {"Content-Type": "application/json", "X-Parley-Signature": sign(SECRET, body)})


def notices(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_new_conversations_notify_and_echoes_do_not(fresh_db, daemon, test_plugin_dir, plugin_dir,
                                                    tmp_path):
    log = str(tmp_path / "notices.jsonl")
    cfg = {"database": {"dsn": fresh_db},
           "plugin_dir": plugin_dir,
           "ingest": {"notify_new_conversation": ["ops"]},
           "jobs": {"sweep_interval_ms": 200},
           "channels": [{"name": "site", "plugin": "webhook", "config": {"secret": SECRET}}],
           "notifiers": [{"name": "ops", "plugin": "notice_probe", "config": {"log_file": log}}]}
    # The notifier is a test plugin: give the daemon a plugin folder holding both.
    import os
    both = tmp_path / "plugins"
    both.mkdir()
    os.symlink(os.path.join(plugin_dir, "webhook.so"), both / "webhook.so")
    os.symlink(os.path.join(test_plugin_dir, "notice_probe.so"), both / "notice_probe.so")
    cfg["plugin_dir"] = str(both)
    d = daemon.start(cfg)

    assert post(d, {"id": "m1", "author": {"id": "ann", "name": "Ann"},
                    "text": "Where is my parcel?"})[0] == 200
    assert wait_for(lambda: len(notices(log)) == 1)
    n = notices(log)[0]
    conv = query(fresh_db, "SELECT id FROM conversation")[0][0]
    assert n["kind"] == "conversation.created"
    assert n["conversation_id"] == str(conv)
    assert "Ann" in n["title"]

    # The same conversation again, and the brand's echo in it: no new work.
    assert post(d, {"id": "m2", "author": {"id": "ann"}, "text": "Hello?"})[0] == 200
    assert post(d, {"id": "m3", "author": {"id": "brand"}, "text": "We are on it",
                    "from_brand": True})[0] == 200
    assert query(fresh_db, "SELECT count(*) FROM job")[0][0] == 1
    assert query(fresh_db, "SELECT direction FROM message WHERE external_id = 'm3'") == [("outbound",)]

    # A second customer starts a second conversation: a second notice.
    assert post(d, {"id": "m4", "author": {"id": "bob"}, "text": "Refund please"})[0] == 200
    assert wait_for(lambda: len(notices(log)) == 2)
    assert query(fresh_db, "SELECT state, count(*) FROM job GROUP BY state") == [("done", 2)]
    # A replay of the first message creates nothing.
    assert post(d, {"id": "m1", "author": {"id": "ann", "name": "Ann"},
                    "text": "Where is my parcel?"})[0] == 200
    assert query(fresh_db, "SELECT count(*) FROM job")[0][0] == 2


def test_no_job_without_its_message(fresh_db, daemon, test_plugin_dir, plugin_dir, tmp_path):
    """The job is in the same transaction: a batch that fails leaves no job."""
    import os
    log = str(tmp_path / "notices.jsonl")
    both = tmp_path / "plugins"
    both.mkdir()
    os.symlink(os.path.join(plugin_dir, "webhook.so"), both / "webhook.so")
    os.symlink(os.path.join(test_plugin_dir, "notice_probe.so"), both / "notice_probe.so")
    cfg = {"database": {"dsn": fresh_db}, "plugin_dir": str(both),
           "ingest": {"notify_new_conversation": ["ops"]},
           "channels": [{"name": "site", "plugin": "webhook", "config": {"secret": SECRET}}],
           "notifiers": [{"name": "ops", "plugin": "notice_probe", "config": {"log_file": log}}]}
    d = daemon.start(cfg)
    assert post(d, {"id": "ok", "author": {"id": "ann"}, "text": "hi"})[0] == 200
    # Fail every message insert from now on, after the job would have been written.
    query(fresh_db, """
        CREATE FUNCTION fail_late() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'refused at commit'; END $$;
        CREATE CONSTRAINT TRIGGER fail_late AFTER INSERT ON message
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_late();
    """)
    status = post(d, {"id": "lost", "author": {"id": "bob"}, "text": "hello"})[0]
    assert status == 503
    assert query(fresh_db, "SELECT count(*) FROM job")[0][0] == 1
    assert query(fresh_db, "SELECT count(*) FROM conversation")[0][0] == 1
