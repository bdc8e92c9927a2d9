"""The live event stream, GET /api/v1/events, with the real daemon: messages
arrive through the signed webhook channel, agents watch as Server-Sent
Events. Events reach the agents who may see them (their teams' channel
instances) within a second and nobody else; a client resumes with
Last-Event-ID without gaps or duplicates, also on another node of the same
database; heartbeats keep idle streams alive; a client that does not read is
dropped while the others go on; presence is relayed. Every event is checked
against the document's LiveEvent schema (api_client.EventStream)."""
import json
import socket
import threading
import time

import psycopg2
import pytest

from api_client import ApiClient
from api_setup import add_agent, add_team, create_token
from parley_testlib import http, query, sign

SECRET = "live-secret"


def config(dsn, plugin_dir, **live_events):
    cfg = {"database": {"dsn": dsn}, "plugin_dir": plugin_dir, "jobs": {"enabled": False},
           "log": {"level": "info"},
           "channels": [{"name": "site", "plugin": "webhook", "config": {"secret": SECRET}},
                        {"name": "shop", "plugin": "webhook", "config": {"secret": SECRET}}]}
    if live_events:
        cfg["live_events"] = live_events
    return cfg


def post(d, instance, item):
    body = json.dumps(item).encode()
    status, _, answer = http("POST", "%s/webhooks/%s" % (d.url, instance), body,
                             {"Content-Type": "application/json",
                              "X-Parley-Signature": sign(SECRET, body)})
    assert status == 200, answer


def message(msg_id, author, text):
    return {"id": msg_id, "author": {"id": author, "name": author.title()}, "text": text}


class World:
    """Two teams on two channel instances, an agent in each, an admin."""

    def __init__(self, d, cfg, dsn, run_parleyd):
        self.d, self.cfg, self.dsn = d, cfg, dsn
        self.north = add_team(dsn, "North", ["site"])
        self.south = add_team(dsn, "South", ["shop"])
        self.kim_id = add_agent(dsn, "kim@example.com", "Kim", teams=[self.north])
        self.lee_id = add_agent(dsn, "lee@example.com", "Lee", teams=[self.north])
        self.sam_id = add_agent(dsn, "sam@example.com", "Sam", teams=[self.south])
        self.kim = create_token(run_parleyd, cfg, role="agent", agent="kim@example.com", name="kim")
        self.lee = create_token(run_parleyd, cfg, role="agent", agent="lee@example.com", name="lee")
        self.sam = create_token(run_parleyd, cfg, role="agent", agent="sam@example.com", name="sam")
        self.admin = create_token(run_parleyd, cfg, role="admin", name="ops")

    def api(self, token, d=None):
        return ApiClient((d or self.d).url, token=token, timeout=5)


@pytest.fixture
def world(fresh_db, daemon, plugin_dir, run_parleyd):
    cfg = config(fresh_db, plugin_dir)
    d = daemon.start(cfg)
    return World(d, cfg, fresh_db, run_parleyd)


def ready(stream, timeout=5):
    """The stream's events up to and including 'ready'; returns (events before, ready)."""
    before = []
    while True:
        ev = stream.next_event(timeout=timeout)
        if ev.event == "ready":
            return before, ev
        before.append(ev)


def next_kind(stream, kinds, timeout=2):
    """The next event of one of `kinds`, skipping others; (event, seconds waited)."""
    start = time.monotonic()
    while True:
        left = timeout - (time.monotonic() - start)
        ev = stream.next_event(timeout=max(left, 0.01))
        if ev.event in kinds:
            return ev, time.monotonic() - start


def events_until(stream, predicate, timeout=5):
    """Events up to and including the first one `predicate` accepts."""
    got = []
    deadline = time.monotonic() + timeout
    while True:
        ev = stream.next_event(timeout=max(deadline - time.monotonic(), 0.01))
        got.append(ev)
        if predicate(ev):
            return got


def settle(dsn):
    """Until every queued event is numbered, and a moment for the nodes to read them."""
    deadline = time.monotonic() + 5
    while query(dsn, "SELECT count(*) FROM live_event_pending")[0][0] and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)


def visible_ids(dsn, instances, after):
    rows = query(dsn, "SELECT id FROM live_event WHERE id > %s AND channel_instance = ANY (%s) "
                      "ORDER BY id", (after, list(instances)))
    return [str(r[0]) for r in rows]


# ------------------------------------------------------------------ fan-out

