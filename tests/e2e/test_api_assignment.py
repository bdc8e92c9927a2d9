"""Team queues and assignment: customers write through the real signed
webhook channel; the after-ingest pipeline gives each new conversation its
team and an online agent with room (the customer's owner first, then one who
speaks the language, then the least loaded, then round robin); what cannot
be placed waits in the team's queue, served in due order by the sweep job
when capacity frees up; agents who stay away lose their conversations to
the queue; and people assign, unassign and transfer through the API."""
import json
import threading
import time

import psycopg2
import pytest

from api_client import ApiClient
from api_setup import add_agent, add_team, create_token
from parley_testlib import http, query, sign

SECRET = "assign-secret"


def config(dsn, plugin_dir, grace=300, channels=("site",)):
    return {"database": {"dsn": dsn, "pool_size": 6}, "plugin_dir": plugin_dir,
            "jobs": {"sweep_interval_ms": 100},
            "assignment": {"away_grace_seconds": grace, "sweep_interval_ms": 100},
            "channels": [{"name": name, "plugin": "webhook", "config": {"secret": SECRET}}
                         for name in channels]}


def post(d, msg_id, author, text="Hello", thread=None, visibility=None, channel="site"):
    payload = {"id": msg_id, "author": {"id": author, "name": author.title()}, "text": text,
               "thread": thread or ("chat-" + author)}
    if visibility:
        payload["visibility"] = visibility
    body = json.dumps(payload).encode()
    status, _, data = http("POST", d.url + "/webhooks/" + channel, body,
                           {"Content-Type": "application/json",
                            "X-Parley-Signature": sign(SECRET, body)})
    assert status == 200, data


def conv_of(dsn, msg_id):
    return query(dsn, "SELECT conversation_id FROM message WHERE external_id = %s", (msg_id,))[0][0]


def state(dsn, conv):
    """(assignee_id, team_id, queued) of a conversation."""
    return query(dsn, "SELECT assignee_id, team_id, queued_at IS NOT NULL FROM conversation WHERE id = %s",
                 (conv,))[0]


def loads(dsn):
    """{agent id: open or pending conversations assigned}."""
    return dict(query(dsn, "SELECT a.id, count(c.id) FROM agent a LEFT JOIN conversation c "
                           "ON c.assignee_id = a.id AND c.status IN ('open', 'pending') GROUP BY a.id"))


def events(dsn, conv):
    """The conversation's assignment events on its timeline: (kind, actor, details)."""
    return query(dsn, "SELECT kind, actor, details FROM conversation_event WHERE conversation_id = %s "
                      "AND kind IN ('assigned', 'unassigned', 'transferred') ORDER BY id", (conv,))


def live_events(dsn, conv):
    """The conversation.assigned live events of a conversation, sequenced or
    still pending: (kind, agent_id, the assignee the payload shows)."""
    return [row[2:] for row in query(
        dsn, "SELECT 0, id, kind, agent_id, payload ->> 'assignee_id' FROM live_event "
             "WHERE conversation_id = %s AND kind = 'conversation.assigned' "
             "UNION ALL "
             "SELECT 1, seq, kind, agent_id, payload ->> 'assignee_id' "
             "FROM live_event_pending WHERE conversation_id = %s AND kind = 'conversation.assigned' "
             "ORDER BY 1, 2", (conv, conv))]


def set_availability(dsn, agent, availability):
    query(dsn, "UPDATE agent SET availability = %s, availability_changed_at = now() WHERE id = %s",
          (availability, agent))


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# ------------------------------------------------------------ automatic


