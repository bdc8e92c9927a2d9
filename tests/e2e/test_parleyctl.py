"""parleyctl, the API's command-line client, run as the real binary against
the real daemon: health, /me, where the token comes from, errors, usage, and
every command whose endpoint docs/api/openapi.yaml documents (a command whose
endpoint is not documented yet is skipped: "endpoint not merged yet").
test_parleyctl_requests.py runs it against a fake API, and the fixtures and
helpers here serve both."""
import json
import os
import subprocess
import time

import pytest

import openapi_check
from api_setup import add_agent, add_team, create_token
from parley_testlib import free_port, http, query, sanitizer_report, sign

SECRET = "ctl-secret"
HOSTILE = "\x1b[31mred\x1b[0m \x1b]0;owned\x07 \u009b2J \u202eevil\rX"
# Today (parleyctl runs with TZ=UTC), so tables show it as "12:34".
T = time.strftime("%Y-%m-%dT12:34:56.123456+00:00", time.gmtime())


# ------------------------------------------------------------------ running it

@pytest.fixture(scope="session")
def parleyctl(build_dir):
    path = os.path.join(build_dir, "parleyctl")
    if not os.access(path, os.X_OK):
        pytest.fail("%s is not built (scripts/build.sh)" % path, pytrace=False)
    return path


@pytest.fixture
def ctl(parleyctl, tmp_path):
    """ctl(args, url=None, token=None, env=None, input=None) -> (code, out, err)."""
    def run(args, url=None, token=None, env=None, input=None, timeout=60):
        e = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TZ": "UTC", "HOME": str(tmp_path)}
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            if k in os.environ:
                e[k] = os.environ[k]
        if url is not None:
            e["PARLEY_URL"] = url
        if token is not None:
            e["PARLEY_TOKEN"] = token
        e.update(env or {})
        argv = [parleyctl] + [a if isinstance(a, bytes) else str(a) for a in args]
        p = subprocess.run(argv, env=e, input=input, capture_output=True, timeout=timeout)
        out, err = p.stdout.decode("utf-8"), p.stderr.decode("utf-8")
        report = sanitizer_report(err)
        if report:
            pytest.fail("parleyctl %s: sanitizer report:\n%s" % (" ".join(map(str, args)), report),
                        pytrace=False)
        return p.returncode, out, err
    return run


def documented(method, template):
    paths = openapi_check.document().doc.get("paths") or {}
    return method.lower() in (paths.get(template) or {})


def needs(*endpoints):
    """Skipped (before its fixtures start a daemon) unless every (METHOD,
    path template) is in the API document: the command is written and
    tested against the fake API, the endpoint is still being built."""
    missing = ["%s %s" % e for e in endpoints if not documented(*e)]
    return pytest.mark.skipif(bool(missing), reason="endpoint not merged yet: " + ", ".join(missing))


def assert_terminal_safe(text):
    """Nothing in text can start a terminal escape sequence or move the cursor."""
    for bad in ("\x1b", "\x07", "\r", "\u009b", "\u202e", "\x00"):
        assert bad not in text, (bad, text)


# ------------------------------------------------------------ the real daemon

@pytest.fixture
def live(fresh_db, daemon, plugin_dir, run_parleyd, fake_http):
    """The daemon with a webhook channel "site" (replies would go to a fake
    callback; jobs are off, so they stay queued) and an admin token."""
    callback = fake_http(answer={"id": "out-1"})
    cfg = {"database": {"dsn": fresh_db}, "plugin_dir": plugin_dir, "jobs": {"enabled": False},
           "channels": [{"name": "site", "plugin": "webhook",
                         "config": {"secret": SECRET, "callback_url": callback.url}}]}
    d = daemon.start(cfg)

    class Live:
        url, dsn, config = d.url, fresh_db, cfg
        token = create_token(run_parleyd, cfg, role="admin", name="ctl")

        def post(self, payload):
            body = json.dumps(payload).encode()
            status, _, data = http("POST", d.url + "/webhooks/site", body,
                                   {"Content-Type": "application/json",
                                    "X-Parley-Signature": sign(SECRET, body)})
            assert status == 200, data

        def agent_token(self, email="kim@example.com", name="Kim", role="agent"):
            """An agent of team North (which owns "site") and a token acting for it."""
            team = add_team(self.dsn, "North", ["site"])
            add_agent(self.dsn, email, name, role=role, teams=[team])
            return create_token(run_parleyd, cfg, role=role, agent=email, name=email)
    return Live()


