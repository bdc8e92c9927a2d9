"""Canned replies and macros through the API, with the real daemon and
webhook channel. Who may change what (global: admins; a team's: its
supervisors and admins; another team's: 404), variables filled by the
server in one pass (a customer's text is never read for variables), the
canned reply in the conversation's language, and macros applied all or
nothing: a failing action leaves nothing of the others and names its
index."""
import pytest

from api_replies_world import World, wait_for
from api_setup import add_team
from parley_testlib import query


@pytest.fixture
def callback(fake_http):
    return fake_http(answer=lambda req: {"id": "site-%d" % req.n}, base_path="/cb")


@pytest.fixture
def world(daemon, fresh_db, run_parleyd, callback, plugin_dir):
    return World(daemon, fresh_db, run_parleyd, callback, plugin_dir)


CANNED = "/api/v1/canned-replies"
MACROS = "/api/v1/macros"


def create(client, path, **fields):
    status, _, body = client.post(path, json=fields)
    assert status == 201, body
    return body


# ----------------------------------------------------------- canned replies

def test_who_may_keep_canned_replies(world):
    glob = create(world.admin, CANNED, name="Greeting", body="Hello {{customer.first_name}}!")
    north = create(world.nora, CANNED, name="Refund", body="Your refund is on its way.",
                   team_id=world.north)
    south = create(world.sam, CANNED, name="Shop hours", body="We open at 9.", team_id=world.south)
    assert glob["team_id"] is None and glob["variables"] == ["customer.first_name"]
    assert north["created_by"] == "agent:%d" % world.nora_id

    # Agents read the global ones and their teams'; another team's is 404.
    status, _, page = world.ann.get(CANNED)
    assert status == 200 and [c["id"] for c in page["items"]] == [glob["id"], north["id"]]
    assert world.ann.get("%s/%d" % (CANNED, south["id"]))[0] == 404
    assert world.sam.get("%s/%d" % (CANNED, north["id"]))[0] == 404
    assert [c["id"] for c in world.admin.get(CANNED)[2]["items"]] == [glob["id"], north["id"], south["id"]]

    before = world.state()
    # Agents change nothing; supervisors only their team's; global is for admins.
    for client, method, path, payload, code in (
            (world.ann, "post", CANNED, {"name": "x", "body": "y", "team_id": world.north}, 403),
            (world.ann, "patch", "%s/%d" % (CANNED, north["id"]), {"body": "y"}, 403),
            (world.nora, "patch", "%s/%d" % (CANNED, glob["id"]), {"body": "y"}, 403),
            (world.nora, "post", CANNED, {"name": "x", "body": "y"}, 403),
            (world.nora, "delete", "%s/%d" % (CANNED, glob["id"]), None, 403),
            (world.sam, "patch", "%s/%d" % (CANNED, north["id"]), {"body": "y"}, 404),
            (world.sam, "delete", "%s/%d" % (CANNED, north["id"]), None, 404),
            (world.sam, "post", CANNED, {"name": "x", "body": "y", "team_id": world.north}, 422),
            (world.sam, "post", CANNED, {"name": "x", "body": "y", "team_id": 999}, 422)):
        kw = {"json": payload} if payload is not None else {}
        status, _, body = getattr(client, method)(path, **kw)
        assert status == code, (method, path, payload, body)
    assert world.state() == before

    # A supervisor changes and deletes their team's; each change is audited.
    status, _, body = world.nora.patch("%s/%d" % (CANNED, north["id"]),
                                       json={"body": "Refund sent, {{agent.name}}"})
    assert status == 200 and body["variables"] == ["agent.name"]
    assert world.nora.delete("%s/%d" % (CANNED, north["id"]))[0] == 204
    assert world.nora.get("%s/%d" % (CANNED, north["id"]))[0] == 404
    assert query(world.dsn, "SELECT action, agent_id FROM audit_log WHERE entity = 'canned_reply' "
                            "ORDER BY id") == [
        ("canned_reply.create", None), ("canned_reply.create", world.nora_id),
        ("canned_reply.create", world.sam_id), ("canned_reply.update", world.nora_id),
        ("canned_reply.delete", world.nora_id)]


