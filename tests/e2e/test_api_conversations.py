"""The agents' conversations through the API: GET /api/v1/conversations (every
filter, the queue order, keyset pages that neither skip nor repeat while
messages arrive), GET and PATCH /api/v1/conversations/{id}, marking read,
GET /api/v1/cases/{id}. Messages arrive through the real signed webhook
channel; who sees what follows the caller's teams (another team's object
is 404 on every route), and hostile parameters change nothing. Every answer
is held to docs/api/openapi.yaml by ApiClient."""
import json
import urllib.parse

import pytest

from api_client import ApiClient
from api_setup import add_agent, add_team, create_token
from parley_testlib import http, query, sign

SECRETS = {"site": "s-site", "app": "s-app", "other": "s-other"}
CONVERSATIONS = "/api/v1/conversations"


# ------------------------------------------------------------ set-up

def send(d, instance, payload):
    """POST one webhook item (or a list), signed as the channel wants it."""
    body = json.dumps(payload).encode()
    status, _, data = http("POST", d.url + "/webhooks/" + instance, body,
                           {"Content-Type": "application/json",
                            "X-Parley-Signature": sign(SECRETS[instance], body)})
    assert status == 200, data


def msg(mid, author, text, visibility="private", **extra):
    p = {"id": mid, "author": {"id": author, "name": author.split("-")[0].title()}, "text": text,
         "visibility": visibility}
    p.update(extra)
    return p


def conv_of(dsn, external_id):
    return query(dsn, "SELECT conversation_id FROM message WHERE external_id = %s", (external_id,))[0][0]


def ids(body):
    return [c["id"] for c in body["items"]]


class World:
    """A daemon with three webhook channels: team North owns site and app,
    team South owns other. Five conversations:
      ann   site, private   "Where is my parcel? order 55123"
      bob   site, public    "Your app crashes at checkout"
      cat   app,  private   "I was charged twice, 100%_sure"
      ann2  app,  private   "order 55123 again" (another identity: same case as ann)
      dan   other, private  "Hello from the other side"
    """

    def __init__(self, d, dsn, cfg, run_parleyd):
        self.d, self.dsn, self.cfg, self.run_parleyd = d, dsn, cfg, run_parleyd
        self.north = add_team(dsn, "North", ["site", "app"])
        self.south = add_team(dsn, "South", ["other"])
        self.kim = add_agent(dsn, "kim@example.com", "Kim", teams=[self.north])
        self.sue = add_agent(dsn, "sue@example.com", "Sue", role="supervisor", teams=[self.north])
        self.lee = add_agent(dsn, "lee@example.com", "Lee", teams=[self.south])
        self.tokens = {
            "kim": create_token(run_parleyd, cfg, role="agent", agent="kim@example.com", name="kim"),
            "sue": create_token(run_parleyd, cfg, role="supervisor", agent="sue@example.com", name="sue"),
            "lee": create_token(run_parleyd, cfg, role="agent", agent="lee@example.com", name="lee"),
            "admin": create_token(run_parleyd, cfg, role="admin", name="ops"),
            "south_tool": create_token(run_parleyd, cfg, role="supervisor", teams=[self.south], name="tool"),
        }
        send(d, "site", msg("ann-1", "ann-web", "Where is my parcel? order 55123"))
        send(d, "site", msg("bob-1", "bob-web", "Your app crashes at checkout", "public", thread="post-1"))
        send(d, "app", msg("cat-1", "cat-app", "I was charged twice, 100%_sure"))
        send(d, "app", msg("ann2-1", "ann-app", "order 55123 again"))
        send(d, "other", msg("dan-1", "dan-other", "Hello from the other side"))
        self.conv = {k: conv_of(dsn, k + "-1") for k in ("ann", "bob", "cat", "ann2", "dan")}

    def api(self, who):
        return ApiClient(self.d.url, token=self.tokens[who])

    def new_agent(self, email, name, teams):
        """An agent in these teams, and a client with a token for them."""
        add_agent(self.dsn, email, name, teams=teams)
        return ApiClient(self.d.url, token=create_token(self.run_parleyd, self.cfg, role="agent",
                                                        agent=email, name=name))

    def sql(self, text, params=None):
        return query(self.dsn, text, params)


