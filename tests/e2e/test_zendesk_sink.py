"""The zendesk sink end to end: open_ticket and append_message jobs are
enqueued directly and carried out against a local server that answers the
way the Zendesk Support API does (201/200/422/429/5xx, slow answers), and
Zendesk's signed event webhooks are posted to /sinks/<instance>/events."""
import base64
import hashlib
import hmac
import json
import re
import time
import urllib.parse

from fake_http import FakeHTTPServer, hang
from parley_testlib import http, query, run_parleyd

EMAIL = "agent@example.com"
API_TOKEN = "zdApiToken0123456789secret"
WEBHOOK_SECRET = "zdWebhookSigningSecret42"
API_USER_ID = 424242


class FakeZendesk(FakeHTTPServer):
    """A small Zendesk: tickets and users live in dicts. Answers queued with
    queue(answer, method=..., path=...) take the next matching request
    first; landed(seconds) is such an answer that carries the request out and
    then hangs past the client's timeout (a create that landed although the
    client gave up)."""

    def __init__(self):
        self.tickets = {}
        self.next_id = 35436
        self.users = {}
        self.next_user = 20978392
        self.next_comment = 9000
        super().__init__(answer=lambda req: self.apply(req.method, req.path, req.body))

    def landed(self, seconds):
        def carried_out(req):
            self.apply(req.method, req.path, req.body)
            return hang(seconds)
        return carried_out

    def apply(self, method, path, body):
        """What Zendesk does on success."""
        parts = urllib.parse.urlsplit(path)
        if method == "GET" and parts.path == "/api/v2/users/me.json":
            return 200, {"user": {"id": API_USER_ID, "email": EMAIL}}
        if method == "GET" and parts.path == "/api/v2/tickets.json":
            ext = urllib.parse.parse_qs(parts.query).get("external_id", [None])[0]
            found = [t for t in self.tickets.values() if t["external_id"] == ext]
            return 200, {"tickets": found, "count": len(found), "next_page": None}
        if method == "POST" and parts.path == "/api/v2/users/create_or_update.json":
            return self.create_or_update_user(json.loads(body)["user"])
        if method == "POST" and parts.path == "/api/v2/tickets.json":
            t = json.loads(body)["ticket"]
            requester = t.get("requester_id", 777000 + self.next_id % 1000)
            if "requester_id" in t and requester not in self.users:
                return 422, {"error": "RecordInvalid", "description": "Record validation errors",
                             "details": {"requester": [{"description": "Requester: is invalid"}]}}
            tid = self.next_id
            self.next_id += 1
            self.tickets[tid] = {"id": tid, "external_id": t.get("external_id"),
                                 "status": "new", "requester_id": requester,
                                 "subject": t.get("subject"), "sent": t}
            return 201, {"ticket": self.tickets[tid], "audit": {"events": []}}
        m = re.fullmatch(r"/api/v2/tickets/(\d+)/comments\.json", parts.path)
        if m and method == "GET" and int(m.group(1)) in self.tickets:
            found = list(reversed(self.tickets[int(m.group(1))].get("comments", [])))
            return 200, {"comments": found, "count": len(found)}
        m = re.fullmatch(r"/api/v2/tickets/(\d+)\.json", parts.path)
        if m and int(m.group(1)) in self.tickets:
            t = self.tickets[int(m.group(1))]
            if method == "GET":
                return 200, {"ticket": {k: v for k, v in t.items() if k != "comments"}}
            if method == "PUT":
                self.next_comment += 1
                c = json.loads(body)["ticket"]["comment"]
                t.setdefault("comments", []).append({
                    "id": self.next_comment, "type": "Comment", "author_id": c.get("author_id"),
                    "body": c["body"], "public": c["public"],
                    "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
                return 200, {"ticket": {k: v for k, v in t.items() if k != "comments"},
                             "audit": {"id": 1, "events": [
                                 {"id": self.next_comment, "type": "Comment", "public": True}]}}
        return 404, {"error": "RecordNotFound", "description": "Not found"}

    def create_or_update_user(self, u):
        """Zendesk's users/create_or_update: the user with that external_id
        (any case), else with that e-mail, is updated (200); otherwise a new
        end user is created (201)."""
        ext = (u.get("external_id") or "").lower()
        email = (u.get("email") or "").lower()
        found = [x for x in self.users.values() if ext and (x["external_id"] or "").lower() == ext]
        found = found or [x for x in self.users.values()
                          if email and (x["email"] or "").lower() == email]
        if found:
            user = found[0]
            user["name"] = u.get("name", user["name"])
            user["external_id"] = u.get("external_id", user["external_id"])
            user["email"] = user["email"] or u.get("email")
            return 200, {"user": user}
        uid = self.next_user
        self.next_user += 1
        self.users[uid] = {"id": uid, "name": u.get("name"), "email": u.get("email"),
                           "external_id": u.get("external_id"), "role": u.get("role", "end-user")}
        return 201, {"user": self.users[uid]}

    seen = FakeHTTPServer.matching     # seen(method, path regex): the requests so far


def config(dsn, url, **extra):
    opts = {"base_url": url, "email": EMAIL, "api_token": API_TOKEN,
            "webhook_secret": WEBHOOK_SECRET, "timeout_ms": 1000}
    opts.update(extra)
    return {"database": {"dsn": dsn}, "log": {"level": "debug"},
            "jobs": {"backoff_base_ms": 50, "backoff_max_ms": 200, "sweep_interval_ms": 100},
            "sinks": [{"name": "zd", "plugin": "zendesk", "config": opts}]}


def conversation(case="PC-10012", **extra):
    c = {"conversation_id": "812", "visibility": "public", "case_number": case,
         "channel_instance": "facebook-main", "channel_kind": "meta", "category": "Billing",
         "customer": {"customer_id": "77", "display_name": "Ann Lee",
                      "email": "ann@example.com", "external_id": "9001"}}
    c.update(extra)
    if c["case_number"] is None:
        del c["case_number"]
    return c


def open_ticket(dsn, key, follow_up_of=None, **conv):
    payload = {"conversation": conversation(**conv),
               "message": {"message_id": "5531", "text": "My order never arrived",
                           "inbound": True}}
    if follow_up_of is not None:
        payload["follow_up_of"] = follow_up_of
    return query(dsn, "SELECT parley_job_enqueue('sink', 'zd', 'open_ticket', %s::jsonb, %s)",
                 (json.dumps(payload), key))[0][0]


def append(dsn, key, ticket, text="Any news?"):
    payload = {"external_ticket_id": ticket, "conversation": conversation(),
               "message": {"message_id": "5540", "text": text, "inbound": True}}
    return query(dsn, "SELECT parley_job_enqueue('sink', 'zd', 'append_message', %s::jsonb, %s)",
                 (json.dumps(payload), key))[0][0]


def job(dsn, job_id):
    return query(dsn, "SELECT state, attempts, external_id, last_error, "
                      "extract(epoch from run_at - now()) FROM job WHERE id = %s", (job_id,))[0]


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def wait_state(dsn, job_id, state, timeout=15.0):
    assert wait_for(lambda: job(dsn, job_id)[0] == state, timeout), job(dsn, job_id)
    return job(dsn, job_id)


def assert_no_secrets(d):
    d.stop()
    log = d.log_text()
    basic = base64.b64encode(("%s/token:%s" % (EMAIL, API_TOKEN)).encode()).decode()
    for secret in (API_TOKEN, WEBHOOK_SECRET, basic):
        assert secret not in log


def test_config_is_checked_and_secrets_never_echoed(tmp_path, parleyd, plugin_dir, fresh_db):
    cfg = config(fresh_db, "ftp://acme.zendesk.com")
    cfg["plugin_dir"] = plugin_dir
    rc, out, err = run_parleyd(parleyd, ["--check-config"], config=cfg, workdir=tmp_path)
    assert rc == 2
    assert "sinks[0].config.base_url: must be an http:// or https:// URL" in err
    cfg = config(fresh_db, "https://acme.zendesk.com", oauth_token="oauthSecretTok")
    cfg["plugin_dir"] = plugin_dir
    rc, out, err = run_parleyd(parleyd, ["--check-config"], config=cfg, workdir=tmp_path)
    assert rc == 2
    assert "sinks[0].config.oauth_token: set either oauth_token or api_token, not both" in err
    assert API_TOKEN not in out + err and "oauthSecretTok" not in out + err


def test_open_ticket_looks_up_then_creates_as_documented(fresh_db, daemon):
    with FakeZendesk() as zd:
        d = daemon.start(config(fresh_db, zd.url))
        jid = open_ticket(fresh_db, "ticket-conv-812")
        state, attempts, ext, err, _ = wait_state(fresh_db, jid, "done")
        assert (attempts, ext, err) == (1, "35436", None)
        auth = "Basic " + base64.b64encode(("%s/token:%s" % (EMAIL, API_TOKEN)).encode()).decode()
        [lookup] = zd.seen("GET", r"^/api/v2/tickets\.json")
        assert lookup["path"] == "/api/v2/tickets.json?external_id=PC-10012"
        assert lookup["headers"]["Authorization"] == auth
        # The requester first: found or made by Parley's external id (or e-mail).
        [user, create] = zd.seen("POST")
        assert user["path"] == "/api/v2/users/create_or_update.json"
        assert user["headers"]["Authorization"] == auth
        assert user["headers"]["Content-Type"] == "application/json"
        assert "Idempotency-Key" not in user["headers"]
        assert user["body"] == (b'{"user":{"name":"Ann Lee","email":"ann@example.com",'
                                b'"external_id":"parley-77"}}')
        assert create["path"] == "/api/v2/tickets.json"
        assert create["headers"]["Authorization"] == auth
        assert create["headers"]["Idempotency-Key"] == "ticket-conv-812"
        assert create["headers"]["Content-Type"] == "application/json"
        assert create["body"] == (
            b'{"ticket":{"subject":"facebook-main: My order never arrived",'
            b'"comment":{"body":"My order never arrived"},"requester_id":20978392,'
            b'"external_id":"PC-10012",'
            b'"tags":["parley","channel_facebook-main","visibility_public","category_billing"]}}')
        assert lookup["at"] < user["at"] < create["at"]
        assert zd.users[20978392]["external_id"] == "parley-77"
        assert zd.tickets[35436]["requester_id"] == 20978392
        assert_no_secrets(d)


def test_retry_after_timeout_finds_the_ticket_instead_of_a_second_one(fresh_db, daemon):
    with FakeZendesk() as zd:
        # The create lands in Zendesk but the answer never comes back in time.
        zd.queue(zd.landed(2.5), method="POST", path=r"^/api/v2/tickets\.json$")
        daemon.start(config(fresh_db, zd.url))
        jid = open_ticket(fresh_db, "ticket-conv-812")
        state, attempts, ext, err, _ = wait_state(fresh_db, jid, "done")
        assert attempts == 2
        assert ext == "35436"
        assert len(zd.seen("POST", r"^/api/v2/tickets\.json$")) == 1     # no second ticket
        assert len(zd.tickets) == 1
        assert len(zd.seen("GET", r"external_id=PC-10012")) == 2


def test_follow_up_of_a_closed_ticket(fresh_db, daemon):
    with FakeZendesk() as zd:
        zd.tickets[100] = {"id": 100, "external_id": "PC-10012", "status": "closed",
                           "requester_id": 5}
        daemon.start(config(fresh_db, zd.url))
        jid = open_ticket(fresh_db, "ticket-conv-812-2", follow_up_of="100")
        state, attempts, ext, err, _ = wait_state(fresh_db, jid, "done")
        assert ext == "35436"
        [create] = zd.seen("POST", r"^/api/v2/tickets\.json$")
        sent = json.loads(create["body"])["ticket"]
        assert sent["via_followup_source_id"] == 100
        assert sent["external_id"] == "PC-10012"


def test_customer_without_email_is_one_zendesk_user(fresh_db, daemon):
    """Known by platform id only: every ticket of the customer has the same
    requester, found by Parley's external id. The user is remembered; a
    changed name is sent again."""
    anon = {"customer_id": "91", "display_name": "ann.lee", "external_id": "9001"}
    with FakeZendesk() as zd:
        daemon.start(config(fresh_db, zd.url))
        j1 = open_ticket(fresh_db, "k1", case="PC-1", customer=anon)
        assert wait_state(fresh_db, j1, "done")[2] == "35436"
        j2 = open_ticket(fresh_db, "k2", case="PC-2", customer=anon)
        assert wait_state(fresh_db, j2, "done")[2] == "35437"
        [user] = zd.seen("POST", r"^/api/v2/users/")      # the second ticket knew the user
        assert user["body"] == b'{"user":{"name":"ann.lee","external_id":"parley-91"}}'
        assert list(zd.users) == [20978392]
        assert [t["requester_id"] for t in zd.tickets.values()] == [20978392, 20978392]
        assert all("requester" not in t["sent"] for t in zd.tickets.values())
        # A new name goes to Zendesk again, for the same user.
        j3 = open_ticket(fresh_db, "k3", case="PC-3", customer=dict(anon, display_name="Ann Lee"))
        assert wait_state(fresh_db, j3, "done")[2] == "35438"
        assert len(zd.seen("POST", r"^/api/v2/users/")) == 2
        assert list(zd.users) == [20978392] and zd.users[20978392]["name"] == "Ann Lee"
        assert zd.tickets[35438]["requester_id"] == 20978392
        # Without a customer there is no user call and no requester: the API user's.
        j4 = open_ticket(fresh_db, "k4", case="PC-4", customer=None)
        assert wait_state(fresh_db, j4, "done")[2] == "35439"
        assert len(zd.seen("POST", r"^/api/v2/users/")) == 2
        sent = zd.tickets[35439]["sent"]
        assert "requester" not in sent and "requester_id" not in sent


def test_a_remembered_requester_gone_from_zendesk_is_asked_for_again(fresh_db, daemon):
    with FakeZendesk() as zd:
        daemon.start(config(fresh_db, zd.url))
        assert wait_state(fresh_db, open_ticket(fresh_db, "k1", case="PC-1"), "done")[2] == "35436"
        del zd.users[20978392]                   # deleted (or merged) in Zendesk since
        j2 = open_ticket(fresh_db, "k2", case="PC-2")
        state, attempts, ext, err, _ = wait_state(fresh_db, j2, "done")
        assert (attempts, ext) == (2, "35437")
        assert len(zd.seen("POST", r"^/api/v2/users/")) == 2
        assert zd.tickets[35437]["requester_id"] == 20978393


def test_requester_call_failures(fresh_db, daemon):
    invalid = {"error": "RecordInvalid", "description": "Record validation errors",
               "details": {"email": [{"description": "Email: is not properly formatted"}]}}
    with FakeZendesk() as zd:
        def next_user_answer(status, answer):
            zd.queue((status, answer), method="POST", path=r"^/api/v2/users/")

        next_user_answer(503, "<html>down</html>")
        daemon.start(config(fresh_db, zd.url))
        # 503: retried, then done.
        j1 = open_ticket(fresh_db, "k1", case="PC-1")
        state, attempts, ext, err, _ = wait_state(fresh_db, j1, "done")
        assert (attempts, ext) == (2, "35436")
        # The next two customers: 422 and 403 fail, and no ticket is made.
        next_user_answer(422, invalid)
        j2 = open_ticket(fresh_db, "k2", case="PC-2", customer={"customer_id": "92",
                                                                "email": "not an address"})
        state, attempts, ext, err, _ = wait_state(fresh_db, j2, "dead")
        assert attempts == 1
        assert err == ("Zendesk answered 422 creating or updating the requester: Record "
                       "validation errors; email: Email: is not properly formatted")
        next_user_answer(403, {"error": "Forbidden", "description": "You do not have access"})
        j3 = open_ticket(fresh_db, "k3", case="PC-3", customer={"customer_id": "93"})
        state, attempts, ext, err, _ = wait_state(fresh_db, j3, "dead")
        assert err == ("Zendesk answered 403 creating or updating the requester: "
                       "unauthorized: check the API token (and email)")
        assert len(zd.seen("POST", r"^/api/v2/tickets\.json$")) == 1


def test_append_comments_as_the_requester(fresh_db, daemon):
    with FakeZendesk() as zd:
        zd.tickets[500] = {"id": 500, "external_id": "PC-10012", "status": "open",
                           "requester_id": 20978392}
        daemon.start(config(fresh_db, zd.url))
        first = append(fresh_db, "append-1", "500")
        state, attempts, ext, err, _ = wait_state(fresh_db, first, "done")
        assert ext == "9001"                 # the comment's id, from the audit
        [show] = zd.seen("GET", r"^/api/v2/tickets/500\.json$")
        [put] = zd.seen("PUT")
        assert put["path"] == "/api/v2/tickets/500.json"
        assert json.loads(put["body"]) == {"ticket": {"comment": {
            "body": "Any news?", "public": True, "author_id": 20978392}}}
        # The requester is remembered: the next comment is one request.
        second = append(fresh_db, "append-2", "500", text="Hello again")
        assert wait_state(fresh_db, second, "done")[2] == "9002"
        assert len(zd.seen("GET", r"^/api/v2/tickets/500\.json$")) == 1
        assert len(zd.seen("PUT")) == 2


def test_comment_that_landed_despite_a_timeout_is_not_added_twice(fresh_db, daemon):
    with FakeZendesk() as zd:
        zd.queue(zd.landed(2.5), method="PUT", path=r"/api/v2/tickets/500\.json")
        zd.tickets[500] = {"id": 500, "external_id": "PC-10012", "status": "open",
                           "requester_id": 20978392}
        daemon.start(config(fresh_db, zd.url))
        a = append(fresh_db, "append-1", "500")
        state, attempts, ext, err, _ = wait_state(fresh_db, a, "done")
        assert attempts == 2
        assert ext == "9001"                     # the comment the first attempt added
        assert len(zd.seen("PUT")) == 1
        assert len(zd.tickets[500]["comments"]) == 1
        [find] = zd.seen("GET", r"/comments\.json")
        assert find["path"] == "/api/v2/tickets/500/comments.json?sort_order=desc"
        # An ordinary append does not look for earlier attempts.
        b = append(fresh_db, "append-2", "500", text="Any news?")
        assert wait_state(fresh_db, b, "done")[2] == "9002"
        assert len(zd.seen("GET", r"/comments\.json")) == 1
        assert len(zd.tickets[500]["comments"]) == 2


def test_closed_ticket_refuses_the_comment_clearly(fresh_db, daemon):
    closed = {"error": "RecordInvalid", "description": "Record validation errors",
              "details": {"status": [{"description": "Status: closed prevents ticket update"}]}}
    with FakeZendesk() as zd:
        zd.queue((422, closed), method="PUT", path=r"/api/v2/tickets/500\.json")
        zd.tickets[500] = {"id": 500, "external_id": "PC-10012", "status": "solved",
                           "requester_id": 20978392}
        zd.tickets[501] = {"id": 501, "external_id": "PC-9", "status": "closed",
                           "requester_id": 1}
        daemon.start(config(fresh_db, zd.url))
        a = append(fresh_db, "append-1", "500")
        state, attempts, ext, err, _ = wait_state(fresh_db, a, "dead")
        assert attempts == 1
        assert "the ticket is closed and takes no more comments" in err
        assert "closed prevents ticket update" in err
        # Known closed before the PUT: refused without trying.
        b = append(fresh_db, "append-2", "501")
        state, attempts, ext, err, _ = wait_state(fresh_db, b, "dead")
        assert err == "ticket 501 is closed: Zendesk takes no more comments on it"
        assert len(zd.seen("PUT", r"/501\.json")) == 0


def test_5xx_and_429_are_retried(fresh_db, daemon):
    with FakeZendesk() as zd:
        zd.queue((503, "<html>down</html>"), method="GET", path=r"external_id=PC-1$")
        zd.queue((429, "Number of allowed API requests per minute exceeded",
                  {"Retry-After": "1"}), method="GET", path=r"external_id=PC-2$")
        daemon.start(config(fresh_db, zd.url))
        j1 = open_ticket(fresh_db, "k1", case="PC-1")
        state, attempts, ext, err, _ = wait_state(fresh_db, j1, "done")
        assert attempts == 2 and ext is not None     # the 503 used an attempt

        j2 = open_ticket(fresh_db, "k2", case="PC-2")
        state, attempts, ext, err, _ = wait_state(fresh_db, j2, "done")
        assert attempts == 1     # the 429 with Retry-After deferred the job: no attempt used
        looks = zd.seen("GET", r"external_id=PC-2$")
        assert looks[1]["at"] - looks[0]["at"] >= 0.9     # Retry-After honoured
        assert len(zd.seen("POST", r"^/api/v2/tickets\.json$")) == 2


def test_validation_and_auth_fail(fresh_db, daemon):
    invalid = {"error": "RecordInvalid", "description": "Record validation errors",
               "details": {"requester": [{"description": "Requester: Email is invalid"}]}}
    with FakeZendesk() as zd:
        zd.queue((422, invalid), method="POST", path=r"tickets\.json$")
        zd.queue((401, {"error": "Couldn't authenticate you"}), method="GET",
                 path=r"external_id=PC-401$")
        zd.queue((429, "Too many"), method="GET", path=r"external_id=PC-429$")
        daemon.start(config(fresh_db, zd.url))
        j1 = open_ticket(fresh_db, "k1", case="PC-1")
        state, attempts, ext, err, _ = wait_state(fresh_db, j1, "dead")
        assert attempts == 1
        assert err == ("Zendesk answered 422 creating the ticket: Record validation errors; "
                       "requester: Requester: Email is invalid")
        j2 = open_ticket(fresh_db, "k2", case="PC-401")
        state, attempts, ext, err, _ = wait_state(fresh_db, j2, "dead")
        assert "unauthorized: check the API token" in err
        # 429 without Retry-After: the core's backoff, then done.
        j3 = open_ticket(fresh_db, "k3", case="PC-429")
        state, attempts, ext, err, _ = wait_state(fresh_db, j3, "done", timeout=25)
        assert attempts == 2


def test_budget_paces_and_hands_back_long_waits(fresh_db, daemon):
    """requests_per_minute 6: one request per 10 s. The first ticket goes at
    once, the API user lookup and the second wait their turn (up to 20 s),
    the third would wait longer and goes back to the core with run_at at its
    slot instead of holding its lease."""
    with FakeZendesk() as zd:
        daemon.start(config(fresh_db, zd.url, requests_per_minute=6))
        rows = query(fresh_db,
                     "SELECT parley_job_enqueue('sink', 'zd', 'open_ticket', %s::jsonb, 'k' || i) "
                     "FROM generate_series(1, 3) AS i",
                     (json.dumps({"conversation": conversation(case=None),
                                  "message": {"message_id": "1", "text": "hi"}}),))
        ids = [r[0] for r in rows]
        assert wait_for(lambda: any(job(fresh_db, i)[3] is not None and "budget" in job(fresh_db, i)[3]
                                    for i in ids), 10)
        states = [job(fresh_db, i) for i in ids]
        deferred = [s for s in states if s[3] is not None and "budget" in s[3]]
        assert len(deferred) == 1
        assert deferred[0][0] == "queued" and deferred[0][4] > 15   # run_at at its slot
        time.sleep(1.0)
        assert len(zd.requests) == 1      # nothing else started within the 10 s spacing


# ------------------------------------------------------------------ webhooks

def zsign(body, ts="2026-11-23T10:00:00Z", secret=WEBHOOK_SECRET):
    mac = hmac.new(secret.encode(), ts.encode() + body, hashlib.sha256).digest()
    return {"X-Zendesk-Webhook-Signature": base64.b64encode(mac).decode(),
            "X-Zendesk-Webhook-Signature-Timestamp": ts,
            "Content-Type": "application/json"}


def comment_event(ticket="35436", comment="9101", public=True, author="555"):
    return json.dumps({
        "account_id": 22129848, "id": "evt-%s" % comment, "time": "2026-11-23T10:00:00Z",
        "type": "zen:event-type:ticket.comment_added", "subject": "zen:ticket:%s" % ticket,
        "zendesk_event_version": "2022-11-06",
        "detail": {"id": ticket, "requester_id": "20978392", "status": "OPEN",
                   "external_id": "PC-10012"},
        "event": {"comment": {"id": comment, "body": "We shipped it today", "is_public": public,
                              "author": {"id": author, "is_staff": True, "name": "Agent Smith"}}},
    }).encode()


def ticket_events(dsn):
    return query(dsn, "SELECT dedupe_key, event_type, external_ticket_id FROM ticket_event "
                      "ORDER BY id")


def test_webhook_signature_is_required(fresh_db, daemon):
    d = daemon.start(config(fresh_db, "http://127.0.0.1:9"))
    url = d.url + "/sinks/zd/events"
    body = comment_event()
    status, _, answer = http("POST", url, body, {"Content-Type": "application/json"})
    assert status == 401
    bad = zsign(body, secret="not-the-secret")
    assert http("POST", url, body, bad)[0] == 401
    headers = zsign(body)
    headers["X-Zendesk-Webhook-Signature-Timestamp"] = "2026-11-23T10:00:01Z"
    assert http("POST", url, body, headers)[0] == 401
    # Signed but not a Zendesk event: 400; an event type Parley does not use: 200.
    junk = b'{"hello": 1}'
    assert http("POST", url, junk, zsign(junk))[0] == 400
    other = json.dumps({"type": "zen:event-type:ticket.priority_changed",
                        "detail": {"id": "1"}, "event": {}}).encode()
    assert http("POST", url, other, zsign(other))[0] == 200
    assert_no_secrets(d)


def test_webhook_events_are_stored(fresh_db, daemon):
    """Needs the core's ticket_event storage (request_emit_ticket_event)."""
    d = daemon.start(config(fresh_db, "http://127.0.0.1:9"))
    url = d.url + "/sinks/zd/events"
    body = comment_event()
    assert http("POST", url, body, zsign(body))[0] == 200
    assert http("POST", url, body, zsign(body))[0] == 200      # a replay changes nothing
    status_body = json.dumps({
        "id": "evt-s1", "time": "2026-11-23T10:01:00Z",
        "type": "zen:event-type:ticket.status_changed",
        "detail": {"id": "35436"}, "event": {"current": "SOLVED", "previous": "OPEN"}}).encode()
    assert http("POST", url, status_body, zsign(status_body))[0] == 200
    assert ticket_events(fresh_db) == [("comment:9101", "comment", "35436"),
                                       ("status:evt-s1", "status", "35436")]
    bad = comment_event(comment="9102")
    assert http("POST", url, bad, zsign(bad, secret="wrong"))[0] == 401
    assert len(ticket_events(fresh_db)) == 2
