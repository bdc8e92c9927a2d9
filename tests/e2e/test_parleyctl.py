"""parleyctl, the API's command-line client, run as the real binary.

Two kinds of tests:
  - against the real daemon (health, /me, errors, and every command whose
    endpoint docs/api/openapi.yaml documents; a command whose endpoint is not
    documented yet is skipped with "endpoint not merged yet");
  - against a fake API (fake_http), for what the daemon cannot be made to do
    on demand: every command's exact request, pages, a reply collision,
    hostile text in every field, redirects, oversized and non-JSON answers,
    timeouts.
"""
import json
import os
import socket
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
        p = subprocess.run([parleyctl] + [str(a) for a in args], env=e, input=input,
                           capture_output=True, timeout=timeout)
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


@needs(("GET", "/api/v1/jobs/dead"), ("POST", "/api/v1/jobs/{id}/retry"))
def test_dead_jobs_and_retry(live, ctl):
    job = query(live.dsn, "INSERT INTO job (target_kind, target_instance, operation, state, attempts, last_error) "
                          "VALUES ('sink', 'desk', 'ticket', 'dead', 5, 'HTTP 500 \x1b[31m') RETURNING id")[0][0]
    code, out, err = ctl(["jobs", "dead"], url=live.url, token=live.token)
    assert code == 0 and str(job) in out and "\u241b[31m" in out, err
    assert_terminal_safe(out)
    code, out, err = ctl(["jobs", "retry", job], url=live.url, token=live.token)
    assert code == 0 and out == "job %d queued again\n" % job, err
    assert query(live.dsn, "SELECT state FROM job WHERE id = %s", (job,))[0][0] != "dead"


# ------------------------------------------------------------- a fake API
# What each command sends, and what it makes of answers the daemon cannot be
# made to give on demand.

def conv(cid=5, name="Ann", last=41, **kw):
    c = {"id": cid, "customer": {"id": 3, "display_name": name}, "case": None,
         "channel_kind": "webhook", "channel_instance": "site", "visibility": "public",
         "status": "open", "priority": "normal", "category": None, "tags": [], "language": None,
         "assignee_id": None, "team_id": None, "queued_at": T, "created_at": T, "updated_at": T,
         "last_inbound_at": T, "last_outbound_at": None, "first_response_at": None,
         "resolved_at": None, "due_at": T, "origin_conversation_id": None, "delivery_error": None,
         "last_message_id": last}
    c.update(kw)
    return c


def msg(mid, text, direction="inbound", author=None, **kw):
    m = {"id": mid, "conversation_id": 5, "direction": direction, "visibility": "public",
         "text": text, "original_text": None, "edited_at": None, "deleted_at": None,
         "author": author or {"kind": "customer", "identity_id": 1, "customer_id": 3,
                              "handle": "ann", "display_name": "Ann"},
         "in_reply_to_id": None, "external_id": None, "platform_time": None, "created_at": T,
         "delivery_status": None, "delivery_detail": None}
    m.update(kw)
    return m


def page(items, cursor=None):
    return {"items": items, "next_cursor": cursor}


TOKEN = "prl_" + "t" * 43