def test_a_new_message_reaches_its_teams_agents_and_admins_within_a_second_and_no_one_else(world):
    w = world
    with w.api(w.kim).events() as kim, w.api(w.sam).events() as sam, \
            w.api(w.admin).events() as admin:
        for s in (kim, sam, admin):
            assert s.status == 200 and s.headers["Content-Type"] == "text/event-stream"
            assert ready(s)[0] == []
        sent = time.monotonic()
        post(w.d, "site", message("m1", "ann", "my parcel is late"))
        for s in (kim, admin):
            conv, _ = next_kind(s, ("conversation.created",))
            msg, _ = next_kind(s, ("message.created",))
            assert time.monotonic() - sent < 1.0
            assert conv.data["channel_instance"] == "site"
            assert msg.data["text"] == "my parcel is late" and msg.data["conversation_id"] == conv.data["id"]
            assert msg.data["author"]["kind"] == "customer" and int(msg.id) > int(conv.id)
        # Sam's team owns "shop": the first thing Sam hears of is the shop
        # message, so the site's events were never sent (events keep order).
        post(w.d, "shop", message("s1", "bob", "where is my refund"))
        first = sam.next_event(timeout=2)
        assert first.event == "conversation.created" and first.data["channel_instance"] == "shop"
        assert sam.next_event(timeout=2).data["text"] == "where is my refund"
        # Ids are the table's; the admin saw the shop events as well.
        assert next_kind(admin, ("message.created",))[0].data["text"] == "where is my refund"


def test_edits_and_deletions_arrive_as_message_updated(world):
    w = world
    post(w.d, "site", message("m1", "ann", "helo"))
    with w.api(w.kim).events() as kim:
        ready(kim)
        post(w.d, "site", {"id": "m1", "type": "edit", "author": {"id": "ann"}, "text": "hello",
                           "created_at": "2030-01-01T10:00:00Z"})
        ev, _ = next_kind(kim, ("message.updated",))
        assert ev.data["text"] == "hello" and ev.data["original_text"] == "helo"
        post(w.d, "site", {"id": "m1", "type": "delete", "author": {"id": "ann"},
                           "created_at": "2030-01-01T10:01:00Z"})
        ev, _ = next_kind(kim, ("message.updated",))
        assert ev.data["deleted_at"] is not None and ev.data["text"] == "hello"


# ------------------------------------------------------------------- resume

def test_last_event_id_resumes_with_exactly_the_missed_events(world):
    w = world
    post(w.d, "site", message("m1", "ann", "one"))
    settle(w.dsn)   # a stream starts after what the node has read
    with w.api(w.kim).events() as kim:
        ready(kim)
        post(w.d, "site", message("m2", "ann", "two"))
        seen = next_kind(kim, ("message.created",))[0]
        assert seen.data["text"] == "two"
    # Missed while away: two on the site (Kim's), one on the shop (not Kim's).
    post(w.d, "site", message("m3", "ann", "three"))
    post(w.d, "shop", message("s1", "bob", "elsewhere"))
    post(w.d, "site", message("m4", "cid", "four"))
    settle(w.dsn)
    expected = visible_ids(w.dsn, ["site"], seen.id)
    with w.api(w.kim).events(last_event_id=seen.id) as kim:
        missed, rdy = ready(kim)
    assert [e.id for e in missed] == expected and len(expected) == 3   # m3, conversation of m4, m4
    assert [e.data.get("text") for e in missed if e.event == "message.created"] == ["three", "four"]
    # 'ready' carries the cursor: the newest id, shop events included.
    newest = query(w.dsn, "SELECT max(id) FROM live_event")[0][0]
    assert rdy.id == str(newest) and rdy.data == {"last_event_id": newest}
    # Browsers that cannot set the header say it in the URL.
    with w.api(w.kim).events(path="/api/v1/events?last_event_id=" + seen.id) as kim:
        assert [e.id for e in ready(kim)[0]] == expected
    # Nothing missed: nothing replayed.
    with w.api(w.kim).events(last_event_id=str(newest)) as kim:
        assert ready(kim)[0] == []


