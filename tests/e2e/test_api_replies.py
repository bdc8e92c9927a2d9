"""Answering customers through the API: replies, internal notes and moves
to private, with the real daemon and the real webhook channel (customers
write through its signed webhook; replies go to its callback URL, a local
server). A reply carries the newest message its author saw: a stale view is
a 409 collision with the new messages, and nothing changes unless forced. A
rule refuses a reply before anything is stored or queued, by name: the
database's own (visibility, one private reply per public message) and the
channel's (Meta's messaging windows, asked of the plugin through
check_send)."""
import time

import pytest

from api_client import ApiClient
from api_replies_world import MOVE_TEXT, World, wait_for
from api_setup import create_token
from parley_testlib import query
from test_meta_channel import FakeGraph, dm, feed, page
from test_meta_channel import config as meta_config
from test_meta_channel import post as meta_post


@pytest.fixture
def callback(fake_http):
    return fake_http(answer=lambda req: {"id": "site-%d" % req.n}, base_path="/cb")


@pytest.fixture
def world(daemon, fresh_db, run_parleyd, callback, plugin_dir):
    return World(daemon, fresh_db, run_parleyd, callback, plugin_dir)


def reply(client, conv, text, last_seen, **extra):
    return client.post("/api/v1/conversations/%s/replies" % conv,
                       json=dict(text=text, last_seen_message_id=last_seen, **extra))


def note(client, conv, text, last_seen, **extra):
    return client.post("/api/v1/conversations/%s/notes" % conv,
                       json=dict(text=text, last_seen_message_id=last_seen, **extra))


# ------------------------------------------------------------------ replies

def test_a_reply_is_queued_sent_and_its_delivery_shows_on_the_message(world):
    conv, m1 = world.customer_says("c-1", "Where is my parcel?", created_at="2026-11-23T10:00:00Z")
    status, _, body = reply(world.ann, conv, "It ships today, sorry for the wait.", m1)
    assert status == 202, body
    msg = body["message"]
    assert body["delivery"] == "queued"
    assert msg["direction"] == "outbound" and msg["visibility"] == "private"
    assert msg["author"] == {"kind": "agent", "agent_id": world.ann_id, "name": "Ann Agent"}
    assert msg["in_reply_to_id"] == m1 and msg["delivery_status"] is None

    # The channel sends it to the brand's callback ...
    assert wait_for(lambda: len(world.sends()) == 1)
    [sent] = world.sends()
    assert sent["text"] == "It ships today, sorry for the wait."
    assert sent["recipient_id"] == "cust-1" and sent["in_reply_to"] == "c-1"
    assert sent["message_id"] == str(msg["id"]) and sent["kind"] == "message"
    # ... and what came of it is on the message.
    assert wait_for(lambda: world.message(msg["id"])["delivery_status"] == "sent")
    assert world.message(msg["id"])["external_id"] == "site-1"

    # Audited as the agent behind the token, and announced live.
    [(actor, agent_id, token_id, details)] = query(
        world.dsn, "SELECT actor, agent_id, token_id, details FROM audit_log "
                   "WHERE action = 'conversation.reply'")
    assert actor == "agent:%d" % world.ann_id and agent_id == world.ann_id and token_id is not None
    assert details["message_id"] == msg["id"]
    assert "message.created" in world.live_kinds(conv)
    assert world.one("SELECT payload ->> 'text' FROM live_event_pending "
                     "WHERE kind = 'message.created' AND payload ->> 'direction' = 'outbound' "
                     "UNION ALL SELECT payload ->> 'text' FROM live_event "
                     "WHERE kind = 'message.created' AND payload ->> 'direction' = 'outbound'") == \
        "It ships today, sorry for the wait."


def test_a_reply_the_platform_refuses_later_is_failed_on_the_message_and_conversation(world):
    conv, m1 = world.customer_says("c-1", "Hello?")
    world.callback.queue((400, {"error": "recipient blocked the brand"}))
    status, _, body = reply(world.ann, conv, "Hi Carla", m1)
    assert status == 202, body
    mid = body["message"]["id"]
    assert wait_for(lambda: world.message(mid)["delivery_status"] == "failed")
    assert "recipient blocked the brand" in world.message(mid)["delivery_detail"]
    error = world.one("SELECT parley_api_conversation_json(c) ->> 'delivery_error' FROM conversation c "
                      "WHERE id = %s", (conv,))
    assert "recipient blocked the brand" in error