# args, [(method, path with query, JSON body or None)], answers (one per request), stdout
COMMANDS = [
    (["conversations", "list", "--status", "open", "--assignee", "me", "--team", "2", "--channel", "site a",
      "--sort", "due", "--limit", "10"],
     [("GET", "/api/v1/conversations?status=open&assignee=me&team=2&channel_instance=site%20a&sort=due"
              "&limit=10", None)],
     [page([conv()])], "5   open    normal  12:34  site     Ann"),
    (["conversations", "list", "--assignee", "none", "--all", "--limit", "1", "--status", "open,closed"],
     [("GET", "/api/v1/conversations?status=open%2Cclosed&assignee=none&limit=1", None),
      ("GET", "/api/v1/conversations?status=open%2Cclosed&assignee=none&limit=1&cursor=c%2F1%3D", None)],
     [page([conv(5)], "c/1="), page([conv(6, "Bo")])], "6   open    normal  12:34  site     Bo"),
    (["conversations", "show", "5"],
     [("GET", "/api/v1/conversations/5", None), ("GET", "/api/v1/conversations/5/timeline?limit=200", None)],
     [conv(), page([{"type": "message", "message": msg(40, "where is it?\nplease")},
                    {"type": "message", "message": msg(41, "soon", "outbound",
                                                       {"kind": "agent", "agent_id": 7, "name": "Kim"},
                                                       delivery_status="delivered")}])],
     "12:34         #41 out  Kim: soon [delivered]\n"),
    (["conversations", "show", "5"],
     [("GET", "/api/v1/conversations/5", None), ("GET", "/api/v1/conversations/5/timeline?limit=200", None)],
     [{"conversation": conv(case={"id": 2, "number": "PC-7"}), "unread": True, "agent_read_id": None,
       "customer": {"id": 3, "display_name": "Ann", "tags": [], "created_at": T,
                    "identities": [{"id": 1, "channel_kind": "webhook", "channel_instance": "site",
                                    "external_id": "u1", "handle": "ann", "display_name": "Ann"}],
                    "contacts": [{"kind": "email", "value": "ann@example.com", "verified": True}]},
       "case": {"id": 2, "number": "PC-7", "created_at": T,
                "references": [{"kind": "order", "value": "5512", "message_id": 40, "created_at": T}]},
       "linked_conversations": [conv(8, channel_instance="x", status="resolved")]},
      page([{"type": "message", "message": msg(40, "where is it?\nplease"), "revisions": []},
            {"type": "event", "event": {"id": 1, "conversation_id": 5, "kind": "assigned",
                                        "actor": "agent:1", "details": {"agent_id": 7}, "at": T}}])],
     "conversation 5: open, normal priority, site (webhook, public)\n"
     "customer     Ann (customer 3)\n"
     "identities   site ann Ann\n"
     "contacts     email ann@example.com (verified)\n"
     "case         PC-7\n"
     "references   order 5512\n"
     "linked       8 x resolved\n"
     "assignee     -\nteam         -\ndue          12:34\ncreated      12:34\nunread       yes\n"
     "last message 41\n\n"
     "12:34         #40 in   Ann: where is it?\n"
     + " " * 28 + "please\n"
     "12:34         * assigned by agent:1 {\"agent_id\":7}\n"),
    (["conversations", "reply", "5", "It ships today."],
     [("GET", "/api/v1/conversations/5", None),
      ("POST", "/api/v1/conversations/5/replies", {"text": "It ships today.", "last_seen_message_id": 41})],
     [conv(), (202, {"message": msg(42, "It ships today.", "outbound")})],
     "reply 42 queued on conversation 5\n"),
    (["conversations", "reply", "5", "--seen", "40", "--force", "--", "-1 for that"],
     [("POST", "/api/v1/conversations/5/replies",
       {"text": "-1 for that", "last_seen_message_id": 40, "force": True})],
     [(202, {"message": msg(43, "-1 for that", "outbound")})], "reply 43 queued on conversation 5\n"),
    (["conversations", "reply", "5", "first!"],   # no message yet: 0
     [("GET", "/api/v1/conversations/5", None),
      ("POST", "/api/v1/conversations/5/replies", {"text": "first!", "last_seen_message_id": 0})],
     [{"conversation": conv(last=None)}, (202, {"message": msg(1, "first!", "outbound"), "delivery": "queued"})],
     "reply 1 queued on conversation 5\n"),
    (["conversations", "note", "5", "called her"],
     [("GET", "/api/v1/conversations/5", None),
      ("POST", "/api/v1/conversations/5/notes", {"text": "called her", "last_seen_message_id": 41})],
     [{"conversation": conv()}, (201, {"message": msg(44, "called her", "note")})],
     "note 44 added to conversation 5\n"),
    (["conversations", "move-to-private", "5", "Your order number?", "--public-text", "", "--seen", "40"],
     [("POST", "/api/v1/conversations/5/move-to-private",
       {"text": "Your order number?", "public_text": "", "last_seen_message_id": 40})],
     [(202, {"conversation": conv(9, visibility="private"), "message": msg(45, "Your order number?"),
             "public_message": None, "delivery": "queued"})],
     "private message 45 queued on conversation 9\n"),
    (["conversations", "assign", "5", "7"],
     [("POST", "/api/v1/conversations/5/assign", {"agent_id": 7})],
     [conv(assignee_id=7)], "conversation 5 assigned to agent 7\n"),
    (["conversations", "transfer", "5", "2"],
     [("POST", "/api/v1/conversations/5/transfer", {"team_id": 2})],
     [conv(team_id=2)], "conversation 5 moved to team 2's queue\n"),
    (["conversations", "unassign", "5"],
     [("POST", "/api/v1/conversations/5/unassign", None)], [conv()], "conversation 5 unassigned\n"),
    (["conversations", "status", "5", "resolved"],
     [("PATCH", "/api/v1/conversations/5", {"status": "resolved"})],
     [conv(status="resolved")], "conversation 5 is resolved\n"),
    (["customers", "search", "ann b&c=d"],
     [("GET", "/api/v1/customers?q=ann%20b%26c%3Dd", None)],
     [page([{"id": 3, "display_name": "Ann B", "tags": ["vip"], "merged_into": None, "created_at": T,
             "updated_at": T, "match": {"field": "email", "value": "ann.b@example.com"}}])],
     "3   Ann B  email    ann.b@example.com  vip   12:34"),
    (["customers", "show", "3"], [("GET", "/api/v1/customers/3", None)],
     [{"id": 3, "display_name": "Ann", "tags": ["vip", "de"], "merged_into": None, "created_at": T,
       "updated_at": T, "attributes": {"plan": "gold"},
       "contacts": [{"id": 1, "kind": "email", "value": "ann@example.com", "verified": True,
                     "source_instance": "site", "created_at": T}],
       "identities": [{"id": 1, "channel_kind": "webhook", "channel_instance": "site", "external_id": "u1",
                       "handle": None, "display_name": "Ann", "profile": {}, "first_seen_at": T,
                       "last_seen_at": T}],
       "conversations": [conv(5), conv(8, channel_instance="x", status="resolved")],
       "conversations_truncated": False,
       "cases": [{"id": 2, "number": "PC-7", "customer_id": 3, "created_at": T, "updated_at": T}]}],
     "customer 3: Ann\ntags         vip,de\ncreated      12:34\nattributes   {\"plan\":\"gold\"}\n"
     "contacts     email ann@example.com (verified)\naccounts     site u1 Ann\ncases        PC-7\n\n"
     "ID  STATUS    PRIO    DUE    CHANNEL  CUSTOMER  CASE  ASSIGNEE  TEAM  UPDATED\n"
     "5   open      normal  12:34  site     Ann       -     -         -     12:34\n"
     "8   resolved  normal  12:34  x        Ann       -     -         -     12:34\n"),
    (["customers", "merge", "4", "3"],
     [("POST", "/api/v1/customers/4/merge", {"into": 3})], [{"audit_id": 77, "source_id": 4, "target_id": 3}],
     "customer 4 merged into 3; undo with: parleyctl customers unmerge 77\n"),
    (["customers", "unmerge", "77"],
     [("POST", "/api/v1/customers/unmerge", {"audit_id": 77})],
     [{"audit_id": 78, "merge_audit_id": 77, "source_id": 4, "target_id": 3}], "merge 77 undone\n"),
    (["agents"], [("GET", "/api/v1/agents", None)],
     [page([{"id": 7, "email": "kim@example.com", "name": "Kim", "role": "agent", "languages": ["de"],
             "capacity": 5, "availability": "online", "team_ids": [1, 2], "disabled": False,
             "created_at": T}])],
     "7   Kim   kim@example.com  agent  1,2    online        5         no\n"),
    (["teams"], [("GET", "/api/v1/teams", None)],
     [page([{"id": 1, "name": "North", "channel_instances": ["site", "x"], "categories": [],
             "agent_ids": [7], "created_at": T, "updated_at": T}])], "1   North  site,x    7\n"),
    (["tokens", "create", "bot", "--role", "agent", "--teams", "1,2", "--agent", "7"],
     [("POST", "/api/v1/tokens", {"name": "bot", "role": "agent", "team_ids": [1, 2], "agent_id": 7})],
     [(201, {"id": 9, "name": "bot", "prefix": "prl_ne", "role": "agent", "team_ids": [1, 2], "agent_id": 7,
             "created_by": "agent:1", "created_at": T, "expires_at": None, "last_used_at": None,
             "revoked": False, "revoked_at": None, "secret": "prl_new"})],
     "token 9 created, role agent. Its secret, shown only this once:\nprl_new\n"),
    (["tokens", "list", "--limit", "5"], [("GET", "/api/v1/tokens?limit=5", None)],
     [page([{"id": 9, "name": "bot", "prefix": "prl_ne", "role": "agent", "team_ids": None, "agent_id": 7,
             "created_by": "agent:1", "created_at": T, "expires_at": None, "last_used_at": T,
             "revoked": False, "revoked_at": None}])],
     "9   bot   prl_ne  agent  -      7      12:34      no\n"),
    (["tokens", "revoke", "9"], [("DELETE", "/api/v1/tokens/9", None)], [(204, None)],
     "token 9 revoked\n"),
    (["jobs", "dead"], [("GET", "/api/v1/jobs/dead", None)],
     [page([{"id": 12, "target_instance": "desk", "operation": "ticket", "attempts": 5,
             "finished_at": T, "last_error": "HTTP 500"}])],
     "12  desk    ticket     5         12:34   HTTP 500\n"),
    (["jobs", "retry", "12"], [("POST", "/api/v1/jobs/12/retry", None)], [{"id": 12}], "job 12 queued again\n"),
    (["jobs", "discard", "12"], [("POST", "/api/v1/jobs/12/discard", None)], [{"id": 12}],
     "job 12 discarded\n"),
    (["me"], [("GET", "/api/v1/me", None)],
     [{"kind": "token", "role": "agent", "team_ids": [1], "token_id": 9,
       "agent": {"id": 7, "email": "kim@example.com", "name": "Kim"}}],
     "token 9, role agent, teams 1\nagent 7: Kim <kim@example.com>\n"),
]