@pytest.fixture
def world(fresh_db, daemon, plugin_dir, run_parleyd):
    cfg = {"database": {"dsn": fresh_db}, "plugin_dir": plugin_dir, "jobs": {"enabled": False},
           "channels": [{"name": n, "plugin": "webhook", "config": {"secret": s}}
                        for n, s in SECRETS.items()]}
    d = daemon.start(cfg)
    return World(d, fresh_db, cfg, run_parleyd)


def listing(api, **params):
    status, _, body = api.get(CONVERSATIONS, params=params)
    assert status == 200, body
    return body


# ------------------------------------------------------------ the list

def test_the_default_list_is_open_work_of_the_callers_teams_in_queue_order(world):
    w, c = world, world.conv
    # Due times (the SLA engine sets them; here by hand), then severity, then id.
    w.sql("UPDATE conversation SET next_response_due_at = now() + interval '10 minutes' WHERE id IN (%s, %s)",
          (c["ann"], c["cat"]))
    w.sql("UPDATE conversation SET next_response_due_at = now() + interval '5 minutes' WHERE id = %s",
          (c["ann2"],))
    kim = w.api("kim")
    assert kim.patch(CONVERSATIONS + "/%d" % c["cat"], json={"priority": "urgent"})[0] == 200
    assert kim.patch(CONVERSATIONS + "/%d" % c["ann"], json={"priority": "low"})[0] == 200
    # Follower counts are information only: a famous author does not jump the queue.
    w.sql("UPDATE identity SET profile = '{\"followers\": 5000000}' WHERE external_id = 'bob-web'")

    body = listing(kim)
    assert ids(body) == [c["ann2"], c["cat"], c["ann"], c["bob"]]    # bob: no due time, last
    assert body["next_cursor"] is None
    assert all(x["channel_instance"] in ("site", "app") for x in body["items"])
    # Resolved work leaves the default list, and comes back on request.
    assert kim.patch(CONVERSATIONS + "/%d" % c["bob"], json={"status": "resolved"})[0] == 200
    assert ids(listing(kim)) == [c["ann2"], c["cat"], c["ann"]]
    assert ids(listing(kim, status="resolved")) == [c["bob"]]
    assert ids(listing(kim, status="resolved,open")) == [c["ann2"], c["cat"], c["ann"], c["bob"]]
    # The other team sees only its own; an admin sees everything.
    assert ids(listing(w.api("lee"))) == [c["dan"]]
    assert sorted(ids(listing(w.api("admin"), status="open,pending,resolved,closed"))) == sorted(c.values())


def test_sort_oldest_and_newest(world):
    c = world.conv
    kim = world.api("kim")
    by_age = [c["ann"], c["bob"], c["cat"], c["ann2"]]
    assert ids(listing(kim, sort="oldest")) == by_age
    assert ids(listing(kim, sort="newest")) == by_age[::-1]


