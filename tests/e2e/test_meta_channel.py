"""The meta channel end to end: Meta's webhooks (signed with the app secret)
go into PostgreSQL through the real daemon, and sends go to a local server
that answers the way the Graph API does."""
import hashlib
import hmac
import json
import signal
import time

from fake_http import FakeHTTPServer, hang
from parley_testlib import http, query, run_parleyd

APP_SECRET = "meta-app-secret-for-tests"
VERIFY_TOKEN = "meatyhamhock"
PAGE = "111"
PAGE_TOKEN = "EAAPageToken111xyz"
IG = "17841400000000000"
IG_TOKEN = "IGQVJIgToken"
WA_NUMBER = "106540352242922"
WA_TOKEN = "EAAWhatsAppToken"
HOUR_MS = 3600 * 1000
TOKENS = (PAGE_TOKEN, IG_TOKEN, WA_TOKEN, APP_SECRET, VERIFY_TOKEN)


class FakeGraph(FakeHTTPServer):
    """Records every request; answers from a script of (status, body dict or
    text, headers) or hang(seconds), then like the Graph API does on success."""

    def __init__(self, script=()):
        super().__init__(answer=self.success, script=script)

    @staticmethod
    def success(req):
        n = req.n
        if req.path.endswith("/comments") or req.path.endswith("/replies"):
            return {"id": "reply_%d" % n}
        payload = req.json()
        if payload.get("messaging_product") == "whatsapp":
            to = payload.get("to") or payload.get("recipient")
            return {"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}],
                    "messages": [{"id": "wamid.OUT%d" % n}]}
        recipient = payload["recipient"].get("id", "PSID_FROM_COMMENT")
        return {"recipient_id": recipient, "message_id": "m_out_%d" % n}

    def posts(self):
        """The requests so far; each reads as a dict too (r["path"], r["body"])."""
        return self.requests


def config(dsn, graph_url, **extra):
    opts = {"app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN, "graph_url": graph_url,
            "graph_version": "v21.0", "timeout_ms": 3000,
            "pages": [{"id": PAGE, "access_token": PAGE_TOKEN}],
            "instagram_accounts": [{"id": IG, "access_token": IG_TOKEN}],
            "whatsapp_numbers": [{"phone_number_id": WA_NUMBER, "access_token": WA_TOKEN}]}
    opts.update(extra)
    return {"database": {"dsn": dsn}, "log": {"level": "debug"},
            "jobs": {"backoff_base_ms": 50, "backoff_max_ms": 200, "sweep_interval_ms": 100},
            "channels": [{"name": "meta", "plugin": "meta", "config": opts}]}


def signature(body):
    return "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()


def post(d, body, sig=None):
    """POST raw bytes (a dict is serialized the way Meta does: ASCII with
    \\u escapes), signed unless sig is False."""
    if not isinstance(body, bytes):
        body = json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode()
    headers = {"Content-Type": "application/json"}
    if sig is not False:
        headers["X-Hub-Signature-256"] = sig or signature(body)
    return http("POST", d.url + "/webhooks/meta", body, headers)


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def now_ms():
    return int(time.time() * 1000)


def dm(mid, text, sender="9", ts=None, **message):
    m = {"mid": mid, "text": text}
    m.update(message)
    return {"sender": {"id": sender}, "recipient": {"id": PAGE},
            "timestamp": ts or now_ms(), "message": m}


def page(*messaging):
    return {"object": "page", "entry": [{"id": PAGE, "time": now_ms(), "messaging": list(messaging)}]}


def feed(comment_id, verb, message=None, sender="987654321", created=None, post_id=PAGE + "_222"):
    value = {"from": {"id": sender, "name": "Ann"}, "post_id": post_id, "comment_id": comment_id,
             "parent_id": post_id, "created_time": created or int(time.time()),
             "item": "comment", "verb": verb}
    if message is not None:
        value["message"] = message
    return {"object": "page",
            "entry": [{"id": PAGE, "time": now_ms(), "changes": [{"field": "feed", "value": value}]}]}


def count(dsn, table):
    return query(dsn, "SELECT count(*) FROM %s" % table)[0][0]