@pytest.mark.parametrize("args,requests,answers,shown", COMMANDS, ids=[" ".join(c[0][:2]) for c in COMMANDS])
def test_each_command_sends_what_the_contract_says(fake_http, ctl, args, requests, answers, shown):
    api = fake_http(answer=(500, {"error": "unexpected_request"}))
    api.queue(*answers)
    code, out, err = ctl(args, url=api.url, token=TOKEN)
    assert code == 0, err
    assert shown in out, out
    got = api.requests
    assert [(r.method, r.path) for r in got] == [(m, p) for m, p, _ in requests]
    for r, (_, _, body) in zip(got, requests):
        assert r.headers["Authorization"] == "Bearer " + TOKEN
        assert r.headers["Accept"] == "application/json"
        assert r.headers["User-Agent"].startswith("parleyctl/")
        if body is None:
            assert r.body == b""
        else:
            assert r.headers["Content-Type"] == "application/json" and r.json() == body
    # --json prints what the API answered (the last answer, for one-call commands).
    if len(requests) == 1 and not isinstance(answers[0], tuple):
        api.queue(*answers)
        code, out, err = ctl(["--json"] + args, url=api.url, token=TOKEN)
        assert code == 0 and json.loads(out) == answers[0], err


def test_a_collision_shows_the_new_messages_and_exits_3(fake_http, ctl):
    news = [msg(42, "hello?? " + HOSTILE), msg(43, "anyone?")]
    api = fake_http(script=[conv(last=41),
                            (409, {"error": "collision", "detail": "new messages", "new_messages": news})])
    code, out, err = ctl(["conversations", "reply", "5", "Sorry!"], url=api.url, token=TOKEN)
    assert code == 3
    assert "nothing done: 2 new message(s)" in err and "--force" in err
    assert "#42 in   Ann: hello?? \u241b[31mred" in out and "#43 in   Ann: anyone?" in out
    assert_terminal_safe(out + err)
    # Another 409 is an error like any other.
    api.queue(conv(), (409, {"error": "conflict", "detail": "closed"}))
    code, _, err = ctl(["conversations", "reply", "5", "x"], url=api.url, token=TOKEN)
    assert code == 1 and err == "parleyctl: HTTP 409 conflict: closed\n"