def test_a_resume_that_cannot_be_complete_says_reset(fresh_db, daemon, plugin_dir, run_parleyd):
    cfg = config(fresh_db, plugin_dir, replay_max=3)
    d = daemon.start(cfg)
    admin = ApiClient(d.url, token=create_token(run_parleyd, cfg, role="admin"), timeout=5)
    for i in range(3):
        post(d, "site", message("m%d" % i, "ann%d" % i, "hi"))   # 6 events
    settle(fresh_db)
    newest = query(fresh_db, "SELECT max(id) FROM live_event")[0][0]
    assert newest >= 6
    for after, reason in (("1", "too_far_behind"), ("999999", "unknown_id")):
        with admin.events(last_event_id=after) as s:
            ev = s.next_event()
            assert ev.event == "reset" and ev.data == {"reason": reason, "last_event_id": newest}
            assert ev.id == str(newest) and s.next_event().event == "ready"
    # Retention took the events after the id: reset, not a silent gap.
    query(fresh_db, "DELETE FROM live_event WHERE id <= %s", (newest - 2,))
    with admin.events(last_event_id=str(newest - 4)) as s:
        assert s.next_event().data["reason"] == "expired"
    with admin.events(last_event_id=str(newest - 2)) as s:   # all still there
        assert len(ready(s)[0]) == 2


# ------------------------------------------------------------ two nodes

def test_two_nodes_on_one_database_share_events_and_resume(fresh_db, daemon, plugin_dir, run_parleyd):
    cfg = config(fresh_db, plugin_dir)
    a = daemon.start(cfg)
    b = daemon.start(config(fresh_db, plugin_dir))
    add_team(fresh_db, "North", ["site"])
    token = create_token(run_parleyd, cfg, role="admin")
    on_a, on_b = ApiClient(a.url, token=token, timeout=5), ApiClient(b.url, token=token, timeout=5)
    with on_b.events() as sb:
        ready(sb)
        sent = time.monotonic()
        post(a, "site", message("m1", "ann", "via node a"))
        ev, _ = next_kind(sb, ("message.created",))
        assert ev.data["text"] == "via node a" and time.monotonic() - sent < 1.0
        last = ev.id
    # Gone from B; events written through both nodes meanwhile; back on A.
    post(a, "site", message("m2", "ann", "two"))
    post(b, "site", message("m3", "ann", "three"))
    settle(fresh_db)
    with on_a.events(last_event_id=last) as sa:
        missed = ready(sa)[0]
    assert [e.id for e in missed] == visible_ids(fresh_db, ["site"], last)
    assert [e.data["text"] for e in missed] == ["two", "three"]


# ------------------------------------------------------- a send's outcome

def test_a_replys_delivery_failure_and_success_arrive_live(fresh_db, daemon, plugin_dir, run_parleyd,
                                                           fake_http):
    callback = fake_http(answer=lambda req: {"id": "p-%d" % req.n}, base_path="/cb")
    cfg = config(fresh_db, plugin_dir)
    cfg["jobs"] = {"sweep_interval_ms": 100, "backoff_base_ms": 20, "backoff_max_ms": 50,
                   "max_attempts": 2}
    cfg["channels"][0]["config"]["callback_url"] = callback.url
    d = daemon.start(cfg)
    add_team(fresh_db, "North", ["site"])
    add_agent(fresh_db, "kim@example.com", "Kim", teams=[1])
    kim = ApiClient(d.url, token=create_token(run_parleyd, cfg, role="agent", agent="kim@example.com"),
                    timeout=5)
    post(d, "site", message("m1", "ann", "where is it?"))
    conv = conversation_of(fresh_db, "site")
    settle(fresh_db)
    with kim.events() as s:
        ready(s)
        callback.queue((400, {"error": "outside the messaging window"}))
        code, out, err = run_parleyd(["--reply", str(conv), "--text", "Sorry!"], config=cfg)
        assert code == 0, err
        failed = events_until(s, lambda e: e.event == "notice", timeout=10)
        kinds = [e.event for e in failed]
        assert "message.updated" in kinds and "conversation.updated" in kinds
        msg = [e for e in failed if e.event == "message.updated"][-1].data
        assert msg["delivery_status"] == "failed" and "messaging window" in msg["delivery_detail"]
        assert [e for e in failed if e.event == "conversation.updated"][-1].data["delivery_error"]
        assert failed[-1].data["kind"] == "delivery.failed" and failed[-1].data["conversation_id"] == conv
        # The next reply goes out: the message is sent, the error is over.
        code, out, err = run_parleyd(["--reply", str(conv), "--text", "Sorry again!"], config=cfg)
        assert code == 0, err
        done = events_until(s, lambda e: e.event == "conversation.updated", timeout=10)
        sent = [e.data for e in done if e.event == "message.updated"]
        assert sent and sent[-1]["delivery_status"] == "sent" and sent[-1]["text"] == "Sorry again!"
        assert done[-1].data["delivery_error"] is None