def job(dsn, job_id):
    return query(dsn, "SELECT state, attempts, last_error, run_at > now() + interval '50 seconds' "
                      "FROM job WHERE id = %s", (job_id,))[0]


def enqueue(dsn, payload, max_attempts=None):
    return query(dsn, "SELECT parley_job_enqueue('channel', 'meta', 'send', %s::jsonb, "
                      "NULL, NULL, now(), %s)", (json.dumps(payload), max_attempts))[0][0]


def send_payload(thread, text="Thanks, we are on it", hours_ago=1, **extra):
    p = {"conversation_id": "1", "visibility": "private", "text": text, "recipient_id": "9",
         "thread_id": thread, "kind": "message",
         "last_inbound_ms": now_ms() - int(hours_ago * HOUR_MS)}
    p.update(extra)
    return p


def assert_no_secrets(d):
    d.stop()
    log = d.log_text()
    for token in TOKENS:
        assert token not in log


def start(daemon, dsn, graph, **extra):
    d = daemon.start(config(dsn, graph.url, **extra))
    d.dsn = dsn
    return d


# ---------------------------------------------------------------- config

def test_config_is_checked_and_tokens_never_echoed(tmp_path, parleyd, plugin_dir, fresh_db):
    cfg = config(fresh_db, "ftp://graph.example",
                 pages=[{"id": "1/2", "access_token": PAGE_TOKEN}], graph_version="21",
                 whatsapp_template={"language": "en_US"})
    cfg["plugin_dir"] = plugin_dir
    rc, out, err = run_parleyd(parleyd, ["--check-config"], config=cfg, workdir=tmp_path)
    assert rc == 2
    assert "channels[0].config.graph_url: must be an http:// or https:// URL" in err
    for token in TOKENS:
        assert token not in out + err
    # The core refuses a bad URL before the plugin checks the rest.
    cfg["channels"][0]["config"]["graph_url"] = "http://127.0.0.1:9"
    rc, out, err = run_parleyd(parleyd, ["--check-config"], config=cfg, workdir=tmp_path)
    assert rc == 2
    assert "channels[0].config.graph_version: must look like v21.0" in err
    assert "channels[0].config.pages: [0].id must be a Meta id" in err
    for token in TOKENS:
        assert token not in out + err
    del cfg["channels"][0]["config"]["app_secret"]
    rc, out, err = run_parleyd(parleyd, ["--check-config"], config=cfg, workdir=tmp_path)
    assert rc == 2 and "app_secret" in err


# ---------------------------------------------------------------- inbound

def test_verification_handshake(fresh_db, daemon):
    with FakeGraph() as graph:
        d = start(daemon, fresh_db, graph)
        base = d.url + "/webhooks/meta?hub.mode=subscribe&hub.verify_token=%s&hub.challenge=%s"
        status, headers, body = http("GET", base % (VERIFY_TOKEN, "1158201444"))
        assert (status, body) == (200, b"1158201444")
        assert headers["content-type"].startswith("text/plain")
        # Byte for byte, never parsed as a number.
        assert http("GET", base % (VERIFY_TOKEN, "007%2B1"))[2] == b"007+1"
        assert http("GET", base % ("wrong", "1158201444"))[0] == 403
        assert http("GET", d.url + "/webhooks/meta?hub.verify_token=%s&hub.challenge=1"
                    % VERIFY_TOKEN)[0] == 400
        assert_no_secrets(d)


