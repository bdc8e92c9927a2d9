"""Managing who uses the agent API: agents, teams and API tokens (admin), the
agents a supervisor may read, an agent's own availability, the audit log of
every change, and parleyd --create-admin. Every answer is held to
docs/api/openapi.yaml by ApiClient."""
import json
import subprocess

import pytest

from accounts_helpers import PASSWORD, add_login, audit_actions, login, sha256_hex
from api_client import ApiClient
from api_setup import add_agent, add_team, create_token
from parley_testlib import query

INJECTIONS = ("1 OR 1=1", "1; DROP TABLE agent", "' OR ''='", "-1", "1e3", "")


@pytest.fixture
def api(fresh_db, daemon, plugin_dir):
    cfg = {"database": {"dsn": fresh_db}, "plugin_dir": plugin_dir, "jobs": {"enabled": False},
           "channels": [{"name": n, "plugin": "webhook", "config": {"secret": "s"}} for n in ("site", "shop")]}
    d = daemon.start(cfg)
    return d, cfg


@pytest.fixture
def org(api, fresh_db, run_parleyd):
    """Two teams with an agent and a supervisor each, and API clients for them
    (tokens acting for the agents), an admin and a North-only admin token."""
    d, cfg = api
    north = add_team(fresh_db, "North", ["site"])
    south = add_team(fresh_db, "South", ["shop"])
    ids = {"north": north, "south": south,
           "nsup": add_agent(fresh_db, "nsup@example.com", "Nora", role="supervisor", teams=[north]),
           "nagent": add_agent(fresh_db, "nagent@example.com", "Ned", teams=[north]),
           "ssup": add_agent(fresh_db, "ssup@example.com", "Sam", role="supervisor", teams=[south]),
           "sagent": add_agent(fresh_db, "sagent@example.com", "Sue", teams=[south]),
           "boss": add_agent(fresh_db, "boss@example.com", "Bo", role="admin")}

    def client(role, agent=None, teams=None):
        return ApiClient(d.url, token=create_token(run_parleyd, cfg, role=role, agent=agent, teams=teams))
    clients = {"admin": client("admin", "boss@example.com"),
               "nsup": client("supervisor", "nsup@example.com"),
               "nagent": client("agent", "nagent@example.com"),
               "north_admin": client("admin", teams=[north])}
    return d, ids, clients


def item_ids(body):
    return [i["id"] for i in body["items"]]


# ------------------------------------------------------------------ agents