def test_canned_replies_are_checked_when_saved(world):
    create(world.admin, CANNED, name="Greeting", body="Hello", language="en")
    before = world.state()
    for payload, code, error in (
            ({"name": "Greeting", "body": "Hi again"}, 409, "duplicate"),
            ({"name": "greeting", "body": "Hi again", "language": "en"}, 409, "duplicate"),
            ({"name": "Typo", "body": "Hi {{customer.frist_name}}"}, 422, "unknown_variable"),
            ({"name": "Evil", "body": "{{ customer.name }} {{x}}"}, 422, "unknown_variable"),
            ({"name": "Long", "body": "x" * 10001}, 422, "invalid_field"),
            ({"name": "", "body": "x"}, 422, "invalid_field"),
            ({"name": "n" * 101, "body": "x"}, 422, "invalid_field"),
            ({"name": "Lang", "body": "x", "language": "english please"}, 422, "invalid_field"),
            ({"name": "Extra", "body": "x", "colour": "red"}, 400, "unknown_field"),
            ({"name": "Id", "body": "x", "team_id": "1"}, 422, "invalid_field")):
        status, _, body = world.admin.post(CANNED, json=payload, validate_request=False)
        assert status == code and body["error"] == error, (payload, body)
    assert world.state() == before
    # The same name in another language is another canned reply.
    create(world.admin, CANNED, name="Greeting", body="Hallo", language="de")
    # Filters; anything else in them is refused, not run.
    assert [c["language"] for c in world.admin.get(CANNED, params={"language": "de"})[2]["items"]] == ["de"]
    assert len(world.admin.get(CANNED, params={"team_id": "global"})[2]["items"]) == 2
    assert world.admin.get(CANNED, params={"team_id": str(world.north)})[2]["items"] == []
    for params in ({"team_id": "1 OR 1=1"}, {"language": "en' OR '1'='1"}, {"limit": "0"},
                   {"cursor": "nope"}, {"sort": "name"}):
        status, _, body = world.admin.get(CANNED, params=params)
        assert status == 400, (params, body)
    # Pages follow each other without gaps.
    first = world.admin.get(CANNED, params={"limit": 1})[2]
    second = world.admin.get(CANNED, params={"limit": 1, "cursor": first["next_cursor"]})[2]
    assert second["next_cursor"] is None
    assert [first["items"][0]["language"], second["items"][0]["language"]] == ["en", "de"]


def test_a_rendered_canned_reply_fills_the_variables_as_text(world):
    # The customer calls themselves something that looks like a variable.
    conv, m1 = world.customer_says("c-1", "Hi", name="{{agent.name}} O'Brien")
    case_number = world.one("SELECT sc.case_number FROM conversation c JOIN support_case sc "
                            "ON sc.id = c.case_id WHERE c.id = %s", (conv,))
    canned = create(world.nora, CANNED, team_id=world.north, name="Hello",
                    body="Dear {{customer.first_name}} ({{ customer.name }}), {{agent.name}} here "
                         "about {{case.number}}.")
    german = create(world.nora, CANNED, team_id=world.north, name="hello", language="de",
                    body="Hallo {{customer.first_name}}")
    path = "/api/v1/conversations/%s/canned-replies/%s/render"
    status, _, body = world.ann.post(path % (conv, canned["id"]))
    assert status == 200, body
    assert body == {"text": "Dear {{agent.name}} ({{agent.name}} O'Brien), Ann Agent here about %s."
                            % case_number,
                    "canned_reply_id": canned["id"], "language": "en", "missing": []}
    # In the conversation's language when there is one of that name. (The
    # language is set by triage; here by hand.)
    query(world.dsn, "UPDATE conversation SET language = 'de' WHERE id = %s", (conv,))
    status, _, body = world.ann.post(path % (conv, canned["id"]), json={})
    assert body["canned_reply_id"] == german["id"] and body["text"] == "Hallo {{agent.name}}"
    # A value nobody knows is left empty and named.
    anonymous, _ = world.customer_says("c-2", "Hi", author="cust-9", name=None)
    status, _, body = world.admin.post(path % (anonymous, canned["id"]))
    assert status == 200 and body["missing"] == ["customer.first_name", "customer.name", "agent.name"]
    assert body["text"].startswith("Dear  (), ")
    # A {{...}} that is no variable (saving refuses one) would stay as it is.
    assert query(world.dsn, "SELECT filled, missing FROM parley_canned_fill(%s, %s)",
                 ("{{x}} {{ customer.name }}{{agent.name}}", '{"customer.name": "{{x}}"}')) == \
        [("{{x}} {{x}}", ["agent.name"])]
    # Another team's conversation or canned reply, and bad ids, name nothing.
    other, _ = world.customer_says("s-1", "Hi shop", channel="shop")
    shop = create(world.sam, CANNED, team_id=world.south, name="Shop", body="x")
    for who, c, r in ((world.ann, other, canned["id"]), (world.ann, conv, shop["id"]),
                      (world.sam, conv, canned["id"]), (world.ann, conv, "0"), (world.ann, "x", canned["id"])):
        assert who.post(path % (c, r))[0] == 404, (c, r)
    assert world.ann.post(path % (conv, canned["id"]), json={"x": 1}, validate_request=False)[0] == 400


