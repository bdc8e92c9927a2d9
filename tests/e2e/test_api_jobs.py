"""Dead jobs through the agent API: an admin lists them (newest first, in
cursor pages, filtered by target), queues one again once its cause is fixed,
or discards it; every change is audited, and nobody else may. The jobs die
for real: a reply the brand's callback refuses with a 400, core jobs told
to fail, an operation no node knows."""
import json
import os
import time

import pytest

from api_client import ApiClient
from api_setup import add_agent, add_team, create_token
from parley_testlib import http, query, sign

SECRET = "jobs-secret"


@pytest.fixture
def ops(fresh_db, daemon, plugin_dir, test_plugin_dir, fake_http, run_parleyd, tmp_path):
    """The webhook channel "site", whose callback refuses replies while
    refusing[0], and the job_probe sink "desk" taking site's conversations
    (a message "fail_until:2" fails its first call); one attempt per job."""
    callback = fake_http(answer=lambda req: (400, {"error": "unknown recipient"}) if refusing[0]
                         else {"id": "p-%d" % req.n}, base_path="/cb")
    refusing = [True]
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    os.symlink(os.path.join(plugin_dir, "webhook.so"), plugins / "webhook.so")
    os.symlink(os.path.join(test_plugin_dir, "job_probe.so"), plugins / "job_probe.so")
    cfg = {"database": {"dsn": fresh_db}, "plugin_dir": str(plugins),
           "jobs": {"sweep_interval_ms": 100, "max_attempts": 1},
           "channels": [{"name": "site", "plugin": "webhook",
                         "config": {"secret": SECRET, "callback_url": callback.url}}],
           "sinks": [{"name": "desk", "plugin": "job_probe", "config": {}, "route": {"channels": ["site"]}}]}
    d = daemon.start(cfg)
    team = add_team(fresh_db, "North", ["site"])
    add_agent(fresh_db, "sue@example.com", "Sue", role="supervisor", teams=[team])
    add_agent(fresh_db, "kim@example.com", "Kim", teams=[team])
    api = {"admin": ApiClient(d.url, token=create_token(run_parleyd, cfg, role="admin", name="root")),
           "sue": ApiClient(d.url, token=create_token(run_parleyd, cfg, role="supervisor",
                                                      agent="sue@example.com", name="sue")),
           "kim": ApiClient(d.url, token=create_token(run_parleyd, cfg, role="agent",
                                                      agent="kim@example.com", name="kim"))}
    return {"d": d, "db": fresh_db, "cfg": cfg, "api": api, "callback": callback, "refusing": refusing}


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def job_state(dsn, job_id):
    return query(dsn, "SELECT state FROM job WHERE id = %s", (job_id,))[0][0]


def audit(dsn, action):
    return query(dsn, "SELECT actor, entity, entity_id, details FROM audit_log WHERE action = %s ORDER BY id",
                 (action,))


def post(ops, messages):
    body = json.dumps(messages).encode()
    assert http("POST", ops["d"].url + "/webhooks/site", body,
                {"Content-Type": "application/json", "X-Parley-Signature": sign(SECRET, body)})[0] == 200


