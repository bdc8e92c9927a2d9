"""Cases in ticket systems, and notices by rule, as the core does them: the
real daemon ingests through the webhook channel, routes customer messages
to a sink (one ticket per case, comments appended, a follow-up after a
closed ticket), takes the ticket system's events back (a public agent
comment is sent to the customer, a note stays internal, solved resolves,
Parley's own comments never come back), and tells notifiers what their
rules ask for. The sink is the job_probe test plugin (its handle_request
emits the ticket events it is given)."""
import json
import os
import time

import pytest

from parley_testlib import http, query, sign

SECRET = "tickets-secret"


@pytest.fixture
def callback(fake_http):
    """The brand's side of the webhook channel: records replies, answers with an id."""
    return fake_http(answer=lambda req: {"id": "out-%d" % req.n}, base_path="/cb")


def sent(callback):
    """The bodies of the replies so far, parsed."""
    return [r.json() for r in callback.requests]


def post(d, payload, channel="site"):
    body = json.dumps(payload).encode()
    return http("POST", d.url + "/webhooks/" + channel, body,
                {"Content-Type": "application/json", "X-Parley-Signature": sign(SECRET, body)})


def ticket_events(d, events, sink="desk"):
    return http("POST", d.url + "/sinks/%s/events" % sink, json.dumps(events).encode(),
                {"Content-Type": "application/json"})


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def notices(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def start(daemon, fresh_db, plugin_dir, test_plugin_dir, tmp_path, callback, route=None,
          rules=None):
    both = tmp_path / "plugins"
    both.mkdir()
    os.symlink(os.path.join(plugin_dir, "webhook.so"), both / "webhook.so")
    for p in ("job_probe.so", "notice_probe.so"):
        os.symlink(os.path.join(test_plugin_dir, p), both / p)
    log = str(tmp_path / "notices.jsonl")
    cfg = {"database": {"dsn": fresh_db}, "plugin_dir": str(both),
           "jobs": {"sweep_interval_ms": 100, "backoff_base_ms": 20, "backoff_max_ms": 50,
                    "max_attempts": 2},
           "channels": [{"name": name, "plugin": "webhook",
                         "config": {"secret": SECRET, "callback_url": callback.url}}
                        for name in ("site", "app", "forum")],
           "sinks": [{"name": "desk", "plugin": "job_probe", "config": {},
                      "route": route if route is not None else {"channels": ["site", "app"]}}],
           "notifiers": [{"name": "ops", "plugin": "notice_probe", "config": {"log_file": log}}],
           "notices": rules if rules is not None else []}
    return daemon.start(cfg), cfg, log


def sink_jobs(dsn):
    return query(dsn, "SELECT operation, state, payload ->> 'external_ticket_id', "
                      "payload #>> '{message,text}', payload ->> 'follow_up_of', external_id "
                      "FROM job WHERE target_kind = 'sink' ORDER BY id")


def all_done(dsn):
    return query(dsn, "SELECT count(*) FROM job WHERE state NOT IN ('done', 'dead')")[0][0] == 0


def test_one_ticket_per_case_across_channels(fresh_db, daemon, plugin_dir, test_plugin_dir,
                                             tmp_path, callback):
    d, _, _ = start(daemon, fresh_db, plugin_dir, test_plugin_dir, tmp_path, callback)
    # Two messages in one request: the second is appended to the ticket the
    # first opens, once it is open.
    assert post(d, [{"id": "s1", "author": {"id": "ann", "name": "Ann",
                                            "email": "ann@example.com"},
                     "text": "Order 55123 never arrived"},
                    {"id": "s2", "author": {"id": "ann"}, "text": "Hello?"}])[0] == 200
    assert wait_for(lambda: all_done(fresh_db) and len(sink_jobs(fresh_db)) == 2)
    [(case_number,)] = query(fresh_db, "SELECT case_number FROM support_case")
    [(open_payload,)] = query(fresh_db, "SELECT payload FROM job WHERE operation = 'open_ticket'")
    assert open_payload["conversation"]["case_number"] == case_number
    assert open_payload["conversation"]["customer"]["email"] == "ann@example.com"
    assert open_payload["message"]["text"] == "Order 55123 never arrived"
    assert open_payload["message"]["inbound"] is True
    jobs = sink_jobs(fresh_db)
    ticket = jobs[0][5]
    assert jobs == [("open_ticket", "done", None, "Order 55123 never arrived", None, ticket),
                    ("append_message", "done", ticket, "Hello?", None, jobs[1][5])]

    # The same customer on another channel about the same order: the same case, the same ticket.
    assert post(d, {"id": "a1", "author": {"id": "ann-app"}, "text": "About order 55123"},
                channel="app")[0] == 200
    assert wait_for(lambda: all_done(fresh_db) and len(sink_jobs(fresh_db)) == 3)
    assert sink_jobs(fresh_db)[2][:4] == ("append_message", "done", ticket, "About order 55123")
    assert query(fresh_db, "SELECT count(*), min(state) FROM ticket_link") == [(1, "open")]

    # A channel the sink's route does not take: no ticket work at all.
    assert post(d, {"id": "f1", "author": {"id": "bob"}, "text": "Nice forum"},
                channel="forum")[0] == 200
    time.sleep(0.3)
    assert len(sink_jobs(fresh_db)) == 3
    # Echoes and replays cause nothing either.
    assert post(d, {"id": "s1", "author": {"id": "ann"}, "text": "Order 55123 never arrived"})[0] == 200
    assert post(d, {"id": "e1", "author": {"id": "brand"}, "text": "On it", "from_brand": True})[0] == 200
    time.sleep(0.3)
    assert len(sink_jobs(fresh_db)) == 3


def test_ticket_events_come_back_to_the_customer(fresh_db, daemon, plugin_dir, test_plugin_dir,
                                                 tmp_path, callback):
    d, _, _ = start(daemon, fresh_db, plugin_dir, test_plugin_dir, tmp_path, callback)
    assert post(d, {"id": "s1", "author": {"id": "ann"}, "text": "My router is dead",
                    "thread": "chat-1"})[0] == 200
    assert post(d, {"id": "s2", "author": {"id": "ann"}, "text": "Still dead",
                    "thread": "chat-1"})[0] == 200
    assert wait_for(lambda: all_done(fresh_db) and len(sink_jobs(fresh_db)) == 2)
    ticket = sink_jobs(fresh_db)[0][5]
    own_comment = sink_jobs(fresh_db)[1][5]  # the append's comment id
    [(conv,)] = query(fresh_db, "SELECT id FROM conversation")

    events = [
        {"type": "comment", "key": "c1", "ticket": ticket, "comment": "901", "public": True,
         "author": "Kim", "text": "Please restart it and tell us the light's colour."},
        {"type": "comment", "key": "c2", "ticket": ticket, "comment": "902", "public": False,
         "author": "Kim", "text": "Probably the PSU again"},
        {"type": "comment", "key": "c3", "ticket": ticket, "comment": own_comment, "public": True,
         "text": "Still dead"},
        {"type": "comment", "key": "c4", "ticket": ticket, "comment": "903", "public": True,
         "from_parley": True, "text": "My router is dead"},
        {"type": "comment", "key": "c5", "ticket": "T-unknown", "comment": "904", "public": True,
         "text": "Not ours"},
    ]
    assert ticket_events(d, events)[0] == 200
    # Only the public agent comment goes to the customer, on the conversation's channel.
    assert wait_for(lambda: len(sent(callback)) == 1)
    [reply] = sent(callback)
    assert reply["text"] == "Please restart it and tell us the light's colour."
    assert reply["thread"] == "chat-1" and reply["in_reply_to"] == "s2"
    assert query(fresh_db, "SELECT direction, text FROM message WHERE conversation_id = %s "
                           "AND direction <> 'inbound' ORDER BY id", (conv,)) == \
        [("outbound", "Please restart it and tell us the light's colour."),
         ("note", "Probably the PSU again")]
    assert dict(query(fresh_db, "SELECT dedupe_key, result FROM ticket_event")) == {
        "c1": "reply %d" % query(fresh_db, "SELECT id FROM message WHERE direction = 'outbound'")[0][0],
        "c2": "note %d" % query(fresh_db, "SELECT id FROM message WHERE direction = 'note'")[0][0],
        "c3": "ignored: posted by Parley", "c4": "ignored: posted by Parley",
        "c5": "ignored: not a ticket Parley opened"}
    # The agent's reply is not appended to the ticket again (no loop).
    time.sleep(0.3)
    assert len(sink_jobs(fresh_db)) == 2
    # A replay of the webhook changes nothing.
    assert ticket_events(d, events)[0] == 200
    time.sleep(0.3)
    assert len(sent(callback)) == 1
    assert query(fresh_db, "SELECT count(*) FROM ticket_event") == [(5,)]

    # Solved resolves the conversation; reopened opens it again.
    assert ticket_events(d, [{"type": "status", "key": "st1", "ticket": ticket,
                              "status": "solved"}])[0] == 200
    assert query(fresh_db, "SELECT status, resolved_at IS NOT NULL FROM conversation") == \
        [("resolved", True)]
    assert ticket_events(d, [{"type": "status", "key": "st2", "ticket": ticket,
                              "status": "open"}])[0] == 200
    assert query(fresh_db, "SELECT status, resolved_at FROM conversation") == [("open", None)]
    # Closed: the next message of the case opens a follow-up ticket.
    assert ticket_events(d, [{"type": "status", "key": "st3", "ticket": ticket,
                              "status": "closed"}])[0] == 200
    assert query(fresh_db, "SELECT status FROM conversation") == [("resolved",)]
    assert post(d, {"id": "s3", "author": {"id": "ann"}, "text": "It broke again",
                    "thread": "chat-1"})[0] == 200
    assert wait_for(lambda: all_done(fresh_db) and len(sink_jobs(fresh_db)) == 3)
    follow = sink_jobs(fresh_db)[2]
    assert follow[0] == "open_ticket" and follow[4] == ticket and follow[5] != ticket
    assert query(fresh_db, "SELECT state FROM ticket_link ORDER BY id") == [("closed",), ("open",)]
    # Bad input is refused and stores nothing.
    before = query(fresh_db, "SELECT count(*) FROM ticket_event")
    assert ticket_events(d, [{"type": "comment", "key": "x", "ticket": ticket}])[0] == 400
    assert http("POST", d.url + "/sinks/desk/events", b"{not json",
                {"Content-Type": "application/json"})[0] == 400
    assert query(fresh_db, "SELECT count(*) FROM ticket_event") == before


def test_a_dead_sink_job_is_notified_and_the_next_message_tries_again(fresh_db, daemon, plugin_dir,
                                                                      test_plugin_dir, tmp_path,
                                                                      callback):
    rules = [{"notifier": "ops", "kinds": ["sink.failed"]}]
    d, _, log = start(daemon, fresh_db, plugin_dir, test_plugin_dir, tmp_path, callback, rules=rules)
    # job_probe's script: the text "fail" makes it refuse. The message after
    # it waits for the ticket and ends with it: one notice says both.
    assert post(d, [{"id": "s1", "author": {"id": "ann"}, "text": "fail"},
                    {"id": "s1b", "author": {"id": "ann"}, "text": "and more"}])[0] == 200
    assert wait_for(lambda: len(notices(log)) == 1 and all_done(fresh_db))
    time.sleep(0.3)
    [n] = notices(log)
    assert n["kind"] == "sink.failed" and "refused by probe" in n["text"]
    assert "1 later message(s) of the case were not added" in n["text"]
    [(open_id,)] = query(fresh_db, "SELECT id FROM job WHERE operation = 'open_ticket'")
    assert query(fresh_db, "SELECT state, last_error FROM job WHERE operation = 'append_message'") == \
        [("dead", "not added: the ticket was never opened (job %d)" % open_id)]
    assert query(fresh_db, "SELECT state FROM ticket_link") == [("failed",)]
    assert post(d, {"id": "s2", "author": {"id": "ann"}, "text": "again"})[0] == 200
    assert wait_for(lambda: all_done(fresh_db) and len(sink_jobs(fresh_db)) == 3)
    assert sink_jobs(fresh_db)[2][:2] == ("open_ticket", "done")
    assert query(fresh_db, "SELECT state FROM ticket_link ORDER BY id") == [("failed",), ("open",)]


def test_notice_rules_filter_by_kind_channel_and_visibility(fresh_db, daemon, plugin_dir,
                                                           test_plugin_dir, tmp_path, callback):
    rules = [{"notifier": "ops", "kinds": ["conversation.created"], "channels": ["site"],
              "visibility": "public"},
             {"notifier": "ops", "kinds": ["message.received"], "channels": ["app"]}]
    d, _, log = start(daemon, fresh_db, plugin_dir, test_plugin_dir, tmp_path, callback,
                      route={"channels": []}, rules=rules)
    assert post(d, {"id": "p1", "author": {"id": "ann", "name": "Ann"}, "text": "Public rant",
                    "visibility": "public", "thread": "post-1"})[0] == 200
    assert post(d, {"id": "q1", "author": {"id": "bob"}, "text": "Private question"})[0] == 200
    assert post(d, {"id": "a1", "author": {"id": "cy"}, "text": "First"}, channel="app")[0] == 200
    assert post(d, {"id": "a2", "author": {"id": "cy"}, "text": "Second"}, channel="app")[0] == 200
    assert wait_for(lambda: len(notices(log)) == 2)
    time.sleep(0.3)
    got = sorted((n["kind"], n["title"]) for n in notices(log))
    assert [k for k, _ in got] == ["conversation.created", "message.received"]
    assert "Ann" in got[0][1]
    # No sink takes anything: its route names no channel.
    assert sink_jobs(fresh_db) == []


def test_routes_and_rules_are_validated(fresh_db, plugin_dir, run_parleyd):
    base = {"database": {"dsn": fresh_db}, "plugin_dir": plugin_dir,
            "channels": [{"name": "site", "plugin": "webhook", "config": {"secret": SECRET}}],
            "notifiers": [{"name": "n", "plugin": "slack",
                           "config": {"webhook_url": "http://127.0.0.1:1/x"}}]}
    cases = [
        (dict(base, notices=[{"notifier": "nobody"}]), "notices[0].notifier", "no notifier"),
        (dict(base, notices=[{"notifier": "n", "kinds": ["sla.breach"]}]),
         "notices[0].kinds[0]", "unknown notice kind"),
        (dict(base, notices=[{"notifier": "n", "channels": ["nope"]}]),
         "notices[0].channels[0]", "no channel"),
        (dict(base, notices=[{"notifier": "n", "visibility": "secret"}]),
         "notices[0].visibility", "public"),
        (dict(base, notices=[{"notifier": "n", "colour": "red"}]), "notices[0].colour", "unknown"),
        (dict(base, sinks=[{"name": "s", "plugin": "job_probe", "route": {"channels": ["x"]}}]),
         "sinks[0].route.channels[0]", "no channel"),
        (dict(base, channels=[{"name": "site", "plugin": "webhook", "config": {"secret": SECRET},
                               "route": {}}]), "channels[0].route", "unknown"),
    ]
    for cfg, path, words in cases:
        code, _, err = run_parleyd(["--check-config"], config=cfg)
        assert code == 2 and path in err and words in err, (path, err)


def test_sighup_publishes_new_rules(fresh_db, daemon, plugin_dir, test_plugin_dir, tmp_path,
                                    callback):
    """Routing lives in the database (every daemon on it reads the same): a
    reload publishes the new rules, and they apply to the next message."""
    import signal
    d, cfg, log = start(daemon, fresh_db, plugin_dir, test_plugin_dir, tmp_path, callback,
                        route={"channels": []})
    assert post(d, {"id": "m1", "author": {"id": "ann"}, "text": "first"})[0] == 200
    time.sleep(0.3)
    assert notices(log) == []
    cfg["notices"] = [{"notifier": "ops", "kinds": ["conversation.created"]}]
    d.rewrite_config(cfg)
    d.signal(signal.SIGHUP)
    assert wait_for(lambda: query(fresh_db, "SELECT value -> 'notices' FROM parley_settings "
                                            "WHERE key = 'routing'")[0][0] ==
                    [{"notifier": "ops", "kinds": ["conversation.created"]}])
    assert post(d, {"id": "m2", "author": {"id": "bob"}, "text": "second"})[0] == 200
    assert wait_for(lambda: len(notices(log)) == 1)
    assert notices(log)[0]["kind"] == "conversation.created"