def test_a_new_conversation_gets_its_team_and_the_least_loaded_online_agent(fresh_db, daemon, plugin_dir):
    d = daemon.start(config(fresh_db, plugin_dir))
    north = add_team(fresh_db, "North", ["site"])
    south = add_team(fresh_db, "South", ["site"])
    ann = add_agent(fresh_db, "ann@example.com", "Ann", teams=[north], availability="online")
    bob = add_agent(fresh_db, "bob@example.com", "Bob", teams=[north], availability="online")
    add_agent(fresh_db, "cy@example.com", "Cy", teams=[north], availability="offline")
    add_agent(fresh_db, "dee@example.com", "Dee", teams=[south], availability="online")

    post(d, "m1", "kim")
    c1 = conv_of(fresh_db, "m1")
    # Two teams own the instance: the lowest id takes it; its online agents only.
    assert state(fresh_db, c1) == (ann, north, False)
    post(d, "m2", "lou")
    assert state(fresh_db, conv_of(fresh_db, "m2")) == (bob, north, False)   # least loaded
    post(d, "m3", "max")
    assert state(fresh_db, conv_of(fresh_db, "m3"))[0] == ann   # equal load: assigned longest ago
    post(d, "m4", "ned")
    assert state(fresh_db, conv_of(fresh_db, "m4"))[0] == bob
    # The customer's next message changes nothing.
    post(d, "m1b", "kim")
    assert state(fresh_db, c1) == (ann, north, False)

    # On the timeline and the live stream, by the system.
    [(kind, actor, details)] = events(fresh_db, c1)
    assert (kind, actor, details["to"], details["from"], details["team_id"]) == \
        ("assigned", "system", ann, None, north)
    assert live_events(fresh_db, c1) == [("conversation.assigned", ann, str(ann))]


def test_the_team_owning_the_category_comes_first(fresh_db, daemon, plugin_dir):
    d = daemon.start(config(fresh_db, plugin_dir, channels=("site", "x9")))
    north = add_team(fresh_db, "North", ["site"])
    billing = add_team(fresh_db, "Billing", ["site", "shop"])
    add_team(fresh_db, "Elsewhere", ["shop"])
    query(fresh_db, "INSERT INTO team_category (team_id, category) VALUES (%s, 'billing')", (billing,))
    # Category teams count only among the instance's teams.
    outsider = add_team(fresh_db, "Outsider", ["mail"])
    query(fresh_db, "INSERT INTO team_category (team_id, category) VALUES (%s, 'refund')", (outsider,))
    team_for = "SELECT parley_team_for(%s, %s)"
    assert query(fresh_db, team_for, ("site", "billing")) == [(billing,)]
    assert query(fresh_db, team_for, ("site", None)) == [(north,)]
    assert query(fresh_db, team_for, ("site", "refund")) == [(north,)]
    assert query(fresh_db, team_for, ("nowhere", "billing")) == [(None,)]

    # Through the pipeline: a conversation on an instance no team owns has
    # none and waits (unassigned) until one does.
    post(d, "m1", "kim", channel="x9")
    c = conv_of(fresh_db, "m1")
    assert state(fresh_db, c) == (None, None, True)
    post(d, "m2", "lou")
    assert state(fresh_db, conv_of(fresh_db, "m2")) == (None, north, True)   # nobody online
    query(fresh_db, "INSERT INTO team_channel (team_id, channel_instance) VALUES (%s, 'x9')", (outsider,))
    assert wait_for(lambda: state(fresh_db, c) == (None, outsider, True))


def test_capacity_is_respected_and_the_queue_is_served_in_due_then_oldest_order(fresh_db, daemon, plugin_dir):
    d = daemon.start(config(fresh_db, plugin_dir))
    team = add_team(fresh_db, "North", ["site"])
    ann = add_agent(fresh_db, "ann@example.com", "Ann", teams=[team], availability="online", capacity=1)
    bob = add_agent(fresh_db, "bob@example.com", "Bob", teams=[team], availability="offline", capacity=2)

    post(d, "m1", "c1")
    first = conv_of(fresh_db, "m1")
    assert state(fresh_db, first) == (ann, team, False)
    # Ann is full: the rest wait in the queue, in arrival order.
    queued = []
    for i in range(2, 6):
        post(d, "m%d" % i, "c%d" % i)
        queued.append(conv_of(fresh_db, "m%d" % i))
    assert [state(fresh_db, c) for c in queued] == [(None, team, True)] * 4
    assert loads(fresh_db) == {ann: 1, bob: 0}
    # A due time goes first (the SLA's order); then the oldest.
    query(fresh_db, "UPDATE conversation SET next_response_due_at = now() + interval '1 hour' "
                    "WHERE id = %s", (queued[2],))
    time.sleep(0.5)   # several sweeps: nobody has room, nothing moves
    assert [state(fresh_db, c)[0] for c in queued] == [None] * 4

    # Bob comes online with room for two: the sweep gives him the due one and the oldest.
    set_availability(fresh_db, bob, "online")
    assert wait_for(lambda: loads(fresh_db)[bob] == 2)
    order = query(fresh_db, "SELECT conversation_id FROM conversation_event WHERE kind = 'assigned' "
                            "AND (details ->> 'to')::bigint = %s ORDER BY id", (bob,))
    assert [c for (c,) in order] == [queued[2], queued[0]]
    assert [state(fresh_db, c) for c in (queued[1], queued[3])] == [(None, team, True)] * 2

    # A resolved conversation frees Ann's slot: the next oldest is hers.
    query(fresh_db, "UPDATE conversation SET status = 'resolved', resolved_at = now() WHERE id = %s", (first,))
    assert wait_for(lambda: state(fresh_db, queued[1])[0] == ann)
    # A raised capacity frees one more.
    query(fresh_db, "UPDATE agent SET capacity = 3 WHERE id = %s", (bob,))
    assert wait_for(lambda: state(fresh_db, queued[3])[0] == bob)
    assert loads(fresh_db) == {ann: 1, bob: 3}
    # Resolved while it waited: it leaves the queue, nobody gets it.
    post(d, "m6", "c6")
    late = conv_of(fresh_db, "m6")
    assert state(fresh_db, late) == (None, team, True)
    query(fresh_db, "UPDATE conversation SET status = 'resolved', resolved_at = now() WHERE id = %s", (late,))
    query(fresh_db, "UPDATE agent SET capacity = 5 WHERE id = %s", (ann,))
    assert wait_for(lambda: state(fresh_db, late) == (None, team, False))
    time.sleep(0.3)
    assert loads(fresh_db) == {ann: 1, bob: 3} and events(fresh_db, late) == []


