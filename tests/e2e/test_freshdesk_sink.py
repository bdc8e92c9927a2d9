"""The freshdesk sink end to end: the real daemon runs sink jobs against a
local server that speaks Freshdesk's API v2 (tickets, the requester's ticket
list, the filter API, notes; 201/400/401/429/5xx answers and slow ones), and
takes Freshdesk automation webhooks back in. The last tests run the whole
loop: a customer's message opens a ticket, a follow-up becomes an incoming
note, an agent's note comes back to the customer, Parley's own note does not
(also when Freshdesk reports it before the answer to the POST, which is then
lost), and resolving the ticket resolves the conversation."""
import base64
import hashlib
import json
import re
import time
import urllib.parse

from fake_http import FakeHTTPServer, hang
from parley_testlib import http, query, run_parleyd, sign

API_KEY = "fdApiKey0123456789abcdef"
HOOK_SECRET = "fd-hook-secret-42"
CHANNEL_SECRET = "fd-channel-secret"


class FakeFreshdesk(FakeHTTPServer):
    """Keeps tickets and notes like Freshdesk does and records every request.
    Answers queued with queue(answer, method=..., path=...) take the next
    matching request first; landed(seconds, then) is such an answer that does
    the work, calls then(request) (when given: what Freshdesk does meanwhile,
    e.g. its automation webhook) and never answers (the connection closes
    after `seconds`, past the daemon's timeout)."""

    def __init__(self):
        self.tickets = []
        self.notes = []
        super().__init__(answer=lambda req: self.serve(req.method, req.path, req.body))

    def landed(self, seconds, then=None):
        def carried_out(req):
            self.serve(req.method, req.path, req.body)
            return hang(seconds, before=then)
        return carried_out

    def serve(self, method, path, body):
        """Freshdesk's behaviour, called with the lock held."""
        parts = urllib.parse.urlsplit(path)
        q = urllib.parse.parse_qs(parts.query)
        if method == "POST" and parts.path == "/api/v2/tickets":
            t = json.loads(body)
            t["id"] = 1000 + len(self.tickets)
            self.tickets.append(t)
            return 201, dict(t, requester_id=77001, created_at="2026-11-23T10:00:00Z")
        m = re.fullmatch(r"/api/v2/tickets/(\d+)/notes", parts.path)
        if method == "POST" and m:
            n = json.loads(body)
            n["id"] = 5000 + len(self.notes)
            n["ticket_id"] = int(m.group(1))
            n["created_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self.notes.append(n)
            return 201, dict(n, user_id=42, body_text="")
        m = re.fullmatch(r"/api/v2/tickets/(\d+)/conversations", parts.path)
        if method == "GET" and m:
            per_page, page = int(q.get("per_page", ["30"])[0]), int(q.get("page", ["1"])[0])
            mine = [dict(n, user_id=42, body_text="", source=2) for n in self.notes
                    if n["ticket_id"] == int(m.group(1))]
            return 200, mine[(page - 1) * per_page:page * per_page]
        if method == "GET" and parts.path == "/api/v2/tickets":
            for field in ("email", "unique_external_id"):
                if field in q:
                    mine = [t for t in self.tickets if t.get(field) == q[field][0]]
                    if not mine:
                        return 400, {"description": "Validation failed",
                                     "errors": [{"field": field, "code": "invalid_value",
                                                 "message": "There is no contact matching "
                                                            "the given " + field}]}
                    return 200, [{"id": t["id"], "tags": t["tags"], "status": 2}
                                 for t in reversed(mine)]
        if method == "GET" and parts.path == "/api/v2/search/tickets":
            tag = re.fullmatch(r"\"tag:'(.*)'\"", q["query"][0]).group(1)
            hits = [{"id": t["id"], "tags": t["tags"]} for t in self.tickets if tag in t["tags"]]
            return 200, {"results": hits, "total": len(hits)}
        return 404, {"code": "not_found"}

    def log(self):
        return self.requests


def config(dsn, fd_url, **fd):
    opts = {"base_url": fd_url + "/", "api_key": API_KEY, "webhook_secret": HOOK_SECRET,
            "requests_per_minute": 6000, "timeout_ms": 2000}
    opts.update(fd)
    return {"database": {"dsn": dsn}, "log": {"level": "info"},
            "jobs": {"backoff_base_ms": 50, "backoff_max_ms": 200, "sweep_interval_ms": 100},
            "channels": [],
            "sinks": [{"name": "fd", "plugin": "freshdesk", "config": opts,
                       "route": {"channels": []}}]}


def conversation(case="PC-10012", **customer):
    c = {"customer_id": "77", "display_name": "Ann Example"}
    c.update(customer)
    c = {k: v for k, v in c.items() if v is not None}
    return {"conversation_id": "812", "visibility": "private", "case_number": case,
            "channel_instance": "facebook-main", "channel_kind": "meta", "customer": c}


def enqueue(dsn, operation, payload, key=None, max_attempts=None):
    return query(dsn, "SELECT parley_job_enqueue('sink', 'fd', %s, %s::jsonb, %s, NULL, now(), %s)",
                 (operation, json.dumps(payload), key, max_attempts))[0][0]


def open_ticket(dsn, text="Where is my order?", follow_up_of=None, key="ticket-conv-812",
                max_attempts=None, **customer):
    p = {"conversation": conversation(**customer),
         "message": {"message_id": "5531", "text": text, "inbound": True,
                     "author_name": "Ann Example"}}
    if follow_up_of:
        p["follow_up_of"] = follow_up_of
    return enqueue(dsn, "open_ticket", p, key, max_attempts)


def append(dsn, ticket, text, max_attempts=None):
    return enqueue(dsn, "append_message",
                   {"external_ticket_id": ticket, "conversation": conversation(),
                    "message": {"message_id": "5532", "text": text, "inbound": True}},
                   None, max_attempts)


def job(dsn, jid):
    return query(dsn, "SELECT state, attempts, external_id, last_error, "
                      "extract(epoch FROM run_at - now()) FROM job WHERE id = %s", (jid,))[0]


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def finished(dsn, jid):
    return job(dsn, jid)[0] in ("done", "dead")


def key_tag(key):
    return "parley-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def comment_id(ticket, text, public=True):
    norm = " ".join(text.replace("\u00a0", " ").split())
    return "%s:%s:%s" % (ticket, "pub" if public else "priv",
                         hashlib.sha256(norm.encode()).hexdigest()[:16])


def assert_no_secrets(d):
    d.stop()
    log = d.log_text()
    assert API_KEY not in log and HOOK_SECRET not in log
    assert base64.b64encode((API_KEY + ":X").encode()).decode() not in log


# ------------------------------------------------------------------ config

def test_config_is_checked_and_secrets_never_echoed(tmp_path, parleyd, plugin_dir, fresh_db):
    # The core stops at the first wrong setting: one mistake per run.
    for url, extra, needle in (
            ("ftp://acme.freshdesk.com", {}, "base_url: must be an http:// or https:// URL"),
            (None, {"requests_per_minute": 0}, "requests_per_minute: must be between 1 and 60000"),
            (None, {"webhook_username": "a:b"}, "webhook_username: must be non-empty, without ':'"),
            (None, {"priority": 9}, "priority: must be between 1 and 4")):
        cfg = config(fresh_db, url or "https://acme.freshdesk.com", **extra)
        cfg["plugin_dir"] = plugin_dir
        rc, out, err = run_parleyd(parleyd, ["--check-config"], config=cfg, workdir=tmp_path)
        assert rc == 2
        assert "sinks[0].config." + needle in err
        assert API_KEY not in out + err and HOOK_SECRET not in out + err


# ------------------------------------------------------------------ tickets out

def test_open_ticket_looks_up_then_creates_as_documented(fresh_db, daemon):
    with FakeFreshdesk() as fd:
        d = daemon.start(config(fresh_db, fd.url))
        jid = open_ticket(fresh_db, text="Where is my order?\nIt's late & <b>lost</b>",
                          email="ann+x@example.com")
        assert wait_for(lambda: finished(fresh_db, jid))
        assert job(fresh_db, jid)[:3] == ("done", 1, "1000")
        lookup, create = fd.log()
        auth = "Basic " + base64.b64encode((API_KEY + ":X").encode()).decode()
        assert lookup["method"] == "GET"
        assert lookup["path"] == ("/api/v2/tickets?email=ann%2Bx%40example.com"
                                  "&order_by=created_at&order_type=desc&per_page=100")
        assert lookup["headers"]["Authorization"] == auth
        assert create["method"] == "POST" and create["path"] == "/api/v2/tickets"
        assert create["headers"]["Authorization"] == auth
        assert create["headers"]["Content-Type"] == "application/json"
        assert json.loads(create["body"]) == {
            "subject": "[PC-10012] Where is my order?",
            "description": "<p>Where is my order?<br>It&#39;s late &amp; &lt;b&gt;lost&lt;/b&gt;</p>"
                           "<p>From Ann Example, a private message on facebook-main (meta), "
                           "Parley case PC-10012.</p>",
            "status": 2, "priority": 1, "source": 2, "email": "ann+x@example.com",
            "name": "Ann Example", "tags": ["parley", "PC-10012", key_tag("ticket-conv-812")]}
        metrics = http("GET", d.url + "/metrics")[2].decode()
        assert 'parley_plugin_freshdesk_tickets_opened_total{instance="fd"} 1' in metrics
        assert_no_secrets(d)


def test_retry_after_timeout_finds_the_ticket_instead_of_a_second_one(fresh_db, daemon):
    with FakeFreshdesk() as fd:
        # The first create lands at Freshdesk but its answer comes too late.
        fd.queue(fd.landed(1.5), method="POST", path=r"^/api/v2/tickets$")
        daemon.start(config(fresh_db, fd.url, timeout_ms=400))
        jid = open_ticket(fresh_db, email="ann@example.com")
        assert wait_for(lambda: finished(fresh_db, jid))
        state, attempts, ticket, _, _ = job(fresh_db, jid)
        assert (state, attempts, ticket) == ("done", 2, "1000")
        assert len(fd.tickets) == 1
        assert [(r["method"], r["path"].split("?")[0]) for r in fd.log()] == [
            ("GET", "/api/v2/tickets"), ("POST", "/api/v2/tickets"), ("GET", "/api/v2/tickets")]


def test_phone_and_external_id_requesters(fresh_db, daemon):
    with FakeFreshdesk() as fd:
        fd.queue(fd.landed(1.5), method="POST", path=r"^/api/v2/tickets$")
        daemon.start(config(fresh_db, fd.url, timeout_ms=400))
        # Known by phone only: the lookup goes through the filter API by tag.
        jid = open_ticket(fresh_db, phone="+4915112345678", display_name=None, key="k-phone")
        assert wait_for(lambda: finished(fresh_db, jid))
        assert job(fresh_db, jid)[:3] == ("done", 2, "1000")
        assert len(fd.tickets) == 1
        assert fd.tickets[0]["phone"] == "+4915112345678"
        assert fd.tickets[0]["name"] == "+4915112345678"
        searches = [r["path"] for r in fd.log() if r["path"].startswith("/api/v2/search/")]
        assert searches[0] == ("/api/v2/search/tickets?query=%22tag%3A%27" + key_tag("k-phone")
                               + "%27%22")
        # Neither e-mail nor phone: unique_external_id, Parley's customer id.
        jid = open_ticket(fresh_db, key="k-ext")
        assert wait_for(lambda: finished(fresh_db, jid))
        assert job(fresh_db, jid)[:3] == ("done", 1, "1001")
        assert fd.tickets[1]["unique_external_id"] == "parley-77"
        assert fd.log()[-2]["path"].startswith("/api/v2/tickets?unique_external_id=parley-77&")


def test_follow_up_of_a_closed_ticket(fresh_db, daemon):
    with FakeFreshdesk() as fd:
        daemon.start(config(fresh_db, fd.url))
        jid = open_ticket(fresh_db, text="It broke again", follow_up_of="4711",
                          email="ann@example.com", key="ticket-conv-812-2")
        assert wait_for(lambda: finished(fresh_db, jid))
        assert job(fresh_db, jid)[:3] == ("done", 1, "1000")
        [t] = fd.tickets
        assert t["subject"] == "[PC-10012] Follow-up: It broke again"
        assert t["description"].startswith("<p>Follow-up to ticket #4711, which is closed.</p>"
                                           "<p>It broke again</p>")
        assert t["tags"] == ["parley", "PC-10012", key_tag("ticket-conv-812-2"), "follow-up-of-4711"]


def test_follow_ups_are_incoming_public_notes(fresh_db, daemon):
    with FakeFreshdesk() as fd:
        daemon.start(config(fresh_db, fd.url))
        text = "Still nothing <here> & \"there\"\nplease"
        jid = append(fresh_db, "4711", text)
        assert wait_for(lambda: finished(fresh_db, jid))
        # The note's id is the one the webhook will report for it.
        assert job(fresh_db, jid)[:3] == ("done", 1, comment_id("4711", text))
        [req] = fd.log()
        assert (req["method"], req["path"]) == ("POST", "/api/v2/tickets/4711/notes")
        assert json.loads(req["body"]) == {
            "body": "Still nothing &lt;here&gt; &amp; &quot;there&quot;<br>please",
            "incoming": True, "private": False}
        # A ticket id that is not one is refused before any request.
        jid = append(fresh_db, "47/../11", "x")
        assert wait_for(lambda: finished(fresh_db, jid))
        assert job(fresh_db, jid)[0] == "dead"
        assert job(fresh_db, jid)[3] == "external_ticket_id is not a Freshdesk ticket id"
        assert len(fd.log()) == 1


def test_5xx_and_429_are_retried(fresh_db, daemon):
    with FakeFreshdesk() as fd:
        fd.queue((503, "upstream down"), (429, "Too many requests", {"Retry-After": "2"}),
                 (429, "Too many requests"), method="POST", path="/notes$")
        daemon.start(config(fresh_db, fd.url))
        jid = append(fresh_db, "4711", "hello")
        # After the 503 (core backoff), the first 429 asks for 2 s.
        assert wait_for(lambda: job(fresh_db, jid)[3] == "Freshdesk rate limit (429): honouring Retry-After")
        state, attempts, _, _, wait = job(fresh_db, jid)
        # The 503 used an attempt; the 429 with Retry-After only defers.
        assert state == "queued" and attempts == 1 and wait > 1.0
        assert wait_for(lambda: finished(fresh_db, jid))
        assert job(fresh_db, jid)[:2] == ("done", 3)
        posts = [r for r in fd.log() if r["method"] == "POST"]
        assert len(posts) == 4
        # Each retry first looks for the note an earlier attempt may have added.
        gets = [r["path"] for r in fd.log() if r["method"] == "GET"]
        assert gets == ["/api/v2/tickets/4711/conversations?per_page=100&page=1"] * 3
        assert posts[2]["at"] - posts[1]["at"] >= 1.8   # Retry-After honoured
        assert len(fd.notes) == 1


def test_validation_and_auth_fail(fresh_db, daemon):
    invalid = {"description": "Validation failed",
               "errors": [{"field": "email", "message": "It should be a valid email address",
                           "code": "invalid_value"}]}
    with FakeFreshdesk() as fd:
        fd.queue((400, invalid), method="POST", path=r"^/api/v2/tickets$")
        fd.queue((401, {"code": "invalid_credentials"}), method="POST", path="/notes$")
        d = daemon.start(config(fresh_db, fd.url))
        jid = open_ticket(fresh_db, email="not-an-address")
        assert wait_for(lambda: finished(fresh_db, jid))
        assert job(fresh_db, jid)[:2] == ("dead", 1)
        assert job(fresh_db, jid)[3] == ("Freshdesk refused the ticket (400): Validation failed: "
                                         "email: It should be a valid email address (invalid_value)")
        jid = append(fresh_db, "4711", "hi")
        assert wait_for(lambda: finished(fresh_db, jid))
        assert job(fresh_db, jid)[:2] == ("dead", 1)
        assert job(fresh_db, jid)[3] == "unauthorized: check the API token (Freshdesk answered 401)"
        assert_no_secrets(d)


def test_budget_paces_and_hands_back_long_waits(fresh_db, daemon):
    with FakeFreshdesk() as fd:
        d = daemon.start(config(fresh_db, fd.url, requests_per_minute=150))   # one per 400 ms
        jobs = [append(fresh_db, "4711", "m%d" % i) for i in range(3)]
        assert wait_for(lambda: all(finished(fresh_db, j) for j in jobs))
        times = [r["at"] for r in fd.log()]
        assert len(times) == 3
        assert all(b - a >= 0.3 for a, b in zip(times, times[1:])), times
        d.stop()

        # Two a minute: the second request's slot is 30 s away, more than a
        # delivery may wait, so its job goes back with the slot's time.
        daemon.start(config(fresh_db, fd.url, requests_per_minute=2))
        first = append(fresh_db, "4711", "now")
        assert wait_for(lambda: finished(fresh_db, first))
        second = append(fresh_db, "4711", "later")
        assert wait_for(lambda: job(fresh_db, second)[3] is not None)
        state, _, _, reason, wait = job(fresh_db, second)
        assert state == "queued"
        assert reason == "requests_per_minute budget: waiting for a request slot"
        assert 20 < wait <= 31
        assert len(fd.log()) == 4
        # Handed back before its note was recorded: its next attempt will
        # not pay for a lookup.
        [(record,)] = query(fresh_db, "SELECT value FROM plugin_state WHERE instance = 'fd' "
                                      "AND key = 'notes:4711'")
        assert len(record.split(" ")) == 4


# ------------------------------------------------------------------ webhooks in

def hook(d, payload, headers=None):
    body = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    return http("POST", d.url + "/sinks/fd/events", body, h)


def test_webhook_credentials_are_required(fresh_db, daemon):
    with FakeFreshdesk() as fd:
        d = daemon.start(config(fresh_db, fd.url, webhook_username="freshdesk"))
        payload = {"ticket_id": "4711", "triggered_event": "{status:{from:2,to:4}}",
                   "status": "Resolved"}
        basic = lambda u, p: "Basic " + base64.b64encode(("%s:%s" % (u, p)).encode()).decode()
        for headers, code in [({}, "missing_credentials"),
                              ({"X-Parley-Webhook-Secret": "wrong"}, "bad_credentials"),
                              ({"Authorization": basic("freshdesk", "wrong")}, "bad_credentials"),
                              ({"Authorization": basic("other", HOOK_SECRET)}, "bad_credentials")]:
            status, _, body = hook(d, payload, headers)
            assert status == 401
            assert json.loads(body)["error"] == code
        assert query(fresh_db, "SELECT count(*) FROM ticket_event") == [(0,)]
        assert hook(d, payload, {"X-Parley-Webhook-Secret": HOOK_SECRET})[0] == 200
        assert hook(d, dict(payload, triggered_event="{status:{from:4,to:5}}", status="Closed"),
                    {"Authorization": basic("freshdesk", HOOK_SECRET)})[0] == 200
        rows = query(fresh_db, "SELECT event_type, external_ticket_id, dedupe_key FROM ticket_event "
                               "ORDER BY id")
        assert [r[:2] for r in rows] == [("status", "4711"), ("status", "4711")]
        assert re.fullmatch(r"status:4711:3:\d+", rows[0][2])
        assert re.fullmatch(r"status:4711:4:\d+", rows[1][2])
        # Malformed: 400, nothing stored; events Parley does not act on: 200.
        status, _, body = hook(d, b"{nope", {"X-Parley-Webhook-Secret": HOOK_SECRET})
        assert status == 400 and json.loads(body)["error"] == "invalid_payload"
        assert hook(d, {"ticket_id": "4711", "triggered_event": "{ticket_action:created}"},
                    {"X-Parley-Webhook-Secret": HOOK_SECRET})[0] == 200
        assert query(fresh_db, "SELECT count(*) FROM ticket_event") == [(2,)]
        assert http("GET", d.url + "/sinks/fd/events")[0] == 405
        assert_no_secrets(d)


class Callback(FakeHTTPServer):
    """The brand's side of a webhook channel: records replies."""

    def __init__(self):
        super().__init__(answer=lambda req: {"id": "out-%d" % req.n}, base_path="/cb")

    @property
    def received(self):
        return [req.json() for req in self.requests]


def start_with_channel(fresh_db, daemon, fd, cb):
    """A daemon with a webhook channel `site` answered by cb and routed to fd;
    returns it and a function posting a signed message to the channel."""
    cfg = config(fresh_db, fd.url)
    cfg["channels"] = [{"name": "site", "plugin": "webhook",
                        "config": {"secret": CHANNEL_SECRET, "callback_url": cb.url}}]
    cfg["sinks"][0]["route"] = {"channels": ["site"]}
    d = daemon.start(cfg)

    def post(payload):
        body = json.dumps(payload).encode()
        return http("POST", d.url + "/webhooks/site", body,
                    {"Content-Type": "application/json",
                     "X-Parley-Signature": sign(CHANNEL_SECRET, body)})[0]
    return d, post


def jobs_settled(dsn):
    return query(dsn, "SELECT count(*) FROM job WHERE state NOT IN ('done', 'dead')") == [(0,)]


def test_the_whole_loop(fresh_db, daemon):
    with FakeFreshdesk() as fd, Callback() as cb:
        d, post = start_with_channel(fresh_db, daemon, fd, cb)

        def sink_jobs():
            return query(fresh_db, "SELECT operation, state, external_id FROM job "
                                   "WHERE target_kind = 'sink' ORDER BY id")

        def settled():
            return jobs_settled(fresh_db)

        assert post({"id": "s1", "author": {"id": "ann", "name": "Ann", "email": "ann@example.com"},
                     "text": "My router is dead", "thread": "chat-1"}) == 200
        assert wait_for(lambda: settled() and len(sink_jobs()) == 1)
        assert post({"id": "s2", "author": {"id": "ann"}, "text": "Still  dead", "thread": "chat-1"}) == 200
        assert wait_for(lambda: settled() and len(sink_jobs()) == 2)
        assert [j[:2] for j in sink_jobs()] == [("open_ticket", "done"), ("append_message", "done")]
        ticket = sink_jobs()[0][2]
        assert ticket == "1000"
        assert fd.tickets[0]["email"] == "ann@example.com"
        assert fd.notes[0]["body"] == "Still  dead" and fd.notes[0]["incoming"] is True

        secret = {"X-Parley-Webhook-Secret": HOOK_SECRET}
        # Freshdesk reports Parley's own note (its rule fired for it): ignored.
        assert hook(d, {"ticket_id": ticket, "triggered_event": "{note_type:public}",
                        "public_comment": "<div>Still&nbsp; dead</div>"}, secret)[0] == 200
        # An agent's public reply goes to the customer; a private note stays a note.
        assert hook(d, {"ticket_id": ticket, "triggered_event": "{note_type:public}",
                        "public_comment": "<div>Please restart it &amp; tell us the light&#39;s "
                                          "colour.</div>",
                        "agent_name": "Kim"}, secret)[0] == 200
        assert hook(d, {"ticket_id": ticket, "triggered_event": "{note_type:private}",
                        "private_comment": "<p>Probably the PSU again</p>"}, secret)[0] == 200
        assert wait_for(lambda: len(cb.received) == 1)
        assert cb.received[0]["text"] == "Please restart it & tell us the light's colour."
        assert query(fresh_db, "SELECT direction, text FROM message WHERE direction <> 'inbound' "
                               "ORDER BY id") == \
            [("outbound", "Please restart it & tell us the light's colour."),
             ("note", "Probably the PSU again")]
        results = [r for (r,) in query(fresh_db, "SELECT result FROM ticket_event ORDER BY id")]
        assert results[0] == "ignored: posted by Parley"
        # Resolved resolves the conversation; open again reopens it.
        assert hook(d, {"ticket_id": ticket, "triggered_event": "{status:{from:2,to:4}}",
                        "status": "Resolved"}, secret)[0] == 200
        assert query(fresh_db, "SELECT status FROM conversation") == [("resolved",)]
        assert hook(d, {"ticket_id": ticket, "triggered_event": "{status:{from:4,to:2}}",
                        "status": "Open"}, secret)[0] == 200
        assert query(fresh_db, "SELECT status FROM conversation") == [("open",)]
        time.sleep(0.3)
        assert len(cb.received) == 1
        assert len(sink_jobs()) == 2   # the agent's reply is not appended back


def test_own_note_reported_before_its_lost_answer_is_not_sent_back(fresh_db, daemon):
    """The POST that adds the customer's follow-up lands, Freshdesk's rule
    reports the note at once, and the POST's answer never arrives (the job
    times out and retries). The note is Parley's own all the same: the
    customer does not get their words back, and the retry finds the note
    instead of adding it again."""
    hooked = []

    def fire_webhook(req):
        # What Freshdesk's automation sends while the POST is still open.
        [note] = fd.notes
        hooked.append(hook(d, {"ticket_id": str(note["ticket_id"]),
                               "triggered_event": "{note_type:public}",
                               "public_comment": "<div>%s</div>" % note["body"],
                               "agent_name": "Parley integration"},
                           {"X-Parley-Webhook-Secret": HOOK_SECRET})[0])

    with FakeFreshdesk() as fd, Callback() as cb:
        fd.queue(fd.landed(3.0, then=fire_webhook), method="POST", path="/notes$")
        d, post = start_with_channel(fresh_db, daemon, fd, cb)

        def sink_jobs():
            return query(fresh_db, "SELECT operation, state, attempts, external_id FROM job "
                                   "WHERE target_kind = 'sink' ORDER BY id")

        def settled():
            return jobs_settled(fresh_db)

        assert post({"id": "s1", "author": {"id": "ann", "email": "ann@example.com"},
                     "text": "My router is dead", "thread": "chat-1"}) == 200
        assert wait_for(lambda: settled() and len(sink_jobs()) == 1)
        ticket = sink_jobs()[0][3]
        text = "It's still dead & <blinking> red"
        assert post({"id": "s2", "author": {"id": "ann"}, "text": text, "thread": "chat-1"}) == 200
        assert wait_for(lambda: settled() and len(sink_jobs()) == 2, 20)

        # The webhook came while the POST was open, and was answered.
        assert hooked == [200]
        assert query(fresh_db, "SELECT event_type, result FROM ticket_event") == \
            [("comment", "ignored: posted by Parley")]
        # The retry found the note: done, with the id the webhook gave it.
        assert sink_jobs()[1] == ("append_message", "done", 2, comment_id(ticket, text))
        assert len(fd.notes) == 1
        notes_calls = [(r["method"], r["path"]) for r in fd.log() if "/notes" in r["path"]
                       or "/conversations" in r["path"]]
        assert notes_calls == [
            ("POST", "/api/v2/tickets/%s/notes" % ticket),
            ("GET", "/api/v2/tickets/%s/conversations?per_page=100&page=1" % ticket)]
        # Nothing went back to the customer.
        time.sleep(0.5)
        assert cb.received == []
        assert query(fresh_db, "SELECT count(*) FROM message WHERE direction <> 'inbound'") == [(0,)]
        assert len(sink_jobs()) == 2

        # An agent's own public reply still reaches the customer.
        assert hook(d, {"ticket_id": ticket, "triggered_event": "{note_type:public}",
                        "public_comment": "<div>Please restart it.</div>", "agent_name": "Kim"},
                    {"X-Parley-Webhook-Secret": HOOK_SECRET})[0] == 200
        assert wait_for(lambda: len(cb.received) == 1)
        assert cb.received[0]["text"] == "Please restart it."


def test_the_same_words_again_are_a_new_note_also_on_a_retry(fresh_db, daemon):
    """The customer says "Thanks!" twice. The second note's first POST fails
    (503, nothing kept); its retry looks, finds only the first "Thanks!",
    which another job added, and adds its own."""
    with FakeFreshdesk() as fd:
        daemon.start(config(fresh_db, fd.url))
        first = append(fresh_db, "4711", "Thanks!")
        assert wait_for(lambda: finished(fresh_db, first))
        fd.queue((503, "upstream down"), method="POST", path="/notes$")
        second = enqueue(fresh_db, "append_message",
                         {"external_ticket_id": "4711", "conversation": conversation(),
                          "message": {"message_id": "5533", "text": "Thanks!", "inbound": True}})
        assert wait_for(lambda: finished(fresh_db, second))
        assert job(fresh_db, first)[:3] == ("done", 1, comment_id("4711", "Thanks!"))
        assert job(fresh_db, second)[:3] == ("done", 2, comment_id("4711", "Thanks!"))
        assert len(fd.notes) == 2
        assert [(r["method"], r["path"].split("?")[0]) for r in fd.log()] == [
            ("POST", "/api/v2/tickets/4711/notes"), ("POST", "/api/v2/tickets/4711/notes"),
            ("GET", "/api/v2/tickets/4711/conversations"), ("POST", "/api/v2/tickets/4711/notes")]
        # The ticket's record: one entry per job, written before its POST.
        [(record,)] = query(fresh_db, "SELECT value FROM plugin_state WHERE instance = 'fd' "
                                      "AND key = 'notes:4711'")
        assert len(record.split(" ")) == 2


def test_a_retry_reads_the_next_page_of_a_long_ticket(fresh_db, daemon):
    """A ticket with a hundred older notes: the note the timed-out attempt
    added is on the second page of the conversations, and is found there."""
    with FakeFreshdesk() as fd:
        fd.queue(fd.landed(3.0), method="POST", path="/notes$")
        fd.notes = [{"id": 4000 + i, "ticket_id": 4711, "body": "older %d" % i, "incoming": True,
                     "private": False, "created_at": "2026-01-01T00:00:00Z"} for i in range(100)]
        daemon.start(config(fresh_db, fd.url))
        jid = append(fresh_db, "4711", "one more")
        assert wait_for(lambda: finished(fresh_db, jid), 20)
        assert job(fresh_db, jid)[:3] == ("done", 2, comment_id("4711", "one more"))
        assert len(fd.notes) == 101
        assert [r["path"] for r in fd.log() if r["method"] == "GET"] == [
            "/api/v2/tickets/4711/conversations?per_page=100&page=1",
            "/api/v2/tickets/4711/conversations?per_page=100&page=2"]


def test_without_the_record_nothing_is_posted_and_comments_wait(fresh_db, daemon):
    """The note's record cannot be read or written: the note is not posted
    (its job retries), and a public comment's webhook is answered 503 with
    nothing stored, rather than taken for an agent's reply."""
    secret = {"X-Parley-Webhook-Secret": HOOK_SECRET}
    with FakeFreshdesk() as fd:
        d = daemon.start(config(fresh_db, fd.url))
        query(fresh_db, "ALTER TABLE plugin_state RENAME TO plugin_state_away")
        jid = append(fresh_db, "4711", "hello", max_attempts=1000)
        assert wait_for(lambda: job(fresh_db, jid)[3] is not None)
        assert job(fresh_db, jid)[3] == "could not read the notes recorded for the ticket"
        status, _, body = hook(d, {"ticket_id": "4711", "triggered_event": "{note_type:public}",
                                   "public_comment": "<div>hello</div>"}, secret)
        assert status == 503 and json.loads(body)["error"] == "unavailable"
        # Events that cannot be Parley's note do not need the record.
        assert hook(d, {"ticket_id": "4711", "triggered_event": "{note_type:private}",
                        "private_comment": "<p>VIP</p>"}, secret)[0] == 200
        assert query(fresh_db, "SELECT event_type FROM ticket_event") == [("comment",)]

        # Readable but not writable: still nothing posted.
        query(fresh_db, "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                        "$$ BEGIN RAISE EXCEPTION 'refused'; END $$")
        query(fresh_db, "CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON plugin_state_away "
                        "FOR EACH ROW EXECUTE FUNCTION refuse()")
        query(fresh_db, "ALTER TABLE plugin_state_away RENAME TO plugin_state")
        assert wait_for(lambda: job(fresh_db, jid)[3] == "could not record the note before adding it")
        assert fd.log() == [] and job(fresh_db, jid)[0] == "queued"

        query(fresh_db, "DROP TRIGGER refuse ON plugin_state")
        assert wait_for(lambda: finished(fresh_db, jid))
        assert job(fresh_db, jid)[0] == "done" and len(fd.notes) == 1
        assert [r["method"] for r in fd.log()] == ["POST"]
