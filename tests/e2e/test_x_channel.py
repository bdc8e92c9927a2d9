"""The x channel end to end: a real parleyd with the x plugin, a real
PostgreSQL, and a local fake of the X API that speaks the documented formats
and records what it is sent.

Inbound: the Account Activity CRC, signed webhook POSTs (mentions, DMs,
deletions, the brand's own echoes), refusals. Outbound: public replies and
DMs signed with OAuth 1.0a (the signature is recomputed here), move to
private, and the rate limit / 5xx / 4xx answers. Listening: recent search
polled with a durable since_id cursor."""
import base64
import hashlib
import hmac
import json
import re
import signal
import time
import urllib.parse

from fake_http import FakeHTTPServer
from parley_testlib import http, query

CONSUMER_KEY = "ck-test-key"
CONSUMER_SECRET = "test_consumer_secret"
ACCESS_TOKEN = "2975699229-accesstokenvalue"
ACCESS_SECRET = "access-token-secret-value"
BEARER = "AAAA-bearer-token-value"
BRAND = "2975699229"
CUSTOMER = "1205290247124217856"
INSTANCE = "xmain"


# --------------------------------------------------------------- helpers

def x_sign(body):
    mac = hmac.new(CONSUMER_SECRET.encode(), body, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(mac).decode()


def post(d, payload, signature=True, raw=None):
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if signature is True:
        headers["x-twitter-webhooks-signature"] = x_sign(body)
    elif signature:
        headers["x-twitter-webhooks-signature"] = signature
    return http("POST", d.url + "/webhooks/" + INSTANCE, body, headers)


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def mention(tweet_id, text, user=CUSTOMER, reply_to=None, handle="pennbrooke1"):
    return {"for_user_id": BRAND, "user_has_blocked": "false",
            "tweet_create_events": [{
                "created_at": "Fri Dec 13 04:48:09 +0000 2019",
                "id": int(tweet_id), "id_str": tweet_id, "text": text,
                "in_reply_to_status_id_str": reply_to,
                "user": {"id": int(user), "id_str": user, "name": "Penn Brooke",
                         "screen_name": handle},
                "timestamp_ms": "1576212489730"}]}


def dm(event_id, text, sender=CUSTOMER, recipient=BRAND):
    return {"for_user_id": BRAND,
            "direct_message_events": [{
                "type": "message_create", "id": event_id,
                "created_timestamp": "1576540475925",
                "message_create": {"target": {"recipient_id": recipient},
                                   "sender_id": sender,
                                   "message_data": {"text": text}}}],
            "users": {CUSTOMER: {"id": CUSTOMER, "name": "Penn Brooke",
                                 "screen_name": "pennbrooke1"},
                      BRAND: {"id": BRAND, "name": "Acme", "screen_name": "acme"}}}


def oauth_params(header):
    assert header.startswith("OAuth "), header
    return {urllib.parse.unquote(k): urllib.parse.unquote(v)
            for k, v in re.findall(r'([a-z_]+)="([^"]*)"', header[6:])}


def check_oauth(req, url):
    """The Authorization header is a valid OAuth 1.0a HMAC-SHA1 signature of
    this POST, recomputed here independently."""
    p = oauth_params(req["headers"]["Authorization"])
    assert p["oauth_consumer_key"] == CONSUMER_KEY
    assert p["oauth_token"] == ACCESS_TOKEN
    assert p["oauth_signature_method"] == "HMAC-SHA1"
    assert p["oauth_version"] == "1.0"
    assert abs(int(p["oauth_timestamp"]) - time.time()) < 300
    assert re.fullmatch(r"[0-9a-f]{32}", p["oauth_nonce"])
    q = lambda s: urllib.parse.quote(s, safe="-._~")
    params = sorted((q(k), q(v)) for k, v in p.items() if k != "oauth_signature")
    base = "POST&" + q(url) + "&" + q("&".join("%s=%s" % kv for kv in params))
    key = q(CONSUMER_SECRET) + "&" + q(ACCESS_SECRET)
    expected = base64.b64encode(hmac.new(key.encode(), base.encode(), hashlib.sha1).digest())
    assert p["oauth_signature"] == expected.decode()


class FakeX(FakeHTTPServer):
    """The X API: POST /2/tweets, POST /2/dm_conversations/with/{id}/messages
    and GET /2/tweets/search/recent. Answers come from per-route scripts of
    (status, body dict, headers); when a script is empty, a success."""

    ROUTES = {"tweet": ("POST", r"^/2/tweets$"),
              "dm": ("POST", r"^/2/dm_conversations/with/(\d+)/messages$"),
              "search": ("GET", r"^/2/tweets/search/recent\?")}

    def __init__(self):
        self.next_id = 1860000000000000100
        super().__init__(answer=self.success)

    def success(self, req):
        """What X answers when the route's script is empty (lock held)."""
        route = next((name for name, (method, path) in self.ROUTES.items()
                      if req.method == method and re.search(path, req.path)), None)
        if route is None:
            return 404, {"title": "Not Found"}
        self.next_id += 1
        new_id = str(self.next_id)
        if route == "tweet":
            return 201, {"data": {"id": new_id, "text": req.json()["text"],
                                  "edit_history_tweet_ids": [new_id]}}
        if route == "dm":
            a, b = sorted([BRAND, re.search(self.ROUTES["dm"][1], req.path).group(1)], key=int)
            return 201, {"data": {"dm_conversation_id": a + "-" + b, "dm_event_id": new_id}}
        return 200, {"meta": {"result_count": 0}}

    def script(self, route, *answers):
        method, path = self.ROUTES[route]
        self.queue(*answers, method=method, path=path)

    def seen(self, route):
        method, path = self.ROUTES[route]
        return self.matching(method=method, path=path)


def config(dsn, api_url, **extra):
    opts = {"consumer_key": CONSUMER_KEY, "consumer_secret": CONSUMER_SECRET,
            "access_token": ACCESS_TOKEN, "access_token_secret": ACCESS_SECRET,
            "user_id": BRAND, "api_url": api_url, "timeout_ms": 5000}
    opts.update(extra)
    return {"database": {"dsn": dsn},
            "log": {"level": "debug"},
            "jobs": {"backoff_base_ms": 50, "backoff_max_ms": 200, "sweep_interval_ms": 100},
            "channels": [{"name": INSTANCE, "plugin": "x", "config": opts}]}


def counts(dsn):
    return query(dsn, "SELECT (SELECT count(*) FROM inbound_event), (SELECT count(*) FROM customer),"
                      " (SELECT count(*) FROM conversation), (SELECT count(*) FROM message)")[0]


def job(dsn, job_id):
    return query(dsn, "SELECT state, attempts, last_error, run_at > now() FROM job WHERE id = %s",
                 (job_id,))[0]


def enqueue_send(dsn, payload):
    return query(dsn, "SELECT parley_job_enqueue('channel', %s, 'send', %s::jsonb)",
                 (INSTANCE, json.dumps(payload)))[0][0]


def assert_secrets_not_logged(d):
    log = d.log_text()
    for secret in (CONSUMER_SECRET, ACCESS_TOKEN, ACCESS_SECRET, BEARER, CONSUMER_KEY):
        assert secret not in log, secret


# ----------------------------------------------------------------- tests

def test_crc_and_signatures(fresh_db, daemon):
    with FakeX() as fake:
        d = daemon.start(config(fresh_db, fake.url))
        # Shared reference vector V4.
        status, headers, body = http("GET", d.url + "/webhooks/%s?crc_token=token" % INSTANCE)
        assert status == 200
        assert headers["content-type"].startswith("application/json")
        assert body == (b'{"response_token":"sha256='
                        b'cQB9Gn3y9GPSpW3hYmWu8XsaxJVI6brdGVlxu9MhWFc="}')
        assert http("GET", d.url + "/webhooks/" + INSTANCE)[0] == 400

        before = counts(fresh_db)
        payload = mention("1205348660982083584", "@acme my parcel is lost")
        body = json.dumps(payload).encode()
        assert post(d, None, signature=False, raw=body)[0] == 401
        assert post(d, None, signature="sha256=" + "A" * 43 + "=", raw=body)[0] == 401
        # Signed, then re-serialised differently: the raw bytes are what count.
        assert post(d, None, signature=x_sign(body),
                    raw=json.dumps(payload, indent=1).encode())[0] == 401
        assert counts(fresh_db) == before
        # Shared reference vector V5: the exact bytes and header.
        v5 = (b'{"for_user_id":"930524282358325248","tweet_delete_events":[{"status":'
              b'{"id":"1045405559317569537","user_id":"930524282358325248"},'
              b'"timestamp_ms":"1432228155593"}]}')
        assert post(d, None, signature="sha256=21eUCbwiWnl45N/tJghW4DD9yIiUvrDZdyVxrp/41ZY=",
                    raw=v5)[0] == 200
        d.stop()
        assert_secrets_not_logged(d)


def test_inbound_events_are_stored(fresh_db, daemon):
    with FakeX() as fake:
        d = daemon.start(config(fresh_db, fake.url))
        status, _, body = post(d, mention("1205348660982083584", "@acme my parcel \ud83d\ude00 is lost"))
        assert status == 200 and json.loads(body) == {"accepted": 1}
        [(cust, handle, name)] = query(fresh_db, "SELECT customer_id, handle, display_name FROM identity"
                                                 " WHERE external_id = %s", (CUSTOMER,))
        assert (handle, name) == ("pennbrooke1", "Penn Brooke")
        [(conv, vis, thread)] = query(fresh_db, "SELECT id, visibility, thread_key FROM conversation")
        assert (vis, thread) == ("public", "1205348660982083584")
        [(direction, text, ext)] = query(fresh_db, "SELECT direction, text, external_id FROM message")
        assert (direction, ext) == ("inbound", "1205348660982083584")
        assert text == "@acme my parcel \U0001F600 is lost"

        # A reply to that tweet joins the thread; a replay changes nothing.
        assert post(d, mention("1205348660982083590", "hello?", reply_to="1205348660982083584"))[0] == 200
        assert query(fresh_db, "SELECT count(*), count(DISTINCT conversation_id) FROM message") == [(2, 1)]
        before = counts(fresh_db)
        assert post(d, mention("1205348660982083590", "hello?", reply_to="1205348660982083584"))[0] == 200
        assert counts(fresh_db) == before

        # Malformed or truncated: 400, nothing stored.
        assert post(d, None, raw=b'{"tweet_create_events":[{"id_str":')[0] == 400
        assert post(d, None, raw=b'[1,2]')[0] == 400
        assert post(d, {"tweet_create_events": {"id_str": "1"}})[0] == 400
        assert counts(fresh_db) == before
        # Unknown event types are accepted and ignored.
        assert post(d, {"for_user_id": BRAND, "favorite_events": [{"id": "x"}]})[0] == 200
        assert counts(fresh_db)[1:] == before[1:]

        # A DM: a private conversation whose thread is "<smaller>-<larger>" id.
        assert post(d, dm("1206724334791753732", "order 12345 please"))[0] == 200
        [(pconv, pcust, pthread)] = query(fresh_db, "SELECT id, customer_id, thread_key FROM conversation"
                                                    " WHERE visibility = 'private'")
        assert pthread == BRAND + "-" + CUSTOMER
        assert pcust == cust
        # The brand's own DM in that chat is outbound, in the same conversation.
        assert post(d, dm("1206724334791753740", "We are on it", sender=BRAND,
                          recipient=CUSTOMER))[0] == 200
        assert query(fresh_db, "SELECT direction, conversation_id FROM message WHERE external_id = %s",
                     ("1206724334791753740",)) == [("outbound", pconv)]
        assert query(fresh_db, "SELECT count(*) FROM customer")[0][0] == 1

        # The brand's own public tweet: outbound, no customer; then deleted:
        # marked, text kept.
        own = mention("1205348660982083600", "@pennbrooke1 sorry! DM us", user=BRAND, handle="acme",
                      reply_to="1205348660982083590")
        assert post(d, own)[0] == 200
        assert query(fresh_db, "SELECT direction, conversation_id FROM message WHERE external_id = %s",
                     ("1205348660982083600",)) == [("outbound", conv)]
        assert query(fresh_db, "SELECT count(*) FROM customer")[0][0] == 1
        assert post(d, {"for_user_id": BRAND, "tweet_delete_events": [
            {"status": {"id": "1205348660982083600", "user_id": BRAND},
             "timestamp_ms": "1576212499000"}]})[0] == 200
        [(deleted, text)] = query(fresh_db, "SELECT deleted_at IS NOT NULL, text FROM message"
                                            " WHERE external_id = %s", ("1205348660982083600",))
        assert deleted and text == "@pennbrooke1 sorry! DM us"
        assert query(fresh_db, "SELECT kind FROM message_revision") == [("delete",)]


def test_one_event_the_core_refuses_does_not_lose_the_others(fresh_db, daemon):
    """Below the Enterprise tier X never redelivers: a POST with one event
    the core refuses (text over 1 MiB) still stores the others, and says so."""
    with FakeX() as fake:
        d = daemon.start(config(fresh_db, fake.url))
        good = mention("1205348660982083590", "@acme hello")
        huge = mention("1205348660982083591", "x" * (1024 * 1024 + 10))
        good["tweet_create_events"].extend(huge["tweet_create_events"])
        status, _, body = post(d, good)
        assert status == 200 and json.loads(body) == {"accepted": 1}
        assert query(fresh_db, "SELECT external_id FROM message") == [("1205348660982083590",)]
        d.stop()
        assert "1 event(s) refused by the core" in d.log_text()


def test_reply_and_echo(fresh_db, daemon):
    with FakeX() as fake:
        d = daemon.start(config(fresh_db, fake.url))
        assert post(d, mention("1205348660982083584", "@acme where is my parcel?"))[0] == 200
        conv = query(fresh_db, "SELECT id FROM conversation")[0][0]
        msg = query(fresh_db, "SELECT parley_reply(%s, %s)", (conv, "Sorry! \"Let's\" fix it \u00e4"))[0][0]
        assert wait_for(lambda: query(fresh_db, "SELECT state FROM job")[0][0] == "done")
        [req] = fake.seen("tweet")
        assert req["path"] == "/2/tweets"
        assert req["headers"]["Content-Type"] == "application/json"
        assert req["body"] == ('{"text":"Sorry! \\"Let\'s\\" fix it \u00e4",'
                               '"reply":{"in_reply_to_tweet_id":"1205348660982083584"}}').encode()
        check_oauth(req, fake.url + "/2/tweets")
        sent_id = str(fake.next_id)
        assert query(fresh_db, "SELECT external_id, delivery_status FROM message WHERE id = %s",
                     (msg,)) == [(sent_id, "sent")]
        # X's echo of that tweet is reconciled with the message we sent.
        assert post(d, mention(sent_id, "Sorry! \"Let's\" fix it \u00e4", user=BRAND, handle="acme",
                               reply_to="1205348660982083584"))[0] == 200
        assert query(fresh_db, "SELECT count(*), min(direction) FROM message WHERE external_id = %s",
                     (sent_id,)) == [(1, "outbound")]
        d.stop()
        assert_secrets_not_logged(d)


def test_move_to_private(fresh_db, daemon):
    with FakeX() as fake:
        d = daemon.start(config(fresh_db, fake.url))
        assert post(d, mention("1205348660982083584", "@acme my card was charged twice"))[0] == 200
        conv = query(fresh_db, "SELECT id FROM conversation")[0][0]
        pconv = query(fresh_db, "SELECT parley_move_to_private(%s, %s, %s)",
                      (conv, "Please send us your order number.", "We sent you a DM."))[0][0]
        assert wait_for(lambda: len(fake.seen("tweet")) == 1)
        [req] = fake.seen("dm")
        assert req["path"] == "/2/dm_conversations/with/%s/messages" % CUSTOMER
        assert req["body"] == b'{"text":"Please send us your order number."}'
        check_oauth(req, fake.url + req["path"])
        # The public note goes out only after the DM, answering the tweet.
        assert json.loads(fake.seen("tweet")[0]["body"]) == {
            "text": "We sent you a DM.", "reply": {"in_reply_to_tweet_id": "1205348660982083584"}}
        assert wait_for(lambda: query(fresh_db, "SELECT thread_key FROM conversation WHERE id = %s",
                                      (pconv,))[0][0] is not None)
        assert query(fresh_db, "SELECT thread_key FROM conversation WHERE id = %s",
                     (pconv,)) == [(BRAND + "-" + CUSTOMER,)]
        # The customer's answer by DM lands in the new private conversation.
        assert post(d, dm("1206724334791753800", "It is 12345"))[0] == 200
        assert query(fresh_db, "SELECT conversation_id FROM message WHERE external_id = %s",
                     ("1206724334791753800",)) == [(pconv,)]
        assert query(fresh_db, "SELECT count(*) FROM conversation")[0][0] == 2


def test_send_answers(fresh_db, daemon):
    with FakeX() as fake:
        d = daemon.start(config(fresh_db, fake.url))
        base = {"conversation_id": "1", "visibility": "public", "text": "hello",
                "recipient_id": CUSTOMER, "thread_id": "1205348660982083584",
                "in_reply_to": "1205348660982083584", "kind": "message", "last_inbound_ms": 0}

        # 429: retried not before x-rate-limit-reset (Unix seconds).
        reset = int(time.time()) + 2
        fake.script("tweet", (429, {"title": "Too Many Requests", "detail": "Too Many Requests",
                                    "type": "about:blank", "status": 429},
                              {"x-rate-limit-reset": str(reset)}))
        j = enqueue_send(fresh_db, base)
        assert wait_for(lambda: len(fake.seen("tweet")) == 1)
        # X named the wait: a deferral, no attempt used up.
        assert wait_for(lambda: job(fresh_db, j)[0] == "queued" and job(fresh_db, j)[2] is not None)
        state, attempts, error, later = job(fresh_db, j)
        assert attempts == 0
        assert error == "X rate limit reached sending the reply: Too Many Requests"
        assert later
        assert wait_for(lambda: job(fresh_db, j)[0] == "done")
        first, second = fake.seen("tweet")
        assert second["wall"] >= reset - 0.1
        assert first["body"] == second["body"]

        # 5xx: back to the queue with the core's backoff, then done.
        fake.script("dm", (503, {"title": "Service Unavailable"}, {}))
        j = enqueue_send(fresh_db, dict(base, visibility="private",
                                        thread_id=BRAND + "-" + CUSTOMER, in_reply_to=None))
        assert wait_for(lambda: job(fresh_db, j)[0] == "done")
        # (A done job's last_error is cleared: the reason is in the log.)
        assert job(fresh_db, j)[1] == 2
        assert "X answered 503 to the direct message: Service Unavailable" in d.log_text()
        assert all(r["path"] == "/2/dm_conversations/with/%s/messages" % CUSTOMER
                   for r in fake.seen("dm"))

        # 4xx: dead at once with X's own words.
        fake.script("dm", (403, {"errors": [{"code": 349, "message":
                                             "You cannot send messages to this user."}]}, {}))
        j = enqueue_send(fresh_db, dict(base, visibility="private"))
        assert wait_for(lambda: job(fresh_db, j)[0] == "dead")
        assert job(fresh_db, j)[1:3] == (
            1, "X refused the direct message (HTTP 403): You cannot send messages to this user.")
        fake.script("tweet", (403, {"detail": "You are not allowed to create a Tweet with duplicate "
                                              "content.", "title": "Forbidden", "status": 403,
                                    "type": "about:blank"}, {}))
        j = enqueue_send(fresh_db, base)
        assert wait_for(lambda: job(fresh_db, j)[0] == "dead")
        assert job(fresh_db, j)[2] == ("X refused the reply (HTTP 403): You are not allowed to "
                                       "create a Tweet with duplicate content.")
        # Nothing to reply to: refused before any HTTP call.
        n = len(fake.seen("tweet"))
        j = enqueue_send(fresh_db, dict(base, thread_id=None, in_reply_to=None))
        assert wait_for(lambda: job(fresh_db, j)[0] == "dead")
        assert job(fresh_db, j)[2] == "there is no X post id to reply to"
        assert len(fake.seen("tweet")) == n


def search_page(*tweets, newest=None):
    users = [{"id": CUSTOMER, "username": "pennbrooke1", "name": "Penn Brooke"},
             {"id": "777", "username": "otheruser", "name": "Other"}]
    page = {"data": list(tweets), "includes": {"users": users},
            "meta": {"result_count": len(tweets)}}
    if newest:
        page["meta"]["newest_id"] = newest
    return page


def test_search_listening(fresh_db, daemon):
    with FakeX() as fake:
        t1 = {"id": "1860000000000000011", "text": "acme lost my parcel again",
              "author_id": CUSTOMER, "created_at": "2026-11-23T10:00:00.000Z",
              "conversation_id": "1860000000000000011"}
        t2 = {"id": "1860000000000000012", "text": "@otheruser same with acme",
              "author_id": "777", "created_at": "2026-11-23T10:01:00.000Z",
              "conversation_id": "1860000000000000011",
              "referenced_tweets": [{"type": "replied_to", "id": "1860000000000000011"}]}
        reset = int(time.time()) + 5
        fake.script("search",
                    (200, search_page(t2, t1, newest="1860000000000000012"), {}),
                    (429, {"title": "Too Many Requests"}, {"x-rate-limit-reset": str(reset)}))
        cfg = config(fresh_db, fake.url, bearer_token=BEARER, search_queries=["acme -is:retweet"],
                     search_interval_s=1)
        d = daemon.start(cfg)
        assert wait_for(lambda: query(fresh_db, "SELECT count(*) FROM message")[0][0] == 2)
        rows = query(fresh_db, "SELECT m.external_id, m.direction, c.visibility, c.thread_key"
                               " FROM message m JOIN conversation c ON c.id = m.conversation_id"
                               " ORDER BY m.external_id")
        assert rows == [("1860000000000000011", "inbound", "public", "1860000000000000011"),
                        ("1860000000000000012", "inbound", "public", "1860000000000000011")]
        [(cursor_key, cursor)] = query(fresh_db, "SELECT key, value FROM plugin_state"
                                                 " WHERE instance = %s", (INSTANCE,))
        assert cursor_key.startswith("search:") and cursor == "1860000000000000012"

        first = fake.seen("search")[0]
        assert first["headers"]["Authorization"] == "Bearer " + BEARER
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(first["path"]).query)
        assert q["query"] == ["acme -is:retweet"]
        assert "since_id" not in q
        assert q["expansions"] == ["author_id"]
        assert q["user.fields"] == ["username,name"]
        assert set(q["tweet.fields"][0].split(",")) >= {
            "author_id", "created_at", "conversation_id", "in_reply_to_user_id", "referenced_tweets"}
        # The next polls carry the cursor; after the 429 none comes before the reset.
        assert wait_for(lambda: len(fake.seen("search")) >= 3, timeout=15)
        polls = fake.seen("search")
        second, third = polls[1], polls[2]
        for p in polls[1:]:
            assert "since_id=1860000000000000012" in p["path"]
        assert third["wall"] >= reset - 0.1
        assert third["at"] - second["at"] >= 1.5

        # A restart resumes from the stored cursor.
        d.stop()
        assert_secrets_not_logged(d)
        n = len(fake.seen("search"))
        d = daemon.start(cfg)
        assert wait_for(lambda: len(fake.seen("search")) > n)
        assert "since_id=1860000000000000012" in fake.seen("search")[n]["path"]