def test_signed_message_is_stored_and_bad_signatures_store_nothing(fresh_db, daemon):
    with FakeGraph() as graph:
        d = start(daemon, fresh_db, graph)
        # As Meta sends it: non-ASCII escaped, '/' escaped; the HMAC is over these bytes.
        escaped = (b'{"object":"page","entry":[{"id":"111","time":1700000000000,"messaging":[{"sender":'
                   b'{"id":"9"},"recipient":{"id":"111"},"timestamp":1700000000000,"message":{"mid":"m_1",'
                   b'"text":"\\u00e4\\u00f6\\u00e5 \\ud83d\\ude00 https:\\/\\/x"}}]}]}')
        reserialized = json.dumps(json.loads(escaped), separators=(",", ":"),
                                  ensure_ascii=False).encode()
        assert reserialized != escaped
        # A re-serialized body with the original's signature, no signature, a wrong one.
        assert post(d, reserialized, signature(escaped))[0] == 401
        assert post(d, escaped, sig=False)[0] == 401
        assert post(d, escaped, "sha256=" + "0" * 64)[0] == 401
        assert post(d, escaped, signature(escaped).replace("sha256=", "sha1="))[0] == 401
        # Signed but truncated: 400.
        status, _, body = post(d, escaped[:-5])
        assert status == 400 and json.loads(body)["error"] == "invalid_body"
        assert count(fresh_db, "inbound_event") == 0
        assert count(fresh_db, "message") == 0

        status, _, body = post(d, escaped)
        assert status == 200, body
        assert json.loads(body) == {"accepted": 1}
        [(key, etype, ext, author, event)] = query(
            fresh_db, "SELECT dedupe_key, event_type, external_id, author_external_id, event "
                      "FROM inbound_event")
        assert (key, etype, ext, author) == ("mid:m_1", "message_created", "m_1", "9")
        assert event["thread_id"] == "messenger:111:9"
        [(direction, text, vis, thread)] = query(
            fresh_db, "SELECT m.direction, m.text, m.visibility, c.thread_key FROM message m "
                      "JOIN conversation c ON c.id = m.conversation_id")
        assert (direction, vis, thread) == ("inbound", "private", "messenger:111:9")
        assert text == "\u00e4\u00f6\u00e5 \U0001F600 https://x"
        assert count(fresh_db, "customer") == 1

        # A replay is a no-op.
        assert post(d, escaped)[0] == 200
        assert count(fresh_db, "inbound_event") == 1
        assert count(fresh_db, "message") == 1
        assert_no_secrets(d)


def test_echo_edit_and_unsend(fresh_db, daemon):
    with FakeGraph() as graph:
        d = start(daemon, fresh_db, graph)
        assert post(d, page(dm("m_1", "Where is my parcel?")))[0] == 200
        # The Page's own message (sent from Meta's inbox): outbound, not a customer's.
        echo = {"sender": {"id": PAGE}, "recipient": {"id": "9"}, "timestamp": now_ms(),
                "message": {"is_echo": True, "app_id": 42, "mid": "m_echo", "text": "On its way"}}
        assert post(d, page(echo))[0] == 200
        rows = query(fresh_db, "SELECT external_id, direction, author_identity_id IS NULL FROM message "
                               "ORDER BY id")
        assert rows == [("m_1", "inbound", False), ("m_echo", "outbound", True)]
        assert count(fresh_db, "customer") == 1
        assert count(fresh_db, "identity") == 1

        edit = {"sender": {"id": "9"}, "recipient": {"id": PAGE}, "timestamp": now_ms(),
                "message_edit": {"mid": "m_1", "text": "Where is my parcel #123?", "num_edit": 1}}
        assert post(d, page(edit))[0] == 200
        assert query(fresh_db, "SELECT kind, text FROM message_revision") == \
            [("edit", "Where is my parcel #123?")]
        assert query(fresh_db, "SELECT text, edited_text FROM message WHERE external_id = 'm_1'") == \
            [("Where is my parcel?", "Where is my parcel #123?")]

        # Instagram unsend: deleted, text kept as evidence.
        ig = lambda *m: {"object": "instagram",
                         "entry": [{"id": IG, "time": now_ms(), "messaging": list(m)}]}
        first = {"sender": {"id": "55"}, "recipient": {"id": IG}, "timestamp": now_ms(),
                 "message": {"mid": "ig_1", "text": "oops"}}
        gone = {"sender": {"id": "55"}, "recipient": {"id": IG}, "timestamp": now_ms(),
                "message": {"mid": "ig_1", "is_deleted": True}}
        assert post(d, ig(first))[0] == 200
        assert post(d, ig(gone))[0] == 200
        assert query(fresh_db, "SELECT text, deleted_at IS NOT NULL FROM message "
                               "WHERE external_id = 'ig_1'") == [("oops", True)]
        assert query(fresh_db, "SELECT thread_key FROM conversation c JOIN message m "
                               "ON m.conversation_id = c.id WHERE m.external_id = 'ig_1'") == \
            [("instagram:%s:55" % IG,)]