def test_every_filter_narrows_the_list(world):
    w, c = world, world.conv
    kim = w.api("kim")
    assert kim.patch(CONVERSATIONS + "/%d" % c["cat"],
                     json={"category": "billing", "language": "DE", "priority": "high"})[0] == 200
    assert kim.patch(CONVERSATIONS + "/%d" % c["bob"], json={"category": "bug", "language": "en"})[0] == 200
    # Assignment is not an API of this part yet: set by hand.
    w.sql("UPDATE conversation SET assignee_id = %s WHERE id = %s", (w.kim, c["ann"]))
    w.sql("UPDATE conversation SET assignee_id = %s WHERE id = %s", (w.sue, c["cat"]))
    w.sql("UPDATE conversation SET team_id = %s WHERE id = %s", (w.south, c["ann2"]))

    def found(api=kim, **params):
        return ids(listing(api, sort="oldest", **params))

    assert found(channel_instance="app") == [c["cat"], c["ann2"]]
    assert found(channel_instance="other") == []          # not theirs: nothing
    assert found(visibility="public") == [c["bob"]]
    assert found(visibility="private") == [c["ann"], c["cat"], c["ann2"]]
    # team: its instances, without what sits in another team's queue.
    assert found(team=str(w.north)) == [c["ann"], c["bob"], c["cat"]]
    assert found(team=str(w.south)) == []                 # South's instance is not Kim's
    assert found(w.api("admin"), team=str(w.south)) == [c["dan"]]
    assert found(team="999") == []
    assert found(assignee="me") == [c["ann"]]
    assert found(assignee=str(w.sue)) == [c["cat"]]
    assert found(assignee="none") == [c["bob"], c["ann2"]]
    assert found(category="billing") == [c["cat"]]
    assert found(category="Billing") == []                # categories are exact
    assert found(priority="high") == [c["cat"]]
    assert found(priority="normal") == [c["ann"], c["bob"], c["ann2"]]
    assert found(language="de") == [c["cat"]]
    assert found(language="EN") == [c["bob"]]
    ann_customer = w.sql("SELECT customer_id FROM conversation WHERE id = %s", (c["ann"],))[0][0]
    assert found(customer=str(ann_customer)) == [c["ann"]]
    dan_customer = w.sql("SELECT customer_id FROM conversation WHERE id = %s", (c["dan"],))[0][0]
    assert found(customer=str(dan_customer)) == []        # another team's customer
    # q: the messages' text, any letter case, taken literally (% and _ are text).
    assert found(q="PARCEL") == [c["ann"]]
    assert found(q="order 55123") == [c["ann"], c["ann2"]]
    assert found(q="100%_s") == [c["cat"]]
    assert found(q="0%s") == []
    assert found(q="other side") == []                    # Dan's, another team's
    assert found(w.api("lee"), q="other side") == [c["dan"]]
    # Filters combine.
    assert found(channel_instance="site", visibility="private", assignee="me", q="parcel") == \
        [c["ann"]]
    # "me" needs an agent behind the caller.
    status, _, body = w.api("admin").get(CONVERSATIONS, params={"assignee": "me"})
    assert status == 400 and body["error"] == "invalid_parameter"


def test_q_finds_edited_text_and_keeps_finding_the_original(world):
    w, c = world, world.conv
    send(w.d, "site", {"id": "ann-1", "type": "edit", "text": "Where is my box?",
                       "created_at": "2026-11-23T10:00:00Z"})
    kim = w.api("kim")
    assert ids(listing(kim, q="my box")) == [c["ann"]]
    assert ids(listing(kim, q="parcel")) == [c["ann"]]


def test_has_unread_and_marking_read(world):
    w, c = world, world.conv
    kim = w.api("kim")
    assert ids(listing(kim, has_unread="true")) == [c["ann"], c["bob"], c["cat"], c["ann2"]]
    assert ids(listing(kim, has_unread="false")) == []
    path = CONVERSATIONS + "/%d/read" % c["ann"]
    status, _, body = kim.post(path)
    newest = w.sql("SELECT max(id) FROM message WHERE conversation_id = %s", (c["ann"],))[0][0]
    assert status == 200 and body == {"conversation_id": c["ann"], "agent_read_id": newest, "unread": False}
    assert ids(listing(kim, has_unread="false")) == [c["ann"]]
    assert w.sql("SELECT kind, channel_instance, payload->>'agent_read_id' FROM (SELECT kind, channel_instance, conversation_id, agent_id, payload FROM live_event_pending UNION ALL SELECT kind, channel_instance, conversation_id, agent_id, payload FROM live_event) AS le "
                 "WHERE kind = 'conversation.read'") == [("conversation.read", "site", str(newest))]
    # The customer writes again: unread again.
    send(w.d, "site", msg("ann-2", "ann-web", "Hello?"))
    assert c["ann"] in ids(listing(kim, has_unread="true"))
    status, _, detail = kim.get(CONVERSATIONS + "/%d" % c["ann"])
    assert detail["unread"] is True and detail["agent_read_id"] == newest
    # A mark never moves back, and must name a message of this conversation.
    assert kim.post(path, json={"message_id": newest})[2]["unread"] is True
    assert w.sql("SELECT agent_read_id FROM conversation WHERE id = %s", (c["ann"],))[0][0] == newest
    other_msg = w.sql("SELECT id FROM message WHERE external_id = 'bob-1'")[0][0]
    for bad in ({"message_id": other_msg}, {"message_id": "1"}, {"message_id": 0}, {"message_id": 1.5}):
        status, _, body = kim.post(path, json=bad, validate_request=False)
        assert status == 422 and body["error"] == "invalid_field", (bad, body)
    status, _, body = kim.post(path, json={"message_id": newest, "why": 1}, validate_request=False)
    assert status == 400 and body["error"] == "unknown_field"
    assert w.sql("SELECT count(*) FROM audit_log WHERE action LIKE 'conversation.%%' "
                 "AND action <> 'conversation.case_link'") == [(0,)]


