"""The customer model and parley_ingest_batch(), the one SQL function the core
calls per batch: dedupe, identities and customers, threading, echoes, case
linking, out-of-order edits and receipts, merge and unmerge, concurrency and
atomicity. Each test runs against a fresh database migrated by the real
parleyd and calls the function directly, as the core does."""
import itertools
import json
import random
import threading
import time

import psycopg2
import psycopg2.errors
import pytest

INSTANCE = "site"
CHANNEL = "webhook"
T0 = 1_700_000_000_000  # a fixed platform time (ms, in the past) for tests that order events

_seq = itertools.count(1)


# ------------------------------------------------------------- test support

class Db:
    """One migrated database; every call is its own transaction."""

    def __init__(self, dsn):
        self.dsn = dsn

    def connect(self):
        return psycopg2.connect(self.dsn)

    def ingest(self, items, opts=None):
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT parley_ingest_batch(%s::jsonb, %s::jsonb)",
                            (json.dumps(items), json.dumps(opts or {})))
                result = cur.fetchone()[0]
            conn.commit()
            return result
        finally:
            conn.close()

    def rows(self, sql, params=None):
        conn = self.connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description is not None else []
        finally:
            conn.close()

    def one(self, sql, params=None):
        rows = self.rows(sql, params)
        assert len(rows) == 1, rows
        return rows[0] if len(rows[0]) > 1 else rows[0][0]

    def count(self, table, where="true", params=None):
        return self.one("SELECT count(*) FROM %s WHERE %s" % (table, where), params)

    def counts(self):
        tables = ["inbound_event", "customer", "customer_contact", "identity", "support_case",
                  "case_reference", "conversation", "message", "message_revision", "audit_log"]
        return {t: self.count(t) for t in tables}


@pytest.fixture
def db(fresh_db, run_parleyd, plugin_dir):
    code, out, err = run_parleyd(["--migrate"], config={"database": {"dsn": fresh_db},
                                                        "plugin_dir": plugin_dir})
    assert code == 0, err
    return Db(fresh_db)


def item(event, instance=INSTANCE, raw=None):
    event.setdefault("dedupe_key", "%s:%s:%d" % (event.get("type"), event.get("external_id"), next(_seq)))
    return {"instance": instance, "channel": CHANNEL, "event": event, "raw": raw}


def totals(result):
    """(inserted, replays) of a batch's answer."""
    assert sum(i["inserted"] for i in result["instances"].values()) == result["inserted"]
    assert sum(i["replays"] for i in result["instances"].values()) == result["replays"]
    return result["inserted"], result["replays"]


def author(uid, **extra):
    a = {"external_id": uid}
    a.update(extra)
    return a


def created(mid, uid="cust-1", text="hello", visibility="private", thread=None, instance=INSTANCE,
            at=None, author_extra=None, raw=None, **extra):
    ev = {"type": "message_created", "external_id": mid, "text": text, "visibility": visibility,
          "author": author(uid, **(author_extra or {}))}
    if visibility == "private" and thread is None:
        thread = "chat-" + uid
    if thread is not None:
        ev["thread_id"] = thread
    if at is not None:
        ev["platform_time_ms"] = at
    ev.update(extra)
    return item(ev, instance, raw)


def echo(mid, text="We are on it", visibility="private", thread=None, instance=INSTANCE, **extra):
    ev = {"type": "message_created", "external_id": mid, "text": text, "visibility": visibility,
          "from_brand": True, "author": author("brand-account")}
    if thread is not None:
        ev["thread_id"] = thread
    ev.update(extra)
    return item(ev, instance)


def edited(mid, text, at=None, instance=INSTANCE, **extra):
    ev = {"type": "message_edited", "external_id": mid, "text": text}
    if at is not None:
        ev["platform_time_ms"] = at
    ev.update(extra)
    return item(ev, instance)


def deleted(mid, at=None, by=None, instance=INSTANCE):
    ev = {"type": "message_deleted", "external_id": mid}
    if at is not None:
        ev["platform_time_ms"] = at
    if by is not None:
        ev["author"] = author(by)
    return item(ev, instance)


def receipt(mid, status, detail=None, at=None, instance=INSTANCE):
    ev = {"type": "delivery_status", "external_id": mid, "delivery_status": status}
    if detail is not None:
        ev["detail"] = detail
    if at is not None:
        ev["platform_time_ms"] = at
    return item(ev, instance)


def message(db, mid, instance=INSTANCE):
    """The message row as a dict."""
    conn = db.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT * FROM message WHERE channel_instance = %s AND external_id = %s",
                        (instance, mid))
            row = cur.fetchone()
            assert row is not None, "no message %s" % mid
            return dict(zip([d[0] for d in cur.description], row))
    finally:
        conn.close()


def customer_of(db, uid, instance=INSTANCE):
    return db.one("SELECT customer_id FROM identity WHERE channel_instance = %s AND external_id = %s",
                  (instance, uid))


def pending(db):
    return db.count("inbound_event", "processed_at IS NULL")


def add_outbound(db, conversation_id, external_id, text="Our reply", instance=INSTANCE):
    """A message Parley sent itself (as the reply path stores it)."""
    return db.one("INSERT INTO message (conversation_id, channel_instance, direction, external_id, text, "
                  "visibility, delivery_status) VALUES (%s, %s, 'outbound', %s, %s, 'private', 'sent') "
                  "RETURNING id", (conversation_id, instance, external_id, text))


