"""Rules every operation of the agent API keeps, checked for every operation
the OpenAPI document lists (so a new endpoint is covered the day it is
documented, and an undocumented one cannot pass the other tests):

- without credentials it answers 401;
- the role × team matrix: an agent and a supervisor of team North, an admin,
  and each team's objects: another team's conversation, customer or case is
  404 (never 403 with data), a role below the operation's floor is 403;
- every documented query parameter resists SQL injection (a precise 4xx or a
  harmless 200, never a 500, and the tables are intact);
- every JSON body is read strictly (malformed → 400, unknown field → 400).

OPERATIONS classifies each operation: the lowest role that may call it, what
its path ids name (whose team decides visibility), and for writes a body
that is valid apart from what a test changes."""
import json

import pytest

import openapi_check
from api_client import ApiClient
from api_setup import add_agent, add_team, create_token
from parley_testlib import http, query, sign

SECRET = "contract-secret"
INJECTIONS = ["' OR '1'='1", "1; DROP TABLE conversation; --", "1) OR (1=1", "due desc, (SELECT 1)",
              "\\'; SELECT pg_sleep(5); --", "%' --", "x" * 500, "-1", "0x10", "1e9", "null", "[]"]

# operationId -> (floor role, what {id}-like path parameters name, a valid body or None).
# Kinds: "conversation", "customer", "case" (visibility by team), "agent", "team", "token",
# "canned", "macro", "job", "audit" (objects of their own), None (no path ids).
C, CU, CA = "conversation", "customer", "case"
OPERATIONS = {
    "getMe": ("agent", None, None),
    "login": ("agent", None, {"email": "nobody@example.com", "password": "wrong password 123"}),
    "getSession": ("agent", None, None),
    "logout": ("agent", None, None),
    "changeMyPassword": ("agent", None, {"current_password": "x" * 12, "new_password": "y" * 12}),
    "setMyAvailability": ("agent", None, {"availability": "online"}),
    "listAgents": ("supervisor", None, None),
    "createAgent": ("admin", None, {"email": "new@example.com", "name": "New", "role": "agent"}),
    "getAgent": ("supervisor", "agent", None),
    "updateAgent": ("admin", "agent", {"capacity": 5}),
    "listTeams": ("agent", None, None),
    "createTeam": ("admin", None, {"name": "West"}),
    "getTeam": ("agent", "team", None),
    "updateTeam": ("admin", "team", {"name": "North 2"}),
    "deleteTeam": ("admin", "team", None),
    "listTokens": ("admin", None, None),
    "createToken": ("admin", None, {"name": "t", "role": "agent"}),
    "revokeToken": ("admin", "token", None),
    "listAudit": ("admin", None, None),
    "listConversations": ("agent", None, None),
    "getConversation": ("agent", C, None),
    "updateConversation": ("agent", C, {"priority": "high"}),
    "getConversationTimeline": ("agent", C, None),
    "markConversationRead": ("agent", C, {}),
    "getCase": ("agent", CA, None),
    "replyToConversation": ("agent", C, {"text": "hello", "last_seen_message_id": 1, "force": True}),
    "addNote": ("agent", C, {"text": "a note", "last_seen_message_id": 1, "force": True}),
    "moveToPrivate": ("agent", C, {"text": "hi", "last_seen_message_id": 1, "force": True}),
    "renderCannedReply": ("agent", C, {}),
    "applyMacro": ("agent", C, {"last_seen_message_id": 1, "force": True}),
    "listCannedReplies": ("agent", None, None),
    "createCannedReply": ("agent", None, {"name": "x", "body": "y"}),
    "getCannedReply": ("agent", "canned", None),
    "updateCannedReply": ("agent", "canned", {"body": "z"}),
    "deleteCannedReply": ("agent", "canned", None),
    "listMacros": ("agent", None, None),
    "createMacro": ("agent", None, {"name": "m", "actions": [{"type": "set_priority", "priority": "high"}]}),
    "getMacro": ("agent", "macro", None),
    "updateMacro": ("agent", "macro", {"name": "m2"}),
    "deleteMacro": ("agent", "macro", None),
    "searchCustomers": ("agent", None, None),
    "unmergeCustomers": ("supervisor", None, {"audit_id": 1}),
    "getCustomer": ("agent", CU, None),
    "updateCustomer": ("agent", CU, {"tags": ["vip"]}),
    "mergeCustomer": ("supervisor", CU, {"into": 1}),
    "assignConversation": ("agent", C, {"agent_id": 1}),
    "unassignConversation": ("agent", C, None),
    "transferConversation": ("agent", C, {"team_id": 1}),
    "listDeadJobs": ("admin", None, None),
    "retryDeadJob": ("admin", "job", None),
    "discardDeadJob": ("admin", "job", None),
    "streamEvents": ("agent", "stream", None),
    "announcePresence": ("agent", C, {"state": "viewing"}),
}
# Path parameters other than {id} and what they name.
PARAM_KINDS = {"canned_id": "canned", "macro_id": "macro"}
SCOPED = (C, CU, CA)