def test_the_language_of_the_conversation_is_preferred(fresh_db, daemon, plugin_dir):
    d = daemon.start(config(fresh_db, plugin_dir))
    team = add_team(fresh_db, "North", ["site"])
    ann = add_agent(fresh_db, "ann@example.com", "Ann", teams=[team], languages=["en"])
    jo = add_agent(fresh_db, "jo@example.com", "Jo", teams=[team], languages=["en", "pt"])
    post(d, "m1", "kim")
    post(d, "m2", "lou")
    pt, unknown = conv_of(fresh_db, "m1"), conv_of(fresh_db, "m2")
    assert state(fresh_db, pt) == (None, team, True)
    # Triage found the language while it waited ("pt-BR": Jo speaks "pt").
    query(fresh_db, "UPDATE conversation SET language = 'pt-BR' WHERE id = %s", (pt,))
    query(fresh_db, "UPDATE agent SET availability = 'online', availability_changed_at = now()")
    assert wait_for(lambda: state(fresh_db, pt)[0] is not None and state(fresh_db, unknown)[0] is not None)
    # Ann has the lower id and would win every tie; the Portuguese speaker wins this one.
    assert state(fresh_db, pt)[0] == jo
    assert state(fresh_db, unknown)[0] == ann


def test_one_customer_one_owner(fresh_db, daemon, plugin_dir):
    d = daemon.start(config(fresh_db, plugin_dir))
    team = add_team(fresh_db, "North", ["site"])
    ann = add_agent(fresh_db, "ann@example.com", "Ann", teams=[team], availability="online", capacity=2)
    bob = add_agent(fresh_db, "bob@example.com", "Bob", teams=[team], availability="online")
    post(d, "m1", "kim")
    assert state(fresh_db, conv_of(fresh_db, "m1"))[0] == ann
    # Kim's public post is a second conversation: Bob has less work, but it
    # goes to Kim's owner.
    post(d, "p1", "kim", thread="post-1", visibility="public")
    assert state(fresh_db, conv_of(fresh_db, "p1"))[0] == ann
    assert conv_of(fresh_db, "p1") != conv_of(fresh_db, "m1")
    # An owner without room does not keep the customer waiting.
    post(d, "p2", "kim", thread="post-2", visibility="public")
    assert state(fresh_db, conv_of(fresh_db, "p2"))[0] == bob