# ------------------------------------------------------- 1. dedupe, replays

def test_every_item_is_stored_and_a_replay_changes_nothing(db):
    batch = [created("m1", text="where is my parcel", at=T0, raw={"platform": "payload"}),
             created("m2", uid="cust-2", visibility="public", thread="post-1", at=T0)]
    assert totals(db.ingest(batch)) == (2, 0)
    row = db.one("SELECT event_type, external_id, author_external_id, raw, platform_time = "
                 "to_timestamp(%s / 1000.0), processed_at IS NOT NULL FROM inbound_event "
                 "WHERE external_id = 'm1'", (T0,))
    assert row == ("message_created", "m1", "cust-1", {"platform": "payload"}, True, True)

    before = db.counts()
    seen = db.one("SELECT last_seen_at FROM identity WHERE external_id = 'cust-1'")
    assert totals(db.ingest(batch)) == (0, 2)
    assert db.counts() == before
    assert db.one("SELECT last_seen_at FROM identity WHERE external_id = 'cust-1'") == seen


def test_the_answer_counts_per_instance(db):
    batch = [created("a1", instance="one"), created("a2", instance="one"), created("b1", instance="two")]
    db.ingest(batch[:1])
    assert db.ingest(batch) == {"inserted": 2, "replays": 1,
                                "instances": {"one": {"inserted": 1, "replays": 1},
                                              "two": {"inserted": 1, "replays": 0}}}


def test_a_duplicate_key_within_one_batch_the_first_wins(db):
    first = created("m1", text="first")
    second = created("m1-other", text="second")
    second["event"]["dedupe_key"] = first["event"]["dedupe_key"]
    assert totals(db.ingest([first, second])) == (1, 1)
    assert db.rows("SELECT external_id, text FROM message") == [("m1", "first")]


def test_the_same_message_under_another_dedupe_key_is_not_stored_twice(db):
    assert totals(db.ingest([created("m1", text="once")])) == (1, 0)
    again = created("m1", text="once")
    assert totals(db.ingest([again, created("m1", text="once")])) == (2, 0)
    assert db.count("message") == 1
    assert db.count("conversation") == 1
    assert pending(db) == 0


# ---------------------------------------------------------- 2. concurrency

def run_together(db, batches, opts=None):
    """Each batch in its own thread and connection (READ COMMITTED), all
    released at once; returns the exceptions raised."""
    barrier = threading.Barrier(len(batches))
    errors = []

    def worker(items):
        conn = db.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW transaction_isolation")
                assert cur.fetchone()[0] == "read committed"
            conn.commit()
            barrier.wait(timeout=30)
            for batch in items:
                with conn.cursor() as cur:
                    cur.execute("SELECT parley_ingest_batch(%s::jsonb, %s::jsonb)",
                                (json.dumps(batch), json.dumps(opts or {})))
                conn.commit()
        except Exception as e:  # collected and asserted by the test
            errors.append(e)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    return errors


def test_simultaneous_first_messages_of_a_new_user_make_one_customer(db):
    batches = [[[created("first-%d" % i, uid="newcomer", text="anyone there? (%d)" % i)]]
               for i in range(8)]
    assert run_together(db, batches) == []
    assert db.count("customer") == 1
    assert db.count("identity") == 1
    assert db.count("conversation") == 1
    assert db.count("support_case") == 1
    assert db.count("message") == 8
    assert db.count("message", "conversation_id IS NULL") == 0


def test_simultaneous_new_identities_with_one_verified_email_make_one_customer(db):
    batches = [[[created("mail-%d" % i, uid="user-%d" % i, instance="inst-%d" % i,
                         author_extra={"email": "Same@Example.com", "email_verified": True})]]
               for i in range(6)]
    assert run_together(db, batches) == []
    assert db.count("identity") == 6
    assert db.count("customer") == 1
    assert db.count("customer_contact") == 1
    assert db.count("audit_log", "action = 'customer.auto_link'") == 5


def test_concurrent_overlapping_batches_never_deadlock(db):
    rnd = random.Random(4711)
    users = ["u%d" % i for i in range(15)]
    batches, created_ids = [], set()
    for w in range(6):
        mine = []
        for b in range(6):
            batch = []
            for i in range(20):
                mid = "w%d-b%d-%d" % (w, b, i)
                uid = rnd.choice(users)
                vis = rnd.choice(["private", "public"])
                thread = "post-%d" % rnd.randrange(3) if vis == "public" else None
                batch.append(created(mid, uid=uid, visibility=vis, thread=thread,
                                     text="order 1000%d please" % rnd.randrange(5)))
                created_ids.add(mid)
                if rnd.random() < 0.2:
                    # An edit of a message another worker may not have sent yet.
                    other = "w%d-b%d-%d" % (rnd.randrange(6), rnd.randrange(6), rnd.randrange(20))
                    batch.append(edited(other, "edited " + other))
                if rnd.random() < 0.1:
                    batch.append(echo("echo-%s" % mid, thread="chat-" + uid))
            rnd.shuffle(batch)
            mine.append(batch)
        batches.append(mine)
    errors = run_together(db, batches)
    assert errors == [], errors
    assert db.count("identity") == len(users)
    assert db.count("customer") == len(users)
    assert db.count("message", "direction = 'inbound'") == len(created_ids)
    # Every customer has at most one open conversation per thread.
    assert db.rows("SELECT customer_id, thread_key FROM conversation WHERE status = 'open' "
                   "GROUP BY 1, 2 HAVING count(*) > 1") == []
    # Every edit of a message that now exists has been applied.
    assert db.count("inbound_event e", "e.event_type = 'message_edited' AND e.processed_at IS NULL "
                    "AND EXISTS (SELECT 1 FROM message m WHERE m.channel_instance = e.channel_instance "
                    "AND m.external_id = e.external_id)") == 0