def test_batch_of_comments_whatsapp_and_unknowns(fresh_db, daemon):
    with FakeGraph() as graph:
        d = start(daemon, fresh_db, graph)
        t = int(time.time())
        body = {"object": "page", "entry": [
            {"id": PAGE, "time": now_ms(), "changes": [
                {"field": "feed", "value": {"from": {"id": "987", "name": "Ann"}, "post_id": "111_222",
                                            "comment_id": "222_1", "parent_id": "111_222",
                                            "created_time": t, "item": "comment", "verb": "add",
                                            "message": "Is this in stock?"}},
                {"field": "feed", "value": {"from": {"id": PAGE, "name": "Shop"}, "post_id": "111_222",
                                            "comment_id": "222_2", "parent_id": "222_1",
                                            "created_time": t + 1, "item": "comment", "verb": "add",
                                            "message": "Yes!"}},
                {"field": "feed", "value": {"from": {"id": "987"}, "post_id": "111_222",
                                            "item": "reaction", "verb": "add", "created_time": t}},
                {"field": "ratings", "value": {"x": 1}}]},
            {"id": "999", "time": now_ms(), "messaging": [dm("m_other", "other page", sender="8")]}]}
        status, _, answer = post(d, body)
        assert status == 200 and json.loads(answer) == {"accepted": 3}
        rows = query(fresh_db, "SELECT m.external_id, m.direction, m.visibility, c.thread_key "
                               "FROM message m LEFT JOIN conversation c ON c.id = m.conversation_id "
                               "ORDER BY m.id")
        assert rows[0] == ("222_1", "inbound", "public", "facebook:111:111_222")
        # The Page's own comment is outbound in the same thread.
        assert rows[1][:3] == ("222_2", "outbound", "public")
        assert rows[2] == ("m_other", "inbound", "private", "messenger:999:8")

        # Comment edited then removed: a revision, then deleted with its text kept.
        assert post(d, feed("222_1", "edited", "Is this in stock in blue?", sender="987",
                            created=t + 5))[0] == 200
        assert post(d, feed("222_1", "remove", sender="987", created=t + 9))[0] == 200
        assert query(fresh_db, "SELECT text, edited_text, deleted_at IS NOT NULL FROM message "
                               "WHERE external_id = '222_1'") == \
            [("Is this in stock?", "Is this in stock in blue?", True)]

        # WhatsApp: a message without a phone number, then statuses out of order.
        wa = {"object": "whatsapp_business_account", "entry": [{"id": "1023", "changes": [{
            "field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550783881", "phone_number_id": WA_NUMBER},
                "contacts": [{"profile": {"name": "Kim", "username": "kim.w"},
                              "user_id": "US.13491208655302741918"}],
                "messages": [{"from_user_id": "US.13491208655302741918", "id": "wamid.IN1",
                              "timestamp": str(t), "type": "text", "text": {"body": "hola"}}]}}]}]}
        assert post(d, wa)[0] == 200
        assert query(fresh_db, "SELECT i.external_id, i.handle, c.thread_key FROM message m "
                               "JOIN identity i ON i.id = m.author_identity_id "
                               "JOIN conversation c ON c.id = m.conversation_id "
                               "WHERE m.external_id = 'wamid.IN1'") == \
            [("US.13491208655302741918", "kim.w", "whatsapp:%s:US.13491208655302741918" % WA_NUMBER)]

        # Dashboard test shape and an unknown object: 200, nothing stored.
        before = count(fresh_db, "inbound_event")
        assert post(d, {"field": "messages", "value": {"x": 1}})[0] == 200
        assert post(d, {"object": "permissions", "entry": [{"id": "1", "time": 1}]})[0] == 200
        # A top-level array is not a notification.
        assert post(d, b'[{"object":"page","entry":[]}]')[0] == 400
        assert count(fresh_db, "inbound_event") == before
        d.stop()
        assert "dashboard test notification for field messages" in d.log_text()


