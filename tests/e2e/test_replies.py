"""Answering customers: "reply to conversation" and "move to private" are core
operations (SQL functions, and parleyd --reply / --move-to-private). The real
daemon ingests through the webhook channel, the job runner sends through it
to a local callback server, and the database shows what happened: the sent
message with the platform's id, its echo folded in, a private conversation
linked to the public one in the same case, and a reply that did not go out
visible on the conversation and notified."""
import json
import os
import threading
import time

import pytest

from parley_testlib import http, query, sign

SECRET = "replies-secret"
MOVE_TEXT = "We sent you a DM."


@pytest.fixture
def callback(fake_http):
    """The brand's side of the webhook channel: records each send and answers
    from callback.queue(...) first, else 200 with an id; its before_answer
    hook runs between a send arriving and its answer."""
    return fake_http(answer=lambda req: {"id": "p-%d" % req.n}, base_path="/cb")


def sent(callback):
    """The bodies of the sends so far, parsed."""
    return [r.json() for r in callback.requests]


def post(d, payload):
    body = json.dumps(payload).encode()
    return http("POST", d.url + "/webhooks/site", body,
                {"Content-Type": "application/json", "X-Parley-Signature": sign(SECRET, body)})


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


def start(daemon, fresh_db, plugin_dir, test_plugin_dir, tmp_path, callback, notify=True):
    both = tmp_path / "plugins"
    both.mkdir()
    os.symlink(os.path.join(plugin_dir, "webhook.so"), both / "webhook.so")
    os.symlink(os.path.join(test_plugin_dir, "notice_probe.so"), both / "notice_probe.so")
    log = str(tmp_path / "notices.jsonl")
    cfg = {"database": {"dsn": fresh_db}, "plugin_dir": str(both),
           "jobs": {"sweep_interval_ms": 100, "backoff_base_ms": 20, "backoff_max_ms": 50,
                    "max_attempts": 3, "notify_delivery_failed": ["ops"] if notify else []},
           "channels": [{"name": "site", "plugin": "webhook", "move_to_private_text": MOVE_TEXT,
                         "config": {"secret": SECRET, "callback_url": callback.url}}],
           "notifiers": [{"name": "ops", "plugin": "notice_probe", "config": {"log_file": log}}]}
    return daemon.start(cfg), cfg, log


def job_states(dsn):
    return query(dsn, "SELECT state, count(*) FROM job WHERE target_kind = 'channel' "
                      "GROUP BY state ORDER BY state")


def test_reply_is_sent_and_its_early_echo_is_folded_in(fresh_db, daemon, plugin_dir, test_plugin_dir,
                                                       tmp_path, callback, run_parleyd):
    d, cfg, _ = start(daemon, fresh_db, plugin_dir, test_plugin_dir, tmp_path, callback)
    assert post(d, {"id": "c1", "author": {"id": "ann", "name": "Ann"}, "text": "Where is my order?",
                    "thread": "chat-1", "created_at": "2026-11-23T10:00:00Z"})[0] == 200
    [(conv,)] = query(fresh_db, "SELECT id FROM conversation")

    # The platform's echo overtakes the send's answer: the echo is stored
    # first under the platform id, then the answer names that id.
    def echo_first(req):
        assert post(d, {"id": "plat-9", "author": {"id": "brand"}, "text": req.json()["text"],
                        "thread": "chat-1", "from_brand": True})[0] == 200
        # ... and the customer answers it at once.
        assert post(d, {"id": "c2", "author": {"id": "ann"}, "text": "Great, thanks",
                        "thread": "chat-1", "in_reply_to": "plat-9"})[0] == 200
    callback.before_answer = echo_first
    callback.queue((200, {"id": "plat-9"}))

    code, out, err = run_parleyd(["--reply", str(conv), "--text", "It ships today.",
                                  "--actor", "agent:kim"], config=cfg)
    assert code == 0, err
    message_id = int(out.split("message ")[1])
    assert wait_for(lambda: job_states(fresh_db) == [("done", 1)])

    [body] = sent(callback)
    assert body["kind"] == "message"
    assert body["text"] == "It ships today."
    assert body["visibility"] == "private"
    assert body["recipient_id"] == "ann"
    assert body["thread"] == "chat-1"
    assert body["in_reply_to"] == "c1"
    assert body["message_id"] == str(message_id)
    assert body["last_inbound_ms"] == 1795428000000  # 2026-11-23T10:00:00Z

    # One message, not two: the echo row was this reply.
    assert query(fresh_db, "SELECT id, direction, external_id, delivery_status, conversation_id "
                           "FROM message WHERE direction = 'outbound'") == \
        [(message_id, "outbound", "plat-9", "sent", conv)]
    # The customer's answer to the echo points at the reply now.
    assert query(fresh_db, "SELECT in_reply_to_id FROM message WHERE external_id = 'c2'") == \
        [(message_id,)]
    assert query(fresh_db, "SELECT first_response_at IS NOT NULL, last_outbound_at IS NOT NULL "
                           "FROM conversation WHERE id = %s", (conv,)) == [(True, True)]
    assert query(fresh_db, "SELECT actor, action FROM audit_log WHERE action = 'conversation.reply'") == \
        [("agent:kim", "conversation.reply")]

    # A later echo of the same message changes nothing.
    callback.before_answer = None
    assert post(d, {"id": "plat-9", "author": {"id": "brand"}, "text": "It ships today.",
                    "thread": "chat-1", "from_brand": True})[0] == 200
    assert query(fresh_db, "SELECT count(*) FROM message WHERE direction = 'outbound'") == [(1,)]


