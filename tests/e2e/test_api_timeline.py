"""GET /api/v1/conversations/{id}/timeline: a case's whole story across two
channels, as an agent reads it. A customer writes on the site channel (and
edits and deletes), again on the app channel about the same order (so the
case links both), an agent changes the status, a reply goes out (and fails:
the channel has nowhere to send it), and an internal note comes from the
ticket system. Everything arrives the real way: signed webhooks, parleyd
--reply, Zendesk's signed event webhook."""
import datetime
import time

import test_zendesk_sink as zdmod
from api_client import ApiClient
from api_setup import add_agent, add_team, create_token
from parley_testlib import http, query
from test_api_conversations import SECRETS, conv_of, msg, send

BASE = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) - datetime.timedelta(hours=2)
FIRST = "Where is my order 55123?"
EDITED = "Where is my order 55123? It is a week late."


def at(minutes):
    return (BASE + datetime.timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def walk(api, conv, limit, between=None):
    """Every item of the timeline, page by page; between(n) runs after page n."""
    items, cursor, n = [], None, 0
    while True:
        params = {"limit": str(limit)}
        if cursor:
            params["cursor"] = cursor
        status, _, body = api.get("/api/v1/conversations/%d/timeline" % conv, params=params)
        assert status == 200, body
        assert len(body["items"]) <= limit
        items += body["items"]
        cursor = body["next_cursor"]
        if between:
            between(n)
        n += 1
        if cursor is None:
            return items


def key(item):
    return ("m", item["message"]["id"]) if item["type"] == "message" else ("e", item["event"]["id"])


def test_the_timeline_of_a_case_across_two_channels(fresh_db, daemon, run_parleyd):
    with zdmod.FakeZendesk() as zd:
        cfg = {"database": {"dsn": fresh_db}, "log": {"level": "info"},
               "jobs": {"backoff_base_ms": 50, "backoff_max_ms": 200, "sweep_interval_ms": 100},
               "channels": [{"name": n, "plugin": "webhook", "config": {"secret": SECRETS[n]}}
                            for n in ("site", "app")],
               "sinks": [{"name": "zd", "plugin": "zendesk",
                          "config": zdmod.config(fresh_db, zd.url)["sinks"][0]["config"]}]}
        d = daemon.start(cfg)
        north = add_team(fresh_db, "North", ["site", "app"])
        west = add_team(fresh_db, "West", ["app"])
        south = add_team(fresh_db, "South", ["elsewhere"])
        kim_id = add_agent(fresh_db, "kim@example.com", "Kim", teams=[north])
        add_agent(fresh_db, "wes@example.com", "Wes", teams=[west])
        add_agent(fresh_db, "lee@example.com", "Lee", role="supervisor", teams=[south])
        kim, wes, lee = (ApiClient(d.url, token=create_token(run_parleyd, cfg, role=r, agent=e, name=e))
                         for r, e in (("agent", "kim@example.com"), ("agent", "wes@example.com"),
                                      ("supervisor", "lee@example.com")))

        # The site: a message (a ticket opens for its case), an edit, a
        # second message and its deletion.
        send(d, "site", msg("t-1", "ann-web", FIRST, created_at=at(0)))
        assert wait_for(lambda: query(fresh_db, "SELECT count(*) FROM ticket_link WHERE state = 'open'")
                        == [(1,)])
        send(d, "site", {"id": "t-1", "type": "edit", "text": EDITED, "created_at": at(1)})
        send(d, "site", msg("t-2", "ann-web", "Hello??", created_at=at(2)))
        send(d, "site", {"id": "t-2", "type": "delete", "created_at": at(3)})
        # The app: the same order, so the same case.
        send(d, "app", msg("u-1", "ann-app", "order 55123 still missing", created_at=at(4)))
        site, app = conv_of(fresh_db, "t-1"), conv_of(fresh_db, "u-1")
        assert query(fresh_db, "SELECT count(DISTINCT case_id) FROM conversation") == [(1,)]

        # An agent sets the site conversation pending; a reply goes out on
        # the app channel and fails there; the ticket system adds a note.
        assert kim.patch("/api/v1/conversations/%d" % site, json={"status": "pending"})[0] == 200
        code, _, err = run_parleyd(["--reply", str(app), "--text", "We are checking with the carrier"],
                                   config=cfg)
        assert code == 0, err
        assert wait_for(lambda: query(fresh_db, "SELECT delivery_status FROM message "
                                                "WHERE direction = 'outbound'") == [("failed",)])
        [(ticket,)] = query(fresh_db, "SELECT external_ticket_id FROM ticket_link")
        note = zdmod.comment_event(ticket=ticket, comment="9101", public=False)
        assert http("POST", d.url + "/sinks/zd/events", note, zdmod.zsign(note))[0] == 200
        assert wait_for(lambda: query(fresh_db, "SELECT count(*) FROM message WHERE direction = 'note'")
                        == [(1,)])

        items = walk(kim, app, 200)
        shape = [(i["type"], i["message"]["direction"], i["message"]["conversation_id"])
                 if i["type"] == "message" else ("event", i["event"]["kind"], i["event"]["conversation_id"])
                 for i in items]
        assert shape == [("message", "inbound", site), ("message", "inbound", site),
                         ("message", "inbound", app), ("event", "status_changed", site),
                         ("message", "outbound", app), ("message", "note", site)]
        first, second, third, event, reply, note_item = items
        # Edits keep the original; a deletion keeps the text as evidence.
        assert first["message"]["text"] == EDITED and first["message"]["original_text"] == FIRST
        assert [(r["kind"], r["text"]) for r in first["revisions"]] == [("edit", EDITED)]
        assert first["message"]["author"]["kind"] == "customer"
        assert second["message"]["text"] == "Hello??" and second["message"]["deleted_at"] is not None
        assert [(r["kind"], r["text"]) for r in second["revisions"]] == [("delete", None)]
        assert third["message"]["text"] == "order 55123 still missing" and third["revisions"] == []
        assert event["event"]["actor"] == "agent:%d" % kim_id
        assert event["event"]["details"] == {"from": "open", "to": "pending"}
        assert reply["message"]["delivery_status"] == "failed" and reply["message"]["delivery_detail"]
        assert note_item["message"]["visibility"] == "private"
        assert note_item["message"]["text"] == "We shipped it today"
        # The same timeline from the site conversation: it is the case's.
        assert [key(i) for i in walk(kim, site, 200)] == [key(i) for i in items]

        # Pages of one and two neither skip nor repeat, while the customer
        # keeps writing (new messages land at the end, once).
        for limit in (1, 2):
            paged = walk(kim, app, limit, between=lambda n: n < 3 and send(
                d, "app", msg("more-%d-%d" % (limit, n), "ann-app", "any news? %d" % n)))
            keys = [key(i) for i in paged]
            assert len(keys) == len(set(keys))
            assert keys[:len(items)] == [key(i) for i in items]

        # Wes sees only the app channel: the site conversation is not his,
        # nor its messages and events in the case's timeline.
        mine = walk(wes, app, 200)
        assert all(i["message"]["conversation_id"] == app for i in mine if i["type"] == "message")
        assert not [i for i in mine if i["type"] == "event"]
        assert [i["message"]["direction"] for i in mine[:2]] == ["inbound", "outbound"]
        for api, conv in ((wes, site), (lee, site), (lee, app)):
            status, _, body = api.get("/api/v1/conversations/%d/timeline" % conv)
            assert status == 404 and body["error"] == "not_found"

        # Strict parameters; cursors are the timeline's own.
        path = "/api/v1/conversations/%d/timeline" % app
        list_cursor = kim.get("/api/v1/conversations", params={"limit": "1"})[2]["next_cursor"]
        assert list_cursor is not None
        for params in ({"cursor": list_cursor}, {"cursor": "bm9wZQ"}, {"cursor": "'; DROP TABLE message; --"}):
            status, _, body = kim.get(path, params=params)
            assert status == 400 and body["error"] == "invalid_cursor", (params, body)
        for params in ({"limit": "0"}, {"limit": "x"}, {"since": "1"}):
            status, _, body = kim.get(path, params=params)
            assert status == 400, (params, body)
        assert query(fresh_db, "SELECT count(*) FROM message WHERE external_id = 't-1'") == [(1,)]