def test_an_admin_creates_reads_changes_and_lists_agents(org, fresh_db):
    _, ids, c = org
    admin = c["admin"]
    status, _, ann = admin.post("/api/v1/agents", json={
        "email": " Ann@Example.com", "name": "Ann", "role": "agent", "team_ids": [ids["south"], ids["north"]],
        "languages": ["en", "pt-BR"], "capacity": 4})
    assert status == 201, ann
    assert ann["email"] == "ann@example.com" and ann["team_ids"] == sorted([ids["north"], ids["south"]])
    assert ann["languages"] == ["en", "pt-BR"] and ann["capacity"] == 4 and ann["availability"] == "offline"
    assert admin.get("/api/v1/agents/%d" % ann["id"])[2] == ann
    status, _, changed = admin.patch("/api/v1/agents/%d" % ann["id"], json={
        "name": "Ann Lee", "team_ids": [ids["north"]], "role": "supervisor", "availability": "away"})
    assert status == 200 and changed["name"] == "Ann Lee" and changed["team_ids"] == [ids["north"]]
    assert changed["role"] == "supervisor" and changed["availability"] == "away"
    # Lists by id with filters, a page at a time.
    status, _, page = admin.get("/api/v1/agents", params={"team_id": ids["north"], "limit": 2})
    assert status == 200 and item_ids(page) == [ids["nsup"], ids["nagent"]] and page["next_cursor"]
    status, _, rest = admin.get("/api/v1/agents", params={"team_id": ids["north"], "limit": 2,
                                                          "cursor": page["next_cursor"]})
    assert item_ids(rest) == [ann["id"]] and rest["next_cursor"] is None
    assert item_ids(admin.get("/api/v1/agents", params={"role": "admin"})[2]) == [ids["boss"]]
    assert item_ids(admin.get("/api/v1/agents", params={"availability": "away"})[2]) == [ann["id"]]
    # Disabled instead of deleted: still listed, as disabled.
    query(fresh_db, "UPDATE agent SET availability = 'online' WHERE id = %s", (ids["sagent"],))
    gone = admin.patch("/api/v1/agents/%d" % ids["sagent"], json={"disabled": True})[2]
    assert gone["disabled"] is True and gone["availability"] == "offline"   # nobody to route work to
    assert item_ids(admin.get("/api/v1/agents", params={"disabled": "true"})[2]) == [ids["sagent"]]
    assert ids["sagent"] not in item_ids(admin.get("/api/v1/agents", params={"disabled": "false"})[2])
    # Every change is audited with before and after, by whom.
    rows = query(fresh_db, "SELECT action, entity_id, actor, agent_id, token_id IS NOT NULL, details "
                           "FROM audit_log WHERE entity = 'agent' ORDER BY id")
    assert [(r[0], r[1]) for r in rows] == [("agent.create", ann["id"]), ("agent.update", ann["id"]),
                                            ("agent.update", ids["sagent"])]
    assert all(r[2] == "agent:%d" % ids["boss"] and r[3] == ids["boss"] and r[4] for r in rows)
    assert rows[0][5]["after"]["email"] == "ann@example.com" and rows[0][5]["after"]["password_set"] is False
    assert rows[1][5]["before"]["name"] == "Ann" and rows[1][5]["after"]["name"] == "Ann Lee"


def test_an_agent_created_with_a_password_logs_in_and_a_new_one_ends_their_sessions(org, fresh_db):
    d, _, c = org
    status, _, ann = c["admin"].post("/api/v1/agents", json={
        "email": "ann@example.com", "name": "Ann", "role": "agent", "password": PASSWORD})
    assert status == 201
    browser, _, _, _ = login(d.url, "ann@example.com")
    new = "another fine passphrase"
    assert c["admin"].patch("/api/v1/agents/%d" % ann["id"], json={"password": new})[0] == 200
    assert browser.get("/api/v1/me")[0] == 401
    login(d.url, "ann@example.com", PASSWORD, expect=401)
    login(d.url, "ann@example.com", new)
    # A password never appears in the audit log, nor its hash.
    details = json.dumps([r[3] for r in audit_actions(fresh_db, "agent")])
    stored = query(fresh_db, "SELECT password_hash FROM agent WHERE id = %s", (ann["id"],))[0][0]
    assert PASSWORD not in details and new not in details and stored not in details and "$scrypt$" not in details
    assert '"password_changed": true' in details
    # Weak or mistyped passwords are refused before anything is written.
    for body in ({"password": "short"}, {"password": 12345678901234}, {"password": None}):
        status, _, answer = c["admin"].patch("/api/v1/agents/%d" % ann["id"], json=body,
                                             validate_request=False)
        assert status == 422 and answer["detail"].startswith("password: "), answer


def test_the_last_enabled_admin_cannot_demote_or_disable_themselves(api, fresh_db):
    d, _ = api
    root = add_login(fresh_db, "root@example.com", role="admin")
    add_agent(fresh_db, "old@example.com", "Old", role="admin")   # a disabled admin does not count
    query(fresh_db, "UPDATE agent SET disabled_at = now() WHERE email = 'old@example.com'")
    browser, _, _, _ = login(d.url, "root@example.com")
    for change in ({"role": "supervisor"}, {"disabled": True}, {"role": "agent", "name": "Root"}):
        status, _, answer = browser.patch("/api/v1/agents/%d" % root, json=change)
        assert status == 409 and answer["error"] == "last_admin", answer
    assert query(fresh_db, "SELECT role, disabled_at, name FROM agent WHERE id = %s", (root,)) == [
        ("admin", None, "Root")]
    # With a second enabled admin, stepping down is fine.
    status, _, other = browser.post("/api/v1/agents", json={"email": "two@example.com", "name": "Two",
                                                            "role": "admin"})
    assert status == 201
    status, _, me = browser.patch("/api/v1/agents/%d" % root, json={"role": "agent"})
    assert status == 200 and me["role"] == "agent"
    # Now an agent, root manages accounts no more.
    assert browser.patch("/api/v1/agents/%d" % other["id"], json={"role": "agent"})[0] == 403