def test_whatsapp_statuses_arrive_out_of_order(fresh_db, daemon):
    with FakeGraph() as graph:
        d = start(daemon, fresh_db, graph)
        # Our outbound message is known by its wamid once the send is done.
        jid = enqueue(fresh_db, send_payload("whatsapp:%s:16505551234" % WA_NUMBER))
        assert wait_for(lambda: job(fresh_db, jid)[0] == "done")

        def statuses(*items):
            return {"object": "whatsapp_business_account", "entry": [{"id": "1023", "changes": [{
                "field": "messages", "value": {"messaging_product": "whatsapp",
                                               "metadata": {"phone_number_id": WA_NUMBER},
                                               "statuses": list(items)}}]}]}
        t = str(int(time.time()))
        inbound = {"object": "whatsapp_business_account", "entry": [{"id": "1023", "changes": [{
            "field": "messages", "value": {
                "messaging_product": "whatsapp", "metadata": {"phone_number_id": WA_NUMBER},
                "contacts": [{"profile": {"name": "Sheena"}, "wa_id": "16505551234"}],
                "messages": [{"from": "16505551234", "id": "wamid.IN", "timestamp": t,
                              "type": "text", "text": {"body": "hi"}}]}}]}]}
        assert post(d, inbound)[0] == 200
        # read before delivered (status-only posts): the state does not go back.
        assert post(d, statuses({"id": "wamid.IN", "status": "read", "timestamp": t}))[0] == 200
        assert post(d, statuses({"id": "wamid.IN", "status": "delivered", "timestamp": t}))[0] == 200
        assert query(fresh_db, "SELECT delivery_status FROM message WHERE external_id = 'wamid.IN'") == \
            [("read",)]
        assert query(fresh_db, "SELECT count(*) FROM inbound_event WHERE event_type = 'delivery_status'")[0][0] == 2


# ---------------------------------------------------------------- outbound

def test_sends_are_the_documented_graph_requests(fresh_db, daemon):
    with FakeGraph() as graph:
        d = start(daemon, fresh_db, graph)
        jobs = [
            enqueue(fresh_db, send_payload("messenger:111:9", in_reply_to="m_1")),
            enqueue(fresh_db, send_payload("instagram:%s:55" % IG, text="ok \u00e4")),
            enqueue(fresh_db, send_payload("whatsapp:%s:16505551234" % WA_NUMBER,
                                           in_reply_to="wamid.IN")),
            enqueue(fresh_db, send_payload("facebook:111:111_222", visibility="public",
                                           in_reply_to="222_1", hours_ago=24 * 30)),
            enqueue(fresh_db, send_payload("instagram_media:%s:1817" % IG, visibility="public",
                                           in_reply_to="1791")),
        ]
        assert wait_for(lambda: all(job(fresh_db, j)[0] == "done" for j in jobs))
        by_path = {r["path"]: r for r in graph.posts()}
        expected = {
            "/v21.0/111/messages": (PAGE_TOKEN,
                                    b'{"recipient":{"id":"9"},"messaging_type":"RESPONSE",'
                                    b'"message":{"text":"Thanks, we are on it"}}'),
            "/v21.0/%s/messages" % IG: (IG_TOKEN,
                                        b'{"recipient":{"id":"55"},"message":{"text":"ok \xc3\xa4"}}'),
            "/v21.0/%s/messages" % WA_NUMBER: (
                WA_TOKEN,
                b'{"messaging_product":"whatsapp","recipient_type":"individual","to":"16505551234",'
                b'"type":"text","text":{"body":"Thanks, we are on it"},'
                b'"context":{"message_id":"wamid.IN"}}'),
            "/v21.0/222_1/comments": (PAGE_TOKEN, b'{"message":"Thanks, we are on it"}'),
            "/v21.0/1791/replies": (IG_TOKEN, b'{"message":"Thanks, we are on it"}'),
        }
        assert set(by_path) == set(expected)
        for path, (token, body) in expected.items():
            r = by_path[path]
            assert r["headers"]["Authorization"] == "Bearer " + token, path
            assert r["headers"]["Content-Type"] == "application/json"
            assert r["body"] == body, path
            assert "access_token" not in path
        assert_no_secrets(d)