def test_a_note_is_internal_and_never_sent(world):
    conv, m1 = world.customer_says("c-1", "My card was charged twice")
    status, _, body = note(world.bob, conv, "Checked with billing: refund on its way.", m1)
    assert status == 201, body
    msg = body["message"]
    assert msg["direction"] == "note" and msg["visibility"] == "private"
    assert msg["author"]["agent_id"] == world.bob_id
    assert world.send_jobs() == 0
    assert world.count("audit_log WHERE action = 'conversation.note' AND agent_id = %s",
                       (world.bob_id,)) == 1
    assert "message.created" in world.live_kinds(conv)
    time.sleep(0.3)
    assert world.sends() == []


# ---------------------------------------------------------------- collision

def test_two_agents_on_one_conversation_collide_and_force_wins(world):
    conv, m1 = world.customer_says("c-1", "Is the shop open on Sunday?")
    # Ann answers first; Bob, who also saw only m1, is stopped.
    status, _, first = reply(world.ann, conv, "Yes, 10 to 4.", m1)
    assert status == 202
    before = world.state()
    status, _, body = reply(world.bob, conv, "No, closed on Sundays.", m1)
    assert status == 409, body
    assert body["error"] == "collision"
    assert [m["id"] for m in body["new_messages"]] == [first["message"]["id"]]
    assert body["new_messages"][0]["author"]["agent_id"] == world.ann_id
    assert world.state() == before
    status, _, body = note(world.bob, conv, "I think we are closed", m1)
    assert status == 409 and body["error"] == "collision"
    assert world.state() == before

    # Her own reply is not news to Ann; the customer's answer is.
    status, _, body = note(world.ann, conv, "Told them 10 to 4", m1)
    assert status == 201, body
    _, m2 = world.customer_says("c-2", "And on holidays?")
    status, _, body = reply(world.ann, conv, "Closed.", first["message"]["id"])
    assert status == 409
    assert [m["id"] for m in body["new_messages"]] == [m2]
    assert body["new_messages"][0]["author"]["kind"] == "customer"

    # Bob has read everything: no collision; or he forces it.
    status, _, body = reply(world.bob, conv, "Closed on holidays.", m2)
    assert status == 202, body
    status, _, body = reply(world.ann, conv, "See above!", m1, force=True)
    assert status == 202, body
    assert wait_for(lambda: len(world.sends()) == 3)


# ------------------------------------------------------------------ rules

def test_a_reply_that_breaks_a_rule_is_refused_by_name_and_nothing_is_queued(world):
    public, p1 = world.customer_says("pub-1", "Your service is awful", visibility="public",
                                     thread="post-1")
    private, q1 = world.customer_says("dm-1", "hello", author="cust-2")
    before = world.state()
    status, _, body = reply(world.ann, public, "Send us your card number", p1, visibility="private")
    assert status == 422 and body["error"] == "visibility_mismatch", body
    assert "move it to private" in body["detail"]
    status, _, body = world.ann.post("/api/v1/conversations/%s/move-to-private" % private,
                                     json={"text": "DM", "last_seen_message_id": q1})
    assert status == 409 and body["error"] == "already_private", body
    assert world.state() == before

    # One private reply per public message.
    status, _, body = world.ann.post("/api/v1/conversations/%s/move-to-private" % public,
                                     json={"text": "Please DM us the details", "last_seen_message_id": p1,
                                           "public_text": ""})
    assert status == 202, body
    after_move = world.state()
    status, _, body = world.ann.post("/api/v1/conversations/%s/move-to-private" % public,
                                     json={"text": "Again?", "last_seen_message_id": p1, "force": True})
    assert status == 409 and body["error"] == "private_reply_used", body
    assert "conversation %d" % body_conversation(world, public) in body["detail"]
    assert world.state() == after_move


def body_conversation(world, public):
    return world.one("SELECT id FROM conversation WHERE origin_conversation_id = %s", (public,))