def test_agent_requests_are_read_strictly(org):
    _, ids, c = org
    admin = c["admin"]
    base = {"email": "x@example.com", "name": "X", "role": "agent"}
    for extra, status, code in (({"colour": "red"}, 400, "unknown_field"),
                                ({"name": "n" * 201}, 422, "invalid_field"),
                                ({"name": "bad\nname"}, 422, "invalid_field"),
                                ({"email": "no-at-sign"}, 422, "invalid_field"),
                                ({"email": "a@b.c" + "x" * 250}, 422, "invalid_field"),
                                ({"role": "root"}, 422, "invalid_field"),
                                ({"capacity": 1001}, 422, "invalid_field"),
                                ({"capacity": 1.5}, 422, "invalid_field"),
                                ({"languages": ["English"]}, 422, "invalid_field"),
                                ({"team_ids": ["1"]}, 422, "invalid_field"),
                                ({"team_ids": [999]}, 422, "invalid_field"),
                                ({"email": "nagent@example.com"}, 409, "conflict")):
        body = dict(base, **extra)
        status_got, _, answer = admin.post("/api/v1/agents", json=body, validate_request=False)
        assert status_got == status and answer["error"] == code, (extra, answer)
    status, _, answer = admin.patch("/api/v1/agents/%d" % ids["nagent"], json={"email": "ssup@example.com"})
    assert status == 409 and answer["error"] == "conflict"
    status, _, answer = admin.get("/api/v1/agents", params={"limit": 0})
    assert status == 400
    for bad in INJECTIONS:
        for name in ("team_id", "role", "availability", "disabled", "cursor"):
            status, _, answer = admin.get("/api/v1/agents", params={name: bad})
            assert status == 400, (name, bad, answer)


def test_who_may_see_and_change_agents(org):
    _, ids, c = org
    nsup, nagent, north_admin = c["nsup"], c["nagent"], c["north_admin"]
    # A supervisor reads the agents of their teams; another team's are 404.
    assert item_ids(nsup.get("/api/v1/agents")[2]) == [ids["nsup"], ids["nagent"]]
    assert nsup.get("/api/v1/agents/%d" % ids["nagent"])[0] == 200
    assert nsup.get("/api/v1/agents/%d" % ids["sagent"])[0] == 404
    assert nsup.get("/api/v1/agents/%d" % ids["boss"])[0] == 404
    assert nsup.get("/api/v1/agents", params={"team_id": ids["south"]})[2]["items"] == []
    # An agent sees themselves through /me only.
    for path in ("/api/v1/agents", "/api/v1/agents/%d" % ids["nagent"]):
        status, _, answer = nagent.get(path)
        assert status == 403 and answer["error"] == "forbidden"
    assert nagent.get("/api/v1/me")[2]["agent"]["id"] == ids["nagent"]
    # Only an admin without team limits writes.
    for client in (nsup, nagent, north_admin):
        status, _, _ = client.post("/api/v1/agents", json={"email": "y@example.com", "name": "Y", "role": "agent"})
        assert status == 403
        status, _, _ = client.patch("/api/v1/agents/%d" % ids["nagent"], json={"role": "admin"})
        assert status == 403
    # No hashing for a caller who may not set passwords: 403 at once.
    status, _, _ = nsup.patch("/api/v1/agents/%d" % ids["nagent"], json={"password": PASSWORD})
    assert status == 403
    # The team-limited admin reads like a supervisor of its teams.
    assert item_ids(north_admin.get("/api/v1/agents")[2]) == [ids["nsup"], ids["nagent"]]
    assert north_admin.get("/api/v1/agents/%d" % ids["sagent"])[0] == 404