def test_a_reply_that_cannot_be_made_is_refused_and_changes_nothing(fresh_db, daemon, plugin_dir,
                                                                    test_plugin_dir, tmp_path,
                                                                    callback, run_parleyd):
    d, cfg, _ = start(daemon, fresh_db, plugin_dir, test_plugin_dir, tmp_path, callback)
    assert post(d, {"id": "c1", "author": {"id": "ann"}, "text": "Bad service",
                    "visibility": "public", "thread": "post-1"})[0] == 200
    [(conv,)] = query(fresh_db, "SELECT id FROM conversation")
    before = query(fresh_db, "SELECT count(*) FROM message")

    code, _, err = run_parleyd(["--reply", str(conv), "--text", "Send us your card number",
                                "--visibility", "private"], config=cfg)
    assert code == 1 and "move it to private" in err
    code, _, err = run_parleyd(["--reply", "999999", "--text", "hello"], config=cfg)
    assert code == 1 and "does not exist" in err
    code, _, err = run_parleyd(["--reply", str(conv), "--text", "   "], config=cfg)
    assert code == 1 and "empty" in err
    code, _, err = run_parleyd(["--reply", "x1", "--text", "hello"], config=cfg)
    assert code == 1 and "positive whole number" in err
    code, _, err = run_parleyd(["--reply", str(conv)], config=cfg)
    assert code == 2 and "--text" in err

    assert query(fresh_db, "SELECT count(*) FROM message") == before
    assert query(fresh_db, "SELECT count(*) FROM job WHERE target_kind = 'channel'") == [(0,)]
    assert sent(callback) == []


def test_move_to_private_links_the_chat_and_then_says_so_in_public(fresh_db, daemon, plugin_dir,
                                                                   test_plugin_dir, tmp_path,
                                                                   callback, run_parleyd):
    d, cfg, _ = start(daemon, fresh_db, plugin_dir, test_plugin_dir, tmp_path, callback)
    assert post(d, {"id": "cm-1", "author": {"id": "ann-public", "name": "Ann"},
                    "text": "You charged me twice!", "visibility": "public", "thread": "post-7",
                    "created_at": "2026-11-23T09:00:00Z"})[0] == 200
    [(public, case)] = query(fresh_db, "SELECT id, case_id FROM conversation")
    # The private chat and the customer's id in it, as the platform reports them.
    callback.queue((200, {"id": "dm-1", "thread": "chat-77", "recipient_id": "ann-private"}),
                   (200, {"id": "reply-1"}))

    code, out, err = run_parleyd(["--move-to-private", str(public), "--text",
                                  "Please send us your order number here."], config=cfg)
    assert code == 0, err
    private = int(out.split("conversation ")[1])
    assert wait_for(lambda: job_states(fresh_db) == [("done", 2)])

    first, second = sent(callback)
    assert first["kind"] == "private_reply"
    assert first["visibility"] == "private"
    assert first["in_reply_to"] == "cm-1"
    assert first["thread"] == "post-7"
    assert first["recipient_id"] == "ann-public"
    assert first["last_inbound_ms"] == 1795424400000
    # The public note goes only after the private message went out.
    assert second["kind"] == "message"
    assert second["visibility"] == "public"
    assert second["text"] == MOVE_TEXT
    assert second["in_reply_to"] == "cm-1"

    assert query(fresh_db, "SELECT visibility, thread_key, case_id, origin_conversation_id, customer_id "
                           "FROM conversation WHERE id = %s", (private,)) == \
        [("private", "chat-77", case, public,
          query(fresh_db, "SELECT customer_id FROM conversation WHERE id = %s", (public,))[0][0])]
    assert query(fresh_db, "SELECT conversation_id, external_id, delivery_status FROM message "
                           "WHERE direction = 'outbound' ORDER BY id") == \
        [(private, "dm-1", "sent"), (public, "reply-1", "sent")]

    # The customer answers in the private chat under their private id: the
    # same customer, the same private conversation.
    assert post(d, {"id": "dm-2", "author": {"id": "ann-private"}, "text": "Order 55123",
                    "thread": "chat-77"})[0] == 200
    assert query(fresh_db, "SELECT conversation_id FROM message WHERE external_id = 'dm-2'") == \
        [(private,)]
    assert query(fresh_db, "SELECT count(*) FROM customer") == [(1,)]

    # Only a public conversation moves; the private one cannot.
    code, _, err = run_parleyd(["--move-to-private", str(private), "--text", "x"], config=cfg)
    assert code == 1 and "private already" in err


