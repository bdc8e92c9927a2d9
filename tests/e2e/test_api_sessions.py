"""Browser sessions of the agent API: logging in (POST /api/v1/session) sets
a strict cookie and hands out the CSRF token; writes made with the cookie
need that token; a session ends on logout, on expiry (absolute and idle),
when its agent is disabled or the password changes. Failed logins are
throttled per account and per address, and an unknown e-mail, a wrong
password and a disabled agent look alike. Passwords reach the database only
as scrypt hashes, secrets only as SHA-256 digests."""
import re

import pytest

from accounts_helpers import PASSWORD, add_login, audit_actions, login, sha256_hex
from api_client import ApiClient
from api_setup import add_team, create_token
from parley_testlib import query

INVALID = {"error": "invalid_credentials", "detail": "wrong e-mail or password"}
COOKIE = re.compile(r"^parley_session=([A-Za-z0-9_-]{47}); Path=/; Max-Age=(\d+); HttpOnly; "
                    r"SameSite=Strict(; Secure)?$")


@pytest.fixture
def api(fresh_db, daemon, plugin_dir):
    cfg = {"database": {"dsn": fresh_db}, "plugin_dir": plugin_dir, "jobs": {"enabled": False},
           "api": {"session_idle_minutes": 30, "session_max_hours": 2},
           "channels": [{"name": "site", "plugin": "webhook", "config": {"secret": "s"}}]}
    d = daemon.start(cfg)
    return d, cfg


def cookie_of(headers):
    m = COOKIE.match(headers["Set-Cookie"])
    assert m, headers["Set-Cookie"]
    return m


def test_a_login_sets_a_strict_cookie_and_hands_out_the_csrf_token(api, fresh_db):
    d, _ = api
    north = add_team(fresh_db, "North", ["site"])
    kim = add_login(fresh_db, "kim@example.com", role="supervisor", teams=[north])
    browser, _, headers, body = login(d.url, " Kim@Example.COM ", PASSWORD)
    m = cookie_of(headers)
    secret = m.group(1)
    assert m.group(2) == str(2 * 3600) and m.group(3) is None  # http:// public URL: no Secure
    assert headers["Cache-Control"] == "no-store"
    assert body["agent"]["id"] == kim and body["agent"]["team_ids"] == [north]
    # The database holds digests only, and the session's limits from the config.
    rows = query(fresh_db, "SELECT encode(secret_hash, 'hex'), encode(csrf_hash, 'hex'), agent_id, "
                           "idle_timeout = interval '30 minutes', "
                           "expires_at - created_at = interval '2 hours', peer FROM agent_session")
    assert rows == [(sha256_hex(secret), sha256_hex(body["csrf_token"]), kim, True, True, "127.0.0.1")]
    # The cookie is a credential: /me knows the caller, and GET /session shows
    # the same CSRF token again (after a page reload, in another tab).
    assert browser.get("/api/v1/me")[2]["kind"] == "session"
    status, _, again = browser.get("/api/v1/session")
    assert status == 200 and again["csrf_token"] == body["csrf_token"]
    assert again["agent"]["id"] == kim and again["expires_at"] == body["expires_at"]
    assert [a[0] for a in audit_actions(fresh_db, "agent_session")] == ["session.create"]


def test_the_cookie_is_secure_behind_https(fresh_db, daemon, plugin_dir):
    d = daemon.start({"database": {"dsn": fresh_db}, "plugin_dir": plugin_dir, "jobs": {"enabled": False},
                      "public_url": "https://parley.example.com"})
    add_login(fresh_db, "ann@example.com")
    _, _, headers, _ = login(d.url, "ann@example.com")
    m = cookie_of(headers)
    assert m.group(3) == "; Secure" and m.group(2) == str(168 * 3600)  # the default lifetime


def test_wrong_password_unknown_email_and_disabled_agent_are_one_401(api, fresh_db):
    d, _ = api
    add_login(fresh_db, "ann@example.com")
    add_login(fresh_db, "gone@example.com")
    query(fresh_db, "UPDATE agent SET disabled_at = now() WHERE email = 'gone@example.com'")
    add_login(fresh_db, "nopw@example.com")
    query(fresh_db, "UPDATE agent SET password_hash = NULL WHERE email = 'nopw@example.com'")
    for email, password in (("ann@example.com", "not the password"), ("nobody@example.com", PASSWORD),
                            ("gone@example.com", PASSWORD), ("nopw@example.com", PASSWORD)):
        _, _, headers, body = login(d.url, email, password, expect=401)
        assert body == INVALID and "Set-Cookie" not in headers, email
    assert query(fresh_db, "SELECT count(*) FROM agent_session") == [(0,)]
    # Each counted alike, known account or not.
    assert dict(query(fresh_db, "SELECT key, failures FROM login_failure")) == {
        "account:ann@example.com": 1, "account:nobody@example.com": 1, "account:gone@example.com": 1,
        "account:nopw@example.com": 1, "address:127.0.0.1": 4}