def test_agent_ids_that_name_nothing_are_404(org):
    _, _, c = org
    for bad in ("0", "-1", "abc", "1%20OR%201=1", "99999999", "9" * 30, "1.0"):
        for method, body in (("get", None), ("patch", {"name": "Z"})):
            kw = {"json": body} if body else {}
            status, _, answer = getattr(c["admin"], method)("/api/v1/agents/" + bad, **kw)
            assert status == 404 and answer["error"] == "not_found", (bad, method, answer)


def test_an_agent_sets_their_own_availability(org, fresh_db):
    _, ids, c = org
    status, _, me = c["nagent"].put("/api/v1/me/availability", json={"availability": "online"})
    assert status == 200 and me["id"] == ids["nagent"] and me["availability"] == "online"
    # The same again changes nothing.
    assert c["nagent"].put("/api/v1/me/availability", json={"availability": "online"})[0] == 200
    # Queued for the event stream (or already moved on by its sequencer).
    events = query(fresh_db, "SELECT kind, channel_instance, conversation_id, agent_id, payload "
                             "FROM live_event_pending WHERE kind = 'agent.availability' UNION ALL "
                             "SELECT kind, channel_instance, conversation_id, agent_id, payload FROM live_event "
                             "WHERE kind = 'agent.availability'")
    assert len(events) == 1
    kind, instance, conversation, agent, payload = events[0]
    assert (kind, instance, conversation, agent) == ("agent.availability", None, None, ids["nagent"])
    assert payload["availability"] == "online" and payload["agent_id"] == ids["nagent"]
    assert query(fresh_db, "SELECT availability_changed_at > now() - interval '1 minute' FROM agent "
                           "WHERE id = %s", (ids["nagent"],)) == [(True,)]
    audit = [a for a in audit_actions(fresh_db, "agent") if a[0] == "agent.availability"]
    assert audit == [("agent.availability", "agent", ids["nagent"],
                      {"before": {"availability": "offline"}, "after": {"availability": "online"}})]
    for body, status, code in (({"availability": "busy"}, 422, "invalid_field"),
                               ({}, 422, "invalid_field"),
                               ({"availability": "away", "until": "5"}, 400, "unknown_field")):
        got, _, answer = c["nagent"].put("/api/v1/me/availability", json=body, validate_request=False)
        assert got == status and answer["error"] == code, body
    # A token acting for no agent has no availability.
    status, _, answer = c["north_admin"].put("/api/v1/me/availability", json={"availability": "away"})
    assert status == 403 and answer["error"] == "forbidden"


# ------------------------------------------------------------------- teams

def test_an_admin_manages_teams(org, fresh_db):
    _, ids, c = org
    admin = c["admin"]
    status, _, team = admin.post("/api/v1/teams", json={"name": "West", "channel_instances": ["shop", "site"],
                                                        "categories": ["billing", "complaint"]})
    assert status == 201 and team["channel_instances"] == ["shop", "site"] and team["agent_ids"] == []
    assert admin.post("/api/v1/teams", json={"name": "west"})[0] == 409   # names are unique, any case
    status, _, changed = admin.patch("/api/v1/teams/%d" % team["id"], json={"channel_instances": ["site"],
                                                                            "categories": []})
    assert status == 200 and changed["channel_instances"] == ["site"] and changed["categories"] == []
    assert admin.patch("/api/v1/teams/%d" % team["id"], json={"name": "North"})[0] == 409
    assert item_ids(admin.get("/api/v1/teams")[2]) == [ids["north"], ids["south"], team["id"]]
    # A team with agents is not deleted; an empty one is.
    status, _, answer = admin.delete("/api/v1/teams/%d" % ids["north"])
    assert status == 409 and answer["error"] == "team_in_use"
    assert admin.delete("/api/v1/teams/%d" % team["id"])[0] == 204
    assert admin.get("/api/v1/teams/%d" % team["id"])[0] == 404
    assert admin.delete("/api/v1/teams/%d" % team["id"])[0] == 404
    actions = [(a[0], a[2]) for a in audit_actions(fresh_db, "team")]
    assert actions == [("team.create", team["id"]), ("team.update", team["id"]), ("team.delete", team["id"])]
    deleted = audit_actions(fresh_db, "team")[-1][3]
    assert deleted["before"]["name"] == "West" and "after" not in deleted
    for body, status in (({"name": "T", "channel_instances": ["no spaces"]}, 422),
                         ({"name": "T", "categories": ["x" * 101]}, 422),
                         ({"name": "T" * 101}, 422), ({"name": " "}, 422), ({}, 422),
                         ({"name": "T", "owner": 1}, 400)):
        got, _, answer = admin.post("/api/v1/teams", json=body, validate_request=False)
        assert got == status, (body, answer)