def test_cursor_pages_neither_skip_nor_repeat_while_messages_arrive(world):
    w, c = world, world.conv
    kim = w.api("kim")
    for i in range(6):
        send(w.d, "site", msg("p%d" % i, "page-%d" % i, "page test %d" % i))
    w.sql("UPDATE conversation SET next_response_due_at = now() + (id % 3) * interval '1 minute'")
    w.sql("UPDATE conversation SET priority = (ARRAY['low','normal','high','urgent'])[id % 4 + 1]")
    for sort in ("due", "oldest", "newest"):
        everything = ids(listing(kim, sort=sort, limit="200"))
        seen, cursor, n = [], None, 0
        while True:
            params = {"sort": sort, "limit": "3"}
            if cursor:
                params["cursor"] = cursor
            body = listing(kim, **params)
            assert len(body["items"]) <= 3
            seen += ids(body)
            cursor = body["next_cursor"]
            # New messages keep arriving in existing and new conversations.
            send(w.d, "site", msg("%s-more-%d" % (sort, n), "ann-web", "still waiting %d" % n))
            send(w.d, "app", msg("%s-new-%d" % (sort, n), "new-%s-%d" % (sort, n), "new one"))
            n += 1
            if cursor is None:
                break
        assert len(seen) == len(set(seen)), seen
        assert [x for x in seen if x in everything] == everything
    # A cursor belongs to its sort, and cannot be made up.
    first = listing(kim, sort="due", limit="1")["next_cursor"]
    for bad in (first, "abc", "eyJrIjogImNvbnZlcnNhdGlvbnM6ZHVlIiwgInYiOiBbMSwgMiwgM119", "!" * 10):
        status, _, body = kim.get(CONVERSATIONS, params={"sort": "oldest", "cursor": bad})
        assert status == 400 and body["error"] == "invalid_cursor", (bad, body)


INJECTIONS = ["'; DROP TABLE conversation; --", "1 OR 1=1", "open') OR ('1'='1", "1; SELECT pg_sleep(5)",
              "$1", "%", "\\", "\x00", "' UNION SELECT * FROM api_token --", "me OR 1=1", "a" * 5000]


def test_hostile_values_in_every_filter_are_refused_or_harmless(world):
    w = world
    kim = w.api("kim")
    before = w.sql("SELECT (SELECT count(*) FROM conversation), (SELECT count(*) FROM message), "
                   "(SELECT count(*) FROM api_token)")
    mine = sorted(ids(listing(kim, status="open,pending,resolved,closed")))
    params = ["status", "channel_instance", "visibility", "team", "assignee", "category", "priority",
              "language", "has_unread", "q", "customer", "sort", "limit", "cursor"]
    for param in params:
        for value in INJECTIONS:
            status, _, body = kim.get(CONVERSATIONS, params={param: value})
            assert status in (200, 400), (param, value, status, body)
            if status == 400:
                assert body["error"] in ("invalid_parameter", "invalid_cursor"), (param, value, body)
            else:
                # Harmless: never more than the caller's own conversations.
                assert set(ids(body)) <= set(mine), (param, value)
    assert w.sql("SELECT (SELECT count(*) FROM conversation), (SELECT count(*) FROM message), "
                 "(SELECT count(*) FROM api_token)") == before
    # Unknown parameters and repeated ones are refused.
    status, _, body = kim.get(CONVERSATIONS, params={"colour": "blue"})
    assert status == 400 and body["error"] == "unknown_field"
    status, _, body = kim.get(CONVERSATIONS + "?status=open&status=closed")
    assert status == 400 and body["error"] == "invalid_parameter"
    for param, value in (("status", "open,,pending"), ("status", ""), ("sort", "followers"),
                         ("limit", "201"), ("limit", "0"), ("q", "a"), ("q", " a "), ("team", "-1"),
                         ("assignee", "nobody"), ("has_unread", "yes"), ("language", "english!"),
                         ("priority", "critical"), ("visibility", "secret"), ("category", "")):
        status, _, body = kim.get(CONVERSATIONS, params={param: value})
        assert status == 400 and body["error"] == "invalid_parameter", (param, value, body)