# ----------------------------------------- 3. identities, customers, threading

def test_a_new_identity_creates_a_customer_with_its_contacts(db):
    db.ingest([created("m1", uid="4711", text="My parcel is late", at=T0,
                       author_extra={"handle": "@ann", "display_name": "Ann Example",
                                     "email": "Ann@Example.COM", "email_verified": True,
                                     "phone": "+4915112345678", "phone_verified": False,
                                     "profile": {"followers": 120000}})])
    cust, name, tags, attrs, merged = db.one(
        "SELECT id, display_name, tags, attributes, merged_into FROM customer")
    assert (name, tags, attrs, merged) == ("Ann Example", [], {}, None)
    ident = db.one("SELECT id, customer_id, channel_kind, channel_instance, handle, display_name, profile "
                   "FROM identity")
    assert ident[1:] == (cust, CHANNEL, INSTANCE, "@ann", "Ann Example", {"followers": 120000})
    assert db.rows("SELECT kind, value, verified, source_instance, source_identity_id FROM customer_contact "
                   "ORDER BY kind") == [("email", "ann@example.com", True, INSTANCE, ident[0]),
                                        ("phone", "+4915112345678", False, INSTANCE, ident[0])]
    conv = db.one("SELECT id, customer_id, identity_id, channel_kind, visibility, thread_key, status, "
                  "priority, last_inbound_at = to_timestamp(%s / 1000.0) FROM conversation", (T0,))
    assert conv[1:] == (cust, ident[0], CHANNEL, "private", "chat-4711", "open", "normal", True)
    m = message(db, "m1")
    assert (m["conversation_id"], m["direction"], m["author_identity_id"], m["text"], m["visibility"]) == \
        (conv[0], "inbound", ident[0], "My parcel is late", "private")
    assert m["inbound_event_id"] == db.one("SELECT id FROM inbound_event WHERE external_id = 'm1'")
    assert db.one("SELECT case_number, customer_id FROM support_case") == ("PC-10000", cust)


def test_a_returning_identity_is_updated_not_duplicated(db):
    db.ingest([created("m1", uid="u1", author_extra={"handle": "@old", "profile": {"followers": 1}})])
    first_seen, last_seen = db.one("SELECT first_seen_at, last_seen_at FROM identity")
    time.sleep(0.01)
    db.ingest([created("m2", uid="u1", author_extra={"handle": "@new", "display_name": "New Name",
                                                     "profile": {"followers": 2}})])
    row = db.one("SELECT handle, display_name, profile, first_seen_at, last_seen_at > %s FROM identity",
                 (last_seen,))
    assert row == ("@new", "New Name", {"followers": 2}, first_seen, True)
    assert db.count("customer") == 1
    assert db.count("conversation") == 1


@pytest.mark.parametrize("kind, extra", [
    ("phone", {"phone": "+491701234567", "phone_verified": True}),
    ("email", {"email": "Bob@Example.com", "email_verified": True}),
])
def test_a_new_identity_with_a_known_verified_key_joins_that_customer(db, kind, extra):
    db.ingest([created("wa-1", uid="wa-user", instance="whatsapp", author_extra=extra)])
    target = customer_of(db, "wa-user", "whatsapp")
    db.ingest([created("sms-1", uid="sms-user", instance="sms", author_extra=extra)])
    assert customer_of(db, "sms-user", "sms") == target
    assert db.count("customer") == 1
    sms_identity = db.one("SELECT id FROM identity WHERE channel_instance = 'sms'")
    actor, entity, entity_id, details = db.one(
        "SELECT actor, entity, entity_id, details FROM audit_log WHERE action = 'customer.auto_link'")
    assert (actor, entity, entity_id) == ("ingest", "identity", sms_identity)
    assert details["customer_id"] == target and details["kind"] == kind
    assert details["value"] == (extra.get("phone") or extra["email"].lower())


def test_unverified_keys_never_merge(db):
    db.ingest([created("a-1", uid="a", instance="mail", author_extra={"email": "x@example.com",
                                                                      "email_verified": True})])
    # Same address, but this platform does not vouch for it.
    db.ingest([created("b-1", uid="b", instance="web", author_extra={"email": "x@example.com",
                                                                     "email_verified": False})])
    # Vouched for now, but the existing customer's copy is the unverified one from b.
    db.ingest([created("c-1", uid="c", instance="shop", author_extra={"phone": "+3312345",
                                                                      "phone_verified": False})])
    db.ingest([created("d-1", uid="d", instance="wa", author_extra={"phone": "+3312345",
                                                                    "phone_verified": True})])
    assert db.count("customer") == 4
    assert db.count("audit_log", "action = 'customer.auto_link'") == 0


