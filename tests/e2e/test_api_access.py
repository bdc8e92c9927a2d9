"""Who may call the agent API, and how a call is read: Bearer tokens made
by parleyd --create-token, the caller as GET /api/v1/me describes it,
requests refused before anything runs (no or bad credentials, unknown
routes and methods, unknown or repeated query parameters, bodies that are
not a JSON object)."""
import json

import pytest

import openapi_check
from api_setup import add_agent, add_team, create_token
from parley_testlib import http, query


@pytest.fixture
def api(fresh_db, daemon, plugin_dir):
    cfg = {"database": {"dsn": fresh_db}, "plugin_dir": plugin_dir, "jobs": {"enabled": False},
           "channels": [{"name": "site", "plugin": "webhook", "config": {"secret": "s"}}]}
    d = daemon.start(cfg)
    return d, cfg


def call(d, method, path, token=None, body=None, headers=None):
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = "Bearer " + token
    status, hdrs, data = http(method, d.url + path, body, h)
    # What the document describes is held to it (405s and unknown routes are
    # the server's, not an operation's).
    if path.startswith("/api/v1/me") and status in (200, 400, 401):
        openapi_check.check_response(method, path, status, hdrs, data)
    return status, hdrs, (json.loads(data) if data else None)


def test_an_admin_token_says_who_it_is(api, run_parleyd, fresh_db):
    d, cfg = api
    token = create_token(run_parleyd, cfg, role="admin", name="ops")
    status, _, body = call(d, "GET", "/api/v1/me", token)
    assert status == 200, body
    assert body["kind"] == "token" and body["role"] == "admin"
    assert body["team_ids"] is None and body["agent"] is None
    # Only the digest is stored, and the creation is audited.
    rows = query(fresh_db, "SELECT name, role, encode(secret_hash, 'hex'), prefix FROM api_token")
    assert len(rows) == 1 and rows[0][0] == "ops" and rows[0][1] == "admin"
    assert token not in json.dumps(rows) and token.startswith(rows[0][3])
    assert query(fresh_db, "SELECT action FROM audit_log WHERE entity = 'api_token'") == [("token.create",)]
    # The first use is recorded as "last used".
    assert query(fresh_db, "SELECT last_used_at IS NOT NULL FROM api_token") == [(True,)]


def test_a_token_for_an_agent_carries_the_agents_teams(api, run_parleyd, fresh_db):
    d, cfg = api
    north = add_team(fresh_db, "North", ["site"])
    add_team(fresh_db, "South")
    add_agent(fresh_db, "kim@example.com", "Kim", role="supervisor", teams=[north])
    token = create_token(run_parleyd, cfg, role="supervisor", agent="Kim@Example.com")
    status, _, body = call(d, "GET", "/api/v1/me", token)
    assert status == 200, body
    assert body["role"] == "supervisor" and body["team_ids"] == [north]
    assert body["agent"]["email"] == "kim@example.com" and body["agent"]["name"] == "Kim"


def test_create_token_refusals_change_nothing(api, run_parleyd, fresh_db):
    _, cfg = api
    for args, why in ((["--role", "root"], "role"), (["--role", "agent", "--agent", "nobody@x.org"], "no agent"),
                      (["--role", "agent", "--teams", "99"], "no team 99")):
        code, out, err = run_parleyd(["--create-token", "t"] + args, config=cfg)
        assert code == 1 and why in err and out == "", (args, err)
    code, _, err = run_parleyd(["--create-token", "t"], config=cfg)
    assert code == 2 and "--role" in err
    assert query(fresh_db, "SELECT count(*) FROM api_token") == [(0,)]


def test_calls_without_good_credentials_are_401(api, run_parleyd, fresh_db):
    d, cfg = api
    token = create_token(run_parleyd, cfg)
    for headers in ({}, {"Authorization": "Bearer prl_nope"}, {"Authorization": "Basic abc"},
                    {"Authorization": "Bearer " + token + "!"}, {"Authorization": "Bearer " + "a" * 200},
                    {"Cookie": "parley_session=unknown"}, {"Cookie": "parley_session=bad value"}):
        status, hdrs, body = call(d, "GET", "/api/v1/me", headers=headers)
        assert status == 401 and body["error"] == "unauthorized", (headers, body)
        if not headers:
            assert hdrs["www-authenticate"].startswith("Bearer")
    # A revoked or expired token stops working at once.
    assert call(d, "GET", "/api/v1/me", token)[0] == 200
    query(fresh_db, "UPDATE api_token SET revoked_at = now()")
    assert call(d, "GET", "/api/v1/me", token)[2]["detail"] == "unknown, revoked or expired token"
    query(fresh_db, "UPDATE api_token SET revoked_at = NULL, expires_at = now() - interval '1 s'")
    assert call(d, "GET", "/api/v1/me", token)[0] == 401


def test_requests_are_read_strictly(api, run_parleyd):
    d, cfg = api
    token = create_token(run_parleyd, cfg)
    status, _, body = call(d, "GET", "/api/v1/nothing-here", token)
    assert status == 404 and body["error"] == "not_found"
    status, hdrs, body = call(d, "DELETE", "/api/v1/me", token)
    assert status == 405 and hdrs["allow"] == "GET, HEAD"
    status, _, body = call(d, "GET", "/api/v1/me?colour=blue", token)
    assert status == 400 and body == {"error": "unknown_field", "detail": 'query: unknown field "colour"'}
    status, _, body = call(d, "GET", "/api/v1/me?a=1&a=2", token)
    assert status == 400 and body["detail"] == "a: given more than once"
    # A body must be a JSON object, sent as JSON, without duplicate keys.
    for raw, ctype, code, err in ((b"[1]", "application/json", 400, "malformed_json"),
                                  (b"{\"a\":1,\"a\":2}", "application/json", 400, "malformed_json"),
                                  (b"{", "application/json", 400, "malformed_json"),
                                  (b"{}", "text/plain", 415, "unsupported_media_type")):
        status, _, body = call(d, "GET", "/api/v1/me", token, raw, {"Content-Type": ctype})
        assert status == code and body["error"] == err, (raw, body)