# ------------------------------------------------------------ one conversation

def id_routes(conv_id, case_id):
    """Every route that takes an id, as (method, path, json)."""
    base = CONVERSATIONS + "/%s" % conv_id
    return [("GET", base, None), ("PATCH", base, {"priority": "high"}), ("GET", base + "/timeline", None),
            ("POST", base + "/read", None), ("GET", "/api/v1/cases/%s" % case_id, None)]


def test_role_and_team_matrix_another_teams_objects_are_404(world):
    w, c = world, world.conv
    dan_case = w.sql("SELECT case_id FROM conversation WHERE id = %s", (c["dan"],))[0][0]
    ann_case, ann_number = w.sql("SELECT sc.id, sc.case_number FROM support_case sc "
                                 "JOIN conversation c ON c.case_id = sc.id WHERE c.id = %s", (c["ann"],))[0]
    before = w.sql("SELECT priority, agent_read_id FROM conversation ORDER BY id")
    for who in ("kim", "sue"):
        api = w.api(who)
        for method, path, body in id_routes(c["dan"], dan_case):
            status, _, answer = api.request(method, path, json=body)
            assert status == 404 and answer["error"] == "not_found", (who, method, path, answer)
        for method, path, body in id_routes(c["ann"], ann_case)[::2]:   # the reads
            assert api.request(method, path, json=body)[0] == 200, (who, method, path)
    for who in ("lee", "south_tool"):
        api = w.api(who)
        for method, path, body in id_routes(c["ann"], ann_number):
            status, _, answer = api.request(method, path, json=body)
            assert status == 404, (who, method, path, answer)
        assert api.get(CONVERSATIONS + "/%d" % c["dan"])[0] == 200
    assert w.sql("SELECT priority, agent_read_id FROM conversation ORDER BY id") == before
    admin = w.api("admin")
    for conv, case in ((c["ann"], ann_case), (c["dan"], dan_case)):
        for method, path, body in id_routes(conv, case):
            assert admin.request(method, path, json=body)[0] == 200, (method, path)


def test_ids_that_name_nothing_are_404(world):
    kim = world.api("kim")
    for bad in ("0", "-1", "999999", "abc", "1.0", urllib.parse.quote("1 OR 1=1"), "1e3",
                urllib.parse.quote("1; DROP TABLE conversation"), "9" * 30):
        for method, path, body in id_routes(bad, bad):
            status, _, answer = kim.request(method, path, json=body)
            assert status == 404 and answer["error"] == "not_found", (method, path, answer)
    assert world.sql("SELECT count(*) FROM conversation") == [(5,)]


