"""parleyctl against a fake API (fake_http), for what the daemon cannot be
made to answer on demand: every command's exact request and how it shows
the answer, pages, a reply collision, hostile text in every field,
redirects, oversized, non-JSON and missing answers. The daemon's side of the
same commands: test_parleyctl.py."""
import json
import socket
import time

import pytest

from test_parleyctl import HOSTILE, T, assert_terminal_safe, ctl, parleyctl  # noqa: F401 (fixtures)


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
            {"type": "message", "message": msg(39, "earlier", conversation_id=8, visibility="private"),
             "revisions": []},
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
     "12:34         #39 in   Ann: earlier (private) [conversation 8]\n"
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


def test_pages_cursors_and_lists_that_are_not(fake_http, ctl):
    api = fake_http(script=[page([{"id": 7, "name": "Kim"}], "next/1")])
    code, out, err = ctl(["agents", "--limit", "1", "--cursor", "a b"], url=api.url, token=TOKEN)
    assert code == 0 and "Kim" in out
    assert err == "parleyctl: more: add --cursor next/1 (or --all)\n"
    assert api.requests[0].path == "/api/v1/agents?limit=1&cursor=a%20b"
    # A page that is no list, and a failure on a later page.
    api.queue({"items": "nope", "next_cursor": None})
    code, out, err = ctl(["teams"], url=api.url, token=TOKEN)
    assert code == 1 and out == "" and err == "parleyctl: the answer has no list of items\n"
    # --all from a cursor on: every page with one cursor.
    api.queue(page([{"id": 1, "name": "A"}], "c2"), page([{"id": 2, "name": "B"}]))
    code, out, err = ctl(["teams", "--all", "--cursor", "c1"], url=api.url, token=TOKEN)
    assert code == 0 and [line.split()[:2] for line in out.splitlines()[1:]] == [["1", "A"], ["2", "B"]], err
    assert [r.path for r in api.requests[-2:]] == ["/api/v1/teams?cursor=c1", "/api/v1/teams?cursor=c2"]
    api.queue(page([{"id": 1}], "c2"), (400, {"error": "invalid_cursor", "detail": "cursor: not ours"}))
    code, out, err = ctl(["teams", "--all"], url=api.url, token=TOKEN)
    assert code == 1 and out == "" and err == "parleyctl: HTTP 400 invalid_cursor: cursor: not ours\n"


def test_text_from_standard_input_is_checked(fake_http, ctl):
    api = fake_http()
    for data, why in ((b"x" * (1024 * 1024 + 1), "at most 1 MiB"), (b"caf\xe9", "UTF-8"), (b"a\0b", "UTF-8")):
        code, out, err = ctl(["conversations", "note", "5", "-", "--seen", "1"], url=api.url, token=TOKEN,
                             input=data)
        assert code == 2 and why in err and out == "", err
    code, _, err = ctl(["conversations", "note", "5", b"caf\xe9"],
                       url=api.url, token=TOKEN)
    assert code == 2 and "TEXT must be UTF-8 text" in err
    assert api.requests == []
