"""The telegram channel end to end: a real parleyd with a telegram instance
whose api_url points at a local fake Bot API server. Webhook updates in
(secret header, storage, replays, edits), getUpdates polling with a durable
offset, and sendMessage out (requests byte for byte, 429 / 5xx / 403
handling, replies and "move to private" through the core's SQL)."""
import json
import re
import signal
import time

from fake_http import FakeHTTPServer
from parley_testlib import http, query

TOKEN = "123456:AAH-fakeTelegramToken_42"
SECRET = "tg-secret_token-1"


def bot_method(name):
    """The path pattern of a Bot API method."""
    return r"^/bot%s/%s$" % (re.escape(TOKEN), name)


class FakeTelegram(FakeHTTPServer):
    """A Bot API server: records every request; sendMessage answers from a
    script of (status, body dict) and then with success; getUpdates answers
    the updates not yet confirmed (update_id >= offset, as Telegram does),
    else holds the long poll briefly and answers []."""

    def __init__(self, send_script=(), poll_script=()):
        self.updates = []                      # not confirmed yet
        self.next_message_id = 9000
        super().__init__(answer=self.bot_api)
        self.queue(*send_script, path=bot_method("sendMessage"))
        self.queue(*poll_script, path=bot_method("getUpdates"))   # answered first

    def bot_api(self, req):
        """Called with self.lock held; a long poll waits on it."""
        if req.path == "/bot%s/sendMessage" % TOKEN:
            body = req.json()
            self.next_message_id += 1
            return 200, {"ok": True, "result": {
                "message_id": self.next_message_id,
                "from": {"id": 42, "is_bot": True, "first_name": "Acme", "username": "acme_bot"},
                "chat": {"id": body["chat_id"], "type": "private" if body["chat_id"] > 0
                         else "supergroup"},
                "date": int(time.time()), "text": body["text"]}}
        if req.path == "/bot%s/getUpdates" % TOKEN:
            offset = req.json().get("offset", 0)
            # An offset confirms every update below it.
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
            if not self.updates:
                # A short long poll keeps the test quick.
                self.lock.wait(timeout=0.3)
            return 200, {"ok": True, "result": list(self.updates[:100])}
        return 404, {"ok": False, "error_code": 404, "description": "Not Found"}

    def add_updates(self, updates):
        with self.lock:
            self.updates.extend(updates)
            self.lock.notify_all()

    def calls(self, method):
        return self.matching(path=bot_method(method))


def config(dsn, api_url, **tg):
    opts = {"bot_token": TOKEN, "secret_token": SECRET, "api_url": api_url}
    opts.update(tg)
    return {"database": {"dsn": dsn},
            "log": {"level": "info"},
            "jobs": {"backoff_base_ms": 50, "backoff_max_ms": 200, "sweep_interval_ms": 100},
            "channels": [{"name": "tg", "plugin": "telegram", "config": opts}]}


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def deliver(d, update, secret=SECRET, raw=None):
    """POST one update the way Telegram does; (status, body)."""
    body = raw if raw is not None else json.dumps(update).encode()
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    status, _, data = http("POST", d.url + "/webhooks/tg", body, headers)
    return status, data


def private_update(update_id=10001, message_id=1366, user=1111111, text="Hello", **extra):
    msg = {"message_id": message_id,
           "from": {"id": user, "is_bot": False, "first_name": "Test", "last_name": "Lastname",
                    "username": "tester", "language_code": "en"},
           "chat": {"id": user, "first_name": "Test", "type": "private"},
           "date": 1441645532, "text": text}
    msg.update(extra)
    return {"update_id": update_id, "message": msg}


GROUP = -1001234567890


def group_update(update_id=20001, message_id=77, user=222, text="@acme_bot where is my parcel?"):
    return {"update_id": update_id, "message": {
        "message_id": message_id,
        "from": {"id": user, "is_bot": False, "first_name": "Ann"},
        "chat": {"id": GROUP, "title": "Acme users", "type": "supergroup"},
        "date": 1700000000, "text": text}}


def events(dsn):
    return query(dsn, "SELECT dedupe_key, event_type, external_id, author_external_id "
                      "FROM inbound_event ORDER BY id")


