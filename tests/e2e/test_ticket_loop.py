"""The whole loop with the real daemon and real plugins, against local servers
that speak Meta's, X's, Zendesk's and Freshdesk's documented formats:

a Messenger message in -> a ticket opened (exactly one, also when the first
create times out and is retried) -> the same customer on X about the same
order -> a comment on the same ticket -> the ticket system's webhook posts an
agent's public comment -> the reply goes out through the Messenger Send API
-> its echo is reconciled -> the ticket is solved -> the conversations are
resolved. And a ticket system that answers 429 for a minute, then recovers:
every comment arrives, in order, none twice."""
import json
import time

import test_freshdesk_sink as fdmod
import test_meta_channel as meta
import test_x_channel as xmod
import test_zendesk_sink as zdmod
from parley_testlib import http, query, sign

ORDER_TEXT = "Where is my order 55123? It is a week late."
X_TEXT = "@acme order 55123 still has not arrived"
AGENT_TEXT = "We shipped it today, sorry for the wait."


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def settled(dsn):
    return query(dsn, "SELECT count(*) FROM job WHERE state NOT IN ('done', 'dead')") == [(0,)]


def sink_jobs(dsn):
    return query(dsn, "SELECT operation, state, attempts, external_id FROM job "
                      "WHERE target_kind = 'sink' ORDER BY id")


def loop_config(dsn, graph, xapi, sink):
    channels = (meta.config(dsn, graph.url)["channels"] + xmod.config(dsn, xapi.url)["channels"])
    return {"database": {"dsn": dsn}, "log": {"level": "info"},
            "jobs": {"backoff_base_ms": 50, "backoff_max_ms": 200, "sweep_interval_ms": 100},
            "channels": channels, "sinks": [sink]}


def customer_writes_on_messenger_then_x(d, dsn, graph, xapi):
    """The first two steps, common to both ticket systems."""
    assert meta.post(d, meta.page(meta.dm("m_order", ORDER_TEXT)))[0] == 200
    assert wait_for(lambda: settled(dsn) and len(sink_jobs(dsn)) == 1, 30)
    assert xmod.post(d, xmod.mention("1860000000000000001", X_TEXT))[0] == 200
    assert wait_for(lambda: settled(dsn) and len(sink_jobs(dsn)) == 2, 30)
    # Two customers' identities, two conversations, one case: the order number links them.
    assert query(dsn, "SELECT count(DISTINCT case_id), count(*) FROM conversation") == [(1, 2)]


def agent_reply_goes_out_on_messenger(d, dsn, graph, sent_before):
    """The agent's comment was posted to the sink's webhook: it goes out on
    Messenger (the conversation that opened the ticket), and Meta's echo of
    it is the same message, not a second one."""
    assert wait_for(lambda: len(graph.posts()) == sent_before + 1)
    req = graph.posts()[-1]
    assert req["path"] == "/v21.0/%s/messages" % meta.PAGE
    body = json.loads(req["body"])
    assert body["recipient"] == {"id": "9"} and body["message"]["text"] == AGENT_TEXT
    assert wait_for(lambda: query(dsn, "SELECT external_id FROM message WHERE direction = "
                                       "'outbound'")[0][0] is not None)
    [(msg, mid)] = query(dsn, "SELECT id, external_id FROM message WHERE direction = 'outbound'")
    echo = {"sender": {"id": meta.PAGE}, "recipient": {"id": "9"}, "timestamp": meta.now_ms(),
            "message": {"is_echo": True, "mid": mid, "text": AGENT_TEXT}}
    assert meta.post(d, meta.page(echo))[0] == 200
    assert query(dsn, "SELECT id, delivery_status FROM message WHERE external_id = %s", (mid,)) == \
        [(msg, "sent")]