def test_move_to_private_opens_the_chat_then_says_so_in_public(world):
    public, p1 = world.customer_says("pub-1", "You charged me twice!", visibility="public",
                                     thread="post-7")
    world.callback.queue((200, {"id": "dm-out-1", "thread": "chat-9", "recipient_id": "cust-1-dm"}))
    status, _, body = world.nora.post("/api/v1/conversations/%s/move-to-private" % public,
                                      json={"text": "Please send us your order number here.",
                                            "last_seen_message_id": p1})
    assert status == 202, body
    private = body["conversation"]
    assert private["visibility"] == "private" and private["origin_conversation_id"] == public
    assert body["message"]["conversation_id"] == private["id"]
    assert body["message"]["author"]["agent_id"] == world.nora_id
    # The public note is the channel's move_to_private_text from the node's file.
    assert body["public_message"]["text"] == MOVE_TEXT
    assert body["public_message"]["conversation_id"] == public

    assert wait_for(lambda: len(world.sends()) == 2)
    first, second = world.sends()
    assert first["kind"] == "private_reply" and first["in_reply_to"] == "pub-1"
    assert second["text"] == MOVE_TEXT and second["visibility"] == "public"
    assert wait_for(lambda: world.one("SELECT thread_key FROM conversation WHERE id = %s",
                                      (private["id"],)) == "chat-9")
    assert world.count("conversation_event WHERE conversation_id = %s AND kind = 'moved_to_private'",
                       (public,)) == 1
    assert world.count("audit_log WHERE action = 'conversation.move_to_private' AND agent_id = %s",
                       (world.nora_id,)) == 1


def test_a_closed_messaging_window_is_refused_before_anything_is_stored(daemon, fresh_db, run_parleyd,
                                                                      plugin_dir):
    """Meta's rules are the plugin's: the API asks it (check_send) before it
    stores the reply, so an agent hears "window_closed" at once."""
    hour = 3600 * 1000
    with FakeGraph() as graph:
        cfg = dict(meta_config(fresh_db, graph.url), plugin_dir=plugin_dir)
        d = daemon.start(cfg)
        admin = ApiClient(d.url, token=create_token(run_parleyd, cfg, role="admin"))
        old = int(time.time() * 1000) - 30 * hour
        assert meta_post(d, page(dm("m_old", "Anyone there?", sender="PSID1", ts=old)))[0] == 200
        assert meta_post(d, feed("222_9", "add", "Bad product", sender="55",
                                 created=int(time.time()) - 8 * 86400))[0] == 200
        [(chat, c1)] = query(fresh_db, "SELECT conversation_id, id FROM message WHERE external_id = 'm_old'")
        [(post, c2)] = query(fresh_db, "SELECT m.conversation_id, m.id FROM message m "
                                       "WHERE m.external_id = '222_9'")
        # A macro that would reply there is refused the same way, before any of its actions.
        canned = admin.post("/api/v1/canned-replies", json={"name": "Sorry", "body": "Sorry!"})[2]
        macro = admin.post("/api/v1/macros", json={"name": "Close", "actions": [
            {"type": "set_status", "status": "resolved"},
            {"type": "reply", "canned_reply_id": canned["id"]}]})[2]
        state = ("SELECT (SELECT count(*) FROM message), (SELECT count(*) FROM job), "
                 "(SELECT count(*) FROM conversation), (SELECT count(*) FROM audit_log), "
                 "(SELECT string_agg(status, ',' ORDER BY id) FROM conversation)")
        before = query(fresh_db, state)

        status, _, body = reply(admin, chat, "Sorry for the wait!", c1)
        assert status == 409, body
        assert body["error"] == "window_closed"
        assert "outside the 24-hour messaging window" in body["detail"]
        status, _, body = admin.post("/api/v1/conversations/%s/move-to-private" % post,
                                     json={"text": "Please DM us", "last_seen_message_id": c2})
        assert status == 409 and body["error"] == "private_reply_window_closed", body

        status, _, body = admin.post("/api/v1/conversations/%s/macros/%s/apply" % (chat, macro["id"]),
                                     json={"last_seen_message_id": c1})
        assert status == 409 and body["error"] == "window_closed", body
        assert query(fresh_db, state) == before
        # A public answer to the comment is always allowed, and goes out.
        status, _, body = reply(admin, post, "We are sorry to hear that.", c2)
        assert status == 202, body
        assert wait_for(lambda: len(graph.posts()) == 1)
        assert graph.posts()[0]["path"] == "/v21.0/222_9/comments"


# --------------------------------------------------------- who may do what