def test_automatic_merging_can_be_switched_off(db):
    extra = {"email": "x@example.com", "email_verified": True, "phone": "+1555", "phone_verified": True}
    opts = {"auto_merge_verified_email": False, "auto_merge_verified_phone": False}
    db.ingest([created("a-1", uid="a", instance="one", author_extra=extra)], opts)
    db.ingest([created("b-1", uid="b", instance="two", author_extra=extra)], opts)
    assert db.count("customer") == 2


def test_private_messages_thread_by_chat(db):
    db.ingest([created("m1", uid="u1", thread="chat-A"), created("m2", uid="u1", thread="chat-A")])
    db.ingest([created("m3", uid="u1", thread="chat-B")])
    convs = dict(db.rows("SELECT thread_key, id FROM conversation"))
    assert set(convs) == {"chat-A", "chat-B"}
    assert message(db, "m1")["conversation_id"] == message(db, "m2")["conversation_id"] == convs["chat-A"]
    # Without a chat id: the customer's newest private conversation on the instance.
    ev = created("m4", uid="u1")
    del ev["event"]["thread_id"]
    db.ingest([ev])
    assert message(db, "m4")["conversation_id"] == convs["chat-B"]
    # Another instance is another conversation, even for the same chat id.
    db.ingest([created("m5", uid="u1", thread="chat-A", instance="other")])
    assert db.count("conversation") == 3


def test_public_messages_thread_by_root_post_per_customer(db):
    db.ingest([created("root", uid="ann", visibility="public", thread=None, text="Your app is down")])
    db.ingest([created("c1", uid="ann", visibility="public", thread="root", text="Still down"),
               created("c2", uid="bob", visibility="public", thread="root", text="Same here")])
    assert message(db, "root")["conversation_id"] == message(db, "c1")["conversation_id"]
    assert message(db, "c2")["conversation_id"] != message(db, "c1")["conversation_id"]
    assert db.rows("SELECT thread_key, visibility FROM conversation ORDER BY id") == \
        [("root", "public"), ("root", "public")]


def test_a_resolved_conversation_reopens_within_the_window_only(db):
    db.ingest([created("m1", uid="u1")])
    conv = message(db, "m1")["conversation_id"]
    db.rows("UPDATE conversation SET status = 'resolved', resolved_at = now() - interval '6 days'")
    db.ingest([created("m2", uid="u1", text="it broke again")])
    assert message(db, "m2")["conversation_id"] == conv
    assert db.one("SELECT status, resolved_at FROM conversation WHERE id = %s", (conv,)) == ("open", None)
    assert db.one("SELECT entity_id, details->>'previous_status' FROM audit_log "
                  "WHERE action = 'conversation.reopen'") == (conv, "resolved")

    db.rows("UPDATE conversation SET status = 'closed', resolved_at = now() - interval '8 days'")
    db.ingest([created("m3", uid="u1", text="hello again")])
    assert message(db, "m3")["conversation_id"] != conv
    assert db.count("conversation") == 2

    # A shorter configured window.
    db.rows("UPDATE conversation SET status = 'resolved', resolved_at = now() - interval '2 hours'")
    db.ingest([created("m4", uid="u1")], {"reopen_window_s": 3600})
    assert db.count("conversation") == 3
    assert db.count("audit_log", "action = 'conversation.reopen'") == 1


def test_a_new_conversation_joins_the_case_with_open_work(db):
    db.ingest([created("m1", uid="u1", thread="chat-1")])
    db.ingest([created("p1", uid="u1", visibility="public", thread="post-9")])
    cases = db.rows("SELECT DISTINCT case_id FROM conversation")
    assert len(cases) == 1
    db.rows("UPDATE conversation SET status = 'closed', resolved_at = now() - interval '30 days'")
    db.ingest([created("m2", uid="u1", thread="chat-2")])
    assert db.count("support_case") == 2
    assert db.rows("SELECT case_number FROM support_case ORDER BY id") == [("PC-10000",), ("PC-10001",)]


def test_replies_link_to_their_parent_also_within_a_batch(db):
    db.ingest([created("root", uid="ann", visibility="public", thread=None)])
    db.ingest([created("r1", uid="bob", visibility="public", thread="root", in_reply_to="root"),
               created("r2", uid="ann", visibility="public", thread="root", in_reply_to="r1"),
               created("r3", uid="ann", visibility="public", thread="root", in_reply_to="not-stored")])
    assert message(db, "r1")["in_reply_to_id"] == message(db, "root")["id"]
    assert message(db, "r2")["in_reply_to_id"] == message(db, "r1")["id"]
    r3 = message(db, "r3")
    assert (r3["in_reply_to_external_id"], r3["in_reply_to_id"]) == ("not-stored", None)
    # Batch order is id order: the timeline reads as it happened.
    ids = [message(db, m)["id"] for m in ("root", "r1", "r2", "r3")]
    assert ids == sorted(ids)


def test_new_conversations_are_announced_once_per_batch(db):
    # The after-ingest step that announces new conversations, replaced by
    # one that records what it is handed when the batch started any.
    db.rows("CREATE TABLE started_calls (ids bigint[], opts jsonb)")
    db.rows("CREATE OR REPLACE FUNCTION parley_notice_conversations_created(b parley_ingested) "
            "RETURNS void LANGUAGE sql AS $$ INSERT INTO started_calls SELECT ($1).conversations, ($1).opts "
            "WHERE cardinality(($1).conversations) > 0 $$")
    opts = {"notify_new_conversation": ["slack"]}
    db.ingest([created("m1", uid="u1", thread="chat-1"), created("m2", uid="u1", thread="chat-1"),
               created("p1", uid="u2", visibility="public", thread="post-1"),
               echo("b1", thread="chat-1")], opts)
    db.ingest([created("m3", uid="u1", thread="chat-1"), echo("b2", thread="chat-elsewhere")], opts)
    convs = [r[0] for r in db.rows("SELECT id FROM conversation ORDER BY id")]
    assert len(convs) == 2
    assert db.rows("SELECT ids, opts FROM started_calls") == [(convs, opts)]


