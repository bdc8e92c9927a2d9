"""Customers in the agent API: search by name, handle, e-mail, phone and
platform id; the profile with what the caller may see; edits that are
audited; merge and unmerge through the core operation, with their audit
entries, the conversations' timeline events and their refusals. Customers
come from messages posted to the real, signed webhook channel; another
team's customer does not exist for the caller (404, never listed)."""
import json

import pytest

from api_client import ApiClient
from api_setup import add_agent, add_team, create_token
from parley_testlib import http, query, sign

SECRETS = {"site": "site-secret", "shop": "shop-secret"}
_msg = iter(range(1, 10**6))


def post(d, instance, author, text="hello", **extra):
    """A customer's message through the instance's webhook; returns the
    author's customer id."""
    payload = dict({"id": "%s-m%d" % (instance, next(_msg)), "author": author, "text": text}, **extra)
    body = json.dumps(payload).encode()
    status, _, data = http("POST", d.url + "/webhooks/" + instance, body,
                           {"Content-Type": "application/json",
                            "X-Parley-Signature": sign(SECRETS[instance], body)})
    assert status == 200, data
    return customer_of(d.dsn, instance, author["id"])


def customer_of(dsn, instance, external_id):
    return query(dsn, "SELECT customer_id FROM identity WHERE channel_instance = %s AND external_id = %s",
                 (instance, external_id))[0][0]


class World:
    """The daemon, two teams (North owns "site", South owns "shop") and a
    client for each kind of caller."""

    def __init__(self, d, cfg, dsn, run_parleyd):
        self.d, self.dsn = d, dsn
        d.dsn = dsn
        self.north = add_team(dsn, "North", ["site"])
        self.south = add_team(dsn, "South", ["shop"])
        add_agent(dsn, "kim@example.com", "Kim", role="agent", teams=[self.north])
        add_agent(dsn, "sam@example.com", "Sam", role="supervisor", teams=[self.north])
        add_agent(dsn, "sue@example.com", "Sue", role="supervisor", teams=[self.south])

        def client(**kw):
            return ApiClient(d.url, token=create_token(run_parleyd, cfg, **kw))
        self.admin = client(role="admin", name="ops")
        self.kim = client(role="agent", agent="kim@example.com", name="kim")
        self.sam = client(role="supervisor", agent="sam@example.com", name="sam")
        self.sue = client(role="supervisor", agent="sue@example.com", name="sue")

    def ids(self, client, q, **params):
        status, _, body = client.get("/api/v1/customers", params=dict(params, q=q))
        assert status == 200, (q, body)
        return [c["id"] for c in body["items"]]

    def counts(self):
        return query(self.dsn, "SELECT (SELECT count(*) FROM audit_log), (SELECT count(*) FROM conversation_event),"
                               " (SELECT (SELECT count(*) FROM live_event_pending) + (SELECT count(*) FROM live_event)),"
                               " (SELECT string_agg(id || ':' || coalesce(merged_into, 0) || ':' ||"
                               "   coalesce(display_name, '') || ':' || tags::text || ':' || attributes::text,"
                               "   ',' ORDER BY id) FROM customer),"
                               " (SELECT string_agg(id || ':' || customer_id, ',' ORDER BY id) FROM conversation)")[0]


@pytest.fixture
def world(fresh_db, daemon, plugin_dir, run_parleyd):
    cfg = {"database": {"dsn": fresh_db}, "plugin_dir": plugin_dir, "jobs": {"enabled": False},
           "channels": [{"name": name, "plugin": "webhook", "config": {"secret": secret}}
                        for name, secret in SECRETS.items()]}
    return World(daemon.start(cfg), cfg, fresh_db, run_parleyd)


ANN = {"id": "ann-1", "name": "Ann Smith", "handle": "AnnSmith", "email": "Ann.Smith@Example.com",
       "email_verified": True, "phone": "+4915112345678", "phone_verified": True}