def test_reload_swaps_the_page_tokens_and_refuses_a_bad_list(fresh_db, daemon):
    new_token = "EAANewPageToken222abc"
    with FakeGraph() as graph:
        d = start(daemon, fresh_db, graph)
        cfg = json.loads(json.dumps(d.config))
        cfg["channels"][0]["config"]["pages"] = [{"id": PAGE, "access_token": new_token},
                                                 {"id": "333", "access_token": PAGE_TOKEN}]
        d.rewrite_config(cfg)
        d.signal(signal.SIGHUP)
        assert wait_for(lambda: "reloaded: log level" in d.log_text())
        assert "2 page(s), 1 instagram account(s)" in d.log_text()
        j = enqueue(fresh_db, send_payload("messenger:111:9"))
        assert wait_for(lambda: job(fresh_db, j)[0] == "done")
        assert graph.posts()[-1]["headers"]["Authorization"] == "Bearer " + new_token
        # A list the plugin refuses keeps the tokens in force.
        cfg["channels"][0]["config"]["pages"] = [{"id": "1/2", "access_token": PAGE_TOKEN}]
        d.rewrite_config(cfg)
        d.signal(signal.SIGHUP)
        assert wait_for(lambda: "reload failed, keeping the old configuration" in d.log_text())
        assert "pages: [0].id must be a Meta id" in d.log_text()
        j = enqueue(fresh_db, send_payload("messenger:111:9", text="again"))
        assert wait_for(lambda: job(fresh_db, j)[0] == "done")
        assert graph.posts()[-1]["headers"]["Authorization"] == "Bearer " + new_token
        assert_no_secrets(d)
        assert new_token not in d.log_text()


def test_appsecret_proof_is_the_tokens_hmac_under_the_app_secret(fresh_db, daemon):
    with FakeGraph() as graph:
        d = start(daemon, fresh_db, graph, appsecret_proof=True)
        j = enqueue(fresh_db, send_payload("messenger:111:9"))
        assert wait_for(lambda: job(fresh_db, j)[0] == "done")
        [r] = graph.posts()
        proof = hmac.new(APP_SECRET.encode(), PAGE_TOKEN.encode(), hashlib.sha256).hexdigest()
        assert r["path"] == "/v21.0/111/messages?appsecret_proof=" + proof
        assert r["headers"]["Authorization"] == "Bearer " + PAGE_TOKEN
        assert_no_secrets(d)


def test_windows_refuse_before_any_call_and_template_replaces_text(fresh_db, daemon):
    with FakeGraph() as graph:
        d = start(daemon, fresh_db, graph,
                  whatsapp_template={"name": "follow_up", "language": "en_US"}, human_agent_tag=True)
        late_ig = enqueue(fresh_db, send_payload("instagram:%s:55" % IG, hours_ago=30))
        assert wait_for(lambda: job(fresh_db, late_ig)[0] == "dead")
        assert job(fresh_db, late_ig)[2] == \
            "outside the 24-hour messaging window: the customer last wrote 30 hours ago"
        too_late = enqueue(fresh_db, send_payload("messenger:111:9", hours_ago=24 * 8))
        assert wait_for(lambda: job(fresh_db, too_late)[0] == "dead")
        assert job(fresh_db, too_late)[1] == 1
        assert graph.posts() == []

        tagged = enqueue(fresh_db, send_payload("messenger:111:9", hours_ago=30))
        [(wa_msg,)] = query(fresh_db, "INSERT INTO message (channel_instance, direction, text) "
                                      "VALUES ('meta', 'outbound', 'Thanks, we are on it') RETURNING id")
        template = enqueue(fresh_db, send_payload("whatsapp:%s:16505551234" % WA_NUMBER, hours_ago=30,
                                                  message_id=str(wa_msg)))
        assert wait_for(lambda: job(fresh_db, tagged)[0] == "done" and job(fresh_db, template)[0] == "done")
        bodies = {r["path"]: json.loads(r["body"]) for r in graph.posts()}
        assert bodies["/v21.0/111/messages"]["messaging_type"] == "MESSAGE_TAG"
        assert bodies["/v21.0/111/messages"]["tag"] == "HUMAN_AGENT"
        assert bodies["/v21.0/%s/messages" % WA_NUMBER] == {
            "messaging_product": "whatsapp", "recipient_type": "individual", "to": "16505551234",
            "type": "template", "template": {"name": "follow_up", "language": {"code": "en_US"}}}
        # The record says the agent's text itself did not go out.
        assert query(fresh_db, "SELECT external_id IS NOT NULL, delivery_status, delivery_detail "
                               "FROM message WHERE id = %s", (wa_msg,)) == \
            [(True, "sent", "outside WhatsApp's 24-hour window: the template follow_up was sent "
                            "instead; the text itself was not sent")]
        d.stop()
        assert "the template follow_up was sent instead" in d.log_text()