def test_the_after_ingest_steps_get_the_customers_messages_in_order(db):
    # A step of the pipeline, replaced by one that records what it is handed.
    db.rows("CREATE TABLE step_calls (messages bigint[], conversations bigint[])")
    db.rows("CREATE OR REPLACE FUNCTION parley_route_to_sinks(b parley_ingested) RETURNS void "
            "LANGUAGE sql AS $$ INSERT INTO step_calls VALUES (($1).messages, ($1).conversations) $$")
    db.ingest([created("m1", uid="u1", thread="chat-1"), echo("b1", thread="chat-1"),
               created("m2", uid="u2", thread="chat-2"), created("m1", uid="u1", thread="chat-1"),
               created("m3", uid="u1", thread="chat-1")])
    db.ingest([created("m1", uid="u1", thread="chat-1")])  # the same message again: nothing new
    ids = [message(db, m)["id"] for m in ("m1", "m2", "m3")]
    convs = [r[0] for r in db.rows("SELECT id FROM conversation ORDER BY id")]
    assert db.rows("SELECT messages, conversations FROM step_calls") == [(ids, convs), ([], [])]


def test_new_jobs_wake_the_runners_and_nothing_else_does(db):
    listener = db.connect()
    listener.autocommit = True
    listener.cursor().execute("LISTEN parley_jobs")

    def woken():
        time.sleep(0.2)
        listener.poll()
        got = [n.channel for n in listener.notifies]
        listener.notifies.clear()
        return got

    db.ingest([created("m1", uid="u1")])
    assert woken() == []  # no routing: no job, no wake-up
    db.rows("INSERT INTO parley_settings (key, value) VALUES ('routing', %s::jsonb)",
            (json.dumps({"notices": [{"notifier": "ops"}]}),))
    db.ingest([created("m2", uid="u2"), created("m3", uid="u2")])
    assert woken() == ["parley_jobs"]  # notices written: one wake-up for the transaction
    assert db.count("job") == 2
    db.rows("SELECT parley_job_enqueue('notifier', 'ops', 'deliver', '{}', 'k-1')")
    assert woken() == ["parley_jobs"]
    db.rows("SELECT parley_job_enqueue('notifier', 'ops', 'deliver', '{}', 'k-1')")  # exists already
    assert woken() == []
    listener.close()


# ---------------------------------------------------------------- 4. echoes

def test_an_echo_is_recorded_as_outbound_not_as_a_customer(db):
    db.ingest([created("m1", uid="u1", thread="chat-1")])
    conv = message(db, "m1")["conversation_id"]
    db.ingest([echo("b1", thread="chat-1")])
    b1 = message(db, "b1")
    assert (b1["direction"], b1["author_identity_id"], b1["conversation_id"]) == ("outbound", None, conv)
    assert db.count("customer") == 1 and db.count("identity") == 1
    first, last = db.one("SELECT first_response_at, last_outbound_at FROM conversation")
    assert first is not None and last is not None
    time.sleep(0.01)
    db.ingest([echo("b2", thread="chat-1")])
    first2, last2 = db.one("SELECT first_response_at, last_outbound_at FROM conversation")
    assert first2 == first and last2 > last
    # The brand's account never becomes a customer, whatever it writes.
    assert db.count("identity", "external_id = 'brand-account'") == 0


def test_a_public_echo_joins_the_conversation_of_the_comment_it_answers(db):
    db.ingest([created("c1", uid="ann", visibility="public", thread="post-1"),
               created("c2", uid="bob", visibility="public", thread="post-1")])
    db.ingest([echo("b1", visibility="public", thread="post-1", in_reply_to="c1")])
    assert message(db, "b1")["conversation_id"] == message(db, "c1")["conversation_id"]
    assert message(db, "b1")["in_reply_to_id"] == message(db, "c1")["id"]


def test_an_echo_of_a_message_parley_sent_matches_it(db):
    db.ingest([created("m1", uid="u1", thread="chat-1")])
    conv = message(db, "m1")["conversation_id"]
    sent = add_outbound(db, conv, "platform-42")
    db.ingest([echo("platform-42", thread="chat-1")])
    assert db.count("message") == 2
    m = message(db, "platform-42")
    assert m["id"] == sent and m["direction"] == "outbound"
    assert m["inbound_event_id"] == db.one("SELECT id FROM inbound_event WHERE external_id = 'platform-42'")


def test_an_echo_without_a_known_conversation_is_kept(db):
    db.ingest([echo("b1", thread="chat-nobody-knows")])
    m = message(db, "b1")
    assert (m["direction"], m["conversation_id"]) == ("outbound", None)
    assert pending(db) == 0


# ----------------------------------------------------------- 5. case linking