def test_login_requests_are_read_strictly(api, fresh_db):
    d, _ = api
    add_login(fresh_db, "ann@example.com")
    c = ApiClient(d.url)
    for body, status, code in (({"email": "ann@example.com", "password": PASSWORD, "remember": True}, 400,
                                "unknown_field"),
                               ({"email": "ann@example.com"}, 422, "invalid_field"),
                               ({"email": 5, "password": PASSWORD}, 422, "invalid_field"),
                               ({"email": "a" * 255, "password": PASSWORD}, 422, "invalid_field"),
                               ({"email": "ann@example.com", "password": "x" * 1025}, 422, "invalid_field")):
        got, _, answer = c.post("/api/v1/session", json=body, validate_request=False)
        assert got == status and answer["error"] == code, (body, answer)
    got, _, answer = c.post("/api/v1/session?next=/", json={"email": "ann@example.com", "password": PASSWORD})
    assert got == 400 and answer["detail"] == 'query: unknown field "next"'
    got, _, answer = c.post("/api/v1/session", body="{", headers={"Content-Type": "application/json"})
    assert got == 400 and answer["error"] == "malformed_json"
    # Nothing was counted or started by a request that was not a login.
    assert query(fresh_db, "SELECT count(*) FROM login_failure") == [(0,)]
    assert query(fresh_db, "SELECT count(*) FROM agent_session") == [(0,)]


def test_writes_with_the_cookie_need_the_csrf_token(api, fresh_db):
    d, _ = api
    ann = add_login(fresh_db, "ann@example.com")
    browser, _, _, body = login(d.url, "ann@example.com")
    token = body["csrf_token"]
    for header in (None, "wrong" + token[5:], token + "x", "not a token!"):
        browser.csrf_token = header
        status, _, answer = browser.put("/api/v1/me/availability", json={"availability": "online"})
        assert status == 403 and answer["error"] == "csrf_failed", header
    assert query(fresh_db, "SELECT availability FROM agent WHERE id = %s", (ann,)) == [("offline",)]
    # Reads need none; the right token lets the write through.
    browser.csrf_token = None
    assert browser.get("/api/v1/session")[0] == 200
    browser.csrf_token = token
    status, _, agent = browser.put("/api/v1/me/availability", json={"availability": "online"})
    assert status == 200 and agent["availability"] == "online"


def test_logout_ends_the_session_and_clears_the_cookie(api, fresh_db):
    d, _ = api
    add_login(fresh_db, "ann@example.com")
    browser, _, _, _ = login(d.url, "ann@example.com")
    secret = browser.session
    browser.csrf_token, token = None, browser.csrf_token
    status, _, answer = browser.delete("/api/v1/session")   # no CSRF token: refused
    assert status == 403 and answer["error"] == "csrf_failed"
    browser.csrf_token = token
    status, headers, _ = browser.delete("/api/v1/session")
    assert status == 204
    assert headers["Set-Cookie"] == "parley_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
    assert browser.session is None
    stale = ApiClient(d.url)
    stale.cookies["parley_session"] = secret
    status, _, answer = stale.get("/api/v1/me")
    assert status == 401 and answer["detail"] == "no session, or it expired"
    assert query(fresh_db, "SELECT ended_at IS NOT NULL FROM agent_session") == [(True,)]
    assert [a[0] for a in audit_actions(fresh_db, "agent_session")] == ["session.create", "session.end"]


def test_a_token_has_no_session(api, run_parleyd):
    d, cfg = api
    api_token = ApiClient(d.url, token=create_token(run_parleyd, cfg))
    for method in ("get", "delete"):
        status, _, answer = getattr(api_token, method)("/api/v1/session")
        assert status == 404 and answer["error"] == "no_session"


def test_sessions_expire_absolutely_and_when_idle(api, fresh_db):
    d, _ = api
    add_login(fresh_db, "ann@example.com")
    first, _, _, _ = login(d.url, "ann@example.com")
    second, _, _, _ = login(d.url, "ann@example.com")
    ids = [r[0] for r in query(fresh_db, "SELECT id FROM agent_session ORDER BY id")]
    # Past its end: gone, however recently used.
    query(fresh_db, "UPDATE agent_session SET expires_at = now() - interval '1 s' WHERE id = %s", (ids[0],))
    assert first.get("/api/v1/me")[0] == 401
    # Unused for longer than its idle limit (30 minutes here): gone too.
    query(fresh_db, "UPDATE agent_session SET last_seen_at = now() - interval '29 minutes' WHERE id = %s",
          (ids[1],))
    assert second.get("/api/v1/me")[0] == 200   # and that use counts as "seen"
    assert query(fresh_db, "SELECT last_seen_at > now() - interval '1 minute' FROM agent_session "
                           "WHERE id = %s", (ids[1],)) == [(True,)]
    query(fresh_db, "UPDATE agent_session SET last_seen_at = now() - interval '31 minutes' WHERE id = %s",
          (ids[1],))
    status, _, answer = second.get("/api/v1/session")
    assert status == 401 and answer["error"] == "unauthorized"