def test_detail_shows_customer_case_and_linked_conversations_the_caller_sees(world):
    w, c = world, world.conv
    status, _, body = w.api("kim").get(CONVERSATIONS + "/%d" % c["ann"])
    assert status == 200, body
    assert body["conversation"]["id"] == c["ann"] and body["conversation"]["channel_instance"] == "site"
    assert body["customer"]["display_name"] == "Ann"
    assert [(i["channel_instance"], i["external_id"]) for i in body["customer"]["identities"]] == \
        [("site", "ann-web")]
    # The order number links Ann's message on app to the same case.
    case_number = w.sql("SELECT case_number FROM support_case sc JOIN conversation c ON c.case_id = sc.id "
                        "WHERE c.id = %s", (c["ann"],))[0][0]
    assert body["case"]["number"] == case_number
    assert {"kind": "order_number", "value": "55123"} in \
        [{"kind": r["kind"], "value": r["value"]} for r in body["case"]["references"]]
    assert [x["id"] for x in body["linked_conversations"]] == [c["ann2"]]
    assert body["unread"] is True and body["agent_read_id"] is None
    # A team that sees only the app channel does not see the site conversation linked.
    wes = w.new_agent("wes@example.com", "Wes", [add_team(w.dsn, "West", ["app"])])
    status, _, body = wes.get(CONVERSATIONS + "/%d" % c["ann2"])
    assert status == 200 and body["linked_conversations"] == []
    status, _, case = wes.get("/api/v1/cases/" + case_number.lower())
    assert status == 200 and [x["id"] for x in case["conversations"]] == [c["ann2"]]
    # The order number was first seen in Ann's site message, which West does
    # not see: Kim gets the reference, West does not.
    ann_msg = w.sql("SELECT id FROM message WHERE external_id = 'ann-1'")[0][0]
    status, _, kims = w.api("kim").get("/api/v1/cases/" + case_number)
    assert [r["message_id"] for r in kims["references"] if r["kind"] == "order_number"] == [ann_msg]
    assert [r for r in case["references"] if r["kind"] == "order_number"] == []
    status, _, body = wes.get(CONVERSATIONS + "/%d" % c["ann2"], params={"x": "1"})
    assert status == 400 and body["error"] == "unknown_field"


def test_cases_by_id_or_number(world):
    w, c = world, world.conv
    case_id, number = w.sql("SELECT sc.id, sc.case_number FROM support_case sc "
                            "JOIN conversation c ON c.case_id = sc.id WHERE c.id = %s", (c["ann"],))[0]
    kim = w.api("kim")
    for ref in (str(case_id), number, number.lower()):
        status, _, body = kim.get("/api/v1/cases/" + ref)
        assert status == 200, (ref, body)
        assert body["id"] == case_id and body["number"] == number
        assert [x["id"] for x in body["conversations"]] == [c["ann"], c["ann2"]]
        assert body["customer"]["display_name"] == "Ann"
    for ref in ("PC-1", "PC-99999999", "XX", urllib.parse.quote("PC-1' OR '1'='1"), "a" * 65):
        status, _, body = kim.get("/api/v1/cases/" + ref)
        assert status == 404 and body["error"] == "not_found", (ref, body)
    status, _, body = kim.get("/api/v1/cases/" + number, params={"full": "yes"})
    assert status == 400 and body["error"] == "unknown_field"


# ------------------------------------------------------------ changes

def audits(w):
    return w.sql("SELECT actor, action, entity_id, details FROM audit_log WHERE action = 'conversation.update' "
                 "ORDER BY id")


def events(w, conv):
    return w.sql("SELECT kind, actor, details FROM conversation_event WHERE conversation_id = %s ORDER BY id",
                 (conv,))