def job(dsn, job_id):
    return query(dsn, "SELECT state, attempts, last_error, external_id, run_at > now() "
                      "FROM job WHERE id = %s", (job_id,))[0]


def enqueue_send(dsn, payload):
    return query(dsn, "SELECT parley_job_enqueue('channel', 'tg', 'send', %s)",
                 (json.dumps(payload),))[0][0]


def wait_job(dsn, job_id, states=("done", "dead")):
    assert wait_for(lambda: job(dsn, job_id)[0] in states), job(dsn, job_id)
    return job(dsn, job_id)


# ------------------------------------------------------------------ inbound


def test_webhook_message_is_stored(fresh_db, daemon):
    with FakeTelegram() as tg:
        d = daemon.start(config(fresh_db, tg.url))
        status, body = deliver(d, private_update())
        assert (status, body) == (200, b"{}")
        assert events(fresh_db) == [("u:10001", "message_created", "1111111:1366", "1111111")]
        rows = query(fresh_db, "SELECT m.direction, m.text, m.external_id, m.visibility, "
                               "c.visibility, c.thread_key, c.channel_kind, i.external_id, "
                               "i.handle, i.display_name "
                               "FROM message m JOIN conversation c ON c.id = m.conversation_id "
                               "JOIN identity i ON i.id = m.author_identity_id")
        assert rows == [("inbound", "Hello", "1111111:1366", "private", "private", "1111111",
                         "telegram", "1111111", "tester", "Test Lastname")]
        assert query(fresh_db, "SELECT count(*) FROM customer")[0][0] == 1
        # The update itself is the evidence.
        assert query(fresh_db, "SELECT raw->'message'->>'text' FROM inbound_event")[0][0] == "Hello"


def test_secret_token_is_required_and_checked(fresh_db, daemon):
    with FakeTelegram() as tg:
        d = daemon.start(config(fresh_db, tg.url))
        status, body = deliver(d, private_update(), secret=None)
        assert status == 401 and json.loads(body)["error"] == "missing_secret_token"
        status, body = deliver(d, private_update(), secret="tg-secret_token-2")
        assert status == 401 and json.loads(body)["error"] == "bad_secret_token"
        status, body = deliver(d, private_update(), secret=SECRET + "x")
        assert status == 401
        assert http("GET", d.url + "/webhooks/tg")[0] == 405
        assert events(fresh_db) == []
        assert query(fresh_db, "SELECT count(*) FROM message")[0][0] == 0


def test_reload_takes_a_new_secret_and_refuses_a_mode_change(fresh_db, daemon):
    with FakeTelegram() as tg:
        cfg = config(fresh_db, tg.url)
        d = daemon.start(cfg)
        cfg["channels"][0]["config"]["secret_token"] = "tg-secret_token-2"
        d.rewrite_config(cfg)
        d.signal(signal.SIGHUP)
        assert wait_for(lambda: "reloaded: log level" in d.log_text())
        assert deliver(d, private_update(), secret=SECRET)[0] == 401
        assert deliver(d, private_update(), secret="tg-secret_token-2")[0] == 200
        # Switching between webhooks and polling takes a restart: refused, the old config stays.
        cfg["channels"][0]["config"]["mode"] = "polling"
        cfg["channels"][0]["config"]["secret_token"] = SECRET
        d.rewrite_config(cfg)
        d.signal(signal.SIGHUP)
        assert wait_for(lambda: "reload failed, keeping the old configuration" in d.log_text())
        assert "mode: cannot change on reload: restart parleyd" in d.log_text()
        assert deliver(d, private_update(), secret="tg-secret_token-2")[0] == 200
        assert tg.calls("getUpdates") == []