def test_everyone_reads_their_own_teams_only(org):
    _, ids, c = org
    for who in ("nsup", "nagent", "north_admin"):
        client = c[who]
        assert item_ids(client.get("/api/v1/teams")[2]) == [ids["north"]], who
        assert client.get("/api/v1/teams/%d" % ids["north"])[2]["agent_ids"] == [ids["nsup"], ids["nagent"]]
        assert client.get("/api/v1/teams/%d" % ids["south"])[0] == 404, who
        for method, path, body in (("post", "/api/v1/teams", {"name": "Mine"}),
                                   ("patch", "/api/v1/teams/%d" % ids["north"], {"name": "Mine"}),
                                   ("delete", "/api/v1/teams/%d" % ids["south"], None)):
            kw = {"json": body} if body is not None else {}
            assert getattr(client, method)(path, **kw)[0] == 403, (who, method)
    for bad in ("0", "x", "1;DROP%20TABLE%20team", "99999"):
        assert c["admin"].get("/api/v1/teams/" + bad)[0] == 404


# ------------------------------------------------------------------ tokens

def test_tokens_are_made_listed_and_revoked(org, fresh_db):
    d, ids, c = org
    admin = c["admin"]
    status, headers, made = admin.post("/api/v1/tokens", json={
        "name": "north bot", "role": "agent", "team_ids": [ids["north"]], "agent_id": ids["nagent"],
        "expires_at": "2099-01-01T00:00:00Z"})
    assert status == 201 and headers["Cache-Control"] == "no-store"
    secret = made["secret"]
    assert secret.startswith(made["prefix"]) and made["team_ids"] == [ids["north"]]
    assert made["created_by"] == "agent:%d" % ids["boss"] and made["expires_at"].startswith("2099-01-01")
    # Only the digest is stored; the secret works at once.
    assert query(fresh_db, "SELECT encode(secret_hash, 'hex') FROM api_token WHERE id = %s",
                 (made["id"],)) == [(sha256_hex(secret),)]
    bot = ApiClient(d.url, token=secret)
    me = bot.get("/api/v1/me")[2]
    assert me["role"] == "agent" and me["team_ids"] == [ids["north"]] and me["agent"]["id"] == ids["nagent"]
    # The list shows the token without its secret or digest.
    status, _, page = admin.get("/api/v1/tokens", params={"agent_id": ids["nagent"]})
    assert status == 200 and len(page["items"]) == 2   # newest first; the older one is the fixture's
    listed = page["items"][0]
    assert listed == {k: v for k, v in made.items() if k != "secret"} | {"last_used_at": listed["last_used_at"]}
    assert listed["last_used_at"] is not None
    everything = json.dumps(admin.get("/api/v1/tokens")[2])
    assert secret not in everything and sha256_hex(secret) not in everything
    # Revoked: refused at once; revoking again is no error and no new entry.
    assert admin.delete("/api/v1/tokens/%d" % made["id"])[0] == 204
    status, _, answer = bot.get("/api/v1/me")
    assert status == 401 and answer["detail"] == "unknown, revoked or expired token"
    assert admin.delete("/api/v1/tokens/%d" % made["id"])[0] == 204
    assert item_ids(admin.get("/api/v1/tokens", params={"revoked": "true"})[2]) == [made["id"]]
    assert made["id"] not in item_ids(admin.get("/api/v1/tokens", params={"revoked": "false"})[2])
    rows = audit_actions(fresh_db, "api_token")
    mine = [(a, d_) for a, _, i, d_ in rows if i == made["id"]]
    assert [a for a, _ in mine] == ["token.create", "token.revoke"]
    assert mine[1][1]["before"]["revoked"] is False and mine[1][1]["after"]["revoked"] is True
    assert secret not in json.dumps(rows) and sha256_hex(secret) not in json.dumps(rows)