def test_config_is_checked(fresh_db, daemon, run_parleyd, plugin_dir):
    cfg = config(fresh_db, "ftp://example.com", search_queries=["acme"], user_id="@acme")
    cfg["plugin_dir"] = plugin_dir
    code, out, err = run_parleyd(["--check-config"], config=cfg)
    assert code == 2
    assert "channels[0].config.api_url" in err
    assert CONSUMER_SECRET not in out + err
    # The core refuses a bad URL before the plugin checks the rest.
    cfg = config(fresh_db, "http://127.0.0.1:9/?q=1", search_queries=["acme"], user_id="@acme")
    cfg["plugin_dir"] = plugin_dir
    code, out, err = run_parleyd(["--check-config"], config=cfg)
    assert code == 2
    assert "channels[0].config.user_id" in err
    assert "channels[0].config.api_url: must be an http:// or https:// URL without a query" in err
    assert CONSUMER_SECRET not in out + err
    cfg = config(fresh_db, "http://127.0.0.1:9", search_queries=["acme"])
    cfg["plugin_dir"] = plugin_dir
    code, out, err = run_parleyd(["--check-config"], config=cfg)
    assert code == 2
    assert "channels[0].config.bearer_token: is required to poll search_queries" in err


def test_reload_refuses_a_new_list_of_search_queries(fresh_db, daemon):
    with FakeX() as fake:
        cfg = config(fresh_db, fake.url, bearer_token=BEARER, search_queries=["acme"])
        d = daemon.start(cfg)
        cfg["channels"][0]["config"]["search_queries"] = ["acme", "acme support"]
        d.rewrite_config(cfg)
        d.signal(signal.SIGHUP)
        assert wait_for(lambda: "reload failed, keeping the old configuration" in d.log_text())
        assert "search_queries: changing the list takes a restart" in d.log_text()
        # The same list with another interval is a reload like any other.
        cfg["channels"][0]["config"]["search_queries"] = ["acme"]
        cfg["channels"][0]["config"]["search_interval_s"] = 120
        d.rewrite_config(cfg)
        d.signal(signal.SIGHUP)
        assert wait_for(lambda: "reloaded: log level" in d.log_text())
        assert "1 search query every 120 s" in d.log_text()