# ------------------------------------------------------------------- macros

def apply(client, conv, macro, last_seen, **extra):
    return client.post("/api/v1/conversations/%s/macros/%s/apply" % (conv, macro),
                       json=dict(last_seen_message_id=last_seen, **extra))


def test_macros_are_checked_when_saved(world):
    south_canned = create(world.sam, CANNED, team_id=world.south, name="S", body="s")
    north_canned = create(world.nora, CANNED, team_id=world.north, name="N", body="n")
    disabled = world.one("INSERT INTO agent (email, name, role, disabled_at) "
                         "VALUES ('gone@example.com', 'Gone', 'agent', now()) RETURNING id")
    before = world.state()
    for team, actions, code, error in (
            (world.north, [], 422, "invalid_field"),
            (world.north, [{"type": "explode"}], 422, "invalid_action"),
            (world.north, [{"type": "set_status", "status": "done"}], 422, "invalid_action"),
            (world.north, [{"type": "set_status", "status": "open", "x": 1}], 400, "unknown_field"),
            (world.north, [{"type": "reply", "canned_reply_id": south_canned["id"]}], 422, "invalid_action"),
            (None, [{"type": "reply", "canned_reply_id": north_canned["id"]}], 422, "invalid_action"),
            (world.north, [{"type": "assign_agent", "agent_id": disabled}], 422, "invalid_action"),
            (world.north, [{"type": "assign_team", "team_id": 9999}], 422, "invalid_action"),
            (world.north, [{"type": "add_tags", "tags": []}], 422, "invalid_action"),
            (world.north, [{"type": "note", "text": "x" * 10001}], 422, "invalid_action"),
            (world.north, [{"type": "note", "text": "ok"}] * 21, 422, "invalid_field")):
        client = world.admin if team is None else world.nora
        payload = {"name": "M", "actions": actions}
        if team is not None:
            payload["team_id"] = team
        status, _, body = client.post(MACROS, json=payload, validate_request=False)
        assert status == code and body["error"] == error, (actions, body)
    assert world.state() == before
    macro = create(world.nora, MACROS, name="Escalate", team_id=world.north,
                   actions=[{"type": "add_tags", "tags": [" vip ", "vip", "refund"]},
                            {"type": "set_category", "category": None}])
    assert sorted(macro["actions"][0]["tags"]) == ["refund", "vip"]
    # Ownership as for canned replies.
    assert world.ann.post(MACROS, json={"name": "A", "actions": [{"type": "note", "text": "x"}],
                                        "team_id": world.north})[0] == 403
    assert world.sam.get("%s/%d" % (MACROS, macro["id"]))[0] == 404
    assert world.sam.delete("%s/%d" % (MACROS, macro["id"]))[0] == 404
    assert [m["id"] for m in world.ann.get(MACROS)[2]["items"]] == [macro["id"]]
    assert world.sam.get(MACROS)[2]["items"] == []
    status, _, body = world.nora.patch("%s/%d" % (MACROS, macro["id"]),
                                       json={"actions": [{"type": "set_priority", "priority": "high"}]})
    assert status == 200 and body["actions"] == [{"type": "set_priority", "priority": "high"}]
    # A canned reply a macro uses cannot go away under it.
    world.nora.patch("%s/%d" % (MACROS, macro["id"]),
                     json={"actions": [{"type": "reply", "canned_reply_id": north_canned["id"]}]})
    status, _, body = world.nora.delete("%s/%d" % (CANNED, north_canned["id"]))
    assert status == 409 and body["error"] == "in_use"
    assert world.nora.delete("%s/%d" % (MACROS, macro["id"]))[0] == 204
    assert world.nora.delete("%s/%d" % (CANNED, north_canned["id"]))[0] == 204