def test_throttling_and_5xx_are_retried_other_4xx_fail(fresh_db, daemon):
    throttled = {"error": {"message": "(#4) Application request limit reached",
                           "type": "OAuthException", "code": 4, "fbtrace_id": "Abc"}}
    with FakeGraph([(400, throttled, {}),
                    (500, {"error": {"message": "Unexpected", "code": 1}}, {})]) as graph:
        d = start(daemon, fresh_db, graph)
        jid = enqueue(fresh_db, send_payload("messenger:111:9"))
        assert wait_for(lambda: job(fresh_db, jid)[0] == "done")
        assert job(fresh_db, jid)[1] == 3
        assert len(graph.posts()) == 3
        assert graph.posts()[0]["body"] == graph.posts()[2]["body"]

        # Business Use Case throttling: retried no sooner than Meta says.
        graph.queue((400, {"error": {"message": "(#80001) There have been too many calls",
                                     "code": 80001}},
                     {"X-Business-Use-Case-Usage": json.dumps(
                         {PAGE: [{"type": "pages", "call_count": 100,
                                  "estimated_time_to_regain_access": 2}]})}))
        slow = enqueue(fresh_db, send_payload("messenger:111:9"))
        # A wait Meta names is a deferral: no attempt used up.
        assert wait_for(lambda: job(fresh_db, slow)[0] == "queued" and job(fresh_db, slow)[2])
        assert job(fresh_db, slow)[1] == 0
        state, attempts, error, later = job(fresh_db, slow)
        assert error == "Meta rate limit, will retry: (#80001) There have been too many calls (code 80001)"
        assert later   # run_at at least a minute and a half away

        # 429 with Retry-After: the same, at Retry-After.
        graph.queue((429, {"error": {"message": "Too many", "code": 4}}, {"Retry-After": "120"}))
        limited = enqueue(fresh_db, send_payload("messenger:111:9"))
        assert wait_for(lambda: job(fresh_db, limited)[0] == "queued" and job(fresh_db, limited)[2])
        assert job(fresh_db, limited)[1] == 0
        assert job(fresh_db, limited)[2:] == ("Meta rate limit, will retry: Too many (code 4)", True)

        # A refusal is permanent, with Meta's message.
        graph.queue((400, {"error": {"message": "(#100) The parameter recipient is required",
                                     "type": "OAuthException", "code": 100}}, {}))
        bad = enqueue(fresh_db, send_payload("messenger:111:9"))
        assert wait_for(lambda: job(fresh_db, bad)[0] == "dead")
        assert job(fresh_db, bad)[1:3] == \
            (1, "Meta refused the message: (#100) The parameter recipient is required (code 100)")
        assert_no_secrets(d)


def test_timeouts_and_connection_failures_are_retried(fresh_db, daemon):
    with FakeGraph([hang(1.5)]) as graph:
        d = start(daemon, fresh_db, graph, timeout_ms=300)
        jid = enqueue(fresh_db, send_payload("messenger:111:9"))
        assert wait_for(lambda: job(fresh_db, jid)[0] == "done")
        assert job(fresh_db, jid)[1] == 2
        assert len(graph.posts()) == 2
        d.stop()
        assert "send will be retried: Graph API call failed: " in d.log_text()

        # Nobody listens there: a connection failure, retried until attempts run out.
        d = daemon.start(config(fresh_db, "http://127.0.0.1:9"))
        jid = enqueue(fresh_db, send_payload("messenger:111:9"), max_attempts=2)
        assert wait_for(lambda: job(fresh_db, jid)[0] == "dead")
        assert job(fresh_db, jid)[1] == 2
        assert job(fresh_db, jid)[2].startswith("Graph API call failed: ")


# ---------------------------------------------------------------- the full loop