def test_a_conversation_the_customer_reopens_needs_an_agent_again(fresh_db, daemon, plugin_dir):
    d = daemon.start(config(fresh_db, plugin_dir))
    team = add_team(fresh_db, "North", ["site"])
    ann = add_agent(fresh_db, "ann@example.com", "Ann", teams=[team], availability="online")
    post(d, "m1", "kim")
    c = conv_of(fresh_db, "m1")
    assert state(fresh_db, c)[0] == ann
    # Resolved and let go; the customer writes again within the reopen window.
    query(fresh_db, "UPDATE conversation SET status = 'resolved', resolved_at = now(), assignee_id = NULL "
                    "WHERE id = %s", (c,))
    set_availability(fresh_db, ann, "offline")
    post(d, "m2", "kim")
    assert conv_of(fresh_db, "m2") == c
    assert query(fresh_db, "SELECT status FROM conversation WHERE id = %s", (c,)) == [("open",)]
    assert state(fresh_db, c) == (None, team, True)   # back in the queue
    set_availability(fresh_db, ann, "online")
    assert wait_for(lambda: state(fresh_db, c)[0] == ann)
    assert [k for (k, _, _) in events(fresh_db, c)] == ["assigned", "assigned"]
    # Resolved while still assigned: the reopened conversation stays with its agent.
    query(fresh_db, "UPDATE conversation SET status = 'resolved', resolved_at = now() WHERE id = %s", (c,))
    post(d, "m3", "kim")
    assert state(fresh_db, c) == (ann, team, False)
    assert len(events(fresh_db, c)) == 2


def test_conversations_of_an_agent_away_past_the_grace_period_return_to_the_queue(fresh_db, daemon,
                                                                                  plugin_dir):
    d = daemon.start(config(fresh_db, plugin_dir, grace=2))
    team = add_team(fresh_db, "North", ["site"])
    ann = add_agent(fresh_db, "ann@example.com", "Ann", teams=[team], availability="online")
    bob = add_agent(fresh_db, "bob@example.com", "Bob", teams=[team], availability="offline")
    post(d, "m1", "kim")
    post(d, "m2", "lou")
    c1, c2 = conv_of(fresh_db, "m1"), conv_of(fresh_db, "m2")
    assert state(fresh_db, c1)[0] == ann and state(fresh_db, c2)[0] == ann

    set_availability(fresh_db, ann, "away")
    went = time.monotonic()
    time.sleep(1.0)
    # Within the grace period (a coffee break) nothing moves.
    assert state(fresh_db, c1)[0] == ann and state(fresh_db, c2)[0] == ann
    assert wait_for(lambda: state(fresh_db, c1) == (None, team, True) and
                    state(fresh_db, c2) == (None, team, True))
    assert time.monotonic() - went >= 2.0
    [_, (kind, actor, details)] = events(fresh_db, c1)
    assert (kind, actor, details["from"], details["reason"]) == \
        ("unassigned", "system", ann, "agent_unavailable")
    assert live_events(fresh_db, c1)[-1] == ("conversation.assigned", None, None)

    # Bob comes online and gets both; Ann, back, keeps nothing she was not given again.
    set_availability(fresh_db, bob, "online")
    assert wait_for(lambda: state(fresh_db, c1)[0] == bob and state(fresh_db, c2)[0] == bob)
    # Assigned by hand to an agent who is offline: theirs to keep.
    set_availability(fresh_db, ann, "offline")
    time.sleep(2.1)
    query(fresh_db, "UPDATE conversation SET assignee_id = %s, assigned_at = now() WHERE id = %s", (ann, c1))
    time.sleep(0.5)
    assert state(fresh_db, c1)[0] == ann
    # A disabled agent's conversations return at once.
    query(fresh_db, "UPDATE agent SET disabled_at = now() WHERE id = %s", (bob,))
    assert wait_for(lambda: state(fresh_db, c2) == (None, team, True))


# ---------------------------------------------------------- concurrency