def test_disabling_an_agent_ends_their_sessions_and_logins(api, fresh_db, run_parleyd):
    d, cfg = api
    ann = add_login(fresh_db, "ann@example.com")
    admin = ApiClient(d.url, token=create_token(run_parleyd, cfg))
    browser, _, _, _ = login(d.url, "ann@example.com")
    assert admin.patch("/api/v1/agents/%d" % ann, json={"disabled": True})[0] == 200
    assert browser.get("/api/v1/me")[0] == 401
    assert query(fresh_db, "SELECT ended_at IS NOT NULL FROM agent_session") == [(True,)]
    assert login(d.url, "ann@example.com", expect=401)[3] == INVALID
    assert admin.patch("/api/v1/agents/%d" % ann, json={"disabled": False})[0] == 200
    login(d.url, "ann@example.com")


def test_changing_the_password_ends_the_other_sessions(api, fresh_db):
    d, _ = api
    add_login(fresh_db, "ann@example.com")
    here, _, _, _ = login(d.url, "ann@example.com")
    elsewhere, _, _, _ = login(d.url, "ann@example.com")
    new = "a much better passphrase"
    for body, status, code in (({"current_password": "wrong one", "new_password": new}, 403, "wrong_password"),
                               ({"current_password": PASSWORD, "new_password": "short"}, 422, "invalid_field"),
                               ({"current_password": PASSWORD, "new_password": " " * 12}, 422, "invalid_field"),
                               ({"current_password": PASSWORD}, 422, "invalid_field"),
                               ({"current_password": PASSWORD, "new_password": new, "hint": "x"}, 400,
                                "unknown_field")):
        got, _, answer = here.put("/api/v1/me/password", json=body, validate_request=False)
        assert got == status and answer["error"] == code, (body, answer)
    assert elsewhere.get("/api/v1/me")[0] == 200    # nothing changed yet
    status, _, _ = here.put("/api/v1/me/password", json={"current_password": PASSWORD, "new_password": new})
    assert status == 204
    assert here.get("/api/v1/me")[0] == 200
    assert elsewhere.get("/api/v1/me")[0] == 401
    login(d.url, "ann@example.com", PASSWORD, expect=401)
    login(d.url, "ann@example.com", new)
    # Stored as a fresh scrypt hash of the daemon's cost; the audit names the
    # change and holds no hash.
    stored = query(fresh_db, "SELECT password_hash FROM agent")[0][0]
    assert stored.startswith("$scrypt$ln=15,r=8,p=1$") and new not in stored
    change = [a for a in audit_actions(fresh_db, "agent") if a[0] == "agent.password_change"]
    assert len(change) == 1 and change[0][3] == {}


def test_failed_logins_are_throttled_per_account(api, fresh_db):
    d, _ = api
    add_login(fresh_db, "ann@example.com")
    for _ in range(5):
        login(d.url, "ann@example.com", "guess", expect=401)
    # The sixth attempt is refused before any password check, even the right one.
    for password in ("guess", PASSWORD):
        _, _, headers, body = login(d.url, "ann@example.com", password, expect=429)
        assert body["error"] == "too_many_attempts"
        assert 1 <= int(headers["Retry-After"]) <= 900
    assert query(fresh_db, "SELECT failures FROM login_failure WHERE key = 'account:ann@example.com'") == [(5,)]
    # An unknown e-mail is throttled the same way.
    for _ in range(5):
        login(d.url, "nobody@example.com", "guess", expect=401)
    assert login(d.url, "nobody@example.com", "guess", expect=429)[3]["error"] == "too_many_attempts"
    # A new window lets the account in again; the success forgets its failures.
    query(fresh_db, "UPDATE login_failure SET window_start = window_start - interval '15 minutes'")
    login(d.url, "ann@example.com", PASSWORD)
    assert query(fresh_db, "SELECT key FROM login_failure WHERE key LIKE 'account:ann%'") == []


def test_failed_logins_are_throttled_per_address(api, fresh_db):
    d, _ = api
    emails = ["a%d@example.com" % i for i in range(5)]
    for email in emails:
        add_login(fresh_db, email)
    for i in range(19):   # never 5 on one account
        login(d.url, emails[i % 4], "guess", expect=401)
    # A good login neither counts nor resets the address.
    login(d.url, emails[4])
    assert query(fresh_db, "SELECT failures FROM login_failure WHERE key = 'address:127.0.0.1'") == [(19,)]
    login(d.url, emails[4], "guess", expect=401)
    _, _, headers, body = login(d.url, emails[4], PASSWORD, expect=429)
    assert int(headers["Retry-After"]) >= 1 and body["error"] == "too_many_attempts"