def test_health_needs_no_token(live, ctl):
    code, out, err = ctl(["health"], url=live.url)
    assert code == 0, err
    ready = json.loads(http("GET", live.url + "/readyz")[2])
    assert out == "ready: schema %d, policy version %d\n" % (ready["schema_version"],
                                                            ready["policy"]["version"])
    code, out, err = ctl(["--json", "health"], url=live.url)
    assert code == 0, err
    body = json.loads(out)
    assert body["health"] == {"status": "ok"} and body["ready"]["status"] == "ready"


def test_me_as_table_and_as_the_apis_json(live, ctl, run_parleyd):
    code, out, err = ctl(["me"], url=live.url, token=live.token)
    assert code == 0, err
    token_id = query(live.dsn, "SELECT id FROM api_token WHERE name = 'ctl'")[0][0]
    assert out == "token %d, role admin, teams all\nagent: none\n" % token_id
    code, out, err = ctl(["me", "--json"], url=live.url, token=live.token)
    assert code == 0, err
    me = json.loads(out)
    openapi_check.check_response("GET", "/api/v1/me", 200, {"Content-Type": "application/json"},
                                 out.encode())
    assert me["role"] == "admin" and me["kind"] == "token" and me["token_id"] == token_id

    north = add_team(live.dsn, "North", ["site"])
    # Control characters cannot be in a name; a bidi override can.
    kim = add_agent(live.dsn, "kim@example.com", "Kim \u202eevil", role="supervisor", teams=[north])
    kims = create_token(run_parleyd, live.config, role="supervisor", agent="kim@example.com")
    code, out, err = ctl(["me"], url=live.url, token=kims)
    assert code == 0, err
    assert "role supervisor, teams %d\n" % north in out
    assert "agent %d: Kim <U+202E>evil <kim@example.com>\n" % kim in out
    assert_terminal_safe(out)


def test_where_the_token_comes_from(live, ctl, tmp_path):
    ok = "role admin"
    # The environment, a file (first line, white space trimmed), the option.
    assert ok in ctl(["me"], url=live.url, token=live.token)[1]
    f = tmp_path / "token"
    f.write_text("  %s \nsecond line\n" % live.token)
    f.chmod(0o600)
    code, out, err = ctl(["--token-file", f, "me"], url=live.url)
    assert code == 0 and ok in out and err == "", err
    code, out, err = ctl(["me"], url=live.url, env={"PARLEY_TOKEN_FILE": str(f)})
    assert code == 0 and ok in out, err
    assert ok in ctl(["me", "--token", live.token], url=live.url)[1]
    # --token wins over the environment; a file readable by others is used, with a warning.
    code, _, err = ctl(["me", "--token", "prl_wrong"], url=live.url, token=live.token)
    assert code == 1 and "401 unauthorized" in err
    f.chmod(0o644)
    code, out, err = ctl(["--token-file", f, "me"], url=live.url)
    assert code == 0 and "can be read by other users" in err
    # No token, an unreadable file, an empty file, a token with a line break.
    code, _, err = ctl(["me"], url=live.url)
    assert code == 2 and "no token" in err
    code, _, err = ctl(["--token-file", tmp_path / "missing", "me"], url=live.url)
    assert code == 2 and "missing" in err
    (tmp_path / "empty").write_text("\n")
    code, _, err = ctl(["--token-file", tmp_path / "empty", "me"], url=live.url)
    assert code == 2 and "token is empty" in err
    code, _, err = ctl(["me"], url=live.url, token="prl_a\nX-Evil: 1")
    assert code == 2 and "X-Evil" not in err