def test_a_mentioned_case_number_links_the_conversation(db):
    db.ingest([created("a1", uid="ann", instance="x")])
    case_a = db.one("SELECT id FROM support_case WHERE case_number = 'PC-10000'")
    # The same person on another channel, first contact: starts in that case.
    db.ingest([created("f1", uid="ann-fb", instance="facebook", text="about my case pc-10000")])
    conv_f = message(db, "f1", "facebook")["conversation_id"]
    assert db.one("SELECT case_id FROM conversation WHERE id = %s", (conv_f,)) == case_a
    assert db.count("support_case") == 1
    link = db.one("SELECT entity_id, details FROM audit_log WHERE action = 'conversation.case_link'")
    assert link[0] == conv_f
    assert (link[1]["to_case_id"], link[1]["kind"], link[1]["value"]) == (case_a, "case_number", "PC-10000")


def test_an_existing_conversation_moves_to_a_mentioned_case(db):
    db.ingest([created("a1", uid="ann", instance="x")])
    db.ingest([created("b1", uid="bob", instance="y")])
    conv_b = message(db, "b1", "y")["conversation_id"]
    own_case = db.one("SELECT case_id FROM conversation WHERE id = %s", (conv_b,))
    db.ingest([created("b2", uid="bob", instance="y", text="this is really PC-10000, sorry")])
    assert db.one("SELECT case_id FROM conversation WHERE id = %s", (conv_b,)) == \
        db.one("SELECT id FROM support_case WHERE case_number = 'PC-10000'")
    details = db.one("SELECT details FROM audit_log WHERE action = 'conversation.case_link'")
    assert details["from_case_id"] == own_case


def test_a_known_order_number_links_and_every_reference_is_recorded(db):
    db.ingest([created("a1", uid="ann", instance="x", text="My order #A-12345 never came, ann@shop.test")])
    case_a = db.one("SELECT case_id FROM conversation")
    m1 = message(db, "a1", "x")["id"]
    assert db.rows("SELECT kind, value, message_id FROM case_reference WHERE case_id = %s "
                   "AND message_id IS NOT NULL ORDER BY kind", (case_a,)) == \
        [("email", "ann@shop.test", m1), ("order_number", "A-12345", m1)]
    db.ingest([created("b1", uid="someone", instance="y", text="Order a-12345: where is it?")])
    assert db.one("SELECT case_id FROM conversation WHERE channel_instance = 'y'") == case_a


def test_the_customers_own_email_links_a_later_message(db):
    db.ingest([created("a1", uid="ann", instance="mail", author_extra={"email": "Ann@Example.com"})])
    case_a = db.one("SELECT case_id FROM conversation")
    assert db.rows("SELECT case_id, kind, value FROM case_reference") == [(case_a, "email", "ann@example.com")]
    db.ingest([created("b1", uid="anon", instance="chat", text="I wrote from ann@example.com before")])
    assert db.one("SELECT case_id FROM conversation WHERE channel_instance = 'chat'") == case_a
    # An email a customer gives after their case was opened counts as well.
    db.ingest([created("w1", uid="cy-wa", instance="wa", author_extra={"phone": "+111", "phone_verified": True})])
    case_c = db.one("SELECT case_id FROM conversation WHERE channel_instance = 'wa'")
    db.ingest([created("m1", uid="cy-mail", instance="mail2",
                       author_extra={"phone": "+111", "phone_verified": True, "email": "cy@example.com"})])
    assert customer_of(db, "cy-mail", "mail2") == customer_of(db, "cy-wa", "wa")
    assert db.count("case_reference", "value = 'cy@example.com'") == 0
    db.ingest([created("d1", uid="dee", instance="chat2", text="ask cy@example.com")])
    assert db.one("SELECT case_id FROM conversation WHERE channel_instance = 'chat2'") == case_c


def test_reference_patterns_are_configurable(db):
    opts = {"case_prefix": "T-", "order_pattern": r"\mbestellung\s+([0-9]{6})"}
    db.ingest([created("a1", uid="ann", instance="x", text="Bestellung 123456 fehlt")], opts)
    assert db.one("SELECT case_number FROM support_case") == "T-10000"
    db.ingest([created("b1", uid="bob", instance="y", text="wegen bestellung 123456 und t-10000")], opts)
    assert db.count("support_case") == 1
    assert db.rows("SELECT kind, value FROM case_reference ORDER BY kind, value") == \
        [("case_number", "T-10000"), ("order_number", "123456")]
    # Without references nothing links.
    db.ingest([created("c1", uid="cy", instance="z", text="order 999999")], opts)
    assert db.count("support_case") == 2
    # A reference filter is a cheap first test: text failing it is not searched.
    db.ingest([created("d1", uid="dee", instance="w", text="bestellung 123456")],
              dict(opts, reference_filter="@"))
    assert db.count("support_case") == 3


# ------------------------------------------------------------ 6. out of order

def test_an_edit_before_its_message_waits_then_applies(db):
    db.ingest([edited("m1", "the corrected text", at=T0 + 5000)])
    assert pending(db) == 1
    db.ingest([created("m1", text="the original text", at=T0)])
    m = message(db, "m1")
    assert (m["text"], m["edited_text"]) == ("the original text", "the corrected text")
    assert m["edited_at"] == db.one("SELECT to_timestamp(%s / 1000.0)", (T0 + 5000,))
    assert db.rows("SELECT kind, text FROM message_revision") == [("edit", "the corrected text")]
    assert pending(db) == 0