def test_search_pages_are_committed_together(fresh_db, daemon):
    with FakeX() as fake:
        def tweet(i):
            return {"id": str(1860000000000000000 + i), "text": "acme %d" % i, "author_id": CUSTOMER,
                    "conversation_id": str(1860000000000000000 + i)}
        page_a = search_page(tweet(13), tweet(12), newest=tweet(13)["id"])
        page_a["meta"]["next_token"] = "page-two"
        fake.script("search",
                    (200, search_page(tweet(11), newest=tweet(11)["id"]), {}),
                    (200, page_a, {}),
                    (200, search_page(tweet(10)), {}))
        d = daemon.start(config(fresh_db, fake.url, bearer_token=BEARER, search_queries=["acme"],
                                search_interval_s=1))
        assert wait_for(lambda: query(fresh_db, "SELECT count(*) FROM message")[0][0] == 4)
        polls = fake.seen("search")
        assert "since_id" not in polls[0]["path"]
        assert "since_id=1860000000000000011" in polls[1]["path"]
        assert "pagination_token" not in polls[1]["path"]
        assert "since_id=1860000000000000011" in polls[2]["path"]
        assert "pagination_token=page-two" in polls[2]["path"]
        # The cursor is the newest id of the first page, stored with all pages.
        assert wait_for(lambda: query(fresh_db, "SELECT value FROM plugin_state WHERE instance = %s",
                                      (INSTANCE,)) == [("1860000000000000013",)])
        d.stop()