def test_a_bad_token_is_the_apis_error_and_is_never_printed(live, ctl):
    bad = "prl_" + "z" * 43
    code, out, err = ctl(["me"], url=live.url, token=bad)
    assert code == 1 and out == ""
    assert err == "parleyctl: HTTP 401 unauthorized: unknown, revoked or expired token\n"
    code, out, err = ctl(["--json", "me"], url=live.url, token=bad)
    assert code == 1 and json.loads(out)["error"] == "unauthorized"
    for text in (out, err):
        assert bad not in text and "zzzz" not in text
    # Nor is a good one, whatever happens.
    for args in (["me"], ["--json", "me"], ["conversations", "show", "999999"]):
        _, out, err = ctl(args, url=live.url, token=live.token)
        assert live.token not in out + err and live.token[4:20] not in out + err


def test_unreachable_url_and_usage_errors(live, ctl):
    port = free_port()
    code, out, err = ctl(["me"], url="http://127.0.0.1:%d" % port, token=live.token)
    assert code == 1 and out == ""
    assert err.startswith("parleyctl: cannot reach http://127.0.0.1:%d: " % port)
    code, _, err = ctl(["health"], url="http://127.0.0.1:%d" % port)
    assert code == 1 and "cannot reach" in err
    # Usage: exit 2 before anything is sent (the URL would answer).
    for args, why in (([], "Usage:"), (["frobnicate"], 'unknown command "frobnicate"'),
                      (["conversations"], "conversations what?"),
                      (["conversations", "show"], "missing ID"),
                      (["conversations", "show", "5x"], "ID must be a positive whole number"),
                      (["conversations", "show", "0"], "ID must be a positive whole number"),
                      (["conversations", "show", "../tokens"], "ID must be"),
                      (["conversations", "show", "5", "6"], 'unexpected argument "6"'),
                      (["conversations", "status", "5", "done"], "open|pending|resolved|closed"),
                      (["conversations", "list", "--status", "open,,closed"], "comma-separated"),
                      (["conversations", "list", "--status", "open,new"], "comma-separated"),
                      (["conversations", "list", "--limit", "0"], "1 to 200"),
                      (["conversations", "list", "--limit", "201"], "1 to 200"),
                      (["conversations", "list", "--assignee", "kim"], "me, none or an agent id"),
                      (["conversations", "list", "--sort", "1; DROP TABLE x"], "due|oldest|newest"),
                      (["conversations", "list", "--force"], "does not take --force"),
                      (["conversations", "list", "--status"], "--status needs a value"),
                      (["me", "--colour"], "unknown option --colour"),
                      (["me", "--json=yes"], "--json takes no value"),
                      (["tokens", "create", "bot"], "needs --role"),
                      (["tokens", "create", "bot", "--role", "root"], "agent|supervisor|admin"),
                      (["tokens", "create", "bot", "--role", "agent", "--teams", "1,,2"], "ids separated"),
                      (["--url", "ftp://x", "me"], "http:// or https://"),
                      (["--timeout", "0", "me"], "--timeout")):
        code, out, err = ctl(args, url=live.url, token=live.token)
        assert code == 2 and why in err and out == "", (args, err)
    code, out, _ = ctl(["--help"])
    assert code == 0 and "conversations reply ID TEXT" in out and "Exit codes" in out
    assert ctl(["--version"])[1].startswith("parleyctl ")


# ------------------------------------------------- the real daemon's commands

def site_message(live, mid, text, author="ann-web", name="Ann"):
    live.post({"id": mid, "author": {"id": author, "name": name}, "text": text})


def conversation_of(live, author="ann-web"):
    return query(live.dsn, "SELECT c.id FROM conversation c JOIN identity i ON i.customer_id = c.customer_id "
                           "WHERE i.external_id = %s ORDER BY c.id DESC LIMIT 1", (author,))[0][0]


@needs(("GET", "/api/v1/conversations"), ("GET", "/api/v1/conversations/{id}"),
          ("GET", "/api/v1/conversations/{id}/timeline"))