def test_token_requests_are_checked(org, fresh_db):
    _, ids, c = org
    admin = c["admin"]
    before = query(fresh_db, "SELECT count(*) FROM api_token")
    query(fresh_db, "UPDATE agent SET disabled_at = now() WHERE id = %s", (ids["sagent"],))
    for body, status, detail in (
            ({"name": "t", "role": "admin", "agent_id": ids["nagent"]}, 422, "role: more than the agent's own role"),
            ({"name": "t", "role": "agent", "agent_id": ids["sagent"]}, 422, "agent_id: the agent is disabled"),
            ({"name": "t", "role": "agent", "agent_id": 99999}, 422, "agent_id: no agent 99999"),
            ({"name": "t", "role": "agent", "team_ids": [99999]}, 422, "team_ids: no team 99999"),
            ({"name": "t", "role": "agent", "expires_at": "2001-01-01T00:00:00Z"}, 422,
             "expires_at: must be in the future"),
            ({"name": "t", "role": "agent", "expires_at": "tomorrow"}, 422, None),
            ({"name": "t", "role": "agent", "expires_at": "infinity"}, 422, None),
            ({"name": "t", "role": "god"}, 422, None),
            ({"name": "", "role": "agent"}, 422, None),
            ({"role": "agent"}, 422, None),
            ({"name": "t", "role": "agent", "secret": "prl_mine"}, 400, 'body: unknown field "secret"')):
        got, _, answer = admin.post("/api/v1/tokens", json=body, validate_request=False)
        assert got == status, (body, answer)
        assert detail is None or answer["detail"] == detail, answer
    assert query(fresh_db, "SELECT count(*) FROM api_token") == before
    # Expired: refused.
    status, _, made = admin.post("/api/v1/tokens", json={"name": "short", "role": "agent",
                                                         "expires_at": "2099-01-01T00:00:00+02:00"})
    assert status == 201
    query(fresh_db, "UPDATE api_token SET expires_at = now() - interval '1 s' WHERE id = %s", (made["id"],))
    assert ApiClient(org[0].url, token=made["secret"]).get("/api/v1/me")[0] == 401
    for bad in ("0", "abc", "99999"):
        assert admin.delete("/api/v1/tokens/" + bad)[0] == 404
    for bad in INJECTIONS:
        assert admin.get("/api/v1/tokens", params={"revoked": bad})[0] == 400
        assert admin.get("/api/v1/tokens", params={"agent_id": bad})[0] == 400


def test_only_an_unlimited_admin_handles_tokens_and_the_audit_log(org):
    _, ids, c = org
    for who in ("nsup", "nagent", "north_admin"):
        client = c[who]
        assert client.get("/api/v1/tokens")[0] == 403, who
        assert client.post("/api/v1/tokens", json={"name": "x", "role": "admin"})[0] == 403, who
        assert client.delete("/api/v1/tokens/1")[0] == 403, who
        assert client.get("/api/v1/audit")[0] == 403, who


# ------------------------------------------------------------------- audit