def test_hostile_text_everywhere_is_neutralised(fake_http, ctl):
    evil = {"id": 5, "display_name": HOSTILE, HOSTILE: HOSTILE, "nested": {"k": [HOSTILE]}}
    api = fake_http(answer=lambda req: (
        page([conv(name=HOSTILE, channel_instance=HOSTILE, case={"id": 1, "number": HOSTILE})])
        if req.bare_path == "/api/v1/conversations" else
        conv(name=HOSTILE, tags=[HOSTILE]) if req.bare_path == "/api/v1/conversations/5" else
        page([{"type": "message", "message": msg(1, HOSTILE, author={"kind": "agent", "agent_id": 1,
                                                                     "name": HOSTILE})},
              {"type": "event", "event": {"kind": HOSTILE, "actor": HOSTILE, "details": {"x": HOSTILE},
                                          "at": T}}])
        if req.bare_path.endswith("/timeline") else
        evil if req.bare_path == "/api/v1/customers/5" else
        (400, {"error": "bad_thing", "detail": HOSTILE})))
    for args in (["conversations", "list"], ["conversations", "show", "5"], ["customers", "show", "5"],
                 ["--json", "conversations", "show", "5"], ["--json", "customers", "show", "5"],
                 ["jobs", "retry", "1"], ["--json", "jobs", "retry", "1"]):
        code, out, err = ctl(args, url=api.url, token=TOKEN)
        assert code in (0, 1), (args, err)
        assert_terminal_safe(out + err)
        assert "red" in out + err
    code, out, _ = ctl(["--json", "customers", "show", "5"], url=api.url, token=TOKEN)
    assert json.loads(out) == evil   # the same JSON value