def test_a_reply_that_does_not_go_out_is_visible_and_notified(fresh_db, daemon, plugin_dir,
                                                              test_plugin_dir, tmp_path, callback,
                                                              run_parleyd):
    d, cfg, log = start(daemon, fresh_db, plugin_dir, test_plugin_dir, tmp_path, callback)
    assert post(d, {"id": "cm-1", "author": {"id": "ann", "name": "Ann"}, "text": "Terrible!",
                    "visibility": "public", "thread": "post-7"})[0] == 200
    [(public,)] = query(fresh_db, "SELECT id FROM conversation")
    # The platform refuses the private reply (e.g. one per comment).
    callback.queue((400, {"error": "a private reply was already sent to this comment"}))

    code, out, err = run_parleyd(["--move-to-private", str(public), "--text", "DM us"], config=cfg)
    assert code == 0, err
    private = int(out.split("conversation ")[1])
    assert wait_for(lambda: job_states(fresh_db) == [("dead", 1)])
    assert wait_for(lambda: len(notices(log)) == 1)

    # The private message failed with the platform's reason; the public note
    # was never sent and says why; the conversation shows the reason.
    assert len(sent(callback)) == 1
    rows = query(fresh_db, "SELECT conversation_id, delivery_status, delivery_detail FROM message "
                           "WHERE direction = 'outbound' ORDER BY id")
    assert rows[0][0] == private and rows[0][1] == "failed"
    assert "already sent to this comment" in rows[0][2]
    assert rows[1] == (public, "failed", "not sent: the private message did not go out")
    [(error,)] = query(fresh_db, "SELECT delivery_error FROM conversation WHERE id = %s", (private,))
    assert "already sent to this comment" in error
    notice = [n for n in notices(log) if n["kind"] == "delivery.failed"][0]
    assert notice["conversation_id"] == str(private)
    assert "Ann" in notice["title"]
    assert query(fresh_db, "SELECT count(*) FROM audit_log WHERE action = 'message.delivery_failed'") == [(1,)]

    # A reply that goes out clears the conversation's error.
    assert post(d, {"id": "dm-9", "author": {"id": "ann"}, "text": "hello?",
                    "thread": "chat-x"})[0] == 200
    callback.queue((200, {"id": "ok-1"}))
    code, _, err = run_parleyd(["--reply", str(public), "--text", "Sorry about that."], config=cfg)
    assert code == 0, err
    assert wait_for(lambda: job_states(fresh_db) == [("dead", 1), ("done", 1)])
    assert query(fresh_db, "SELECT delivery_error FROM conversation WHERE id = %s", (public,)) == [(None,)]


def test_move_to_private_text_and_failure_notices_are_validated(fresh_db, plugin_dir, run_parleyd):
    base = {"database": {"dsn": fresh_db}, "plugin_dir": plugin_dir,
            "channels": [{"name": "site", "plugin": "webhook", "config": {"secret": SECRET}}]}
    bad_notifier = dict(base, jobs={"notify_delivery_failed": ["nobody"]})
    code, _, err = run_parleyd(["--check-config"], config=bad_notifier)
    assert code == 2 and "jobs.notify_delivery_failed[0]" in err and "no notifier" in err
    too_long = dict(base, channels=[{"name": "site", "plugin": "webhook", "config": {"secret": SECRET},
                                     "move_to_private_text": "x" * 1001}])
    code, _, err = run_parleyd(["--check-config"], config=too_long)
    assert code == 2 and "channels[0].move_to_private_text" in err
    on_a_notifier = dict(base, notifiers=[{"name": "n", "plugin": "slack", "move_to_private_text": "x",
                                           "config": {"webhook_url": "http://127.0.0.1:1/x"}}])
    code, _, err = run_parleyd(["--check-config"], config=on_a_notifier)
    assert code == 2 and "notifiers[0]" in err and "move_to_private_text" in err