ROLE_RANK = {"agent": 1, "supervisor": 2, "admin": 3}


def post_webhook(d, instance, payload):
    body = json.dumps(payload).encode()
    status, _, data = http("POST", "%s/webhooks/%s" % (d.url, instance), body,
                           {"Content-Type": "application/json", "X-Parley-Signature": sign(SECRET, body)})
    assert status == 200, data


def api_operations():
    doc = openapi_check.document().doc
    for template, item in doc["paths"].items():
        if not template.startswith("/api/v1/"):
            continue
        for method, op in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield method.upper(), template, op


@pytest.fixture
def world(fresh_db, daemon, plugin_dir, run_parleyd):
    cfg = {"database": {"dsn": fresh_db}, "plugin_dir": plugin_dir, "jobs": {"enabled": False},
           "channels": [{"name": n, "plugin": "webhook", "config": {"secret": SECRET}}
                        for n in ("north", "south")]}
    d = daemon.start(cfg)
    north, south = add_team(fresh_db, "North", ["north"]), add_team(fresh_db, "South", ["south"])
    add_agent(fresh_db, "ann@example.com", "Ann", "agent", [north])
    add_agent(fresh_db, "sam@example.com", "Sam", "supervisor", [north])
    add_agent(fresh_db, "ada@example.com", "Ada", "admin", [])
    add_agent(fresh_db, "sue@example.com", "Sue", "agent", [south])
    tokens = {role: create_token(run_parleyd, cfg, role=role, agent=email, name=role)
              for role, email in (("agent", "ann@example.com"), ("supervisor", "sam@example.com"),
                                  ("admin", "ada@example.com"))}
    post_webhook(d, "north", {"id": "n1", "author": {"id": "cust-n", "name": "Nora"},
                              "text": "my order PC-1 never came", "visibility": "private"})
    post_webhook(d, "south", {"id": "s1", "author": {"id": "cust-s", "name": "Seth"},
                              "text": "refund please", "visibility": "private"})
    # What the matrix may change or remove without pulling the ground from
    # under the next call: a spare team, agent and token.
    spare = {"team": add_team(fresh_db, "Spare"),
             "agent": add_agent(fresh_db, "spare@example.com", "Spare", "agent", [])}
    create_token(run_parleyd, cfg, role="agent", name="spare")
    spare["token"] = query(fresh_db, "SELECT id FROM api_token WHERE name = 'spare'")[0][0]
    ids = {}
    for side in ("north", "south"):
        conv, cust, case = query(fresh_db, "SELECT id, customer_id, case_id FROM conversation "
                                           "WHERE channel_instance = %s", (side,))[0]
        ids[side] = dict(spare, conversation=conv, customer=cust, case=case)
    return d, tokens, ids, fresh_db