def test_a_refused_reply_is_listed_then_retried_and_sent(ops, run_parleyd):
    db, api = ops["db"], ops["api"]
    post(ops, {"id": "m1", "author": {"id": "ann"}, "text": "Where is my parcel?", "thread": "chat-1"})
    [(conv,)] = query(db, "SELECT id FROM conversation")
    code, _, err = run_parleyd(["--reply", str(conv), "--text", "It left today."], config=ops["cfg"])
    assert code == 0, err
    [(job_id,)] = query(db, "SELECT id FROM job WHERE target_kind = 'channel'")
    assert wait_for(lambda: job_state(db, job_id) == "dead")
    assert query(db, "SELECT delivery_status FROM message WHERE direction = 'outbound'") == [("failed",)]
    assert query(db, "SELECT delivery_error IS NOT NULL FROM conversation") == [(True,)]

    status, _, page = api["admin"].get("/api/v1/jobs/dead")
    assert status == 200, page
    [item] = page["items"]
    assert page["next_cursor"] is None
    assert (item["id"], item["target_kind"], item["target_instance"], item["operation"], item["state"],
            item["attempts"]) == (job_id, "channel", "site", "send", "dead", 1)
    assert "400" in item["last_error"] and item["finished_at"] is not None
    assert "payload" not in item   # customers' messages stay out of it
    # Admins only.
    for who in ("sue", "kim"):
        status, _, resp = api[who].get("/api/v1/jobs/dead")
        assert (status, resp["error"]) == (403, "forbidden"), who
        status, _, resp = api[who].post("/api/v1/jobs/%d/retry" % job_id)
        assert (status, resp["error"]) == (403, "forbidden"), who
    assert job_state(db, job_id) == "dead"

    # The brand fixed its side: the reply goes out on the retry.
    ops["refusing"][0] = False
    status, _, retried = api["admin"].post("/api/v1/jobs/%d/retry" % job_id)
    assert status == 200, retried
    assert (retried["state"], retried["attempts"], retried["last_error"], retried["finished_at"]) == \
        ("queued", 0, None, None)
    assert wait_for(lambda: job_state(db, job_id) == "done")
    assert len(ops["callback"].requests) == 2
    # Sent now: the message and the conversation say so.
    assert query(db, "SELECT delivery_status, delivery_detail FROM message WHERE direction = 'outbound'") == \
        [("sent", None)]
    assert query(db, "SELECT delivery_error FROM conversation") == [(None,)]
    assert api["admin"].get("/api/v1/jobs/dead")[2]["items"] == []
    [(actor, entity, entity_id, details)] = audit(db, "job.retry")
    assert (actor, entity, entity_id) == ("token:%d" % query(db, "SELECT id FROM api_token WHERE name = 'root'")[0][0],
                                          "job", job_id)
    assert details["before"]["state"] == "dead" and details["after"]["state"] == "queued"
    # Only a dead job is retried.
    status, _, resp = api["admin"].post("/api/v1/jobs/%d/retry" % job_id)
    assert (status, resp["error"]) == (409, "not_dead")
    assert len(audit(db, "job.retry")) == 1


def test_dead_jobs_page_filter_and_discard(ops):
    db, api = ops["db"], ops["api"]
    ids = [query(db, "SELECT parley_job_enqueue('core', 'jobs', 'noop', %s)",
                 (json.dumps({"outcome": "fail", "reason": "told to %d" % i}),))[0][0] for i in range(5)]
    ids.append(query(db, "SELECT parley_job_enqueue('core', 'jobs', 'explode', '{}')")[0][0])
    assert wait_for(lambda: query(db, "SELECT count(*) FROM job WHERE id = ANY(%s) AND state = 'dead'",
                                  (ids,)) == [(6,)])
    unknown = ids[-1]

    # Newest first, two at a time, each job once.
    seen, cursor = [], None
    while True:
        params = {"limit": 2} if cursor is None else {"limit": 2, "cursor": cursor}
        status, _, page = api["admin"].get("/api/v1/jobs/dead", params=params)
        assert status == 200, page
        assert len(page["items"]) <= 2
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)
    item = api["admin"].get("/api/v1/jobs/dead", params={"limit": 1})[2]["items"][0]
    assert (item["id"], item["last_error"]) == (unknown, "operation explode is not supported for target core/jobs")

    # Filters, and injection attempts that match nothing or are refused.
    assert len(api["admin"].get("/api/v1/jobs/dead", params={"target_kind": "core",
                                                             "target_instance": "jobs"})[2]["items"]) == 6
    assert api["admin"].get("/api/v1/jobs/dead", params={"target_kind": "sink"})[2]["items"] == []
    assert api["admin"].get("/api/v1/jobs/dead", params={"target_instance": "' OR 1=1 --"})[2]["items"] == []
    forged = query(db, "SELECT parley_api_cursor_encode('conversations', '5'), "
                       "parley_api_cursor_encode('jobs.dead', '\"1 OR 1=1\"')")[0]
    for params, error in (({"target_kind": "sink' OR '1'='1"}, "invalid_parameter"),
                          ({"target_instance": "x" * 201}, "invalid_parameter"),
                          ({"limit": "0"}, "invalid_parameter"), ({"limit": "1;--"}, "invalid_parameter"),
                          ({"cursor": "not-a-cursor!"}, "invalid_cursor"), ({"cursor": forged[0]}, "invalid_cursor"),
                          ({"cursor": forged[1]}, "invalid_cursor"), ({"state": "done"}, "unknown_field")):
        status, _, resp = api["admin"].get("/api/v1/jobs/dead", params=params)
        assert (status, resp["error"]) == (400, error), params

    # Discarded: kept, no longer listed, neither retried nor discarded again.
    status, _, job = api["admin"].post("/api/v1/jobs/%d/discard" % unknown)
    assert (status, job["state"], job["id"]) == (200, "discarded", unknown)
    assert job_state(db, unknown) == "discarded"
    assert unknown not in [j["id"] for j in api["admin"].get("/api/v1/jobs/dead")[2]["items"]]
    for action in ("discard", "retry"):
        status, _, resp = api["admin"].post("/api/v1/jobs/%d/%s" % (unknown, action))
        assert (status, resp["error"]) == (409, "not_dead"), action
    [(_, entity, entity_id, details)] = audit(db, "job.discard")
    assert (entity, entity_id, details["before"]["state"], details["after"]["state"]) == \
        ("job", unknown, "dead", "discarded")
    status, _, resp = api["sue"].post("/api/v1/jobs/%d/discard" % ids[0])
    assert (status, resp["error"]) == (403, "forbidden")

    # Ids that name nothing; requests with what the operation does not take.
    for bad in ("999999", "x", "0", "1%27%20OR%201=1"):
        for action in ("retry", "discard"):
            status, _, resp = api["admin"].post("/api/v1/jobs/%s/%s" % (bad, action))
            assert (status, resp["error"]) == (404, "not_found"), (bad, action)
    status, _, resp = api["admin"].post("/api/v1/jobs/%d/retry" % ids[0], json={"now": True},
                                        validate_request=False)
    assert (status, resp["error"]) == (400, "unknown_field")
    assert query(db, "SELECT state, count(*) FROM job WHERE id = ANY(%s) GROUP BY 1 ORDER BY 1", (ids,)) == \
        [("dead", 5), ("discarded", 1)]