def test_messenger_x_zendesk_loop(fresh_db, daemon):
    with meta.FakeGraph() as graph, xmod.FakeX() as xapi, zdmod.FakeZendesk() as zd:
        # The first create lands in Zendesk, but its answer comes too late.
        zd.queue(zd.landed(2.5), method="POST", path=r"^/api/v2/tickets\.json$")
        sink = {"name": "zd", "plugin": "zendesk",
                "config": zdmod.config(fresh_db, zd.url)["sinks"][0]["config"]}
        d = daemon.start(loop_config(fresh_db, graph, xapi, sink))
        customer_writes_on_messenger_then_x(d, fresh_db, graph, xapi)

        (op1, st1, attempts, ticket), (op2, st2, _, _) = sink_jobs(fresh_db)
        assert (op1, st1, op2, st2) == ("open_ticket", "done", "append_message", "done")
        assert attempts == 2                       # the timed-out create was retried ...
        assert len(zd.tickets) == 1                # ... and found, not made again
        assert len(zd.seen("POST", r"^/api/v2/tickets\.json$")) == 1
        t = zd.tickets[int(ticket)]
        [(case_number,)] = query(fresh_db, "SELECT case_number FROM support_case")
        assert t["external_id"] == case_number
        assert t["sent"]["comment"]["body"] == ORDER_TEXT
        assert [c["body"] for c in t["comments"]] == [X_TEXT]
        assert t["comments"][0]["author_id"] == t["requester_id"]

        # An agent answers publicly in Zendesk; Zendesk's signed webhook tells Parley.
        body = json.dumps({
            "id": "evt-c1", "time": "2026-11-23T10:05:00Z",
            "type": "zen:event-type:ticket.comment_added", "subject": "zen:ticket:" + ticket,
            "detail": {"id": ticket, "requester_id": str(t["requester_id"]), "status": "OPEN"},
            "event": {"comment": {"id": "99001", "body": AGENT_TEXT, "is_public": True,
                                  "author": {"id": "555", "is_staff": True, "name": "Kim"}}},
        }).encode()
        assert http("POST", d.url + "/sinks/zd/events", body, zdmod.zsign(body))[0] == 200
        agent_reply_goes_out_on_messenger(d, fresh_db, graph, 0)
        # Zendesk also reports the X follow-up Parley appended: never sent back.
        own = json.dumps({
            "id": "evt-c0", "time": "2026-11-23T10:04:00Z",
            "type": "zen:event-type:ticket.comment_added", "subject": "zen:ticket:" + ticket,
            "detail": {"id": ticket, "requester_id": str(t["requester_id"])},
            "event": {"comment": {"id": str(t["comments"][0]["id"]), "body": X_TEXT,
                                  "is_public": True,
                                  "author": {"id": str(t["requester_id"]), "is_staff": False}}},
        }).encode()
        assert http("POST", d.url + "/sinks/zd/events", own, zdmod.zsign(own))[0] == 200

        # Solved in Zendesk: the case's conversations are resolved.
        solved = json.dumps({
            "id": "evt-s1", "time": "2026-11-23T10:06:00Z",
            "type": "zen:event-type:ticket.status_changed", "subject": "zen:ticket:" + ticket,
            "detail": {"id": ticket}, "event": {"current": "SOLVED", "previous": "OPEN"}}).encode()
        assert http("POST", d.url + "/sinks/zd/events", solved, zdmod.zsign(solved))[0] == 200
        assert query(fresh_db, "SELECT DISTINCT status FROM conversation") == [("resolved",)]
        time.sleep(0.3)
        assert len(graph.posts()) == 1 and xapi.seen("tweet") == []
        assert len(sink_jobs(fresh_db)) == 2       # nothing appended back