def test_a_macro_applies_every_action_in_order(world):
    conv, m1 = world.customer_says("c-1", "I was charged twice", name="Carla Customer")
    thanks = create(world.nora, CANNED, team_id=world.north, name="Refund",
                    body="Hi {{customer.first_name}}, your refund is on its way.")
    macro = create(world.nora, MACROS, name="Refund", team_id=world.north, actions=[
        {"type": "reply", "canned_reply_id": thanks["id"]},
        {"type": "note", "text": "Refund issued by macro"},
        {"type": "set_status", "status": "pending"},
        {"type": "set_priority", "priority": "high"},
        {"type": "set_category", "category": "billing"},
        {"type": "add_tags", "tags": ["refund", "vip"]},
        {"type": "remove_tags", "tags": ["vip"]},
        {"type": "assign_agent", "agent_id": world.bob_id}])
    status, _, body = apply(world.ann, conv, macro["id"], m1)
    assert status == 200, body
    c = body["conversation"]
    assert (c["status"], c["priority"], c["category"], c["tags"], c["assignee_id"], c["team_id"]) == \
        ("pending", "high", "billing", ["refund"], world.bob_id, world.north)
    reply, note = body["messages"]
    assert reply["text"] == "Hi Carla, your refund is on its way." and reply["direction"] == "outbound"
    assert note["direction"] == "note" and reply["author"]["agent_id"] == world.ann_id
    assert wait_for(lambda: len(world.sends()) == 1)
    assert world.sends()[0]["text"] == "Hi Carla, your refund is on its way."
    # The timeline, the audit log and the live events have every change.
    assert [k for (k,) in query(world.dsn, "SELECT kind FROM conversation_event WHERE conversation_id = %s "
                                           "ORDER BY id", (conv,))] == \
        ["status_changed", "priority_changed", "category_changed", "tags_changed", "tags_changed",
         "assigned"]
    # The events are the ones PATCH and assign write, by the same functions.
    details = dict(query(world.dsn, "SELECT kind, details FROM conversation_event WHERE conversation_id = %s "
                                    "AND kind IN ('status_changed', 'assigned')", (conv,)))
    assert details == {"status_changed": {"from": "open", "to": "pending"},
                       "assigned": {"from": None, "to": world.bob_id, "team_id": world.north}}
    assert [d for (d,) in query(world.dsn, "SELECT details FROM conversation_event WHERE conversation_id = %s "
                                           "AND kind = 'tags_changed' ORDER BY id", (conv,))] == \
        [{"added": ["refund", "vip"], "removed": [], "tags": ["refund", "vip"]},
         {"added": [], "removed": ["vip"], "tags": ["refund"]}]
    actions = [a for (a,) in query(world.dsn, "SELECT action FROM audit_log WHERE entity = 'conversation' "
                                              "AND agent_id = %s ORDER BY id", (world.ann_id,))]
    assert actions == ["conversation.reply", "conversation.note"] + ["conversation.update"] * 5 + \
        ["conversation.assign", "macro.apply"]
    kinds = world.live_kinds(conv)
    # message.created: the customer's message, the reply and the note.
    assert kinds.count("message.created") == 3 and kinds.count("conversation.updated") == 5
    assert kinds.count("conversation.assigned") == 1


def test_a_failing_action_undoes_the_whole_macro(world):
    conv, m1 = world.customer_says("c-1", "Help", name=None, author="anon-1")
    greet = create(world.admin, CANNED, name="Greet", body="Hello {{customer.first_name}}")
    leaver = world.one("INSERT INTO agent (email, name, role) VALUES ('leaver@example.com', 'Leaver', "
                       "'agent') RETURNING id")
    query(world.dsn, "INSERT INTO agent_team (agent_id, team_id) VALUES (%s, %s)", (leaver, world.north))
    macro = create(world.nora, MACROS, name="Hand over", team_id=world.north, actions=[
        {"type": "set_priority", "priority": "urgent"},
        {"type": "add_tags", "tags": ["handover"]},
        {"type": "note", "text": "Handing over"},
        {"type": "assign_agent", "agent_id": leaver}])
    greeter = create(world.admin, MACROS, name="Greeter", actions=[
        {"type": "set_status", "status": "pending"}, {"type": "reply", "canned_reply_id": greet["id"]}])
    # The agent leaves after the macro was saved: its last action fails.
    query(world.dsn, "UPDATE agent SET disabled_at = now() WHERE id = %s", (leaver,))
    before = world.state()
    status, _, body = apply(world.ann, conv, macro["id"], m1)
    assert status == 422, body
    assert body["action_index"] == 3 and body["error"] == "invalid_field"
    assert body["detail"] == "actions[3] (assign_agent): agent_id: no agent of a team that owns this " \
                             "conversation's channel"
    assert world.state() == before

    # A reply whose variable has no value here fails before anything is sent.
    status, _, body = apply(world.ann, conv, greeter["id"], m1)
    assert status == 422 and body["error"] == "missing_variable" and body["action_index"] == 1, body
    assert world.state() == before and world.sends() == []

    # A stale view is a collision, as for replies; another team's macro or
    # conversation does not exist for the caller.
    _, m2 = world.customer_says("c-2", "Hello??", author="anon-1", name=None)
    shop_macro = create(world.sam, MACROS, name="Shop", team_id=world.south,
                        actions=[{"type": "note", "text": "x"}])
    before = world.state()
    status, _, body = apply(world.ann, conv, macro["id"], m1)
    assert status == 409 and body["error"] == "collision" and body["new_messages"][0]["id"] == m2
    assert apply(world.ann, conv, shop_macro["id"], m2)[0] == 404
    assert apply(world.sam, conv, shop_macro["id"], m2)[0] == 404
    assert apply(world.ann, conv, "1%20OR%201=1", m2)[0] == 404
    status, _, body = world.ann.post("/api/v1/conversations/%s/macros/%s/apply" % (conv, macro["id"]),
                                     json={"last_seen_message_id": m2, "dry_run": True},
                                     validate_request=False)
    assert status == 400 and body["error"] == "unknown_field"
    assert world.state() == before