def test_a_ticket_that_never_opened_opens_on_retry_with_the_messages_that_waited(ops):
    db, api = ops["db"], ops["api"]
    # One batch: the first message opens the case's ticket, the second waits
    # to be added to it. The opening fails (one attempt), so both die.
    post(ops, [{"id": "a1", "author": {"id": "ann"}, "text": "fail_until:2", "thread": "chat-a"},
               {"id": "a2", "author": {"id": "ann"}, "text": "and another thing", "thread": "chat-a"}])
    sink_jobs = "SELECT operation, state FROM job WHERE target_kind = 'sink' ORDER BY id"
    assert wait_for(lambda: query(db, sink_jobs) == [("open_ticket", "dead"), ("append_message", "dead")])
    assert query(db, "SELECT state FROM ticket_link") == [("failed",)]
    [(open_id,)] = query(db, "SELECT id FROM job WHERE operation = 'open_ticket'")

    status, _, job = api["admin"].post("/api/v1/jobs/%d/retry" % open_id)
    assert (status, job["state"]) == (200, "queued"), job
    assert wait_for(lambda: query(db, sink_jobs) == [("open_ticket", "done"), ("append_message", "done")])
    [(state, ticket)] = query(db, "SELECT state, external_ticket_id FROM ticket_link")
    assert state == "open" and ticket is not None
    assert query(db, "SELECT payload ->> 'external_ticket_id' FROM job WHERE operation = 'append_message'") == \
        [(ticket,)]


def test_a_ticket_opened_since_refuses_the_retry_of_the_old_one(ops):
    db, api = ops["db"], ops["api"]
    post(ops, {"id": "b1", "author": {"id": "bea"}, "text": "fail_until:2", "thread": "chat-b"})
    assert wait_for(lambda: query(db, "SELECT state FROM job WHERE target_kind = 'sink'") == [("dead",)])
    [(old,)] = query(db, "SELECT id FROM job WHERE target_kind = 'sink'")
    # The customer's next message opens the case's ticket anew.
    post(ops, {"id": "b2", "author": {"id": "bea"}, "text": "hello?", "thread": "chat-b"})
    assert wait_for(lambda: query(db, "SELECT state FROM ticket_link ORDER BY id") == [("failed",), ("open",)])
    status, _, resp = api["admin"].post("/api/v1/jobs/%d/retry" % old)
    assert (status, resp["error"]) == (409, "superseded"), resp
    assert job_state(db, old) == "dead" and audit(db, "job.retry") == []
    assert api["admin"].post("/api/v1/jobs/%d/discard" % old)[0] == 200
    assert query(db, "SELECT state FROM ticket_link ORDER BY id") == [("failed",), ("open",)]