def test_patch_changes_audits_and_records_each_change(world):
    w, c = world, world.conv
    kim = w.api("kim")
    path = CONVERSATIONS + "/%d" % c["ann"]
    status, _, body = kim.patch(path, json={"status": "resolved", "priority": "high", "category": "shipping",
                                            "tags": ["late", " vip ", "late"], "language": "PT-BR"})
    assert status == 200, body
    assert (body["status"], body["priority"], body["category"], body["tags"], body["language"]) == \
        ("resolved", "high", "shipping", ["late", "vip"], "pt-br")
    assert body["resolved_at"] is not None
    actor = "agent:%d" % w.kim
    assert events(w, c["ann"]) == [
        ("status_changed", actor, {"from": "open", "to": "resolved"}),
        ("priority_changed", actor, {"from": "normal", "to": "high"}),
        ("category_changed", actor, {"from": None, "to": "shipping"}),
        ("tags_changed", actor, {"added": ["late", "vip"], "removed": [], "tags": ["late", "vip"]}),
        ("language_changed", actor, {"from": None, "to": "pt-br"})]
    [(a_actor, action, entity_id, details)] = audits(w)
    assert (a_actor, action, entity_id) == (actor, "conversation.update", c["ann"])
    assert details["before"] == {"status": "open", "priority": "normal", "tags": []}   # nulls left out
    assert details["after"]["status"] == "resolved" and details["after"]["tags"] == ["late", "vip"]
    assert details["after"]["resolved_at"] is not None
    [(kind, inst, conv, payload)] = w.sql(
        "SELECT kind, channel_instance, conversation_id, payload FROM live_event_pending "
        "WHERE kind = 'conversation.updated' UNION ALL SELECT kind, channel_instance, conversation_id, "
        "payload FROM live_event WHERE kind = 'conversation.updated'")
    assert (kind, inst, conv) == ("conversation.updated", "site", c["ann"])
    assert payload == body

    # Reopening clears resolved_at; tags by add and remove; null clears.
    status, _, body = kim.patch(path, json={"status": "open", "add_tags": ["refund", "vip"],
                                            "remove_tags": ["late"], "category": None, "language": None})
    assert status == 200 and body["resolved_at"] is None
    assert (body["tags"], body["category"], body["language"]) == (["vip", "refund"], None, None)
    later = events(w, c["ann"])[5:]
    assert [e[0] for e in later] == ["status_changed", "category_changed", "tags_changed", "language_changed"]
    assert later[2] == ("tags_changed", actor, {"added": ["refund"], "removed": ["late"], "tags": ["vip", "refund"]})
    # Closing straight from open sets resolved_at too; a patch that changes
    # nothing writes nothing.
    assert kim.patch(path, json={"status": "closed"})[2]["resolved_at"] is not None
    n_audit, n_events = len(audits(w)), len(events(w, c["ann"]))
    status, _, same = kim.patch(path, json={"status": "closed", "tags": ["vip", "refund"]})
    assert status == 200 and same["status"] == "closed"
    assert (len(audits(w)), len(events(w, c["ann"]))) == (n_audit, n_events)


def test_bad_changes_are_refused_and_change_nothing(world):
    w, c = world, world.conv
    kim = w.api("kim")
    path = CONVERSATIONS + "/%d" % c["bob"]
    fields = "SELECT status, priority, category, language, tags, updated_at FROM conversation WHERE id = %s"
    before = w.sql(fields, (c["bob"],))
    for bad in ({}, {"status": "done"}, {"status": None}, {"status": 1}, {"priority": "critical"},
                {"priority": 5}, {"category": "x" * 101}, {"category": "  "}, {"category": "a\nb"},
                {"tags": "vip"}, {"tags": [1]}, {"tags": [""]}, {"tags": ["x" * 51]},
                {"tags": ["t%d" % i for i in range(51)]}, {"tags": ["a"], "add_tags": ["b"]},
                {"add_tags": None}, {"remove_tags": {"a": 1}},
                {"language": "english!"}, {"language": "e"}, {"language": 7},
                {"status": "resolved", "priority": "nope"}):
        status, _, body = kim.patch(path, json=bad, validate_request=False)
        assert status == 422 and body["error"] == "invalid_field", (bad, body)
    status, _, body = kim.patch(path, json={"status": "open", "assignee": 3}, validate_request=False)
    assert status == 400 and body["error"] == "unknown_field"
    status, _, body = kim.patch(path, json={"status": "open"}, params={"force": "1"})
    assert status == 400 and body["error"] == "unknown_field"
    # 50 tags are fine, the 51st by add_tags is not.
    assert kim.patch(path, json={"tags": ["t%d" % i for i in range(50)]})[0] == 200
    status, _, body = kim.patch(path, json={"add_tags": ["one-more"]})
    assert status == 422 and "at most 50" in body["detail"]
    [(status_, priority, category, language, tags, _)] = w.sql(fields, (c["bob"],))
    assert (status_, priority, category, language) == before[0][:4]
    assert tags == ["t%d" % i for i in range(50)]
    assert len(audits(w)) == 1      # only the accepted 50 tags