def test_assignment_actions_follow_the_assign_and_transfer_rules(world):
    conv, m1 = world.customer_says("c-1", "Where is my parcel?")
    night = add_team(world.dsn, "Night", ["site"])
    bob_to_night = create(world.admin, MACROS, name="To night", actions=[
        {"type": "assign_agent", "agent_id": world.bob_id},
        {"type": "set_status", "status": "pending"},
        {"type": "assign_team", "team_id": night}])
    status, _, body = apply(world.ann, conv, bob_to_night["id"], m1)
    assert status == 200, body
    c = body["conversation"]
    # A transfer: the agent lets go and the conversation waits in the new
    # team's queue (nobody of Night is online).
    assert (c["status"], c["assignee_id"], c["team_id"]) == ("pending", None, night)
    assert query(world.dsn, "SELECT kind, details FROM conversation_event WHERE conversation_id = %s "
                            "AND kind IN ('assigned', 'transferred') ORDER BY id", (conv,)) == \
        [("assigned", {"from": None, "to": world.bob_id, "team_id": world.north}),
         ("transferred", {"from": world.bob_id, "to": None, "from_team_id": world.north, "team_id": night})]
    assert [a for (a,) in query(world.dsn, "SELECT action FROM audit_log WHERE entity = 'conversation' "
                                           "AND agent_id = %s ORDER BY id", (world.ann_id,))] == \
        ["conversation.assign", "conversation.update", "conversation.transfer", "macro.apply"]
    assert query(world.dsn, "SELECT queued_at IS NOT NULL FROM conversation WHERE id = %s", (conv,)) == [(True,)]
    # Values the conversation has already (its status, its team) change nothing.
    park = create(world.admin, MACROS, name="Park", actions=[
        {"type": "set_status", "status": "pending"}, {"type": "assign_team", "team_id": night}])
    events, audits = world.count("conversation_event"), world.count("audit_log")
    status, _, body = apply(world.ann, conv, park["id"], m1)
    assert status == 200 and body["conversation"]["team_id"] == night, body
    assert world.count("conversation_event") == events and world.count("audit_log") == audits + 1

    # A team that does not own the channel, or a conversation an earlier
    # action resolved: the transfer's and assign's errors, with the index,
    # and nothing of the macro stays.
    to_shop = create(world.admin, MACROS, name="To shop", actions=[
        {"type": "set_priority", "priority": "urgent"}, {"type": "assign_team", "team_id": world.south}])
    close_then_assign = create(world.admin, MACROS, name="Close and give", actions=[
        {"type": "add_tags", "tags": ["done"]}, {"type": "set_status", "status": "resolved"},
        {"type": "assign_agent", "agent_id": world.ann_id}])
    before = world.state()
    status, _, body = apply(world.ann, conv, to_shop["id"], m1)
    assert (status, body["error"], body["action_index"]) == (422, "invalid_field", 1), body
    assert body["detail"] == "actions[1] (assign_team): team_id: no team that owns this conversation's channel"
    assert world.state() == before
    status, _, body = apply(world.ann, conv, close_then_assign["id"], m1)
    assert (status, body["error"], body["action_index"]) == (409, "not_open", 2), body
    assert body["detail"] == "actions[2] (assign_agent): the conversation is resolved"
    assert world.state() == before