def fill(template, kind, ids_of_side):
    """The template with its path parameters set to the side's objects ({id}
    names `kind`; other parameters by PARAM_KINDS; objects the world has none
    of get 1)."""
    path = template
    while "{" in path:
        start, end = path.index("{"), path.index("}")
        name = path[start + 1:end]
        k = kind if name == "id" else PARAM_KINDS.get(name)
        path = path[:start] + str(ids_of_side.get(k, 1)) + path[end + 1:]
    return path


def test_every_operation_is_classified():
    missing = sorted(op.get("operationId", "%s %s" % (m, t)) for m, t, op in api_operations()
                     if op.get("operationId") not in OPERATIONS)
    assert missing == [], "classify these in OPERATIONS: %s" % missing


def test_every_operation_needs_credentials(world):
    d, _, ids, _ = world
    anon = ApiClient(d.url)
    for method, template, op in api_operations():
        if op.get("security") == []:
            continue
        kind = OPERATIONS[op["operationId"]][1]
        status, _, body = anon.request(method, fill(template, kind, ids["north"]))
        assert status == 401 and body["error"] == "unauthorized", (method, template, body)


def test_role_and_team_matrix(world):
    d, tokens, ids, _ = world
    for method, template, op in api_operations():
        floor, kind, body = OPERATIONS[op["operationId"]]
        if kind == "stream":   # the event stream has tests of its own (test_api_events.py)
            continue
        for role, token in tokens.items():
            api = ApiClient(d.url, token=token)
            for side in ("north", "south"):
                path = fill(template, kind, ids[side])
                status, _, answer = api.request(method, path, json=body, validate_request=False)
                where = "%s %s as %s, %s's objects: %s" % (method, path, role, side, answer)
                # A valid token is never refused as a credential (a wrong
                # password at login is another 401).
                assert status < 500, where
                assert not (status == 401 and answer["error"] == "unauthorized"), where
                if ROLE_RANK[role] < ROLE_RANK[floor]:
                    assert status in (403, 404), where
                elif side == "south" and role != "admin" and kind in SCOPED:
                    assert status == 404 and answer["error"] == "not_found", where
                elif side == "north" and kind in SCOPED and method == "GET":
                    assert status == 200, where


def test_query_parameters_resist_injection(world):
    d, tokens, ids, dsn = world
    api = ApiClient(d.url, token=tokens["admin"])
    before = query(dsn, "SELECT (SELECT count(*) FROM conversation), (SELECT count(*) FROM message)")
    for method, template, op in api_operations():
        kind = OPERATIONS[op["operationId"]][1]
        if method != "GET" or kind == "stream":
            continue
        path = fill(template, kind, ids["north"])
        names = []
        for p in op.get("parameters", []):
            if "$ref" in p:
                p = openapi_check.document().resolve(p["$ref"])
            if p.get("in") == "query":
                names.append(p["name"])
        for name in names:
            for bad in INJECTIONS:
                status, _, answer = api.get(path, params={name: bad})
                assert status in (200, 400, 404, 422), (path, name, bad, answer)
    assert query(dsn, "SELECT (SELECT count(*) FROM conversation), (SELECT count(*) FROM message)") == before


def test_bodies_are_read_strictly(world):
    d, tokens, ids, _ = world
    api = ApiClient(d.url, token=tokens["admin"])
    for method, template, op in api_operations():
        kind = OPERATIONS[op["operationId"]][1]
        # Operations on objects the world does not have answer 404 first.
        if "requestBody" not in op or any(p in template for p in PARAM_KINDS) or \
                kind not in SCOPED + (None,):
            continue
        path = fill(template, kind, ids["north"])
        status, _, answer = api.request(method, path, body=b"{\"text\": ", validate_request=False,
                                        headers={"Content-Type": "application/json"})
        assert status == 400 and answer["error"] == "malformed_json", (method, path, answer)
        status, _, answer = api.request(method, path, json={"no_such_field": 1}, validate_request=False)
        assert status == 400 and answer["error"] == "unknown_field", (method, path, answer)