def test_a_send_payload_with_a_bad_kind_or_time_is_dead_with_the_reason(fresh_db, daemon, plugin_dir,
                                                                        test_plugin_dir, tmp_path,
                                                                        callback):
    start(daemon, fresh_db, plugin_dir, test_plugin_dir, tmp_path, callback, notify=False)
    bad_kind = query(fresh_db, "SELECT parley_job_enqueue('channel', 'site', 'send', %s)",
                     (json.dumps({"conversation_id": "1", "visibility": "private", "text": "hi",
                                  "kind": "shout"}),))[0][0]
    bad_time = query(fresh_db, "SELECT parley_job_enqueue('channel', 'site', 'send', %s)",
                     (json.dumps({"conversation_id": "1", "visibility": "private", "text": "hi",
                                  "last_inbound_ms": "yesterday"}),))[0][0]
    assert wait_for(lambda: job_states(fresh_db) == [("dead", 2)])
    reasons = dict(query(fresh_db, "SELECT id, last_error FROM job"))
    assert reasons[bad_kind] == 'invalid payload: kind: must be "message" or "private_reply"'
    assert reasons[bad_time] == "invalid payload: last_inbound_ms: expected an integer, got string"
    assert sent(callback) == []


def test_a_public_answer_to_the_brands_reply_stays_in_its_conversation(fresh_db, daemon, plugin_dir,
                                                                       test_plugin_dir, tmp_path,
                                                                       callback, run_parleyd):
    """X names only the tweet answered, not the thread: the customer's answer
    to the brand's reply (thread = the brand's tweet) continues the
    conversation of the customer's first tweet."""
    d, cfg, _ = start(daemon, fresh_db, plugin_dir, test_plugin_dir, tmp_path, callback)
    assert post(d, {"id": "t-1", "author": {"id": "ann"}, "text": "@brand my router is dead",
                    "visibility": "public", "thread": "t-1"})[0] == 200
    [(conv,)] = query(fresh_db, "SELECT id FROM conversation")
    callback.queue((200, {"id": "b-1"}))
    code, _, err = run_parleyd(["--reply", str(conv), "--text", "Sorry! Did you restart it?"],
                               config=cfg)
    assert code == 0, err
    assert wait_for(lambda: job_states(fresh_db) == [("done", 1)])

    assert post(d, {"id": "t-2", "author": {"id": "ann"}, "text": "yes, twice",
                    "visibility": "public", "thread": "b-1", "in_reply_to": "b-1"})[0] == 200
    assert query(fresh_db, "SELECT conversation_id FROM message WHERE external_id = 't-2'") == [(conv,)]
    assert query(fresh_db, "SELECT event ->> 'thread_id', event ->> 'platform_thread_id' "
                           "FROM inbound_event WHERE external_id = 't-2'") == [("t-1", "b-1")]
    # Someone else answering the brand's tweet: their own conversation on that thread.
    assert post(d, {"id": "t-3", "author": {"id": "bob"}, "text": "same here",
                    "visibility": "public", "thread": "b-1", "in_reply_to": "b-1"})[0] == 200
    assert query(fresh_db, "SELECT c.thread_key, c.id <> %s FROM message m "
                           "JOIN conversation c ON c.id = m.conversation_id WHERE m.external_id = 't-3'",
                 (conv,)) == [("t-1", True)]
    # A reply to an unknown tweet keeps the channel's thread.
    assert post(d, {"id": "t-4", "author": {"id": "cy"}, "text": "hm", "visibility": "public",
                    "thread": "zzz", "in_reply_to": "zzz"})[0] == 200
    assert query(fresh_db, "SELECT c.thread_key FROM message m JOIN conversation c "
                           "ON c.id = m.conversation_id WHERE m.external_id = 't-4'") == [("zzz",)]
    assert query(fresh_db, "SELECT count(*) FROM conversation") == [(3,)]