def test_reply_is_sent_and_its_echo_reconciled(fresh_db, daemon):
    with FakeGraph() as graph:
        d = start(daemon, fresh_db, graph)
        assert post(d, page(dm("m_1", "Where is my parcel?")))[0] == 200
        [(conv,)] = query(fresh_db, "SELECT id FROM conversation")
        [(msg,)] = query(fresh_db, "SELECT parley_reply(%s, 'It arrives tomorrow')", (conv,))
        assert wait_for(lambda: query(fresh_db, "SELECT external_id FROM message WHERE id = %s",
                                      (msg,))[0][0] is not None)
        [req] = graph.posts()
        assert req["path"] == "/v21.0/111/messages"
        assert json.loads(req["body"])["recipient"] == {"id": "9"}
        [(ext, status)] = query(fresh_db, "SELECT external_id, delivery_status FROM message WHERE id = %s",
                                (msg,))
        assert ext.startswith("m_out_") and status == "sent"
        # Meta's echo of our own send: the same message, not a second one.
        echo = {"sender": {"id": PAGE}, "recipient": {"id": "9"}, "timestamp": now_ms(),
                "message": {"is_echo": True, "mid": ext, "text": "It arrives tomorrow"}}
        assert post(d, page(echo))[0] == 200
        assert query(fresh_db, "SELECT count(*) FROM message WHERE external_id = %s", (ext,))[0][0] == 1
        assert count(fresh_db, "message") == 2
        # Messenger's delivery receipt for it moves its status on.
        receipt = {"sender": {"id": "9"}, "recipient": {"id": PAGE}, "timestamp": now_ms(),
                   "delivery": {"mids": [ext], "watermark": now_ms()}}
        assert post(d, page(receipt))[0] == 200
        assert query(fresh_db, "SELECT delivery_status FROM message WHERE id = %s", (msg,)) == \
            [("delivered",)]


def test_move_comment_to_private(fresh_db, daemon):
    with FakeGraph([(200, {"recipient_id": "PSID77", "message_id": "m_private"}, {})]) as graph:
        d = start(daemon, fresh_db, graph)
        assert post(d, feed("222_1", "add", "Where is my refund?", sender="987"))[0] == 200
        [(public,)] = query(fresh_db, "SELECT id FROM conversation")
        [(private,)] = query(fresh_db, "SELECT parley_move_to_private(%s, 'Please DM us your order', "
                                       "'We sent you a message')", (public,))
        assert wait_for(lambda: len(graph.posts()) == 2)
        first, second = graph.posts()
        assert first["path"] == "/v21.0/111/messages"
        assert first["body"] == (b'{"recipient":{"comment_id":"222_1"},'
                                 b'"message":{"text":"Please DM us your order"}}')
        assert second["path"] == "/v21.0/222_1/comments"
        assert second["body"] == b'{"message":"We sent you a message"}'
        assert wait_for(lambda: query(fresh_db, "SELECT thread_key FROM conversation WHERE id = %s",
                                      (private,))[0][0] == "messenger:111:PSID77")
        # The customer answers in Messenger: it lands in the private conversation.
        assert post(d, page(dm("m_answer", "Order 123", sender="PSID77")))[0] == 200
        assert query(fresh_db, "SELECT conversation_id FROM message WHERE external_id = 'm_answer'") == \
            [(private,)]
        assert count(fresh_db, "customer") == 1


def test_second_private_reply_refusal_is_a_clear_fail(fresh_db, daemon):
    with FakeGraph([(400, {"error": {"message": "(#10900) Activity already replied to",
                                     "type": "OAuthException", "code": 10900}}, {})]) as graph:
        d = start(daemon, fresh_db, graph)
        jid = enqueue(fresh_db, send_payload("facebook:111:111_222", kind="private_reply",
                                             in_reply_to="222_1", hours_ago=2))
        assert wait_for(lambda: job(fresh_db, jid)[0] == "dead")
        assert job(fresh_db, jid)[2] == \
            "Meta refused the message: (#10900) Activity already replied to (code 10900)"
        old = enqueue(fresh_db, send_payload("facebook:111:111_222", kind="private_reply",
                                             in_reply_to="222_9", hours_ago=24 * 8))
        assert wait_for(lambda: job(fresh_db, old)[0] == "dead")
        assert job(fresh_db, old)[2] == \
            "outside the 7-day private reply window: the comment was written 8 days ago"
        assert len(graph.posts()) == 1