def test_customer_text_cannot_drive_the_terminal(live, ctl):
    site_message(live, "m1", "hello " + HOSTILE + "\nsecond line", name="Eve \x1b]0;x\x07")
    cid = conversation_of(live)
    for args in (["conversations", "list"], ["conversations", "show", cid]):
        code, out, err = ctl(args, url=live.url, token=live.token)
        assert code == 0, err
        assert_terminal_safe(out)
        assert "Eve \u241b]0;x\u2407" in out, out
    assert "\u241b[31mred\u241b[0m" in out and "<U+009B>2J <U+202E>evil\u240dX" in out
    assert "\n" + " " * out.split("\n")[-2].index("second") + "second line" in out
    # --json: the same text, escaped as JSON, still nothing raw.
    code, out, err = ctl(["--json", "conversations", "show", cid], url=live.url, token=live.token)
    assert code == 0, err
    assert_terminal_safe(out)
    texts = [i["message"]["text"] for i in json.loads(out)["timeline"] if i["type"] == "message"]
    assert texts == ["hello " + HOSTILE + "\nsecond line"]


@needs(("GET", "/api/v1/conversations"))
def test_conversations_list_filters_pages_and_json(live, ctl):
    for n in range(3):
        site_message(live, "m%d" % n, "hi %d" % n, author="user-%d" % n, name="User %d" % n)
    code, out, err = ctl(["conversations", "list", "--json", "--limit", "2"], url=live.url, token=live.token)
    assert code == 0, err
    page = json.loads(out)
    openapi_check.check_response("GET", "/api/v1/conversations?limit=2", 200,
                                 {"Content-Type": "application/json"}, out.encode())
    assert len(page["items"]) == 2 and page["next_cursor"]
    code, out, err = ctl(["conversations", "list", "--limit", "2"], url=live.url, token=live.token)
    assert code == 0 and "more: add --cursor" in err
    assert out.splitlines()[0].split() == ["ID", "STATUS", "PRIO", "DUE", "CHANNEL", "CUSTOMER", "CASE",
                                           "ASSIGNEE", "TEAM", "UPDATED"]
    code, out, err = ctl(["conversations", "list", "--limit", "1", "--all", "--status", "open"],
                         url=live.url, token=live.token)
    assert code == 0, err
    assert len(out.splitlines()) == 4 and all("User %d" % n in out for n in range(3))
    code, out, _ = ctl(["conversations", "list", "--status", "closed"], url=live.url, token=live.token)
    assert out == "(none)\n"
    code, _, err = ctl(["conversations", "list", "--channel", "' OR 1=1 --"], url=live.url, token=live.token)
    assert code in (0, 1) and "internal" not in err


def message_ids(live, cid):
    return [r[0] for r in query(live.dsn, "SELECT id FROM message WHERE conversation_id = %s ORDER BY id",
                                (cid,))]