def test_search_finds_a_customer_by_each_key(world):
    ann = post(world.d, "site", ANN)
    post(world.d, "site", {"id": "bob-1", "name": "Bob Annerl", "handle": "bobby"})
    for q, field, value in (("ann s", "name", "Ann Smith"), ("ANN SMITH", "name", "Ann Smith"),
                            ("@annsm", "handle", "AnnSmith"), ("annsmith", "handle", "AnnSmith"),
                            ("ann.smith@example", "email", "ann.smith@example.com"),
                            ("Ann.Smith@Example.com", "email", "ann.smith@example.com"),
                            ("+49 151 123", "phone", "+4915112345678"), ("4915112345678", "phone", "+4915112345678"),
                            ("+491511", "phone", "+4915112345678"), ("ann-1", "external_id", "ann-1")):
        status, _, body = world.kim.get("/api/v1/customers", params={"q": q})
        assert status == 200 and [(c["id"], c["match"]) for c in body["items"]] == \
            [(ann, {"field": field, "value": value})], (q, body)
    # Platform ids are exact; prefixes of other keys find nothing more.
    assert world.ids(world.kim, "ann-") == []
    assert world.ids(world.kim, "ann.smith@example.org") == []
    bob = customer_of(world.dsn, "site", "bob-1")
    status, _, body = world.kim.get("/api/v1/customers", params={"q": "@bob"})
    assert status == 200 and body == {"next_cursor": None, "items": [{
        "id": bob, "display_name": "Bob Annerl", "tags": [], "merged_into": None,
        "created_at": body["items"][0]["created_at"], "updated_at": body["items"][0]["updated_at"],
        "match": {"field": "handle", "value": "bobby"}}]}


def test_a_customer_is_listed_once_for_the_first_key_it_matches(world):
    ann = post(world.d, "site", ANN)
    # A second account (verified e-mail: the same person) with its own handle.
    assert post(world.d, "site", {"id": "ann-2", "handle": "annie", "email": "ann@example.org",
                                  "email_verified": True, "phone": "+4915112345678",
                                  "phone_verified": True}) == ann
    status, _, body = world.kim.get("/api/v1/customers", params={"q": "ann"})
    assert [(c["id"], c["match"]["field"]) for c in body["items"]] == [(ann, "name")]
    # Not by name: by its smallest matching handle ("annie" < "annsmith"), once.
    status, _, body = world.kim.get("/api/v1/customers", params={"q": "@ANN"})
    assert [(c["id"], c["match"]) for c in body["items"]] == [(ann, {"field": "handle", "value": "annie"})]
    status, _, body = world.kim.get("/api/v1/customers", params={"q": "+49151"})
    assert [(c["id"], c["match"]["field"]) for c in body["items"]] == [(ann, "phone")]