def test_another_teams_conversation_does_not_exist_for_the_caller(world, run_parleyd):
    conv, m1 = world.customer_says("c-1", "Hello")
    other, o1 = world.customer_says("s-1", "Hi shop", channel="shop")
    # A token limited to South cannot reach North either, even as admin.
    south_admin = ApiClient(world.d.url, token=create_token(run_parleyd, world.cfg, role="admin",
                                                            teams=[world.south], name="south-admin"))
    before = world.state()
    for path, payload in (("replies", {"text": "x", "last_seen_message_id": m1}),
                          ("notes", {"text": "x", "last_seen_message_id": m1}),
                          ("move-to-private", {"text": "x", "last_seen_message_id": m1})):
        status, _, body = world.sam.post("/api/v1/conversations/%s/%s" % (conv, path), json=payload)
        assert status == 404 and body["error"] == "not_found", (path, body)
        # The same for ids that name nothing, or are not ids at all.
        for bad in ("999999", "0", "-1", "1%27%20OR%201=1", "abc"):
            status, _, body = world.ann.post("/api/v1/conversations/%s/%s" % (bad, path), json=payload)
            assert status == 404, (bad, path, body)
    assert reply(south_admin, conv, "x", m1)[0] == 404
    assert world.state() == before
    # Each team answers its own.
    assert reply(world.sam, other, "Hello from the shop", o1)[0] == 202
    assert reply(world.ann, conv, "Hello from the site", m1)[0] == 202


def test_requests_are_checked_strictly(world):
    conv, m1 = world.customer_says("c-1", "Hello")
    before = world.state()
    path = "/api/v1/conversations/%s/replies" % conv
    cases = [
        ({"text": "hi", "last_seen_message_id": m1, "colour": "red"}, 400, "unknown_field"),
        ({"text": "hi"}, 422, "invalid_field"),                               # no last_seen
        ({"text": "hi", "last_seen_message_id": "7"}, 422, "invalid_field"),  # not a number
        ({"text": "hi", "last_seen_message_id": -1}, 422, "invalid_field"),
        ({"text": "hi", "last_seen_message_id": 1.5}, 422, "invalid_field"),
        ({"text": "hi", "last_seen_message_id": m1, "force": "yes"}, 422, "invalid_field"),
        ({"text": "", "last_seen_message_id": m1}, 422, "invalid_field"),
        ({"text": "   ", "last_seen_message_id": m1}, 422, "invalid_field"),
        ({"text": 5, "last_seen_message_id": m1}, 422, "invalid_field"),
        ({"text": "x" * 10001, "last_seen_message_id": m1}, 422, "invalid_field"),
        ({"text": "hi", "last_seen_message_id": m1, "visibility": "secret"}, 422, "invalid_field"),
    ]
    for payload, code, error in cases:
        status, _, body = world.ann.post(path, json=payload, validate_request=False)
        assert status == code and body["error"] == error, (payload, body)
    status, _, body = world.ann.post(path + "?dry=1", json={"text": "hi", "last_seen_message_id": m1})
    assert status == 400 and body["error"] == "unknown_field"
    status, _, body = world.ann.post("/api/v1/conversations/%s/notes" % conv, validate_request=False,
                                     json={"text": "n", "last_seen_message_id": m1, "visibility": "public"})
    assert status == 400 and body["error"] == "unknown_field"
    status, _, body = world.ann.post("/api/v1/conversations/%s/move-to-private" % conv,
                                     validate_request=False,
                                     json={"text": "m", "last_seen_message_id": m1, "public_text": "x" * 1001})
    assert status == 422 and "public_text" in body["detail"]
    assert world.state() == before
    # Customer text is text: quotes and SQL go out as written.
    text = "Robert'); DROP TABLE message;-- {{agent.name}} \u00e4"
    status, _, body = reply(world.ann, conv, text, m1)
    assert status == 202 and body["message"]["text"] == text
    assert wait_for(lambda: len(world.sends()) == 1) and world.sends()[0]["text"] == text


def test_the_command_line_names_the_author_too(world, run_parleyd):
    conv, _ = world.customer_says("c-1", "Hello")
    code, out, err = run_parleyd(["--reply", str(conv), "--text", "From the shell",
                                  "--agent", "Bob@Example.com"], config=world.cfg)
    assert code == 0, err
    mid = int(out.split("message ")[1])
    assert world.message(mid)["author"] == {"kind": "agent", "agent_id": world.bob_id, "name": "Bob Agent"}
    code, _, err = run_parleyd(["--reply", str(conv), "--text", "x", "--agent", "nobody@example.com"],
                               config=world.cfg)
    assert code == 1 and "no agent with e-mail nobody@example.com" in err