def test_malformed_is_400_unknown_is_200_and_nothing_stored(fresh_db, daemon):
    with FakeTelegram() as tg:
        d = daemon.start(config(fresh_db, tg.url))
        whole = json.dumps(private_update()).encode()
        status, body = deliver(d, None, raw=whole[:len(whole) // 2])
        assert status == 400 and json.loads(body)["error"] == "invalid_update"
        status, body = deliver(d, {"update_id": 5, "message": {"message_id": 1, "text": "x"}})
        assert status == 400 and "chat.id" in json.loads(body)["detail"]
        # Updates that are not messages, and channel posts by default: 200, nothing stored.
        assert deliver(d, {"update_id": 6, "callback_query": {"id": "q", "data": "x"}})[0] == 200
        assert deliver(d, {"update_id": 7, "channel_post": {
            "message_id": 1, "chat": {"id": -100777, "type": "channel", "title": "News"},
            "date": 1, "text": "hi"}})[0] == 200
        assert events(fresh_db) == []


def test_replay_is_a_no_op(fresh_db, daemon):
    with FakeTelegram() as tg:
        d = daemon.start(config(fresh_db, tg.url))
        assert deliver(d, private_update())[0] == 200
        assert deliver(d, private_update())[0] == 200
        assert len(events(fresh_db)) == 1
        assert query(fresh_db, "SELECT count(*) FROM message")[0][0] == 1


def test_edit_is_a_revision_not_a_new_message(fresh_db, daemon):
    with FakeTelegram() as tg:
        d = daemon.start(config(fresh_db, tg.url))
        assert deliver(d, private_update())[0] == 200
        edited = private_update(update_id=10002, text="Hello (edited)", edit_date=1441645600)
        edited["edited_message"] = edited.pop("message")
        assert deliver(d, edited)[0] == 200
        assert [e[:3] for e in events(fresh_db)] == [
            ("u:10001", "message_created", "1111111:1366"),
            ("u:10002", "message_edited", "1111111:1366")]
        assert query(fresh_db, "SELECT text, edited_text FROM message") == [
            ("Hello", "Hello (edited)")]
        assert query(fresh_db, "SELECT kind, text, extract(epoch FROM at)::bigint "
                               "FROM message_revision") == [("edit", "Hello (edited)", 1441645600)]


def test_group_messages_are_public_in_the_chat_thread(fresh_db, daemon):
    with FakeTelegram() as tg:
        d = daemon.start(config(fresh_db, tg.url))
        assert deliver(d, group_update())[0] == 200
        assert deliver(d, group_update(update_id=20002, message_id=78, user=333, text="me too"))[0] == 200
        rows = query(fresh_db, "SELECT c.visibility, c.thread_key, i.external_id, m.external_id "
                               "FROM message m JOIN conversation c ON c.id = m.conversation_id "
                               "JOIN identity i ON i.id = m.author_identity_id ORDER BY m.id")
        assert rows == [("public", str(GROUP), "222", "%d:77" % GROUP),
                        ("public", str(GROUP), "333", "%d:78" % GROUP)]


# ------------------------------------------------------------------ polling


def test_polling_stores_updates_and_keeps_the_offset(fresh_db, daemon):
    tg = FakeTelegram(poll_script=[(502, {"ok": False, "error_code": 502,
                                          "description": "Bad Gateway"})])
    tg.add_updates([private_update(update_id=500, message_id=1),
                 {"update_id": 501, "callback_query": {"id": "q"}},
                 {"update_id": 502, "edited_message": dict(private_update(
                     update_id=502, message_id=1, text="Hello!", edit_date=1441645600)["message"])}])
    try:
        cfg = config(fresh_db, tg.url, mode="polling", poll_timeout_s=1, poll_retry_ms=100)
        del cfg["channels"][0]["config"]["secret_token"]
        d = daemon.start(cfg)
        assert wait_for(lambda: query(fresh_db, "SELECT value FROM plugin_state "
                                                "WHERE instance = 'tg' AND key = 'offset'")
                        == [("503",)])
        assert [e[:2] for e in events(fresh_db)] == [("u:500", "message_created"),
                                                     ("u:502", "message_edited")]
        assert query(fresh_db, "SELECT text, edited_text FROM message") == [("Hello", "Hello!")]
        # The first poll failed (502) and was retried; then the offset moved on.
        assert wait_for(lambda: any(json.loads(c["body"]).get("offset") == 503
                                    for c in tg.calls("getUpdates")))
        bodies = [json.loads(c["body"]) for c in tg.calls("getUpdates")]
        assert "offset" not in bodies[0] and "offset" not in bodies[1]
        assert bodies[0]["timeout"] == 1 and bodies[0]["allowed_updates"] == [
            "message", "edited_message"]
        # Webhooks are not taken in polling mode.
        assert deliver(d, private_update(update_id=900))[0] == 404
        d.stop()
        assert TOKEN not in d.log_text()
        assert "getUpdates failed: Telegram answered 502: Bad Gateway" in d.log_text()

        # A restart continues from the stored offset.
        seen = len(tg.calls("getUpdates"))
        d2 = daemon.start(cfg)
        assert wait_for(lambda: len(tg.calls("getUpdates")) > seen)
        assert json.loads(tg.calls("getUpdates")[seen]["body"])["offset"] == 503
        tg.add_updates([private_update(update_id=503, message_id=2, text="again")])
        assert wait_for(lambda: len(events(fresh_db)) == 3)
        d2.stop()
    finally:
        tg.close()


def polling_config(dsn, api_url):
    cfg = config(dsn, api_url, mode="polling", poll_timeout_s=1, poll_retry_ms=100)
    del cfg["channels"][0]["config"]["secret_token"]
    return cfg


def stored_offset(dsn):
    return query(dsn, "SELECT value FROM plugin_state WHERE instance = 'tg' AND key = 'offset'")


def test_polling_offset_moves_only_with_stored_updates(fresh_db, daemon):
    with FakeTelegram() as tg:
        d = daemon.start(polling_config(fresh_db, tg.url))
        assert wait_for(lambda: len(tg.calls("getUpdates")) >= 1)
        # Storing fails while plugin_state is away: the events and the offset
        # are one transaction, so neither may be written.
        query(fresh_db, "ALTER TABLE plugin_state RENAME TO plugin_state_away")
        tg.add_updates([private_update(update_id=700, message_id=1)])
        assert wait_for(lambda: "getUpdates page not stored" in d.log_text())
        seen = len(tg.calls("getUpdates"))
        assert wait_for(lambda: len(tg.calls("getUpdates")) >= seen + 1)
        assert events(fresh_db) == []
        # Polled again from the old position: the update is fetched again.
        assert all("offset" not in json.loads(c["body"]) for c in tg.calls("getUpdates"))
        query(fresh_db, "ALTER TABLE plugin_state_away RENAME TO plugin_state")
        assert wait_for(lambda: stored_offset(fresh_db) == [("701",)])
        assert [e[0] for e in events(fresh_db)] == ["u:700"]
        assert wait_for(lambda: json.loads(tg.calls("getUpdates")[-1]["body"]).get("offset") == 701)
        # A page of updates that are all ignored still moves the offset.
        tg.add_updates([{"update_id": 701, "callback_query": {"id": "q", "data": "x"}}])
        assert wait_for(lambda: stored_offset(fresh_db) == [("702",)])
        assert len(events(fresh_db)) == 1


def test_channel_posts_when_configured(fresh_db, daemon):
    with FakeTelegram() as tg:
        d = daemon.start(config(fresh_db, tg.url, channel_posts=True))
        post = {"update_id": 30001, "channel_post": {
            "message_id": 5, "sender_chat": {"id": -1009876543210, "title": "Acme news",
                                             "type": "channel"},
            "chat": {"id": -1009876543210, "title": "Acme news", "type": "channel"},
            "date": 1700000100, "text": "We are live"}}
        assert deliver(d, post)[0] == 200
        assert query(fresh_db, "SELECT m.visibility, m.text, c.thread_key, i.external_id, "
                               "i.display_name FROM message m "
                               "JOIN conversation c ON c.id = m.conversation_id "
                               "JOIN identity i ON i.id = m.author_identity_id") == [
            ("public", "We are live", "-1009876543210", "-1009876543210", "Acme news")]


def test_config_is_checked(fresh_db, run_parleyd, plugin_dir):
    base = config(fresh_db, "http://127.0.0.1:9")
    base["plugin_dir"] = plugin_dir
    cases = [({"secret_token": None}, "secret_token: required in webhook mode"),
             ({"secret_token": "has spaces"}, "secret_token: must be 1 to 256 characters"),
             ({"bot_token": "not a token"}, "bot_token: must be a bot token"),
             ({"mode": "push"}, "mode: must be \"webhook\" or \"polling\""),
             ({"api_url": "ftp://x"}, "api_url: must be an http:// or https:// URL"),
             ({"poll_timeout_s": 301}, "poll_timeout_s: must be between 0 and 300")]
    for change, message in cases:
        cfg = json.loads(json.dumps(base))
        for key, value in change.items():
            if value is None:
                del cfg["channels"][0]["config"][key]
            else:
                cfg["channels"][0]["config"][key] = value
        code, out, err = run_parleyd(["--check-config"], config=cfg)
        assert code == 2, (change, out, err)
        assert "channels[0].config." + message in err, (change, err)
        assert "not a token" not in err and "has spaces" not in err


# ------------------------------------------------------------------ outbound


SEND_PAYLOAD = {"conversation_id": "1", "visibility": "private",
                "text": "Thanks \U0001F600 \"quoted\"", "recipient_id": "1111111",
                "thread_id": "1111111", "in_reply_to": "1111111:1366"}


def test_send_message_request_byte_for_byte(fresh_db, daemon):
    with FakeTelegram() as tg:
        d = daemon.start(config(fresh_db, tg.url))
        job_id = enqueue_send(fresh_db, dict(SEND_PAYLOAD, kind="message", last_inbound_ms=1))
        state, attempts, error, external_id, _ = wait_job(fresh_db, job_id)
        assert (state, attempts, error, external_id) == ("done", 1, None, "1111111:9001")
        [req] = tg.calls("sendMessage")
        assert req["headers"]["Content-Type"] == "application/json"
        assert req["body"] == ('{"chat_id":1111111,"text":"Thanks \U0001F600 \\"quoted\\"",'
                               '"reply_parameters":{"message_id":1366,'
                               '"allow_sending_without_reply":true}}').encode()
        # No messaging window on Telegram: an old last_inbound_ms is no refusal.
        d.stop()
        assert TOKEN not in d.log_text()


def test_rate_limit_retries_after_retry_after(fresh_db, daemon):
    with FakeTelegram(send_script=[(429, {"ok": False, "error_code": 429,
                                          "description": "Too Many Requests: retry after 1",
                                          "parameters": {"retry_after": 1}})]) as tg:
        d = daemon.start(config(fresh_db, tg.url))
        job_id = enqueue_send(fresh_db, SEND_PAYLOAD)
        assert wait_for(lambda: len(tg.calls("sendMessage")) == 1)
        # Back in the queue, not before Telegram's retry_after.
        assert wait_for(lambda: job(fresh_db, job_id)[2] is not None)
        state, attempts, error, _, later = job(fresh_db, job_id)
        # Telegram named the wait: a deferral, no attempt used up.
        assert (state, attempts) == ("queued", 0)
        assert error == "Telegram rate limit (429): Too Many Requests: retry after 1"
        assert later
        state, attempts, error, external_id, _ = wait_job(fresh_db, job_id)
        assert (state, attempts) == ("done", 1)
        first, second = tg.calls("sendMessage")
        assert first["body"] == second["body"]
        assert second["at"] - first["at"] >= 0.9


def test_server_error_is_retried(fresh_db, daemon):
    with FakeTelegram(send_script=[(502, {"ok": False, "error_code": 502,
                                          "description": "Bad Gateway"})] * 2) as tg:
        d = daemon.start(config(fresh_db, tg.url))
        job_id = enqueue_send(fresh_db, SEND_PAYLOAD)
        state, attempts, error, _, _ = wait_job(fresh_db, job_id)
        assert (state, attempts) == ("done", 3)
        assert len(tg.calls("sendMessage")) == 3


def test_blocked_bot_fails_with_telegrams_description(fresh_db, daemon):
    with FakeTelegram(send_script=[(403, {"ok": False, "error_code": 403,
                                          "description": "Forbidden: bot was blocked by the user"})]) as tg:
        d = daemon.start(config(fresh_db, tg.url))
        job_id = enqueue_send(fresh_db, SEND_PAYLOAD)
        state, attempts, error, _, _ = wait_job(fresh_db, job_id)
        assert (state, attempts, error) == (
            "dead", 1, "Telegram answered 403: Forbidden: bot was blocked by the user")
        assert len(tg.calls("sendMessage")) == 1
        d.stop()
        assert TOKEN not in d.log_text()


def test_unreachable_api_is_retried_without_leaking_the_token(fresh_db, daemon):
    tg = FakeTelegram()
    dead_url = tg.url
    tg.close()   # nothing listens there now
    d = daemon.start(config(fresh_db, dead_url))
    job_id = enqueue_send(fresh_db, SEND_PAYLOAD)
    assert wait_for(lambda: job(fresh_db, job_id)[2] is not None)
    state, _, error, _, _ = job(fresh_db, job_id)
    assert state in ("queued", "running", "dead")
    assert error.startswith("sendMessage failed: ")
    assert TOKEN not in error
    d.stop()
    assert TOKEN not in d.log_text()


# ------------------------------------------------------------ the full loop


def test_reply_through_the_core_answers_the_customers_message(fresh_db, daemon):
    with FakeTelegram() as tg:
        d = daemon.start(config(fresh_db, tg.url))
        assert deliver(d, private_update())[0] == 200
        [(conv,)] = query(fresh_db, "SELECT id FROM conversation")
        [(msg,)] = query(fresh_db, "SELECT parley_reply(%s, %s)", (conv, "We are on it"))
        assert wait_for(lambda: query(fresh_db, "SELECT delivery_status FROM message WHERE id = %s",
                                      (msg,)) == [("sent",)])
        [req] = tg.calls("sendMessage")
        assert json.loads(req["body"]) == {
            "chat_id": 1111111, "text": "We are on it",
            "reply_parameters": {"message_id": 1366, "allow_sending_without_reply": True}}
        assert query(fresh_db, "SELECT direction, external_id FROM message WHERE id = %s",
                     (msg,)) == [("outbound", "1111111:9001")]


def test_move_to_private_opens_the_private_chat(fresh_db, daemon):
    with FakeTelegram() as tg:
        d = daemon.start(config(fresh_db, tg.url))
        assert deliver(d, group_update())[0] == 200
        [(public,)] = query(fresh_db, "SELECT id FROM conversation")
        [(private,)] = query(fresh_db, "SELECT parley_move_to_private(%s, %s, %s)",
                             (public, "Could you send me your order number?",
                              "We have sent you a private message"))
        assert wait_for(lambda: len(tg.calls("sendMessage")) == 2)
        first, second = [json.loads(c["body"]) for c in tg.calls("sendMessage")]
        # The private message goes to the author's own chat, not as a reply.
        assert first == {"chat_id": 222, "text": "Could you send me your order number?"}
        # Then the public note answers the group message.
        assert second == {"chat_id": GROUP, "text": "We have sent you a private message",
                          "reply_parameters": {"message_id": 77,
                                               "allow_sending_without_reply": True}}
        assert wait_for(lambda: query(fresh_db, "SELECT thread_key FROM conversation WHERE id = %s",
                                      (private,)) == [("222",)])
        # The customer answers in the private chat: it lands in the new conversation.
        assert deliver(d, private_update(update_id=20010, message_id=5, user=222,
                                         text="Order 5512"))[0] == 200
        assert query(fresh_db, "SELECT conversation_id FROM message WHERE external_id = '222:5'") \
            == [(private,)]


def test_move_to_private_refused_by_telegram(fresh_db, daemon):
    with FakeTelegram(send_script=[(403, {
        "ok": False, "error_code": 403,
        "description": "Forbidden: bot can't initiate conversation with a user"})]) as tg:
        d = daemon.start(config(fresh_db, tg.url))
        assert deliver(d, group_update())[0] == 200
        [(public,)] = query(fresh_db, "SELECT id FROM conversation")
        [(private,)] = query(fresh_db, "SELECT parley_move_to_private(%s, %s, %s)",
                             (public, "Hello in private", None))
        [(job_id,)] = query(fresh_db, "SELECT id FROM job WHERE target_kind = 'channel'")
        state, attempts, error, _, _ = wait_job(fresh_db, job_id)
        assert (state, attempts, error) == (
            "dead", 1, "Telegram answered 403: Forbidden: bot can't initiate conversation with a user")
        assert query(fresh_db, "SELECT thread_key FROM conversation WHERE id = %s",
                     (private,)) == [(None,)]