def test_search_pages_with_a_cursor_across_keys(world):
    pats = [post(world.d, "site", {"id": "p%d" % i, "name": "Pat %02d" % (7 - i)}) for i in range(7)]
    by_handle = post(world.d, "site", {"id": "h1", "name": "Xena", "handle": "Patty"})
    by_handle2 = post(world.d, "site", {"id": "h2", "name": "Yul", "handle": "pat_x"})
    by_email = post(world.d, "site", {"id": "e1", "name": "Zoe", "email": "pat@example.com"})
    # By the matched value, bytewise: "pat 01" .. "pat 07", "pat@...", "pat_x", "patty".
    want = list(reversed(pats)) + [by_email, by_handle2, by_handle]
    for limit in (1, 2, 3, 50):
        seen, cursor = [], None
        while True:
            params = {"q": "pat", "limit": limit}
            if cursor:
                params["cursor"] = cursor
            status, _, body = world.kim.get("/api/v1/customers", params=params)
            assert status == 200 and len(body["items"]) <= limit
            seen += [c["id"] for c in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert seen == want, limit
    # A cursor of another list, or a forged one, is refused.
    for bad in ("abc", "eyJrIjoieCIsInYiOjF9", "!!", "x" * 1001):
        status, _, body = world.kim.get("/api/v1/customers", params={"q": "pat", "cursor": bad})
        assert status == 400 and body["error"] == "invalid_cursor", bad


def test_search_strings_are_data_not_sql_or_patterns(world):
    post(world.d, "site", ANN)
    before = world.counts()
    for q in ("' OR 1=1 --", "'; DROP TABLE customer; --", "%%", "a%", "__", "_n", "\\%", "ann' --",
              "1) OR (1=1", "$1", "\x7f\x01x", "ann\\"):
        status, _, body = world.admin.get("/api/v1/customers", params={"q": q})
        assert status == 200 and body["items"] == [], (q, body)
    for params, detail in (({"q": "a"}, "q: 2 to 200"), ({"q": "  a  "}, "q: 2 to 200"), ({}, "q: 2 to 200"),
                           ({"q": "x" * 201}, "q: 2 to 200"), ({"q": "ann", "limit": "1; DROP TABLE x"}, "limit"),
                           ({"q": "ann", "limit": "0"}, "limit"), ({"q": "ann", "sort": "name"}, 'unknown field "sort"'),
                           ({"q": "ann", "order": "id; DROP TABLE customer"}, "unknown field")):
        status, _, body = world.admin.get("/api/v1/customers", params=params)
        assert status == 400 and detail in body["detail"], (params, body)
    assert world.counts() == before


def test_another_teams_customer_does_not_exist_for_the_caller(world):
    ann = post(world.d, "site", ANN)
    zed = post(world.d, "shop", {"id": "zed-1", "name": "Zed Shopper", "email": "zed@example.com"})
    assert world.ids(world.kim, "zed") == [] and world.ids(world.kim, "zed@example.com") == []
    assert world.ids(world.sue, "zed") == [zed] and world.ids(world.sue, "ann") == []
    assert world.ids(world.admin, "zed") == [zed]
    before = world.counts()
    for client, cid in ((world.kim, zed), (world.sue, ann)):
        for method, path, payload in (("GET", "/api/v1/customers/%d" % cid, None),
                                      ("PATCH", "/api/v1/customers/%d" % cid, {"display_name": "x"})):
            status, _, body = client.request(method, path, json=payload)
            assert status == 404 and body == {"error": "not_found", "detail": "no customer %d" % cid}
    # Ids that name nothing are the same 404.
    for bad in ("0", "-1", "abc", "1e3", "99999999", "9" * 30, "%27%20OR%201%3D1"):
        status, _, body = world.kim.request("GET", "/api/v1/customers/" + bad)
        assert status == 404 and body["error"] == "not_found", bad
    assert world.counts() == before


def test_the_profile_shows_the_whole_record_and_only_visible_conversations(world):
    ann = post(world.d, "site", ANN, visibility="public")
    # The same verified e-mail on the other team's channel is the same person.
    assert post(world.d, "shop", {"id": "ann-shop", "name": "Ann S.", "email": "ann.smith@example.com",
                                  "email_verified": True}) == ann
    status, _, c = world.kim.get("/api/v1/customers/%d" % ann)
    assert status == 200
    assert c["id"] == ann and c["display_name"] == "Ann Smith" and c["merged_into"] is None
    assert c["attributes"] == {} and c["tags"] == [] and c["conversations_truncated"] is False
    assert [(x["kind"], x["value"], x["verified"]) for x in c["contacts"]] == \
        [("email", "ann.smith@example.com", True), ("phone", "+4915112345678", True)]
    assert [(i["channel_instance"], i["external_id"], i["handle"]) for i in c["identities"]] == \
        [("site", "ann-1", "AnnSmith"), ("shop", "ann-shop", None)]
    # Conversations and cases: only those of the caller's instances.
    assert [x["channel_instance"] for x in c["conversations"]] == ["site"]
    assert c["conversations"][0]["visibility"] == "public" and c["conversations"][0]["customer"]["id"] == ann
    site_case = c["conversations"][0]["case"]["id"]
    assert [k["id"] for k in c["cases"]] == [site_case] and c["cases"][0]["number"].startswith("PC-")
    status, _, c = world.admin.get("/api/v1/customers/%d" % ann)
    assert sorted(x["channel_instance"] for x in c["conversations"]) == ["shop", "site"]
    status, _, c = world.sue.get("/api/v1/customers/%d" % ann)
    assert status == 200 and [x["channel_instance"] for x in c["conversations"]] == ["shop"]
    status, _, body = world.kim.get("/api/v1/customers/%d" % ann, params={"expand": "all"})
    assert status == 400 and body["error"] == "unknown_field"


def test_patch_changes_the_agents_fields_audited_with_a_live_event(world):
    ann = post(world.d, "site", ANN)
    post(world.d, "shop", {"id": "ann-shop", "email": "ann.smith@example.com", "email_verified": True})
    status, _, c = world.kim.patch("/api/v1/customers/%d" % ann, json={
        "display_name": "  Ann Smith-Jones ", "tags": ["vip", " vip", "churn-risk"],
        "attributes": {"plan": "gold", "orders": [1, 2], "address": {"city": "Köln"}}})
    assert status == 200, c
    assert c["display_name"] == "Ann Smith-Jones" and c["tags"] == ["vip", "churn-risk"]
    assert c["attributes"] == {"plan": "gold", "orders": [1, 2], "address": {"city": "Köln"}}
    kim_id = query(world.dsn, "SELECT id FROM agent WHERE email = 'kim@example.com'")[0][0]
    rows = query(world.dsn, "SELECT actor, action, entity, entity_id, agent_id, token_id IS NOT NULL, details "
                            "FROM audit_log WHERE action = 'customer.update'")
    assert rows == [("agent:%d" % kim_id, "customer.update", "customer", ann, kim_id, True, {
        "before": {"display_name": "Ann Smith", "tags": [], "attributes": {}},
        "after": {"display_name": "Ann Smith-Jones", "tags": ["vip", "churn-risk"],
                  "attributes": {"plan": "gold", "orders": [1, 2], "address": {"city": "Köln"}}}})]
    events = query(world.dsn, "SELECT kind, channel_instance, payload -> 'customer' ->> 'display_name' "
                              "FROM (SELECT kind, channel_instance, conversation_id, agent_id, payload FROM live_event_pending UNION ALL SELECT kind, channel_instance, conversation_id, agent_id, payload FROM live_event) AS le WHERE kind = 'customer.updated' ORDER BY channel_instance")
    assert events == [("customer.updated", "shop", "Ann Smith-Jones"),
                      ("customer.updated", "site", "Ann Smith-Jones")]
    # Replacing: tags and attributes are the new ones; the same values again change nothing.
    status, _, c = world.kim.patch("/api/v1/customers/%d" % ann, json={"tags": [], "attributes": {"a": 1}})
    assert status == 200 and c["tags"] == [] and c["attributes"] == {"a": 1}
    before = world.counts()
    assert world.kim.patch("/api/v1/customers/%d" % ann, json={"attributes": {"a": 1}})[0] == 200
    assert world.counts() == before


def test_patch_refuses_what_it_cannot_take_and_changes_nothing(world):
    ann = post(world.d, "site", ANN)
    path = "/api/v1/customers/%d" % ann
    deep = {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}
    before = world.counts()
    for payload, status, detail in (
            ({"name": "x"}, 400, 'body: unknown field "name"'),
            ({"display_name": "x", "merged_into": 1}, 400, 'unknown field "merged_into"'),
            ({}, 422, "nothing to change"),
            ({"display_name": ""}, 422, "display_name: must not be empty"),
            ({"display_name": None}, 422, "display_name: required"),
            ({"display_name": 5}, 422, "display_name: must be a string"),
            ({"display_name": "x" * 201}, 422, "display_name: at most 200"),
            ({"display_name": "a\nb"}, 422, "no control characters"),
            ({"tags": "vip"}, 422, "tags: a list"),
            ({"tags": ["x"] * 51}, 422, "tags: a list"),
            ({"tags": [1]}, 422, "tags: each"),
            ({"tags": ["  "]}, 422, "tags: each"),
            ({"tags": ["y" * 65]}, 422, "tags: each"),
            ({"attributes": []}, 422, "attributes: must be a JSON object"),
            ({"attributes": "x"}, 422, "attributes: must be a JSON object"),
            ({"attributes": {"blob": "x" * 16400}}, 422, "attributes: at most 16384 bytes"),
            ({"attributes": deep}, 422, "attributes: at most 5 levels deep")):
        s, _, body = world.kim.patch(path, json=payload, validate_request=False)
        assert s == status and detail in body["detail"], (payload, body)
    assert world.counts() == before
    # Five levels are fine.
    s, _, c = world.kim.patch(path, json={"attributes": deep["a"]})
    assert s == 200 and c["attributes"] == deep["a"]


def merge(client, source, target, **kw):
    return client.post("/api/v1/customers/%d/merge" % source, json={"into": target}, **kw)


def test_merge_and_unmerge_through_the_api(world):
    ann = post(world.d, "site", ANN)
    dup = post(world.d, "site", {"id": "ann-app", "name": "Ann (app)", "handle": "ann_app"})
    dup_conv = query(world.dsn, "SELECT id FROM conversation WHERE customer_id = %s", (dup,))[0][0]
    status, _, body = merge(world.sam, dup, ann)
    assert status == 200, body
    audit = body["audit_id"]
    assert body == {"audit_id": audit, "source_id": dup, "target_id": ann}
    sam_id = query(world.dsn, "SELECT id FROM agent WHERE email = 'sam@example.com'")[0][0]
    sam_token = query(world.dsn, "SELECT id FROM api_token WHERE name = 'sam'")[0][0]
    assert query(world.dsn, "SELECT actor, action, entity_id, agent_id, token_id, details ->> 'target' "
                            "FROM audit_log WHERE id = %s", (audit,)) == \
        [("agent:%d" % sam_id, "customer.merge", dup, sam_id, sam_token, str(ann))]
    assert query(world.dsn, "SELECT conversation_id, kind, actor, details FROM conversation_event") == \
        [(dup_conv, "merged", "agent:%d" % sam_id, {"source": dup, "target": ann, "audit_id": audit})]
    assert query(world.dsn, "SELECT kind, channel_instance, payload FROM (SELECT kind, channel_instance, conversation_id, agent_id, payload FROM live_event_pending UNION ALL SELECT kind, channel_instance, conversation_id, agent_id, payload FROM live_event) AS le "
                            "WHERE kind LIKE 'customer.%'") == \
        [("customer.merged", "site", body)]
    # One record: the survivor has both conversations and identities; the
    # merged id answers with merged_into and is no longer listed.
    status, _, c = world.kim.get("/api/v1/customers/%d" % ann)
    assert sorted(x["id"] for x in c["conversations"]) == sorted(
        r[0] for r in query(world.dsn, "SELECT id FROM conversation"))
    assert [i["external_id"] for i in c["identities"]] == ["ann-1", "ann-app"]
    status, _, m = world.kim.get("/api/v1/customers/%d" % dup)
    assert status == 200 and m["merged_into"] == ann and m["conversations"] == [] and m["identities"] == []
    assert world.ids(world.kim, "ann (app)") == [] and world.ids(world.kim, "ann_app") == [ann]
    # A merged customer is not edited (its survivor is).
    status, _, body = world.kim.patch("/api/v1/customers/%d" % dup, json={"tags": ["x"]})
    assert status == 409 and body["error"] == "customer_merged"

    status, _, body = world.sam.post("/api/v1/customers/unmerge", json={"audit_id": audit})
    assert status == 200, body
    undo = body["audit_id"]
    assert body == {"audit_id": undo, "merge_audit_id": audit, "source_id": dup, "target_id": ann}
    assert customer_of(world.dsn, "site", "ann-app") == dup
    assert query(world.dsn, "SELECT agent_id, token_id, details ->> 'merge_audit_id' FROM audit_log "
                            "WHERE id = %s AND action = 'customer.unmerge'", (undo,)) == \
        [(sam_id, sam_token, str(audit))]
    assert query(world.dsn, "SELECT conversation_id, details FROM conversation_event WHERE kind = 'unmerged'") == \
        [(dup_conv, {"source": dup, "target": ann, "merge_audit_id": audit, "audit_id": undo})]
    assert world.ids(world.kim, "ann (app)") == [dup]


def test_merge_refusals_are_409_and_change_nothing(world):
    ann = post(world.d, "site", ANN)
    dup = post(world.d, "site", {"id": "ann-app", "name": "Ann (app)"})
    third = post(world.d, "site", {"id": "ann-3", "name": "Ann III"})
    status, _, body = merge(world.admin, ann, ann)
    assert status == 409 and body == {"error": "merge_refused",
                                      "detail": "cannot merge customer %d into itself" % ann}
    audit = merge(world.admin, dup, ann)[2]["audit_id"]
    before = world.counts()
    for source, target, reason in ((dup, third, "customer %d is already merged into customer %d" % (dup, ann)),
                                   (third, dup, "cannot merge into customer %d: it is merged into customer %d"
                                    % (dup, ann))):
        status, _, body = merge(world.admin, source, target)
        assert status == 409 and body["detail"] == reason, body
    assert world.counts() == before
    assert world.admin.post("/api/v1/customers/unmerge", json={"audit_id": audit})[0] == 200
    before = world.counts()
    status, _, body = world.admin.post("/api/v1/customers/unmerge", json={"audit_id": audit})
    assert status == 409 and "was already undone" in body["detail"]
    # Entries that are no merge name nothing.
    world.admin.patch("/api/v1/customers/%d" % ann, json={"tags": ["t"]})
    patch_audit = query(world.dsn, "SELECT max(id) FROM audit_log WHERE action = 'customer.update'")[0][0]
    before = world.counts()
    for bad in (patch_audit, 10**9):
        status, _, body = world.admin.post("/api/v1/customers/unmerge", json={"audit_id": bad})
        assert status == 404 and body["detail"] == "no customer merge %d" % bad
    for payload, code in (({"audit_id": "1"}, 422), ({"audit_id": 1.5}, 422), ({"audit_id": -1}, 422), ({}, 422),
                          ({"audit_id": audit, "force": True}, 400)):
        status, _, body = world.admin.post("/api/v1/customers/unmerge", json=payload, validate_request=False)
        assert status == code, (payload, body)
    for payload, code in (({"into": str(ann)}, 422), ({}, 422), ({"into": ann, "why": "x"}, 400),
                          ({"into": 0}, 422), ({"into": 10**18}, 422)):
        status, _, body = world.admin.post("/api/v1/customers/%d/merge" % third, json=payload,
                                           validate_request=False)
        assert status == code, (payload, body)
    assert world.counts() == before
    # A merge whose survivor has been merged since is undone after that one.
    again = merge(world.admin, dup, ann)[2]["audit_id"]
    later = merge(world.admin, ann, third)[2]["audit_id"]
    before = world.counts()
    status, _, body = world.admin.post("/api/v1/customers/unmerge", json={"audit_id": again})
    assert status == 409 and body["detail"] == \
        "customer %d has since been merged into customer %d; undo that merge first" % (ann, third)
    assert world.counts() == before
    for audit_id in (later, again):
        assert world.admin.post("/api/v1/customers/unmerge", json={"audit_id": audit_id})[0] == 200


def test_who_may_merge(world):
    ann = post(world.d, "site", ANN)
    dup = post(world.d, "site", {"id": "ann-app", "name": "Ann (app)"})
    zed = post(world.d, "shop", {"id": "zed-1", "name": "Zed"})
    before = world.counts()
    # An agent may not merge or unmerge, whatever the ids.
    for source, target in ((dup, ann), (zed, ann), (10**9, ann)):
        status, _, body = merge(world.kim, source, target)
        assert status == 403 and body["error"] == "forbidden"
    status, _, body = world.kim.post("/api/v1/customers/unmerge", json={"audit_id": 1})
    assert status == 403
    # A supervisor only merges customers both of whom they see: else 404.
    for client, source, target, missing in ((world.sam, dup, zed, zed), (world.sam, zed, ann, zed),
                                            (world.sue, dup, ann, dup), (world.sue, zed, ann, ann)):
        status, _, body = merge(client, source, target)
        assert status == 404 and body["detail"] == "no customer %d" % missing, body
    assert world.counts() == before
    status, _, body = merge(world.sam, dup, ann)
    assert status == 200
    # The other team's supervisor cannot undo it; an admin could.
    status, _, _ = world.sue.post("/api/v1/customers/unmerge", json={"audit_id": body["audit_id"]})
    assert status == 404
    assert world.admin.post("/api/v1/customers/unmerge", json={"audit_id": body["audit_id"]})[0] == 200
    # An admin merges across teams.
    assert merge(world.admin, zed, ann)[0] == 200