def test_the_audit_log_is_listed_newest_first_with_filters(org, fresh_db):
    _, ids, c = org
    admin = c["admin"]
    for name in ("A", "B", "C"):
        assert admin.post("/api/v1/teams", json={"name": name})[0] == 201
    assert admin.patch("/api/v1/agents/%d" % ids["nagent"], json={"capacity": 3})[0] == 200
    status, _, page = admin.get("/api/v1/audit", params={"entity": "team", "limit": 2})
    assert status == 200 and [i["action"] for i in page["items"]] == ["team.create", "team.create"]
    names = [i["details"]["after"]["name"] for i in page["items"]]
    rest = admin.get("/api/v1/audit", params={"entity": "team", "limit": 2, "cursor": page["next_cursor"]})[2]
    names += [i["details"]["after"]["name"] for i in rest["items"]]
    assert names == ["C", "B", "A"] and rest["next_cursor"] is None
    status, _, one = admin.get("/api/v1/audit", params={"entity": "agent", "entity_id": ids["nagent"]})
    assert [(i["action"], i["entity_id"]) for i in one["items"]] == [("agent.update", ids["nagent"])]
    entry = one["items"][0]
    assert entry["actor"] == "agent:%d" % ids["boss"] and entry["agent_id"] == ids["boss"]
    assert entry["token_id"] is not None
    assert entry["details"]["before"]["capacity"] == 10 and entry["details"]["after"]["capacity"] == 3
    by_boss = admin.get("/api/v1/audit", params={"agent_id": ids["boss"]})[2]
    assert len(by_boss["items"]) == 4
    # The tokens made on the command line are audited too, by their maker.
    cli = admin.get("/api/v1/audit", params={"entity": "api_token"})[2]["items"]
    assert len(cli) == 4 and all(i["actor"].startswith("cli:") for i in cli)
    for params in ({"entity_id": "1"}, {"entity": "Team; DROP"}, {"cursor": "bogus"},
                   {"cursor": admin.get("/api/v1/agents", params={"limit": 1})[2]["next_cursor"]},
                   {"agent_id": "x"}, {"who": "me"}):
        status, _, answer = admin.get("/api/v1/audit", params=params)
        assert status == 400, (params, answer)


# ----------------------------------------------------------- --create-admin

def create_admin(parleyd, config_path, stdin, *args):
    p = subprocess.run([parleyd, "-c", config_path, "--create-admin"] + list(args), input=stdin.encode(),
                       capture_output=True, timeout=30)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_create_admin_reads_the_password_from_stdin(api, fresh_db, parleyd, tmp_path):
    d, cfg = api
    path = tmp_path / "admin.json"
    path.write_text(json.dumps(cfg))
    code, out, err = create_admin(parleyd, str(path), PASSWORD + "\n", "Root@Example.com", "--name", "Rita Root")
    assert code == 0, err
    assert out.startswith("admin Root@Example.com created (agent ") and PASSWORD not in out + err
    rows = query(fresh_db, "SELECT email, name, role, disabled_at, password_hash FROM agent")
    assert rows[0][:4] == ("root@example.com", "Rita Root", "admin", None)
    assert rows[0][4].startswith("$scrypt$ln=15,") and PASSWORD not in rows[0][4]
    assert [a[0] for a in audit_actions(fresh_db, "agent")] == ["agent.create"]
    browser, _, _, body = login(d.url, "root@example.com")
    assert body["agent"]["role"] == "admin"
    # Refusals change nothing.
    for stdin, args, why in ((PASSWORD + "\n", ["root@example.com"], "an agent with e-mail root@example.com exists"),
                             ("short\n", ["two@example.com"], "a password needs at least 12 bytes"),
                             ("", ["two@example.com"], "no password on standard input"),
                             ("x" * 1100 + "\n", ["two@example.com"], "longer than 1024 bytes"),
                             (PASSWORD + "\n", ["not-an-address"], "not an e-mail address"),
                             (PASSWORD + "\n", ["two@example.com", "--role", "agent"], "--role goes with")):
        code, out, err = create_admin(parleyd, str(path), stdin, *args)
        assert code != 0 and why in err and out == "", (args, err)
    assert query(fresh_db, "SELECT count(*) FROM agent") == [(1,)]
    # Without --name the name is the address's local part.
    assert create_admin(parleyd, str(path), PASSWORD + "\n", "ops@example.com")[0] == 0
    assert query(fresh_db, "SELECT name FROM agent WHERE email = 'ops@example.com'") == [("ops",)]