def test_edits_apply_in_platform_time_order_and_every_version_is_kept(db):
    db.ingest([edited("m1", "third", at=T0 + 3000), edited("m1", "second", at=T0 + 2000)])
    db.ingest([created("m1", text="first", at=T0)])
    db.ingest([edited("m1", "late but old", at=T0 + 1000)])
    m = message(db, "m1")
    assert (m["text"], m["edited_text"]) == ("first", "third")
    assert db.rows("SELECT text FROM message_revision ORDER BY id") == \
        [("second",), ("third",), ("late but old",)]
    assert pending(db) == 0


def test_a_deletion_keeps_the_text_as_evidence(db):
    db.ingest([deleted("m1", at=T0 + 60000, by="cust-1")])
    db.ingest([created("m1", text="you are all useless", at=T0)])
    m = message(db, "m1")
    assert m["text"] == "you are all useless"
    assert m["deleted_at"] == db.one("SELECT to_timestamp(%s / 1000.0)", (T0 + 60000,))
    assert m["deleted_by"] == "cust-1"
    assert db.rows("SELECT kind, text, by FROM message_revision") == [("delete", None, "cust-1")]
    assert pending(db) == 0


def test_a_message_and_its_edit_in_one_batch_in_either_order(db):
    db.ingest([created("m1", text="a"), edited("m1", "a2"), edited("m2", "b2"), created("m2", text="b")])
    assert message(db, "m1")["edited_text"] == "a2"
    assert message(db, "m2")["edited_text"] == "b2"
    assert pending(db) == 0


def test_delivery_status_only_moves_forward(db):
    db.ingest([created("m1", uid="u1", thread="chat-1")])
    conv = message(db, "m1")["conversation_id"]
    for mid in ("o1", "o2", "o3"):
        add_outbound(db, conv, mid)
    db.rows("UPDATE message SET delivery_status = NULL WHERE external_id = 'o3'")
    db.ingest([receipt("o1", "read"), receipt("o1", "delivered"), receipt("o1", "sent"),
               receipt("o1", "failed", detail="late failure")])
    db.ingest([receipt("o2", "failed", detail="blocked by user"), receipt("o2", "sent")])
    db.ingest([receipt("o3", "delivered"), receipt("o3", "failed", detail="too late")])
    assert db.rows("SELECT external_id, delivery_status, delivery_detail FROM message "
                   "WHERE direction = 'outbound' ORDER BY external_id") == \
        [("o1", "read", None), ("o2", "failed", "blocked by user"), ("o3", "delivered", None)]
    assert pending(db) == 0


def test_a_receipt_waits_for_the_platform_id_of_an_outbound_message(db):
    db.ingest([created("m1", uid="u1")])
    conv = message(db, "m1")["conversation_id"]
    db.ingest([receipt("out-9", "delivered"), receipt("out-9", "read")])
    assert pending(db) == 2
    mid = db.one("INSERT INTO message (conversation_id, channel_instance, direction, text) "
                 "VALUES (%s, %s, 'outbound', 'Our answer') RETURNING id", (conv, INSTANCE))
    assert pending(db) == 2
    # The send succeeded: the message gets its platform id (as the job runner records it).
    db.rows("SELECT parley_job_mark_sent(%s, 'out-9')", (mid,))
    assert db.one("SELECT delivery_status FROM message WHERE id = %s", (mid,)) == "read"
    assert pending(db) == 0


def test_apply_pending_can_be_called_directly(db):
    # It names the message it changed (whose live event is due), else NULL.
    db.ingest([edited("m1", "new")])
    assert db.one("SELECT parley_apply_pending(%s, 'm1')", (INSTANCE,)) is None   # no message yet
    db.ingest([created("m1", text="old")])
    assert db.one("SELECT parley_apply_pending(%s, 'm1')", (INSTANCE,)) is None   # already applied
    assert message(db, "m1")["edited_text"] == "new"
    db.rows("UPDATE inbound_event SET processed_at = NULL WHERE event_type = 'message_edited'")
    assert db.one("SELECT parley_apply_pending(%s, 'm1')", (INSTANCE,)) == message(db, "m1")["id"]


# ------------------------------------------------------- 7. merge and unmerge

def two_customers(db):
    db.ingest([created("a1", uid="ann", instance="x", text="order #A-1111",
                       author_extra={"email": "ann@example.com", "email_verified": False})])
    db.ingest([created("b1", uid="ann-b", instance="y",
                       author_extra={"email": "ann@example.com", "email_verified": True,
                                     "phone": "+4912345"})])
    return customer_of(db, "ann", "x"), customer_of(db, "ann-b", "y")