def test_a_send_left_by_a_dead_runner_is_a_visible_failure(fresh_db, daemon, plugin_dir,
                                                           test_plugin_dir, tmp_path, callback):
    """A send whose lease ran out after its last attempt (the runner died)
    fails visibly like any other: message, conversation, audit, notice."""
    d, cfg, _ = start(daemon, fresh_db, plugin_dir, test_plugin_dir, tmp_path, callback)
    d.stop()
    cfg["jobs"]["enabled"] = False
    d = daemon.start(cfg)
    assert post(d, {"id": "c1", "author": {"id": "ann"}, "text": "Hello?"})[0] == 200
    [(conv,)] = query(fresh_db, "SELECT id FROM conversation")
    [(msg,)] = query(fresh_db, "SELECT parley_reply(%s, 'On it', NULL, 'agent:kim')", (conv,))
    query(fresh_db, "UPDATE job SET max_attempts = 1")
    # A runner claims it with a lease that is over at once, and never finishes.
    assert query(fresh_db, "SELECT claimed FROM parley_job_claim(10, 0, 'gone:1', 10)") == [(True,)]
    opts = json.dumps({"notify_delivery_failed": ["ops"]})
    assert query(fresh_db, "SELECT claimed, operation FROM parley_job_claim(10, 60000, 'next', 10, %s) "
                           "WHERE NOT claimed", (opts,)) == [(False, "send")]
    [(status, detail)] = query(fresh_db, "SELECT delivery_status, delivery_detail FROM message "
                                         "WHERE id = %s", (msg,))
    assert status == "failed" and "lease expired" in detail
    assert "lease expired" in query(fresh_db, "SELECT delivery_error FROM conversation")[0][0]
    assert query(fresh_db, "SELECT target_instance, payload ->> 'kind' FROM job "
                           "WHERE target_kind = 'notifier'") == [("ops", "delivery.failed")]


def test_a_private_chat_with_a_known_customer_joins_the_two_records(fresh_db, daemon, plugin_dir,
                                                                    test_plugin_dir, tmp_path,
                                                                    callback, run_parleyd):
    """The customer wrote privately before (as 'ann-dm'), then commented in
    public (as 'ann-public'). The platform delivers the private reply to
    'ann-dm': one customer, and the answer lands in the moved conversation."""
    d, cfg, _ = start(daemon, fresh_db, plugin_dir, test_plugin_dir, tmp_path, callback)
    assert post(d, {"id": "dm-0", "author": {"id": "ann-dm"}, "text": "Hi", "thread": "chat-5"})[0] == 200
    assert post(d, {"id": "cm-1", "author": {"id": "ann-public", "name": "Ann"},
                    "text": "Still broken!", "visibility": "public", "thread": "post-1"})[0] == 200
    [(public, ann)] = query(fresh_db, "SELECT id, customer_id FROM conversation WHERE visibility = 'public'")
    callback.queue((200, {"id": "dm-1", "thread": "chat-5", "recipient_id": "ann-dm"}),
                   (200, {"id": "note-1"}))
    # The platform is slow to answer the private reply: meanwhile the moved
    # conversation has no chat to answer in.
    answered = threading.Event()
    callback.before_answer = lambda req: answered.wait(10)
    code, out, err = run_parleyd(["--move-to-private", str(public), "--text", "Order number?"],
                                 config=cfg)
    assert code == 0, err
    private = int(out.split("conversation ")[1])
    assert wait_for(lambda: len(sent(callback)) == 1)
    code, _, err = run_parleyd(["--reply", str(private), "--text", "Hello again"], config=cfg)
    assert code == 1 and "no private chat yet" in err
    answered.set()

    assert wait_for(lambda: job_states(fresh_db) == [("done", 2)])
    assert query(fresh_db, "SELECT count(*) FROM customer WHERE merged_into IS NULL") == [(1,)]
    assert query(fresh_db, "SELECT DISTINCT customer_id FROM identity") == [(ann,)]
    assert query(fresh_db, "SELECT actor, action FROM audit_log WHERE action = 'customer.merge'") == \
        [("channel:site", "customer.merge")]
    # Once the chat is open, replies there go out, before the customer said anything in it too.
    code, _, err = run_parleyd(["--reply", str(private), "--text", "Are you there?"], config=cfg)
    assert code == 0, err
    assert wait_for(lambda: job_states(fresh_db) == [("done", 3)])
    assert post(d, {"id": "dm-2", "author": {"id": "ann-dm"}, "text": "It is 5512",
                    "thread": "chat-5"})[0] == 200
    assert query(fresh_db, "SELECT conversation_id FROM message WHERE external_id = 'dm-2'") == \
        [(private,)]