def test_redirects_are_not_followed_and_the_token_goes_nowhere_else(fake_http, ctl):
    elsewhere = fake_http()
    api = fake_http(answer=(302, {"error": "moved"}, {"Location": elsewhere.url + "/api/v1/me"}))
    code, _, err = ctl(["me"], url=api.url, token=TOKEN)
    assert code == 1 and "HTTP 302 moved" in err
    assert elsewhere.requests == []


def test_answers_that_are_too_big_not_json_or_too_slow(fake_http, ctl):
    api = fake_http(answer=b'{"a":"' + b"x" * (16 * 1024 * 1024) + b'"}')
    code, out, err = ctl(["me"], url=api.url, token=TOKEN)
    assert code == 1 and out == "" and "larger than 16 MiB" in err
    api.answer = (502, "<html>Bad Gateway</html>")
    code, _, err = ctl(["me"], url=api.url, token=TOKEN)
    assert code == 1 and "answered HTTP 502 with a body that is not JSON" in err
    api.answer = (500, {"detail": "no code"})
    code, _, err = ctl(["me"], url=api.url, token=TOKEN)
    assert code == 1 and err == "parleyctl: HTTP 500 error: no code\n"
    # Pages that never end stop at the item limit.
    api.answer = lambda req: page([{"id": i} for i in range(1, 201)], "more")
    code, out, err = ctl(["conversations", "list", "--all", "--limit", "200"], url=api.url, token=TOKEN,
                         timeout=300)
    assert code == 1 and "more than 100000 items" in err and out == ""
    assert len([r for r in api.requests if r.bare_path == "/api/v1/conversations"]) == 500

    # An answer that never comes: the total timeout ends the wait.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        started = time.monotonic()
        code, _, err = ctl(["--timeout", "1", "me"], url="http://127.0.0.1:%d" % s.getsockname()[1],
                           token=TOKEN)
        assert code == 1 and "no answer within the time limit" in err
        assert time.monotonic() - started < 10