@needs(("POST", "/api/v1/conversations/{id}/replies"), ("POST", "/api/v1/conversations/{id}/notes"))
def test_reply_note_and_a_collision(live, ctl):
    kim = live.agent_token()
    site_message(live, "m1", "where is my order?")
    cid = conversation_of(live)
    first = message_ids(live, cid)[-1]
    code, out, err = ctl(["conversations", "reply", cid, "It ships today.", "--seen", first],
                         url=live.url, token=kim)
    assert code == 0, err
    mine = message_ids(live, cid)[-1]
    assert out == "reply %d queued on conversation %d\n" % (mine, cid)
    assert query(live.dsn, "SELECT direction, text FROM message WHERE id = %s", (mine,)) == \
        [("outbound", "It ships today.")]
    # The customer writes again; a reply from the view before that changes nothing.
    site_message(live, "m2", "hello?? " + HOSTILE)
    before = message_ids(live, cid)
    code, out, err = ctl(["conversations", "reply", cid, "Late answer", "--seen", first],
                         url=live.url, token=kim)
    assert code == 3, err
    assert "nothing done: 1 new message(s)" in err and "--force" in err
    assert "Ann: hello?? \u241b[31mred" in out
    assert_terminal_safe(out + err)
    code, out, err = ctl(["--json", "conversations", "reply", cid, "Late answer", "--seen", first],
                         url=live.url, token=kim)
    assert code == 3 and json.loads(out)["error"] == "collision"
    openapi_check.check_response("POST", "/api/v1/conversations/%d/replies" % cid, 409,
                                 {"Content-Type": "application/json"}, out.encode())
    code, out, err = ctl(["conversations", "note", cid, "Seen?", "--seen", first], url=live.url, token=kim)
    assert code == 3, err
    assert message_ids(live, cid) == before
    code, out, err = ctl(["conversations", "reply", cid, "Late answer", "--seen", first, "--force"],
                         url=live.url, token=kim)
    assert code == 0, err
    # A note, from standard input.
    code, out, err = ctl(["conversations", "note", cid, "-", "--seen", message_ids(live, cid)[-1]],
                         url=live.url, token=kim, input="Called her.\nShe is fine.".encode())
    assert code == 0, err
    note = message_ids(live, cid)[-1]
    assert out == "note %d added to conversation %d\n" % (note, cid)
    assert query(live.dsn, "SELECT direction, text FROM message WHERE id = %s", (note,)) == \
        [("note", "Called her.\nShe is fine.")]
    # Refusals are the API's: no such conversation, a text too long.
    code, _, err = ctl(["conversations", "reply", "999999", "x", "--seen", "1"], url=live.url, token=kim)
    assert code == 1 and err.startswith("parleyctl: HTTP 404 not_found")
    code, _, err = ctl(["conversations", "reply", cid, "x" * 10001, "--seen", note], url=live.url, token=kim)
    assert code == 1 and "HTTP 422" in err


@needs(("POST", "/api/v1/conversations/{id}/move-to-private"))
def test_move_to_private(live, ctl):
    kim = live.agent_token()
    live.post({"id": "p1", "author": {"id": "ann-web", "name": "Ann"}, "text": "You charged me twice!",
               "visibility": "public", "thread": "post-7"})
    public = conversation_of(live)
    seen = message_ids(live, public)[-1]
    code, out, err = ctl(["conversations", "move-to-private", public, "Your order number, please?",
                          "--seen", seen, "--public-text", ""], url=live.url, token=kim)
    assert code == 0, err
    private = query(live.dsn, "SELECT id FROM conversation WHERE origin_conversation_id = %s", (public,))[0][0]
    dm = message_ids(live, private)[-1]
    assert out == "private message %d queued on conversation %d\n" % (dm, private)
    code, _, err = ctl(["conversations", "move-to-private", public, "Again?", "--seen", seen],
                       url=live.url, token=kim)
    assert code == 1 and "HTTP 409 private_reply_used" in err


@needs(("GET", "/api/v1/conversations/{id}"), ("GET", "/api/v1/conversations/{id}/timeline"),
       ("POST", "/api/v1/conversations/{id}/replies"))
def test_show_then_reply_with_what_was_seen(live, ctl):
    kim = live.agent_token()
    site_message(live, "m1", "where is my order?")
    cid = conversation_of(live)
    code, out, err = ctl(["conversations", "show", cid], url=live.url, token=kim)
    assert code == 0, err
    assert out.startswith("conversation %d: open" % cid) and "Ann: where is my order?" in out
    assert "last message %d\n" % message_ids(live, cid)[-1] in out
    # Without --seen, what the conversation shows now is what was seen.
    code, out, err = ctl(["conversations", "reply", cid, "It ships today."], url=live.url, token=kim)
    assert code == 0, err
    code, out, err = ctl(["conversations", "show", cid], url=live.url, token=kim)
    assert "Kim: It ships today." in out


@needs(("POST", "/api/v1/conversations/{id}/assign"), ("POST", "/api/v1/conversations/{id}/unassign"),
          ("PATCH", "/api/v1/conversations/{id}"))