def test_merge_moves_everything_and_unmerge_restores_it(db):
    target, source = two_customers(db)
    before = {t: db.rows("SELECT id, customer_id FROM %s ORDER BY id" % t)
              for t in ("identity", "conversation", "support_case", "customer_contact")}
    audit = db.one("SELECT parley_merge_customers(%s, %s, 'agent:kim')", (source, target))

    assert db.one("SELECT merged_into FROM customer WHERE id = %s", (source,)) == target
    for t in ("identity", "conversation", "support_case"):
        assert db.count(t, "customer_id = %s", (source,)) == 0
    # The duplicate email stays with the source; the target's copy is now verified.
    assert db.rows("SELECT customer_id, kind, verified FROM customer_contact ORDER BY id") == \
        [(target, "email", True), (source, "email", True), (target, "phone", False)]
    actor, action, details = db.one("SELECT actor, action, details FROM audit_log WHERE id = %s", (audit,))
    assert (actor, action) == ("agent:kim", "customer.merge")
    assert details["identities"] == [r[0] for r in before["identity"] if r[1] == source]
    assert details["conversations"] == [r[0] for r in before["conversation"] if r[1] == source]
    assert details["cases"] == [r[0] for r in before["support_case"] if r[1] == source]
    assert len(details["contacts"]) == 1 and len(details["contacts_verified"]) == 1

    # Ingest follows the merge: the source's identity now writes into the target.
    db.ingest([created("b2", uid="ann-b", instance="y", thread="chat-other")])
    assert db.one("SELECT customer_id FROM conversation WHERE thread_key = 'chat-other'") == target

    undo = db.one("SELECT parley_unmerge(%s, 'agent:kim')", (audit,))
    assert db.one("SELECT merged_into FROM customer WHERE id = %s", (source,)) is None
    after = {t: db.rows("SELECT id, customer_id FROM %s WHERE id = ANY(%%s) ORDER BY id" % t,
                        ([r[0] for r in before[t]],))
             for t in before}
    assert after == before
    assert db.one("SELECT customer_id FROM conversation WHERE thread_key = 'chat-other'") == source
    assert db.one("SELECT action, details->>'merge_audit_id' FROM audit_log WHERE id = %s", (undo,)) == \
        ("customer.unmerge", str(audit))


def test_merge_and_unmerge_refuse_what_makes_no_sense(db):
    target, source = two_customers(db)
    db.ingest([created("c1", uid="carl", instance="z")])
    third = customer_of(db, "carl", "z")

    def refused(sql, params, needle):
        with pytest.raises(psycopg2.Error) as e:
            db.one(sql, params)
        assert needle in str(e.value)

    refused("SELECT parley_merge_customers(%s, %s, 'a')", (source, source), "into itself")
    audit = db.one("SELECT parley_merge_customers(%s, %s, 'a')", (source, target))
    refused("SELECT parley_merge_customers(%s, %s, 'a')", (third, source), "merged into customer")
    refused("SELECT parley_merge_customers(%s, %s, 'a')", (source, third), "already merged")
    refused("SELECT parley_unmerge(%s, 'a')", (audit + 1000,), "not a customer merge")
    db.one("SELECT parley_unmerge(%s, 'a')", (audit,))
    refused("SELECT parley_unmerge(%s, 'a')", (audit,), "already undone")
    assert db.count("audit_log", "action = 'customer.unmerge'") == 1


def test_a_merged_customer_is_no_target_for_automatic_merging(db):
    target, source = two_customers(db)
    db.one("SELECT parley_merge_customers(%s, %s, 'a')", (source, target))
    db.ingest([created("n1", uid="new", instance="mail",
                       author_extra={"email": "ann@example.com", "email_verified": True})])
    assert customer_of(db, "new", "mail") == target


# ----------------------------------------------- 8. bad input and atomicity

def test_what_cannot_be_understood_is_stored_unprocessed(db):
    no_author = created("m2")
    del no_author["event"]["author"]
    no_visibility = created("m3")
    del no_visibility["event"]["visibility"]
    bad_time = created("m4", text="valid apart from the time")
    bad_time["event"]["platform_time_ms"] = "yesterday"
    batch = [item({"type": "message_teleported", "external_id": "x1"}),
             item({"type": "delivery_status", "external_id": "x2", "delivery_status": "lost"}),
             item({"external_id": "x3"}),
             no_author, no_visibility, bad_time, created("m5", text="fine")]
    assert totals(db.ingest(batch)) == (7, 0)
    assert db.rows("SELECT event_type FROM inbound_event WHERE processed_at IS NULL ORDER BY id") == \
        [("message_teleported",), ("delivery_status",), ("unknown",),
         ("message_created",), ("message_created",)]
    assert db.rows("SELECT external_id, platform_time FROM message ORDER BY id") == [("m4", None), ("m5", None)]
    # A receipt it does not understand stays unprocessed even once its message exists.
    db.ingest([created("x2")])
    assert db.count("inbound_event", "processed_at IS NULL") == 5


def test_a_batch_that_fails_midway_leaves_nothing(db):
    db.ingest([created("before", uid="u0")])
    before = db.counts()
    bad = created("m3")
    bad["event"]["dedupe_key"] = None
    conn = db.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT parley_ingest_batch(%s::jsonb, '{}')",
                        (json.dumps([created("m1", uid="u1", text="PC-10000 order #A-9999"),
                                     edited("before", "changed"), created("m2", uid="u2")]),))
            with pytest.raises(psycopg2.errors.NotNullViolation):
                cur.execute("SELECT parley_ingest_batch(%s::jsonb, '{}')",
                            (json.dumps([created("m4", uid="u4"), bad, created("m5", uid="u5")]),))
        conn.rollback()
    finally:
        conn.close()
    assert db.counts() == before
    assert message(db, "before")["edited_text"] is None
    # The sequence moved, but no case number was used.
    assert db.rows("SELECT case_number FROM support_case") == [("PC-10000",)]


def test_an_empty_batch_and_a_non_array(db):
    assert totals(db.ingest([])) == (0, 0)
    with pytest.raises(psycopg2.Error) as e:
        db.ingest({"not": "an array"})
    assert "must be a JSON array" in str(e.value)