def test_parallel_claims_never_fill_an_agent_beyond_capacity(fresh_db, daemon, plugin_dir):
    """Many transactions serve one queue at once (as several parleyd do):
    every agent ends exactly full, no conversation is assigned twice."""
    d = daemon.start(config(fresh_db, plugin_dir))
    team = add_team(fresh_db, "North", ["site"])
    agents = [add_agent(fresh_db, "a%d@example.com" % i, "A%d" % i, teams=[team], capacity=3)
              for i in range(4)]
    for i in range(30):
        post(d, "m%d" % i, "cust%d" % i)
    assert query(fresh_db, "SELECT count(*) FROM conversation WHERE queued_at IS NOT NULL") == [(30,)]
    d.stop()   # only the racing sessions below serve the queue

    query(fresh_db, "UPDATE agent SET availability = 'online', availability_changed_at = now()")
    start = threading.Barrier(12)
    assigned, errors = [], []

    def serve():
        conn = psycopg2.connect(fresh_db)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                start.wait()
                for _ in range(5):
                    cur.execute("SELECT parley_assignment_drain(%s, 2)", (team,))
                    assigned.append(cur.fetchone()[0])
        except Exception as e:  # reported below
            errors.append(e)
        finally:
            conn.close()

    threads = [threading.Thread(target=serve) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # Claims skipped for a lock may leave room for a while; a last serve fills it.
    query(fresh_db, "SELECT parley_assignment_drain(%s, 100)", (team,))
    assert loads(fresh_db) == {a: 3 for a in agents}
    assert query(fresh_db, "SELECT count(*), count(DISTINCT conversation_id) FROM conversation_event "
                           "WHERE kind = 'assigned'") == [(12, 12)]
    assert query(fresh_db, "SELECT count(*) FROM conversation WHERE queued_at IS NOT NULL "
                           "AND assignee_id IS NULL") == [(18,)]
    assert query(fresh_db, "SELECT count(*) FROM conversation WHERE queued_at IS NOT NULL "
                           "AND assignee_id IS NOT NULL") == [(0,)]


def test_two_daemons_ingesting_at_once_never_over_assign(fresh_db, daemon, plugin_dir):
    one = daemon.start(config(fresh_db, plugin_dir))
    two = daemon.start(config(fresh_db, plugin_dir))
    team = add_team(fresh_db, "North", ["site"])
    agents = [add_agent(fresh_db, "a%d@example.com" % i, "A%d" % i, teams=[team], capacity=4,
                        availability="online") for i in range(3)]
    start = threading.Barrier(8)
    errors = []

    def customers(d, k):
        try:
            start.wait()
            for i in range(5):
                post(d, "m%d-%d" % (k, i), "cust%d-%d" % (k, i))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=customers, args=(one if k % 2 else two, k)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert query(fresh_db, "SELECT count(*) FROM conversation") == [(40,)]
    # Whatever a skipped lock left over, the sweep places; nobody beyond capacity.
    assert wait_for(lambda: sum(loads(fresh_db).values()) == 12)
    assert loads(fresh_db) == {a: 4 for a in agents}
    assert query(fresh_db, "SELECT count(*), count(DISTINCT conversation_id) FROM conversation_event "
                           "WHERE kind = 'assigned'") == [(12, 12)]
    assert query(fresh_db, "SELECT count(*) FROM conversation WHERE assignee_id IS NULL "
                           "AND queued_at IS NOT NULL AND team_id = %s", (team,)) == [(28,)]


# ------------------------------------------------------------ by hand


@pytest.fixture
def desk(fresh_db, daemon, plugin_dir, run_parleyd):
    """Teams North and South own "site", West owns only "shop"; everybody
    offline, so conversations wait in the queue unless someone acts."""
    cfg = config(fresh_db, plugin_dir, channels=("site", "shop"))
    d = daemon.start(cfg)
    t = {name: add_team(fresh_db, name, insts) for name, insts in
         (("North", ["site"]), ("South", ["site"]), ("West", ["shop"]))}
    a = {"kim": add_agent(fresh_db, "kim@example.com", "Kim", teams=[t["North"]]),
         "lee": add_agent(fresh_db, "lee@example.com", "Lee", teams=[t["North"]]),
         "sue": add_agent(fresh_db, "sue@example.com", "Sue", role="supervisor", teams=[t["North"]]),
         "ola": add_agent(fresh_db, "ola@example.com", "Ola", teams=[t["South"]]),
         "wes": add_agent(fresh_db, "wes@example.com", "Wes", role="supervisor", teams=[t["West"]])}
    api = {name: ApiClient(d.url, token=create_token(run_parleyd, cfg, role=role, agent=name + "@example.com",
                                                     name=name))
           for name, role in (("kim", "agent"), ("lee", "agent"), ("sue", "supervisor"),
                              ("ola", "agent"), ("wes", "supervisor"))}
    api["admin"] = ApiClient(d.url, token=create_token(run_parleyd, cfg, role="admin", name="root"))
    post(d, "m1", "cust1")
    conv = conv_of(fresh_db, "m1")
    return {"d": d, "db": fresh_db, "teams": t, "agents": a, "api": api, "conv": conv}


def assign(api, conv, agent_id, **kw):
    return api.post("/api/v1/conversations/%s/assign" % conv, json={"agent_id": agent_id}, **kw)


def audit(dsn, action):
    return query(dsn, "SELECT actor, entity_id, details FROM audit_log WHERE action = %s ORDER BY id", (action,))


def test_assign_take_reassign_and_who_may(desk):
    db, conv, a, api, t = desk["db"], desk["conv"], desk["agents"], desk["api"], desk["teams"]
    # An agent takes a waiting conversation.
    status, _, body = assign(api["kim"], conv, a["kim"])
    assert status == 200, body
    assert (body["assignee_id"], body["team_id"], body["queued_at"]) == (a["kim"], t["North"], None)
    [(kind, actor, details)] = events(db, conv)
    assert (kind, actor, details["from"], details["to"]) == ("assigned", "agent:%d" % a["kim"], None, a["kim"])
    assert live_events(db, conv) == [("conversation.assigned", a["kim"], str(a["kim"]))]
    [(actor, entity, details)] = audit(db, "conversation.assign")
    assert (actor, entity) == ("agent:%d" % a["kim"], conv)
    # (the audit log leaves out what was null)
    assert "assignee_id" not in details["before"] and details["after"]["assignee_id"] == a["kim"]
    # Taking it again changes nothing.
    assert assign(api["kim"], conv, a["kim"])[0] == 200
    assert len(events(db, conv)) == 1

    # An agent cannot take another agent's conversation, nor give one away.
    status, _, body = assign(api["lee"], conv, a["lee"])
    assert (status, body["error"]) == (409, "already_assigned")
    status, _, body = assign(api["kim"], conv, a["lee"])
    assert (status, body["error"]) == (403, "forbidden")
    # A supervisor reassigns; to an agent of another team owning the
    # instance, the conversation moves to that team.
    status, _, body = assign(api["sue"], conv, a["lee"])
    assert status == 200 and body["assignee_id"] == a["lee"]
    status, _, body = assign(api["sue"], conv, a["ola"])
    assert (status, body["assignee_id"], body["team_id"]) == (200, a["ola"], t["South"])
    assert events(db, conv)[-1][2]["from"] == a["lee"]
    status, _, body = assign(api["admin"], conv, a["kim"])
    assert (status, body["team_id"]) == (200, t["North"])
    assert len(audit(db, "conversation.assign")) == 4

    # Only agents of a team owning the conversation's channel: else 422, for
    # unknown and disabled agents alike.
    query(db, "UPDATE agent SET disabled_at = now() WHERE id = %s", (a["lee"],))
    for agent_id in (a["wes"], 999999, a["lee"]):
        status, _, body = assign(api["sue"], conv, agent_id)
        assert (status, body["error"]) == (422, "invalid_field"), agent_id
        assert body["detail"] == "agent_id: no agent of a team that owns this conversation's channel"
    assert state(db, conv)[0] == a["kim"]
    assert len(audit(db, "conversation.assign")) == 4


def test_unassign_and_transfer(desk):
    db, conv, a, api, t = desk["db"], desk["conv"], desk["agents"], desk["api"], desk["teams"]
    assert assign(api["sue"], conv, a["lee"])[0] == 200
    # Only the agent themselves or a supervisor let go.
    status, _, body = api["kim"].post("/api/v1/conversations/%d/unassign" % conv)
    assert (status, body["error"]) == (403, "forbidden")
    status, _, body = api["lee"].post("/api/v1/conversations/%d/unassign" % conv)
    assert status == 200 and body["assignee_id"] is None and body["queued_at"] is not None
    assert body["team_id"] == t["North"]
    assert events(db, conv)[-1][:2] == ("unassigned", "agent:%d" % a["lee"])
    assert live_events(db, conv)[-1] == ("conversation.assigned", None, None)
    [(actor, _, details)] = audit(db, "conversation.unassign")
    assert actor == "agent:%d" % a["lee"] and details["before"]["assignee_id"] == a["lee"]
    # Nobody has it: unassigning again changes nothing.
    assert api["kim"].post("/api/v1/conversations/%d/unassign" % conv)[0] == 200
    assert len(audit(db, "conversation.unassign")) == 1

    # Transfer to South's queue; Ola is online there and gets it at once.
    query(db, "UPDATE agent SET availability = 'online' WHERE id = %s", (a["ola"],))
    status, _, body = api["kim"].post("/api/v1/conversations/%d/transfer" % conv,
                                      json={"team_id": t["South"]})
    assert status == 200, body
    assert (body["team_id"], body["assignee_id"], body["queued_at"]) == (t["South"], a["ola"], None)
    kinds = [(k, actor) for (k, actor, _) in events(db, conv)[-2:]]
    assert kinds == [("transferred", "agent:%d" % a["kim"]), ("assigned", "system")]
    details = events(db, conv)[-2][2]
    assert (details["from_team_id"], details["team_id"]) == (t["North"], t["South"])
    assert len(audit(db, "conversation.transfer")) == 1
    # Ola's now: Kim may not move it; a supervisor may, but not to a team
    # without the channel or to the team it is in.
    status, _, body = api["kim"].post("/api/v1/conversations/%d/transfer" % conv, json={"team_id": t["North"]})
    assert (status, body["error"]) == (403, "forbidden")
    for team in (t["West"], t["South"], 999999):
        status, _, body = api["sue"].post("/api/v1/conversations/%d/transfer" % conv, json={"team_id": team})
        assert (status, body["error"]) == (422, "invalid_field"), team
    status, _, body = api["ola"].post("/api/v1/conversations/%d/transfer" % conv, json={"team_id": t["North"]})
    assert (status, body["team_id"], body["assignee_id"]) == (200, t["North"], None)
    assert len(audit(db, "conversation.transfer")) == 2

    # A resolved conversation is not assigned or transferred.
    query(db, "UPDATE conversation SET status = 'resolved', resolved_at = now() WHERE id = %s", (conv,))
    assert assign(api["sue"], conv, a["kim"])[2]["error"] == "not_open"
    status, _, body = api["sue"].post("/api/v1/conversations/%d/transfer" % conv, json={"team_id": t["South"]})
    assert (status, body["error"]) == (409, "not_open")


def test_other_teams_conversations_do_not_exist_and_requests_are_strict(desk):
    db, conv, a, api, t = desk["db"], desk["conv"], desk["agents"], desk["api"], desk["teams"]
    post(desk["d"], "s1", "shopper", channel="shop")
    shop_conv = conv_of(db, "s1")
    # West sees only "shop": site's conversation is 404 on every route, and
    # North's people cannot reach shop's.
    for path, body in (("assign", {"agent_id": a["wes"]}), ("unassign", None), ("transfer", {"team_id": t["West"]})):
        status, _, resp = api["wes"].post("/api/v1/conversations/%d/%s" % (conv, path), json=body)
        assert (status, resp["error"]) == (404, "not_found"), path
        status, _, resp = api["sue"].post("/api/v1/conversations/%d/%s" % (shop_conv, path), json=body)
        assert (status, resp["error"]) == (404, "not_found"), path
        for bad in ("x1", "0", "99999999", "1%20OR%201=1"):
            status, _, resp = api["admin"].post("/api/v1/conversations/%s/%s" % (bad, path), json=body,
                                                validate_request=False)
            assert status == 404, (bad, path, resp)
    assert assign(api["wes"], shop_conv, a["wes"])[0] == 200

    # Unknown fields, wrong types, oversized numbers and injection strings.
    cases = (({"agent_id": a["kim"], "note": "x"}, 400, "unknown_field"),
             ({"agent_id": "1; DROP TABLE agent"}, 422, "invalid_field"),
             ({"agent_id": 1.5}, 422, "invalid_field"),
             ({"agent_id": -1}, 422, "invalid_field"),
             ({"agent_id": 10 ** 18}, 422, "invalid_field"),
             ({"agent_id": 10 ** 30}, 400, "malformed_json"),   # beyond 64 bits: not read at all
             ({}, 422, "invalid_field"))
    for body, code, error in cases:
        status, _, resp = api["sue"].post("/api/v1/conversations/%d/assign" % conv, json=body,
                                          validate_request=False)
        assert (status, resp["error"]) == (code, error), body
    status, _, resp = api["sue"].post("/api/v1/conversations/%d/unassign?force=1" % conv)
    assert (status, resp["error"]) == (400, "unknown_field")
    status, _, resp = api["sue"].post("/api/v1/conversations/%d/transfer" % conv,
                                      json={"team_id": "' OR 1=1 --"}, validate_request=False)
    assert (status, resp["error"]) == (422, "invalid_field")
    assert query(db, "SELECT count(*) FROM agent") == [(5,)]
    assert state(db, conv) == (None, t["North"], True)