def test_assign_unassign_and_status(live, ctl):
    team = add_team(live.dsn, "North", ["site"])
    kim = add_agent(live.dsn, "kim@example.com", "Kim", teams=[team], availability="online")
    site_message(live, "m1", "hi")
    cid = conversation_of(live)
    code, out, err = ctl(["conversations", "assign", cid, kim], url=live.url, token=live.token)
    assert code == 0 and out == "conversation %d assigned to agent %d\n" % (cid, kim), err
    assert query(live.dsn, "SELECT assignee_id FROM conversation WHERE id = %s", (cid,))[0][0] == kim
    code, out, err = ctl(["conversations", "unassign", cid], url=live.url, token=live.token)
    assert code == 0, err
    assert query(live.dsn, "SELECT assignee_id FROM conversation WHERE id = %s", (cid,))[0][0] is None
    code, out, err = ctl(["conversations", "status", cid, "pending"], url=live.url, token=live.token)
    assert code == 0 and out == "conversation %d is pending\n" % cid, err
    assert query(live.dsn, "SELECT status FROM conversation WHERE id = %s", (cid,))[0][0] == "pending"
    code, _, err = ctl(["conversations", "assign", cid, "999999"], url=live.url, token=live.token)
    assert code == 1 and "HTTP 4" in err


@needs(("GET", "/api/v1/customers"), ("GET", "/api/v1/customers/{id}"),
          ("POST", "/api/v1/customers/{id}/merge"), ("POST", "/api/v1/customers/unmerge"))
def test_customers_search_show_merge_unmerge(live, ctl):
    site_message(live, "a1", "hi", author="ann-web", name="Ann Example")
    site_message(live, "b1", "hello", author="ann-app", name="Ann E.")
    web, app = (query(live.dsn, "SELECT customer_id FROM identity WHERE external_id = %s", (a,))[0][0]
                for a in ("ann-web", "ann-app"))
    code, out, err = ctl(["customers", "search", "Ann"], url=live.url, token=live.token)
    assert code == 0 and "Ann Example" in out and "Ann E." in out, err
    code, out, err = ctl(["customers", "show", web], url=live.url, token=live.token)
    assert code == 0 and "Ann Example" in out, err
    code, out, err = ctl(["customers", "merge", app, web], url=live.url, token=live.token)
    assert code == 0, err
    audit = int(out.rsplit(" ", 1)[1])
    assert query(live.dsn, "SELECT merged_into FROM customer WHERE id = %s", (app,))[0][0] == web
    code, out, err = ctl(["customers", "unmerge", audit], url=live.url, token=live.token)
    assert code == 0 and out == "merge %d undone\n" % audit, err
    assert query(live.dsn, "SELECT merged_into FROM customer WHERE id = %s", (app,))[0][0] is None
    code, _, err = ctl(["customers", "unmerge", audit], url=live.url, token=live.token)
    assert code == 1 and "HTTP 4" in err


@needs(("GET", "/api/v1/agents"), ("GET", "/api/v1/teams"), ("POST", "/api/v1/tokens"),
          ("DELETE", "/api/v1/tokens/{id}"))
def test_agents_teams_and_tokens(live, ctl):
    team = add_team(live.dsn, "North", ["site"])
    kim = add_agent(live.dsn, "kim@example.com", "Kim", teams=[team])
    code, out, err = ctl(["agents"], url=live.url, token=live.token)
    assert code == 0 and "kim@example.com" in out, err
    code, out, err = ctl(["teams"], url=live.url, token=live.token)
    assert code == 0 and "North" in out, err
    code, out, err = ctl(["tokens", "create", "bot", "--role", "agent", "--teams", team, "--agent", kim],
                         url=live.url, token=live.token)
    assert code == 0, err
    secret = out.strip().splitlines()[-1]
    assert secret.startswith("prl_")
    code, out, _ = ctl(["me"], url=live.url, token=secret)
    assert code == 0 and "role agent" in out
    token_id = query(live.dsn, "SELECT id FROM api_token WHERE name = 'bot'")[0][0]
    code, out, err = ctl(["tokens", "revoke", token_id], url=live.url, token=live.token)
    assert code == 0 and out == "token %d revoked\n" % token_id, err
    code, _, err = ctl(["me"], url=live.url, token=secret)
    assert code == 1 and "401" in err


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@needs(("GET", "/api/v1/jobs/dead"), ("POST", "/api/v1/jobs/{id}/retry"), ("POST", "/api/v1/jobs/{id}/discard"),
       ("POST", "/api/v1/conversations/{id}/replies"))