# -------------------------------------------------------- keeping streams

def raw_stream(d, token, rcvbuf=None):
    """A socket with the stream's request sent (nothing read yet)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect((d.host, d.port))
    sock.sendall(("GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
                  % token).encode())
    return sock


def test_idle_streams_get_heartbeats(fresh_db, daemon, plugin_dir, run_parleyd):
    cfg = config(fresh_db, plugin_dir, heartbeat_ms=300)
    d = daemon.start(cfg)
    sock = raw_stream(d, create_token(run_parleyd, cfg, role="admin"))
    got, start = b"", time.monotonic()
    while got.count(b": ping\n\n") < 2 and time.monotonic() - start < 5:
        got += sock.recv(4096)
    sock.close()
    assert got.startswith(b"HTTP/1.1 200 ") and got.count(b": ping\n\n") >= 2, got


def test_a_client_that_does_not_read_is_dropped_while_others_keep_receiving(
        fresh_db, daemon, plugin_dir, run_parleyd):
    cfg = config(fresh_db, plugin_dir)
    # A client that takes nothing for a second is dropped.
    cfg["limits"] = {"max_output_bytes": 1048576, "write_timeout_ms": 1000}
    d = daemon.start(cfg)
    token = create_token(run_parleyd, cfg, role="admin")
    slow = raw_stream(d, token, rcvbuf=4096)
    head = b""
    while b"event: ready" not in head:   # live; from here on it reads nothing
        head += slow.recv(1)
    with ApiClient(d.url, token=token, timeout=10).events() as good:
        ready(good)
        # 8 MB of notices (admins see those without a conversation).
        query(fresh_db, "SELECT parley_live_event('notice', NULL, NULL, NULL, "
                        "jsonb_build_object('kind', 'bulk', 'title', 't', 'text', repeat('x', 16000), "
                        "'conversation_id', NULL, 'details', jsonb_build_object('n', n), 'at', now())) "
                        "FROM generate_series(1, 500) AS n")
        got = events_until(good, lambda e: e.data["details"]["n"] == 500, timeout=30)
        assert [e.data["details"]["n"] for e in got] == list(range(1, 501))
        # The slow one is cut off once it has taken nothing for a second
        # (reading from it before then would keep it alive)...
        deadline = time.monotonic() + 15
        while "dropped an event stream client" not in d.log_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        # ...and what it can still read ends.
        slow.settimeout(10)
        total = 0
        while True:
            try:
                chunk = slow.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            total += len(chunk)
        assert total < 8000000
        assert "dropped an event stream client that does not keep up" in d.log_text()
        _, _, metrics = http("GET", d.url + "/metrics")
        assert b"parley_live_clients_dropped_total 1" in metrics
        # The good stream goes on.
        post(d, "site", message("m1", "ann", "still here"))
        assert next_kind(good, ("message.created",))[0].data["text"] == "still here"
    slow.close()


def test_events_bigger_than_half_the_output_bound_still_arrive_one_at_a_time(
        fresh_db, daemon, plugin_dir, run_parleyd):
    cfg = config(fresh_db, plugin_dir)
    cfg["limits"] = {"max_output_bytes": 65536}
    d = daemon.start(cfg)
    with ApiClient(d.url, token=create_token(run_parleyd, cfg, role="admin"), timeout=10).events() as s:
        ready(s)
        query(fresh_db, "SELECT parley_live_event('notice', NULL, NULL, NULL, "
                        "jsonb_build_object('kind', 'big', 'title', 't', 'text', repeat('y', 40000), "
                        "'conversation_id', NULL, 'details', jsonb_build_object('n', n), 'at', now())) "
                        "FROM generate_series(1, 40) AS n")
        got = events_until(s, lambda e: e.data["details"]["n"] == 40, timeout=30)
        assert [e.data["details"]["n"] for e in got] == list(range(1, 41))
    assert "dropped" not in d.log_text()


def test_streams_beyond_max_clients_are_refused(fresh_db, daemon, plugin_dir, run_parleyd):
    cfg = config(fresh_db, plugin_dir, max_clients=1)
    d = daemon.start(cfg)
    api = ApiClient(d.url, token=create_token(run_parleyd, cfg, role="admin"), timeout=5)
    with api.events() as first:
        ready(first)
        with api.events() as second:
            assert second.status == 503 and second.body["error"] == "too_many_streams"
            assert second.headers["Retry-After"] == "5"
        assert b"\nparley_live_clients 1\n" in http("GET", d.url + "/metrics")[2]
    time.sleep(0.3)  # the first one's end is noticed
    with api.events() as again:
        assert again.status == 200


def session_for(url, dsn, agent_id, secret):
    """A browser session of the agent (made here: logging in is another part's)."""
    query(dsn, "INSERT INTO agent_session (secret_hash, csrf_hash, agent_id, expires_at) "
               "VALUES (sha256(convert_to(%s, 'UTF8')), sha256('csrf'), %s, now() + interval '1 hour')",
          (secret, agent_id))
    browser = ApiClient(url, timeout=5)
    browser.cookies["parley_session"] = secret
    return browser


def test_a_revoked_token_ends_its_stream_and_team_changes_take_effect(world):
    w = world
    lee_browser = session_for(w.d.url, w.dsn, w.lee_id, "lee-session-secret")
    with w.api(w.sam).events() as sam, w.api(w.kim).events() as kim, lee_browser.events() as lee:
        ready(sam)
        ready(kim)
        ready(lee)
        # A browser session streams like a token.
        post(w.d, "site", message("m0", "ann", "for the north"))
        assert next_kind(lee, ("message.created",))[0].data["text"] == "for the north"
        # South takes over the site as well; the stream follows without a reconnect.
        query(w.dsn, "INSERT INTO team_channel (team_id, channel_instance) VALUES (%s, 'site')",
              (w.south,))
        query(w.dsn, "SELECT parley_live_event('team.updated', NULL, NULL, NULL, '{}')")
        time.sleep(1.0)
        post(w.d, "site", message("m1", "ann", "for both teams"))
        assert next_kind(sam, ("message.created",))[0].data["text"] == "for both teams"
        # A revoked token and an ended session end their streams (checked
        # every half minute, at once after a team change).
        query(w.dsn, "UPDATE api_token SET revoked_at = now() WHERE name = 'kim'")
        query(w.dsn, "UPDATE agent_session SET ended_at = now()")
        query(w.dsn, "SELECT parley_live_event('team.updated', NULL, NULL, NULL, '{}')")
        for s in (kim, lee):
            with pytest.raises(EOFError):
                for _ in range(10):
                    s.next_event(timeout=3)
        post(w.d, "site", message("m9", "ann", "Sam's stream goes on"))
        assert next_kind(sam, ("message.created",))[0].data["text"] == "Sam's stream goes on"
    with w.api(w.kim).events() as kim:
        assert kim.status == 401
    with lee_browser.events() as lee:
        assert lee.status == 401


def test_stopping_the_daemon_ends_open_streams_cleanly(fresh_db, daemon, plugin_dir, run_parleyd):
    cfg = config(fresh_db, plugin_dir)
    d = daemon.start(cfg)
    api = ApiClient(d.url, token=create_token(run_parleyd, cfg, role="admin"), timeout=5)
    with api.events() as a, api.events(last_event_id="0") as b:
        ready(a)
        ready(b)
        started = time.monotonic()
        d.stop()   # SIGTERM; teardown holds it to exit code 0
        for s in (a, b):
            with pytest.raises(EOFError):   # the chunked body's proper end, not a reset
                s.next_event(timeout=5)
        assert time.monotonic() - started < 5


def test_retention_deletes_old_events_oldest_first_in_batches(fresh_db, run_parleyd, plugin_dir):
    code, _, err = run_parleyd(["--migrate"], config=config(fresh_db, plugin_dir))
    assert code == 0, err
    query(fresh_db, "INSERT INTO live_event (id, kind, payload, at) "
                    "SELECT nextval('live_event_id_seq'), 'notice', '{}', now() - make_interval(hours => 48 - n) "
                    "FROM generate_series(1, 30) AS n")   # 47 h .. 18 h old
    query(fresh_db, "INSERT INTO agent_presence VALUES (1, 1, 'viewing', now() - interval '2 days'), "
                    "(1, 2, 'typing', now())")
    # A day's retention, ten at a time: the 24 older than a day go in three calls.
    deleted = [query(fresh_db, "SELECT parley_live_events_expire(86400, 10)")[0][0] for _ in range(4)]
    assert deleted == [10, 10, 4, 0]
    assert query(fresh_db, "SELECT count(*), min(at) > now() - interval '24 hours' FROM live_event") == \
        [(6, True)]
    assert query(fresh_db, "SELECT conversation_id FROM agent_presence") == [(2,)]
    # A resume from before what is left is refused as expired; from what is left, fine.
    oldest = query(fresh_db, "SELECT min(id) FROM live_event")[0][0]
    assert query(fresh_db, "SELECT parley_live_resume_check(%s, 100)", (oldest - 2,))[0][0] == "expired"
    assert query(fresh_db, "SELECT parley_live_resume_check(%s, 100)", (oldest - 1,))[0][0] == "ok"
    assert query(fresh_db, "SELECT parley_live_resume_check(%s, 3)", (oldest - 1,))[0][0] == "too_far_behind"
    assert query(fresh_db, "SELECT parley_live_resume_check(%s, 100)", (oldest + 100,))[0][0] == "unknown_id"


# ----------------------------------------------------------------- presence

def conversation_of(dsn, instance):
    return query(dsn, "SELECT id FROM conversation WHERE channel_instance = %s ORDER BY id LIMIT 1",
                 (instance,))[0][0]


def test_presence_is_relayed_to_the_teams_other_agents_within_a_second(world):
    w = world
    post(w.d, "site", message("m1", "ann", "hi"))
    post(w.d, "shop", message("s1", "bob", "hi"))
    conv = conversation_of(w.dsn, "site")
    path = "/api/v1/conversations/%d/presence" % conv
    with w.api(w.kim).events() as kim, w.api(w.lee).events() as lee, w.api(w.sam).events() as sam:
        for s in (kim, lee, sam):
            ready(s)
        sent = time.monotonic()
        status, _, _ = w.api(w.kim).post(path, json={"state": "viewing"})
        assert status == 204
        ev, _ = next_kind(lee, ("presence",))
        assert time.monotonic() - sent < 1.0
        assert ev.data["conversation_id"] == conv and ev.data["state"] == "viewing"
        assert ev.data["agent"] == {"id": w.kim_id, "name": "Kim"}
        # At most one a second: a second one now changes nothing, 'left' goes through.
        assert w.api(w.kim).post(path, json={"state": "typing"})[0] == 204
        assert w.api(w.kim).post(path, json={"state": "left"})[0] == 204
        assert next_kind(lee, ("presence",))[0].data["state"] == "left"
        # Lee's own presence goes to Kim, not back to Lee; Sam (South) hears of
        # neither: the first event each gets next is the later one.
        assert w.api(w.lee).post(path, json={"state": "typing"})[0] == 204
        ev = kim.next_event(timeout=2)
        assert ev.event == "presence" and ev.data["agent"]["id"] == w.lee_id
        shop_conv = conversation_of(w.dsn, "shop")
        assert w.api(w.sam).post("/api/v1/conversations/%d/presence" % shop_conv,
                                 json={"state": "viewing"})[0] == 204
        post(w.d, "shop", message("s2", "bob", "again"))
        ev = sam.next_event(timeout=2)
        assert ev.event == "message.created" and ev.data["text"] == "again"
        # ...while North's agents never heard of Sam's presence on the shop.
        post(w.d, "site", message("m2", "ann", "and here"))
        assert lee.next_event(timeout=2).data["text"] == "and here"
    assert query(w.dsn, "SELECT count(*) FROM live_event WHERE kind = 'presence'")[0][0] == 4


def test_presence_refusals(world, run_parleyd):
    w = world
    post(w.d, "site", message("m1", "ann", "hi"))
    conv = conversation_of(w.dsn, "site")
    path = "/api/v1/conversations/%d/presence" % conv
    kim, sam = w.api(w.kim), w.api(w.sam)
    # Another team's conversation, and ids that name nothing, do not exist.
    for p in (path.replace("/%d/" % conv, "/999999/"), path.replace("/%d/" % conv, "/abc/"),
              path.replace("/%d/" % conv, "/1%20OR%201=1/")):
        status, _, body = kim.post(p, json={"state": "viewing"})
        assert status == 404, (p, body)
    assert sam.post(path, json={"state": "viewing"})[0] == 404
    for bad, code in (({"state": "dancing"}, 422), ({"state": "x" * 100}, 422), ({}, 422),
                      ({"state": 5}, 422), ({"state": "viewing", "extra": 1}, 400)):
        status, _, body = kim.post(path, json=bad, validate_request=False)
        assert status == code, (bad, body)
    assert kim.post(path + "?x=1", json={"state": "viewing"})[0] == 400
    # A token acting for no agent has no presence.
    status, _, body = w.api(w.admin).post(path, json={"state": "viewing"})
    assert status == 422 and body["error"] == "no_agent"
    assert query(w.dsn, "SELECT count(*) FROM live_event_pending WHERE kind = 'presence'")[0][0] == 0
    assert query(w.dsn, "SELECT count(*) FROM live_event WHERE kind = 'presence'")[0][0] == 0


# -------------------------------------------------------------- refusals

def test_the_stream_needs_credentials_and_a_good_request(world):
    w = world
    for token in (None, "prl_nope"):
        with ApiClient(w.d.url, token=token, timeout=5).events() as s:
            assert s.status == 401 and s.body["error"] == "unauthorized"
    api = w.api(w.kim)
    for path, headers_id in (("/api/v1/events?since=1", None), ("/api/v1/events?last_event_id=x", None),
                             ("/api/v1/events?last_event_id=1&last_event_id=2", None),
                             ("/api/v1/events", "1 OR 1=1"), ("/api/v1/events", "-1")):
        with api.events(path=path, last_event_id=headers_id) as s:
            assert s.status == 400, (path, headers_id, s.body)


# ------------------------------------------------------ ids under contention

def test_ids_become_visible_in_increasing_order_under_concurrent_writers(fresh_db, run_parleyd, plugin_dir):
    """Writers commit events in every order, several sequencers race, readers
    poll "id > last": no reader ever misses an id that shows up later below
    what it has already read."""
    code, _, err = run_parleyd(["--migrate"], config=config(fresh_db, plugin_dir))
    assert code == 0, err
    stop = threading.Event()
    errors = []

    def guarded(fn):
        def run():
            try:
                fn()
            except Exception as e:  # reported by the test
                errors.append(repr(e))
                stop.set()
        return run

    def writer(n):
        conn = psycopg2.connect(fresh_db)
        cur = conn.cursor()
        for i in range(60):
            # A transaction that takes a while commits after later ones.
            cur.execute("SELECT parley_live_event('notice', 'site', NULL, NULL, %s::jsonb)",
                        (json.dumps({"w": n, "i": i}),))
            cur.execute("SELECT pg_sleep(random() * 0.02)")
            conn.commit()
        conn.close()

    def sequencer():
        conn = psycopg2.connect(fresh_db)
        conn.autocommit = True
        cur = conn.cursor()
        while not stop.is_set():
            cur.execute("SELECT parley_live_events_sequence(7)")
        conn.close()

    seen = {}

    def reader(n):
        conn = psycopg2.connect(fresh_db)
        conn.autocommit = True
        cur = conn.cursor()
        last, got = 0, []
        while not stop.is_set():
            cur.execute("SELECT id FROM live_event WHERE id > %s ORDER BY id", (last,))
            for (i,) in cur.fetchall():
                got.append(i)
                last = i
        seen[n] = got
        conn.close()

    writers = [threading.Thread(target=guarded(lambda n=n: writer(n))) for n in range(8)]
    others = [threading.Thread(target=guarded(sequencer)) for _ in range(3)] + \
             [threading.Thread(target=guarded(lambda n=n: reader(n))) for n in range(3)]
    for t in writers + others:
        t.start()
    for t in writers:
        t.join()
    # Drain: sequence what is left, let the readers catch up.
    deadline = time.monotonic() + 10
    while query(fresh_db, "SELECT count(*) FROM live_event_pending")[0][0] and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    stop.set()
    for t in others:
        t.join()
    assert errors == []
    final = [r[0] for r in query(fresh_db, "SELECT id FROM live_event ORDER BY id")]
    assert len(final) == 8 * 60
    assert sorted(json.dumps(r[0], sort_keys=True) for r in
                  query(fresh_db, "SELECT payload FROM live_event")) == \
        sorted(json.dumps({"w": n, "i": i}, sort_keys=True) for n in range(8) for i in range(60))
    assert len(seen) == 3
    for n, got in seen.items():
        # What a reader saw is the table's order from the start, nothing
        # skipped: every id it read past was there when it read.
        assert got and got == final[:len(got)], "reader %d missed ids that became visible later" % n