def test_messenger_x_freshdesk_loop(fresh_db, daemon):
    with meta.FakeGraph() as graph, xmod.FakeX() as xapi, fdmod.FakeFreshdesk() as fd:
        # The first create lands in Freshdesk, but its answer comes too late.
        fd.queue(fd.landed(3.0), method="POST", path=r"^/api/v2/tickets$")
        opts = fdmod.config(fresh_db, fd.url)["sinks"][0]["config"]
        sink = {"name": "fd", "plugin": "freshdesk", "config": opts}
        d = daemon.start(loop_config(fresh_db, graph, xapi, sink))
        customer_writes_on_messenger_then_x(d, fresh_db, graph, xapi)

        (op1, st1, attempts, ticket), (op2, st2, _, _) = sink_jobs(fresh_db)
        assert (op1, st1, op2, st2) == ("open_ticket", "done", "append_message", "done")
        assert attempts == 2 and len(fd.tickets) == 1
        assert fd.tickets[0]["id"] == int(ticket)
        assert ORDER_TEXT in fd.tickets[0]["description"]
        assert [(n["ticket_id"], n["incoming"]) for n in fd.notes] == [(int(ticket), True)]
        assert X_TEXT in fd.notes[0]["body"]

        secret = {"X-Parley-Webhook-Secret": fdmod.HOOK_SECRET}
        assert fdmod.hook(d, {"ticket_id": ticket, "triggered_event": "{note_type:public}",
                              "public_comment": "<div>%s</div>" % AGENT_TEXT,
                              "agent_name": "Kim"}, secret)[0] == 200
        agent_reply_goes_out_on_messenger(d, fresh_db, graph, 0)
        assert fdmod.hook(d, {"ticket_id": ticket, "triggered_event": "{status:{from:2,to:4}}",
                              "status": "Resolved"}, secret)[0] == 200
        assert query(fresh_db, "SELECT DISTINCT status FROM conversation") == [("resolved",)]
        time.sleep(0.3)
        assert len(graph.posts()) == 1 and len(sink_jobs(fresh_db)) == 2


class StormyZendesk(zdmod.FakeZendesk):
    """Answers every request with 429 (a plain-text body, as Zendesk does)
    while a storm lasts."""

    storm_until = 0.0

    def __init__(self):
        super().__init__()
        self.override = self.storm

    def storm(self, req):
        if time.monotonic() < self.storm_until:
            return 429, "Number of allowed API requests per minute exceeded", {"Retry-After": "7"}
        return None


def test_a_sink_answering_429_for_a_minute_gets_every_comment_once_in_order(fresh_db, daemon):
    callback_secret = "storm-channel-secret"
    with StormyZendesk() as zd:
        sink = {"name": "zd", "plugin": "zendesk",
                "config": zdmod.config(fresh_db, zd.url)["sinks"][0]["config"]}
        cfg = {"database": {"dsn": fresh_db}, "log": {"level": "info"},
               "jobs": {"backoff_base_ms": 50, "backoff_max_ms": 200, "sweep_interval_ms": 100},
               "channels": [{"name": "site", "plugin": "webhook",
                             "config": {"secret": callback_secret}}],
               "sinks": [sink]}
        d = daemon.start(cfg)

        def post(i):
            body = json.dumps({"id": "m%d" % i, "author": {"id": "ann"},
                               "text": "message %d" % i}).encode()
            return http("POST", d.url + "/webhooks/site", body,
                        {"Content-Type": "application/json",
                         "X-Parley-Signature": sign(callback_secret, body)})[0]

        assert post(0) == 200
        assert wait_for(lambda: settled(fresh_db) and len(zd.tickets) == 1)
        [tid] = zd.tickets
        zd.storm_until = time.monotonic() + 60
        for i in range(1, 9):
            assert post(i) == 200
            time.sleep(0.2)
        # The storm holds everything back ...
        time.sleep(5)
        assert zd.tickets[tid].get("comments", []) == []
        assert query(fresh_db, "SELECT count(*) FROM job WHERE state = 'dead'") == [(0,)]
        # ... and after it every comment arrives, once, in order.
        assert wait_for(lambda: len(zd.tickets[tid].get("comments", [])) >= 8, 60 + 45)
        assert wait_for(lambda: settled(fresh_db), 20)
        assert [c["body"] for c in zd.tickets[tid]["comments"]] == \
            ["message %d" % i for i in range(1, 9)]
        assert query(fresh_db, "SELECT state, count(*), max(attempts) <= 2 FROM job "
                               "GROUP BY state") == [("done", 9, True)]
        assert len([r for r in zd.seen() if r["at"] < zd.storm_until]) > 0