def test_dead_jobs_retry_and_discard(fresh_db, daemon, plugin_dir, fake_http, run_parleyd, ctl):
    """Replies die for real: the brand's callback refuses them, one attempt each."""
    refusing = [True]
    callback = fake_http(answer=lambda req: (400, {"error": "no such recipient \x1b[31m"}) if refusing[0]
                         else {"id": "p-%d" % req.n})
    cfg = {"database": {"dsn": fresh_db}, "plugin_dir": plugin_dir,
           "jobs": {"sweep_interval_ms": 100, "max_attempts": 1},
           "channels": [{"name": "site", "plugin": "webhook",
                         "config": {"secret": SECRET, "callback_url": callback.url}}]}
    d = daemon.start(cfg)
    admin = create_token(run_parleyd, cfg, role="admin", name="ops")
    team = add_team(fresh_db, "North", ["site"])
    add_agent(fresh_db, "kim@example.com", "Kim", teams=[team])
    kim = create_token(run_parleyd, cfg, role="agent", agent="kim@example.com", name="kim")

    def state(job):
        return query(fresh_db, "SELECT state FROM job WHERE id = %s", (job,))[0][0]

    def dead_reply(n):
        body = json.dumps({"id": "m%d" % n, "author": {"id": "ann"}, "text": "Where is my parcel?"}).encode()
        assert http("POST", d.url + "/webhooks/site", body, {"Content-Type": "application/json",
                                                               "X-Parley-Signature": sign(SECRET, body)})[0] == 200
        cid = query(fresh_db, "SELECT id FROM conversation")[0][0]
        code, _, err = ctl(["conversations", "reply", cid, "It left today."], url=d.url, token=kim)
        assert code == 0, err
        job = query(fresh_db, "SELECT max(id) FROM job WHERE target_kind = 'channel'")[0][0]
        assert wait_for(lambda: state(job) == "dead")
        return job

    first = dead_reply(1)
    code, out, err = ctl(["jobs", "dead"], url=d.url, token=admin)
    assert code == 0, err
    header, row = out.splitlines()
    assert header.split() == ["ID", "TARGET", "OPERATION", "ATTEMPTS", "FAILED", "ERROR"]
    assert row.split()[:4] == [str(first), "site", "send", "1"] and "400" in row
    assert_terminal_safe(out)
    code, out, err = ctl(["--json", "jobs", "dead"], url=d.url, token=admin)
    assert code == 0 and [j["id"] for j in json.loads(out)["items"]] == [first], err
    openapi_check.check_response("GET", "/api/v1/jobs/dead", 200, {"Content-Type": "application/json"},
                                 out.encode())
    code, _, err = ctl(["jobs", "dead"], url=d.url, token=kim)
    assert code == 1 and "HTTP 403" in err

    refusing[0] = False
    code, out, err = ctl(["jobs", "retry", first], url=d.url, token=admin)
    assert code == 0 and out == "job %d queued again\n" % first, err
    assert wait_for(lambda: state(first) == "done")
    code, _, err = ctl(["jobs", "retry", first], url=d.url, token=admin)
    assert code == 1 and "HTTP 409" in err

    refusing[0] = True
    second = dead_reply(2)
    code, out, err = ctl(["jobs", "discard", second], url=d.url, token=admin)
    assert code == 0 and out == "job %d discarded\n" % second, err
    assert state(second) == "discarded"
    assert ctl(["jobs", "dead"], url=d.url, token=admin)[1] == "(none)\n"
