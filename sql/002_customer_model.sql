-- 002_customer_model: customers, identities, conversations, messages, cases,
-- the audit log, and the ingest function that turns inbound events into them.
--
-- The core calls parley_ingest_batch() once per batch inside one transaction
-- (READ COMMITTED). Everything here is plain SQL and PL/pgSQL; see
-- docs/DATA_MODEL.md for the tables and the ingest rules in prose.

-- --------------------------------------------------------------- tables

-- One person, whatever channels they use. A customer merged into another
-- keeps its row (merged_into points at the survivor) so a merge can be undone.
CREATE TABLE customer (
    id           bigserial   PRIMARY KEY,
    display_name text,
    tags         text[]      NOT NULL DEFAULT '{}',
    attributes   jsonb       NOT NULL DEFAULT '{}',
    merged_into  bigint      REFERENCES customer (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (merged_into IS NULL OR merged_into <> id)
);
CREATE INDEX customer_merged_into ON customer (merged_into) WHERE merged_into IS NOT NULL;

-- Foreign keys. The tables ingest writes for every new customer and
-- message (identity, support_case, conversation, message) have none: a key
-- check is a trigger that runs a query and locks the parent row for every
-- inserted row, costing about as much as the insert. Ingest sets these
-- links from rows it has just created or holds under lock, and Parley never
-- deletes customers, identities, cases or conversations (a merged customer
-- keeps its row). The tables written rarely keep their keys.

-- One account of a customer on one channel instance. Platform user ids are
-- text: they do not fit a double. profile holds what the platform tells about
-- the account, follower count included; it is information only and never
-- feeds priority or queue order.
CREATE TABLE identity (
    id               bigserial   PRIMARY KEY,
    customer_id      bigint      NOT NULL,   -- the customer (no foreign key: see below)
    channel_kind     text        NOT NULL,   -- the plugin, e.g. webhook
    channel_instance text        NOT NULL,   -- the configured instance name
    external_id      text        NOT NULL,
    handle           text,
    display_name     text,
    profile          jsonb       NOT NULL DEFAULT '{}',
    first_seen_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT identity_external UNIQUE (channel_instance, external_id)
) WITH (fillfactor = 80);  -- room for HOT updates of last_seen_at on every message
CREATE INDEX identity_customer ON identity (customer_id);

-- Emails (stored lowercased) and phone numbers (as given, E.164) of a
-- customer. Only verified ones take part in automatic merging.
CREATE TABLE customer_contact (
    id                 bigserial   PRIMARY KEY,
    customer_id        bigint      NOT NULL REFERENCES customer (id),
    kind               text        NOT NULL CHECK (kind IN ('email', 'phone')),
    value              text        NOT NULL,
    verified           boolean     NOT NULL DEFAULT false,
    source_instance    text,       -- the channel instance that told us
    source_identity_id bigint      REFERENCES identity (id),
    created_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT customer_contact_unique UNIQUE (customer_id, kind, value)
);
CREATE INDEX customer_contact_verified ON customer_contact (kind, value) WHERE verified;
-- A mentioned e-mail address finds its customer (verified or not).
CREATE INDEX customer_contact_value ON customer_contact (kind, value);

-- A case groups the conversations about one matter across channels. "case"
-- is a reserved word, hence support_case. Numbers are the configured prefix
-- followed by the sequence, e.g. PC-10000.
CREATE SEQUENCE case_number_seq START WITH 10000;
CREATE TABLE support_case (
    id          bigserial   PRIMARY KEY,
    case_number text        NOT NULL UNIQUE,
    customer_id bigint,     -- the customer it was opened for
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- Customers type case numbers in any letter case.
CREATE INDEX support_case_number_upper ON support_case (upper(case_number));
CREATE INDEX support_case_customer ON support_case (customer_id);

-- A thread with one customer on one channel instance: a public post and its
-- replies (thread_key = the root post's id) or a private chat.
CREATE TABLE conversation (
    id                    bigserial   PRIMARY KEY,
    customer_id           bigint      NOT NULL,
    identity_id           bigint,     -- who started it
    case_id               bigint,
    channel_kind          text        NOT NULL,
    channel_instance      text        NOT NULL,
    visibility            text        NOT NULL CHECK (visibility IN ('public', 'private')),
    thread_key            text,
    status                text        NOT NULL DEFAULT 'open'
                            CHECK (status IN ('open', 'pending', 'resolved', 'closed')),
    priority              text        NOT NULL DEFAULT 'normal'
                            CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    category              text,
    assignee              text,
    team                  text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    last_inbound_at       timestamptz,
    last_outbound_at      timestamptz,
    first_response_at     timestamptz,
    resolved_at           timestamptz,
    first_response_due_at timestamptz,
    next_response_due_at  timestamptz,
    resolution_due_at     timestamptz
) WITH (fillfactor = 80);  -- last_inbound_at changes on every message: keep it HOT
-- The agents' queue: open work by due time, or by age.
CREATE INDEX conversation_open_by_due ON conversation (next_response_due_at, id)
    WHERE status IN ('open', 'pending');
CREATE INDEX conversation_open_by_age ON conversation (created_at, id)
    WHERE status IN ('open', 'pending');
-- A customer's timeline (newest first), and threading: a customer's
-- conversation on an instance and thread.
CREATE INDEX conversation_customer ON conversation (customer_id, id);
CREATE INDEX conversation_customer_thread ON conversation (customer_id, channel_instance, thread_key, id);
-- Echoes find their conversation by thread alone. Without id on purpose: the
-- planner must not prefer walking a busy thread backwards over the exact
-- customer index above.
CREATE INDEX conversation_thread ON conversation (channel_instance, thread_key);
CREATE INDEX conversation_case ON conversation (case_id);

-- Order numbers, emails, phone numbers and case numbers seen in messages
-- (and the customer's own emails), used to link later contacts to the case.
-- Values are normalized: emails lowercased, case and order numbers uppercased.
CREATE TABLE case_reference (
    id         bigserial   PRIMARY KEY,
    case_id    bigint      NOT NULL REFERENCES support_case (id),
    kind       text        NOT NULL CHECK (kind IN ('case_number', 'order_number', 'email', 'phone')),
    value      text        NOT NULL,
    message_id bigint,     -- the message it was found in; NULL for the customer's own contacts
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT case_reference_unique UNIQUE (case_id, kind, value)
);
CREATE INDEX case_reference_lookup ON case_reference (kind, value, case_id);

-- Inbound, outbound and internal notes. text is the ORIGINAL text and is
-- never updated: edits are rows in message_revision, and edited_text is a
-- copy of the newest edit (by platform time) so readers need no join. The
-- text to show is coalesce(edited_text, text).
--
-- No foreign keys (see above); inbound_event_id also stays a plain link so
-- raw events can be archived on their own.
CREATE TABLE message (
    id                      bigserial   PRIMARY KEY,
    conversation_id         bigint,     -- NULL: not known yet (an echo)
    channel_instance        text        NOT NULL,
    direction               text        NOT NULL CHECK (direction IN ('inbound', 'outbound', 'note')),
    external_id             text,       -- the platform's id; NULL until an outbound message is sent
    author_identity_id      bigint,     -- NULL for the brand and notes
    text                    text,
    edited_text             text,
    visibility              text        NOT NULL DEFAULT 'private'
                              CHECK (visibility IN ('public', 'private')),
    in_reply_to_external_id text,
    in_reply_to_id          bigint,
    platform_time           timestamptz,
    received_at             timestamptz DEFAULT now(),
    delivery_status         text        CHECK (delivery_status IN ('sent', 'delivered', 'read', 'failed')),
    delivery_detail         text,
    edited_at               timestamptz,
    deleted_at              timestamptz,
    deleted_by              text,
    inbound_event_id        bigint,
    created_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT message_external UNIQUE (channel_instance, external_id)
);
CREATE INDEX message_conversation ON message (conversation_id, id);

-- Every edit (with its new text) and the deletion of a message, as evidence.
CREATE TABLE message_revision (
    id               bigserial   PRIMARY KEY,
    message_id       bigint      NOT NULL REFERENCES message (id),
    kind             text        NOT NULL CHECK (kind IN ('edit', 'delete')),
    text             text,       -- edit: the new text; delete: NULL
    at               timestamptz NOT NULL,  -- platform time, else when we received it
    by               text,       -- who did it, when the platform says
    inbound_event_id bigint,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX message_revision_message ON message_revision (message_id, id);

-- Who or what changed what, and when.
CREATE TABLE audit_log (
    id        bigserial   PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text        NOT NULL,
    action    text        NOT NULL,
    entity    text        NOT NULL,
    entity_id bigint,
    details   jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_entity ON audit_log (entity, entity_id, id);

-- Events waiting for their message (an edit, deletion or receipt that came
-- first). Message-created events are stored already processed, so this stays
-- small.
CREATE INDEX inbound_event_pending ON inbound_event (channel_instance, external_id)
    WHERE processed_at IS NULL;

-- The ingest function stores what it cannot interpret (say, an event type a
-- newer plugin emits) and leaves it unprocessed instead of failing the whole
-- batch, so the type is no longer limited to the four it understands.
ALTER TABLE inbound_event DROP CONSTRAINT inbound_event_event_type_check;
ALTER TABLE inbound_event ADD CONSTRAINT inbound_event_event_type_check CHECK (event_type <> '');

-- ----------------------------------------------------------- building blocks

-- Advisory locks of ingest and merges use the two-integer form with this
-- first half ('Prly'), a key space apart from single-bigint locks (the
-- migrator, periodic work).
CREATE FUNCTION parley_lock_space() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 1349676153 $$;

-- The second half: a hash of what is locked. kind 'a' = an author (instance,
-- user id), 'm' = a message (instance, message id), 'e' / 'p' = a verified
-- email / phone. A collision only serializes two unrelated batches.
CREATE FUNCTION parley_lock_key(kind text, a text, b text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT hashtext(kind || chr(31) || coalesce(a, '') || chr(31) || coalesce(b, ''))
$$;

-- Take the given keys in ascending order. Every caller sorts the same way,
-- so transactions wait for each other but never deadlock on these locks.
CREATE FUNCTION parley_lock_sorted(keys integer[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(parley_lock_space(), s.k)
       FROM (SELECT DISTINCT u.k FROM unnest(keys) AS u(k) WHERE u.k IS NOT NULL ORDER BY u.k) AS s;
END
$$;

-- Unix milliseconds (a JSON number) to a timestamp; NULL for anything else,
-- zero, or beyond year 5000, so a bad value cannot fail the batch.
CREATE FUNCTION parley_ms_time(ms jsonb) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(ms) = 'number' AND ms::numeric > 0 AND ms::numeric < 95617584000000
                THEN to_timestamp(ms::numeric / 1000) END
$$;

CREATE FUNCTION parley_is_brand(ev jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(ev -> 'from_brand' = 'true'::jsonb, false)
$$;

-- A message_created event carrying what processing needs. Anything else of
-- that type is stored and left unprocessed.
CREATE FUNCTION parley_created_ok(ev jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(ev ->> 'type' = 'message_created'
                    AND coalesce(ev ->> 'external_id', '') <> ''
                    AND ev ->> 'visibility' IN ('public', 'private')
                    AND (parley_is_brand(ev) OR coalesce(ev -> 'author' ->> 'external_id', '') <> ''),
                    false)
$$;

-- Delivery states only move forward: sent < failed < delivered < read. So
-- failed replaces nothing but sent, a late "sent" never hides a failure, and
-- a message seen as delivered or read was evidently not lost.
CREATE FUNCTION parley_delivery_rank(status text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE status WHEN 'sent' THEN 1 WHEN 'failed' THEN 2
                       WHEN 'delivered' THEN 3 WHEN 'read' THEN 4 END
$$;

CREATE FUNCTION parley_audit(p_actor text, p_action text, p_entity text, p_entity_id bigint,
                             p_details jsonb)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
BEGIN
    INSERT INTO audit_log (actor, action, entity, entity_id, details)
    VALUES (p_actor, p_action, p_entity, p_entity_id, p_details)
    RETURNING id INTO v_id;
    RETURN v_id;
END
$$;

-- ------------------------------------------------------------ ingest options

CREATE TYPE parley_ingest_options AS (
    reopen_window        interval,
    merge_verified_email boolean,
    merge_verified_phone boolean,
    case_prefix          text,
    case_pattern         text,   -- NULL: do not look for case numbers
    order_pattern        text,   -- NULL: do not look for order numbers
    email_pattern        text,   -- NULL: do not look for emails
    quick_filter         text    -- what any reference needs, when known: a cheap first test
);

-- opts as the core passes it; missing or null keys take the defaults, an
-- empty pattern switches that kind of reference off.
CREATE FUNCTION parley_ingest_options(opts jsonb) RETURNS parley_ingest_options
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    o parley_ingest_options;
    j jsonb := CASE WHEN jsonb_typeof(opts) = 'object' THEN opts ELSE '{}' END;
BEGIN
    o.reopen_window := make_interval(secs => coalesce((j ->> 'reopen_window_s')::double precision, 604800));
    o.merge_verified_email := coalesce((j ->> 'auto_merge_verified_email')::boolean, true);
    o.merge_verified_phone := coalesce((j ->> 'auto_merge_verified_phone')::boolean, true);
    o.case_prefix := coalesce(j ->> 'case_prefix', 'PC-');
    -- By default a case number is the prefix (taken literally) and digits.
    o.case_pattern := nullif(coalesce(j ->> 'case_pattern',
                                      regexp_replace(o.case_prefix, '([^A-Za-z0-9_])', '\\\1', 'g')
                                      || '[0-9]+'), '');
    -- "order 12345", "Order #A-1234", "order no. 55512": group 1 is the
    -- number, which must hold a digit and be at least four characters long.
    o.order_pattern := nullif(coalesce(j ->> 'order_pattern',
        '\morder\s*(?:number|no\.?|nr\.?|id)?\s*[:#]?\s*((?=[a-z-]*[0-9])[a-z0-9][a-z0-9-]{3,})'), '');
    o.email_pattern := nullif(coalesce(j ->> 'email_pattern',
        '[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}'), '');
    -- A cheap first test that every reference passes: most messages fail it
    -- and skip the three patterns. The default patterns all need a digit or
    -- an @; with patterns of its own the caller may say what they need.
    IF j ? 'reference_filter' THEN
        o.quick_filter := nullif(j ->> 'reference_filter', '');
    ELSIF j ->> 'case_pattern' IS NULL AND j ->> 'order_pattern' IS NULL AND j ->> 'email_pattern' IS NULL THEN
        o.quick_filter := '[0-9@]';
    END IF;
    RETURN o;
END
$$;

-- ------------------------------------------------------------ ingest items

-- One stored (not replayed) item of a batch, in batch order.
CREATE TYPE parley_ingest_item AS (
    inbound_id    bigint,
    instance      text,
    channel       text,
    event_type    text,
    external_id   text,
    author        text,     -- the author's external id
    ev            jsonb,
    platform_time timestamptz,
    ready         boolean,  -- a well-formed message_created (stored as processed)
    brand         boolean   -- written by the brand's own account (an echo)
);

-- The time a message counts from: the platform's, but never in the future
-- (a skewed platform clock must not push deadlines out).
CREATE FUNCTION parley_event_time(platform_time timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT least(coalesce(platform_time, now()), now())
$$;

-- The thread a customer's message belongs to: public, the root post (a
-- root post is its own root); private, the chat id, or NULL when the
-- platform has none (then any private conversation of the customer fits).
CREATE FUNCTION parley_thread_key(ev jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN ev ->> 'visibility' = 'public'
                THEN coalesce(nullif(ev ->> 'thread_id', ''), ev ->> 'external_id')
                ELSE nullif(ev ->> 'thread_id', '') END
$$;

-- -------------------------------------------------- identities and customers

-- A new identity: attached to the existing customer that has the same
-- verified phone or email (when the options allow it), else to a new
-- customer; the identity's email and phone become that customer's contacts.
-- The caller holds the author's lock and the locks of these verified keys.
CREATE FUNCTION parley_new_identity(it parley_ingest_item, o parley_ingest_options,
                                    OUT identity_id bigint, OUT customer_id bigint,
                                    OUT new_customer boolean)
LANGUAGE plpgsql AS $$
DECLARE
    a          jsonb := it.ev -> 'author';
    v_at       timestamptz := parley_event_time(it.platform_time);
    v_email    text := lower(nullif(a ->> 'email', ''));
    v_phone    text := nullif(a ->> 'phone', '');
    v_email_ok boolean := v_email IS NOT NULL AND coalesce(a -> 'email_verified' = 'true'::jsonb, false);
    v_phone_ok boolean := v_phone IS NOT NULL AND coalesce(a -> 'phone_verified' = 'true'::jsonb, false);
    v_profile  jsonb := CASE WHEN jsonb_typeof(a -> 'profile') = 'object' THEN a -> 'profile' ELSE '{}' END;
    v_contact  customer_contact%ROWTYPE;
BEGIN
    IF (o.merge_verified_email AND v_email_ok) OR (o.merge_verified_phone AND v_phone_ok) THEN
        SELECT cc.* INTO v_contact
          FROM customer_contact cc
          JOIN customer c ON c.id = cc.customer_id AND c.merged_into IS NULL
         WHERE cc.verified
           AND ((o.merge_verified_phone AND v_phone_ok AND cc.kind = 'phone' AND cc.value = v_phone)
             OR (o.merge_verified_email AND v_email_ok AND cc.kind = 'email' AND cc.value = v_email))
         ORDER BY cc.kind = 'phone' DESC, cc.customer_id
         LIMIT 1;
    END IF;

    new_customer := v_contact.id IS NULL;
    IF new_customer THEN
        WITH c AS (
            INSERT INTO customer (display_name)
            VALUES (coalesce(nullif(a ->> 'display_name', ''), nullif(a ->> 'handle', ''), it.author))
            RETURNING id
        )
        INSERT INTO identity (customer_id, channel_kind, channel_instance, external_id, handle,
                              display_name, profile, first_seen_at, last_seen_at)
        SELECT c.id, coalesce(it.channel, ''), it.instance, it.author, nullif(a ->> 'handle', ''),
               nullif(a ->> 'display_name', ''), v_profile, v_at, v_at
          FROM c
        RETURNING id, identity.customer_id INTO identity_id, customer_id;
    ELSE
        customer_id := v_contact.customer_id;
        INSERT INTO identity (customer_id, channel_kind, channel_instance, external_id, handle,
                              display_name, profile, first_seen_at, last_seen_at)
        VALUES (v_contact.customer_id, coalesce(it.channel, ''), it.instance, it.author,
                nullif(a ->> 'handle', ''), nullif(a ->> 'display_name', ''), v_profile, v_at, v_at)
        RETURNING id INTO identity_id;
        PERFORM parley_audit('ingest', 'customer.auto_link', 'identity', identity_id,
                             jsonb_build_object('identity_id', identity_id,
                                                'customer_id', v_contact.customer_id,
                                                'contact_id', v_contact.id,
                                                'kind', v_contact.kind,
                                                'value', v_contact.value,
                                                'inbound_event_id', it.inbound_id));
    END IF;

    IF v_email IS NOT NULL OR v_phone IS NOT NULL THEN
        INSERT INTO customer_contact (customer_id, kind, value, verified, source_instance, source_identity_id)
        SELECT parley_new_identity.customer_id, x.kind, x.value, x.verified, it.instance,
               parley_new_identity.identity_id
          FROM (VALUES ('email', v_email, v_email_ok), ('phone', v_phone, v_phone_ok)) AS x(kind, value, verified)
         WHERE x.value IS NOT NULL
        ON CONFLICT ON CONSTRAINT customer_contact_unique DO UPDATE SET verified = true
         WHERE EXCLUDED.verified AND NOT customer_contact.verified;
    END IF;
END
$$;

-- ------------------------------------------------------ cases and references

-- The references in a message text (kind, normalized value; each once;
-- a pattern with a capture group yields group 1, else the whole match) and
-- the case they point at: the newest mentioned case number that exists,
-- else the newest case that knows one of the order numbers or emails, else
-- the newest case of a customer who has one of the emails.
CREATE FUNCTION parley_reference_case(p_text text, o parley_ingest_options,
                                      OUT kinds text[], OUT vals text[],
                                      OUT case_id bigint, OUT kind text, OUT value text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    SELECT array_agg(r.kind), array_agg(r.value) INTO kinds, vals
      FROM (SELECT DISTINCT f.kind, f.value
              FROM (SELECT 'case_number' AS kind, upper(m[1]) AS value
                      FROM regexp_matches(p_text, o.case_pattern, 'gi') AS m
                    UNION ALL
                    SELECT 'order_number', upper(m[1])
                      FROM regexp_matches(p_text, o.order_pattern, 'gi') AS m
                    UNION ALL
                    SELECT 'email', lower(m[1])
                      FROM regexp_matches(p_text, o.email_pattern, 'gi') AS m) AS f
             WHERE f.value <> '') AS r;
    IF kinds IS NULL THEN
        RETURN;
    END IF;
    SELECT x.case_id, x.kind, x.value INTO case_id, kind, value
      FROM (SELECT 1 AS rank, s.id AS case_id, r.kind, r.value
              FROM unnest(kinds, vals) AS r(kind, value)
              JOIN support_case s ON upper(s.case_number) = r.value
             WHERE r.kind = 'case_number'
            UNION ALL
            SELECT 2, cr.case_id, r.kind, r.value
              FROM unnest(kinds, vals) AS r(kind, value)
              JOIN case_reference cr ON cr.kind = r.kind AND cr.value = r.value
             WHERE r.kind IN ('order_number', 'email')
            UNION ALL
            -- A customer's own email counts for all their cases, also those
            -- opened before they gave it (new cases list it as a reference).
            SELECT 3, s.id, r.kind, r.value
              FROM unnest(kinds, vals) AS r(kind, value)
              JOIN customer_contact cc ON cc.kind = 'email' AND cc.value = r.value
              JOIN support_case s ON s.customer_id = cc.customer_id
             WHERE r.kind = 'email') AS x
     ORDER BY x.rank, x.case_id DESC
     LIMIT 1;
END
$$;

-- Store references found in messages (case, kind, value, message; in this
-- order). A reference a case has already keeps its first message.
CREATE FUNCTION parley_store_references(p_case bigint[], p_kind text[], p_value text[], p_message bigint[])
RETURNS void
LANGUAGE plpgsql AS $$   -- (not sql: PL/pgSQL keeps the plan)
BEGIN
    INSERT INTO case_reference (case_id, kind, value, message_id)
    SELECT r.case_id, r.kind, r.value, r.message_id
      FROM unnest(p_case, p_kind, p_value, p_message) WITH ORDINALITY AS r(case_id, kind, value, message_id, ord)
     ORDER BY r.ord
    ON CONFLICT ON CONSTRAINT case_reference_unique DO NOTHING;
END
$$;

-- ---------------------------------------------------------- conversations

CREATE FUNCTION parley_reopen_conversation(p_conv bigint, p_previous text, p_inbound bigint)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE conversation SET status = 'open', resolved_at = NULL, updated_at = now() WHERE id = p_conv;
    PERFORM parley_audit('ingest', 'conversation.reopen', 'conversation', p_conv,
                         jsonb_build_object('previous_status', p_previous, 'inbound_event_id', p_inbound));
END
$$;

-- A conversation moves to another case because a message referenced it.
CREATE FUNCTION parley_link_case(p_conv bigint, p_from bigint, p_to bigint, p_kind text, p_value text,
                                 p_inbound bigint)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_from IS NOT NULL THEN
        UPDATE conversation SET case_id = p_to, updated_at = now() WHERE id = p_conv;
    END IF;
    PERFORM parley_audit('ingest', 'conversation.case_link', 'conversation', p_conv,
                         jsonb_build_object('from_case_id', p_from, 'to_case_id', p_to,
                                            'kind', p_kind, 'value', p_value,
                                            'inbound_event_id', p_inbound));
END
$$;

-- The conversation of a message the brand's own account wrote (an echo):
-- that of the message it replies to (stored, or earlier in this batch:
-- batch_ext / batch_conv), else the newest one of its thread on the
-- instance. NULL when there is none.
CREATE FUNCTION parley_echo_conversation(it parley_ingest_item, batch_ext text[], batch_conv bigint[])
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_reply  text := nullif(it.ev ->> 'in_reply_to', '');
    v_thread text := nullif(it.ev ->> 'thread_id', '');
    v_pos    integer;
    v_conv   bigint;
BEGIN
    IF v_reply IS NOT NULL THEN
        v_pos := array_position(batch_ext, v_reply);
        IF v_pos IS NOT NULL THEN
            v_conv := batch_conv[v_pos];
        ELSE
            SELECT m.conversation_id INTO v_conv FROM message m
             WHERE m.channel_instance = it.instance AND m.external_id = v_reply;
        END IF;
    END IF;
    IF v_conv IS NULL AND v_thread IS NOT NULL THEN
        SELECT c.id INTO v_conv FROM conversation c
         WHERE c.channel_instance = it.instance AND c.thread_key = v_thread
           AND c.visibility = it.ev ->> 'visibility'
         ORDER BY c.id DESC LIMIT 1;
    END IF;
    RETURN v_conv;
END
$$;

-- ------------------------------------------- edits, deletions and receipts

-- Apply one edit, deletion or delivery status to its message. False when
-- the event makes no sense (then it stays unprocessed).
CREATE FUNCTION parley_apply_event(p_message bigint, p_event bigint, p_type text, ev jsonb,
                                   p_at timestamptz)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_by   text := nullif(ev -> 'author' ->> 'external_id', '');
    v_rank integer;
BEGIN
    IF p_type = 'message_edited' THEN
        INSERT INTO message_revision (message_id, kind, text, at, by, inbound_event_id)
        VALUES (p_message, 'edit', ev ->> 'text', p_at, v_by, p_event);
        UPDATE message
           SET edited_text = CASE WHEN edited_at IS NULL OR p_at >= edited_at THEN ev ->> 'text'
                                  ELSE edited_text END,
               edited_at = greatest(edited_at, p_at)
         WHERE id = p_message;
        RETURN true;
    ELSIF p_type = 'message_deleted' THEN
        -- The text stays: a deleted post is evidence of what was said.
        INSERT INTO message_revision (message_id, kind, text, at, by, inbound_event_id)
        VALUES (p_message, 'delete', NULL, p_at, v_by, p_event);
        UPDATE message
           SET deleted_at = coalesce(deleted_at, p_at),
               deleted_by = coalesce(deleted_by, v_by)
         WHERE id = p_message;
        RETURN true;
    ELSIF p_type = 'delivery_status' THEN
        v_rank := parley_delivery_rank(ev ->> 'delivery_status');
        IF v_rank IS NULL THEN
            RETURN false;
        END IF;
        -- A lower status arriving late is processed but changes nothing.
        UPDATE message
           SET delivery_status = ev ->> 'delivery_status',
               delivery_detail = ev ->> 'detail'
         WHERE id = p_message AND coalesce(parley_delivery_rank(delivery_status), 0) < v_rank;
        RETURN true;
    END IF;
    RETURN false;
END
$$;

-- Apply the unprocessed edits, deletions and receipts of one message, in
-- platform time order, once the message exists. Called for each such event
-- of a batch and by the message triggers (messages just stored, or an
-- outbound message that just got its platform id). Returns how many were
-- applied.
--
-- The message's lock makes an event and its message meet even when they
-- arrive in concurrent transactions: whichever commits second sees the other.
CREATE FUNCTION parley_apply_pending(p_instance text, p_external_id text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    e         record;
    v_message bigint;
    v_applied integer := 0;
BEGIN
    IF p_instance IS NULL OR p_external_id IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM pg_advisory_xact_lock(parley_lock_space(), parley_lock_key('m', p_instance, p_external_id));
    FOR e IN
        SELECT ie.id, ie.event_type, ie.event, coalesce(ie.platform_time, ie.received_at) AS at
          FROM inbound_event ie
         WHERE ie.channel_instance = p_instance AND ie.external_id = p_external_id
           AND ie.processed_at IS NULL
           AND ie.event_type IN ('message_edited', 'message_deleted', 'delivery_status')
         ORDER BY coalesce(ie.platform_time, ie.received_at), ie.id
    LOOP
        IF v_message IS NULL THEN
            SELECT m.id INTO v_message FROM message m
             WHERE m.channel_instance = p_instance AND m.external_id = p_external_id;
            IF v_message IS NULL THEN
                RETURN 0;  -- not there yet: the events wait
            END IF;
        END IF;
        IF parley_apply_event(v_message, e.id, e.event_type, e.event, e.at) THEN
            UPDATE inbound_event SET processed_at = now() WHERE id = e.id;
            v_applied := v_applied + 1;
        END IF;
    END LOOP;
    RETURN v_applied;
END
$$;

-- After messages are stored (one statement for a whole ingest batch): apply
-- what waited for them. Their locks first (already held by ingest), so an
-- event committed concurrently cannot be missed.
CREATE FUNCTION parley_messages_added() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    PERFORM parley_lock_sorted(ARRAY(SELECT parley_lock_key('m', a.channel_instance, a.external_id)
                                       FROM added a WHERE a.external_id IS NOT NULL));
    FOR r IN
        SELECT DISTINCT a.channel_instance, a.external_id
          FROM added a
         WHERE a.external_id IS NOT NULL
           AND EXISTS (SELECT 1 FROM inbound_event ie
                        WHERE ie.channel_instance = a.channel_instance AND ie.external_id = a.external_id
                          AND ie.processed_at IS NULL)
    LOOP
        PERFORM parley_apply_pending(r.channel_instance, r.external_id);
    END LOOP;
    RETURN NULL;
END
$$;

CREATE FUNCTION parley_message_external_id_set() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM parley_apply_pending(NEW.channel_instance, NEW.external_id);
    RETURN NULL;
END
$$;

-- Statement level for inserts: one check per ingest batch, not per message.
-- (Transition tables cannot be combined with UPDATE OF a column, hence the
-- row trigger for the other case, which only fires when an id is set.)
CREATE TRIGGER message_apply_pending_insert AFTER INSERT ON message
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION parley_messages_added();
CREATE TRIGGER message_apply_pending_update AFTER UPDATE OF external_id ON message
    FOR EACH ROW WHEN (NEW.external_id IS NOT NULL AND NEW.external_id IS DISTINCT FROM OLD.external_id)
    EXECUTE FUNCTION parley_message_external_id_set();

-- ------------------------------------------------------------ the batch

-- Called once per batch, after its messages are stored, with the
-- conversations customers started in it (echoes never start one) and the
-- batch's opts. Nothing to do here; the outbox migration replaces it to
-- enqueue what a new conversation sets off (opts.notify_new_conversation).
CREATE FUNCTION parley_conversations_started(conversation_ids bigint[], opts jsonb) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
END
$$;

-- The answer of a batch: {"inserted": N, "replays": M, "instances":
-- {"NAME": {"inserted": n, "replays": m}, ...}} (the core counts per instance).
-- PL/pgSQL rather than SQL: a SQL function's query is planned again on
-- every call, a PL/pgSQL one keeps its plan for the session.
CREATE FUNCTION parley_batch_counts(items jsonb, stored parley_ingest_item[]) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
    SELECT jsonb_build_object('inserted', coalesce(sum(coalesce(s.n, 0)), 0),
                              'replays', coalesce(sum(t.n - coalesce(s.n, 0)), 0),
                              'instances', coalesce(jsonb_object_agg(t.instance, jsonb_build_object(
                                  'inserted', coalesce(s.n, 0), 'replays', t.n - coalesce(s.n, 0))), '{}'))
      FROM (SELECT e ->> 'instance' AS instance, count(*) AS n
              FROM jsonb_array_elements(items) AS e GROUP BY 1) AS t
      LEFT JOIN (SELECT u.instance, count(*) AS n FROM unnest(stored) AS u GROUP BY 1) AS s
             ON s.instance = t.instance);
END
$$;

-- The one call the core makes per batch, in one transaction:
--   items: [{"instance", "channel", "event": {...normalized event...}, "raw"}, ...]
--   opts:  see parley_ingest_options
-- Returns {"inserted": N, "replays": M, "instances": {...}}, N + M = number
-- of items (see parley_batch_counts).
--
-- 1. Before anything else, lock in ascending key order every author and
--    every message the batch names (and the verified emails and phones of
--    new messages, which may auto-merge), so concurrent batches about the
--    same people serialize instead of creating them twice, and cannot
--    deadlock on each other. The message lock also makes an edit and its
--    message meet when they arrive in concurrent batches.
-- 2. One statement stores every item in inbound_event. A replay (same
--    instance and dedupe key; also twice within the batch, where the first
--    wins) inserts nothing and is not processed again.
-- 3. One statement finds the messages already stored and refreshes the
--    identities of returning authors; when no new author gives an email or
--    a phone, two more create all new authors (customer and identity).
-- 4. Per item, in batch order: identity of a new author (unless created
--    in step 3), references, the conversation (join, reopen or new) and
--    its case. Edits, deletions and receipts are applied when their
--    message exists, else they wait.
-- 5. One statement stores the references found in the messages (earlier
--    when a later item names one of them, or a new case takes a
--    customer's emails: rows are made in item order), one the batch's
--    messages (its trigger applies what waited for them), one moves the
--    conversations' activity times, and parley_conversations_started()
--    hears of the new conversations.
-- What cannot be understood stays stored and unprocessed; a real error
-- aborts the whole batch.
--
-- Statements cost more than expressions in PL/pgSQL, and foreign key checks
-- and row updates more than either: the common path (a returning customer
-- in an open conversation) runs one statement of its own, the conversation
-- lookup; everything else is per batch.
CREATE FUNCTION parley_ingest_batch(items jsonb, opts jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    o          parley_ingest_options := parley_ingest_options(opts);
    v_items    parley_ingest_item[];
    it         parley_ingest_item;
    v_pos      integer := 0;
    v_new_pos  integer;
    v_dup      boolean[];   -- per item: a message stored already or earlier in the batch
    v_existing bigint[];    -- per item: the stored message with its external id
    v_known    jsonb;       -- "instance<US>author" -> [identity, customer] of returning authors
    v_ref      jsonb;       -- this author's entry in v_known
    v_text     text;
    v_vis      text;
    v_reply    text;
    v_key      text;
    v_at       timestamptz;
    v_identity bigint;
    v_customer bigint;
    v_new_customer boolean;
    v_conv     bigint;
    v_status   text;
    v_resolved timestamptz;
    v_case     bigint;
    v_kinds    text[];
    v_vals     text[];
    v_ref_case bigint;
    v_ref_kind text;
    v_ref_value text;
    v_message  bigint;
    v_fix_replies boolean := false;
    -- Per item: the newest conversation of a returning customer on the
    -- item's thread, looked up for the whole batch at once (step 3).
    p_conv     bigint[];
    p_status   text[];
    p_resolved timestamptz[];
    p_case     bigint[];
    -- Customers whose conversations this batch created or changed: for
    -- them the lookups of step 3 are stale.
    v_changed  bigint[] := '{}';
    v_started  bigint[] := '{}';    -- conversations this batch created
    -- Authors whose identity this batch created, and the position of the
    -- item that created it (that item is the new customer's first).
    b_key    text[] := '{}';
    b_ident  bigint[] := '{}';
    b_cust   bigint[] := '{}';
    b_first  integer[] := '{}';
    b_simple boolean;
    -- The batch's new messages, stored together after the loop.
    m_pos    integer[] := '{}';
    m_id     bigint[] := '{}';
    m_conv   bigint[] := '{}';
    m_author bigint[] := '{}';
    m_dir    text[] := '{}';
    m_ext    text[] := '{}';
    -- References found in messages, stored together (before anything
    -- could read them: a later item of the batch that mentions one of them,
    -- and the end of the loop).
    r_case   bigint[] := '{}';
    r_kind   text[] := '{}';
    r_value  text[] := '{}';
    r_msg    bigint[] := '{}';
    r_key    text[] := '{}';     -- kind<US>value of the above
    v_hit    boolean;
    -- Conversation activity, applied together after the loop.
    c_conv   bigint[] := '{}';
    c_in     timestamptz[] := '{}';
    c_out    timestamptz[] := '{}';
BEGIN
    IF jsonb_typeof(items) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'parley_ingest_batch: items must be a JSON array, not %',
            coalesce(jsonb_typeof(items), 'NULL');
    END IF;

    -- 1. Locks, taken from the items as they came (a replay takes them too:
    --    two deliveries of one event wait for each other here instead of
    --    meeting in the dedupe index in opposite orders).
    PERFORM pg_advisory_xact_lock(parley_lock_space(), k.key)
       FROM (SELECT DISTINCT x.key
               FROM jsonb_array_elements(items) AS t(e)
              CROSS JOIN LATERAL (SELECT t.e ->> 'instance' AS instance,
                                         t.e #> '{event,from_brand}' = 'true'::jsonb AS brand,
                                         t.e #>> '{event,type}' = 'message_created' AS created,
                                         nullif(t.e #>> '{event,external_id}', '') AS message,
                                         nullif(t.e #>> '{event,author,external_id}', '') AS author,
                                         nullif(t.e #>> '{event,author,email}', '') AS email,
                                         nullif(t.e #>> '{event,author,phone}', '') AS phone) AS f
              CROSS JOIN LATERAL (VALUES
                  (CASE WHEN f.message IS NOT NULL THEN parley_lock_key('m', f.instance, f.message) END),
                  (CASE WHEN f.author IS NOT NULL AND f.brand IS NOT TRUE
                        THEN parley_lock_key('a', f.instance, f.author) END),
                  (CASE WHEN o.merge_verified_email AND f.created AND f.brand IS NOT TRUE AND f.email IS NOT NULL
                             AND t.e #> '{event,author,email_verified}' = 'true'::jsonb
                        THEN parley_lock_key('e', lower(f.email), NULL) END),
                  (CASE WHEN o.merge_verified_phone AND f.created AND f.brand IS NOT TRUE AND f.phone IS NOT NULL
                             AND t.e #> '{event,author,phone_verified}' = 'true'::jsonb
                        THEN parley_lock_key('p', f.phone, NULL) END)
              ) AS x(key)
              WHERE x.key IS NOT NULL
              ORDER BY x.key) AS k;

    -- 2. Store.
    WITH src AS (
        SELECT t.ord, t.e ->> 'instance' AS instance, t.e ->> 'channel' AS channel,
               t.e -> 'event' AS ev, t.e -> 'raw' AS raw
          FROM jsonb_array_elements(items) WITH ORDINALITY AS t(e, ord)
    ), firsts AS (
        SELECT DISTINCT ON (s.instance, s.ev ->> 'dedupe_key') s.*
          FROM src s
         ORDER BY s.instance, s.ev ->> 'dedupe_key', s.ord
    ), ins AS (
        INSERT INTO inbound_event (channel_instance, dedupe_key, event_type, external_id,
                                   author_external_id, event, raw, platform_time, processed_at)
        SELECT f.instance, f.ev ->> 'dedupe_key', coalesce(nullif(f.ev ->> 'type', ''), 'unknown'),
               nullif(f.ev ->> 'external_id', ''), nullif(f.ev -> 'author' ->> 'external_id', ''), f.ev,
               nullif(f.raw, 'null'::jsonb), parley_ms_time(f.ev -> 'platform_time_ms'),
               CASE WHEN parley_created_ok(f.ev) THEN now() END
          FROM firsts f
         -- Batch order: ids order the events of one batch (edits without a
         -- platform time apply in this order). Two batches carrying the
         -- same event hold the same message lock (step 1), so they cannot
         -- meet in the dedupe index in opposite orders.
         ORDER BY f.ord
        ON CONFLICT ON CONSTRAINT inbound_event_dedupe DO NOTHING
        RETURNING id, channel_instance, dedupe_key, event_type, external_id, author_external_id, event,
                  platform_time, processed_at
    )
    SELECT array_agg(ROW(i.id, i.channel_instance, f.channel, i.event_type, i.external_id,
                         i.author_external_id, i.event, i.platform_time, i.processed_at IS NOT NULL,
                         parley_is_brand(i.event))::parley_ingest_item
                     ORDER BY f.ord)
      INTO v_items
      FROM ins i
      JOIN firsts f ON f.instance = i.channel_instance AND f.ev ->> 'dedupe_key' = i.dedupe_key;
    IF v_items IS NULL THEN
        RETURN parley_batch_counts(items, v_items);
    END IF;

    -- 3. Messages already stored; returning authors, each once, with the
    --    profile of their last item. An echo of a stored message still
    --    counts (it is matched, not doubled); a customer message not.
    WITH x AS (
        SELECT u.*, u.ready AND (m.id IS NOT NULL AND NOT u.brand
                                 OR row_number() OVER (PARTITION BY u.instance, u.external_id, u.ready
                                                       ORDER BY u.ord) > 1) AS dup,
               m.id AS existing
          FROM unnest(v_items) WITH ORDINALITY
               AS u(inbound_id, instance, channel, event_type, external_id, author, ev, platform_time,
                    ready, brand, ord)
          LEFT JOIN message m ON u.ready AND m.channel_instance = u.instance AND m.external_id = u.external_id
    ), authors AS (
        SELECT x.instance, x.author, (array_agg(x.ev -> 'author' ORDER BY x.ord DESC))[1] AS a,
               max(parley_event_time(x.platform_time)) AS at
          FROM x
         WHERE x.ready AND NOT x.dup AND NOT x.brand
         GROUP BY x.instance, x.author
    ), known AS (
        UPDATE identity i
           SET handle = coalesce(nullif(a.a ->> 'handle', ''), i.handle),
               display_name = coalesce(nullif(a.a ->> 'display_name', ''), i.display_name),
               profile = CASE WHEN jsonb_typeof(a.a -> 'profile') = 'object' THEN a.a -> 'profile'
                              ELSE i.profile END,
               last_seen_at = greatest(i.last_seen_at, a.at)
          FROM authors a
         WHERE i.channel_instance = a.instance AND i.external_id = a.author
        RETURNING i.channel_instance, i.external_id, i.id, i.customer_id
    )
    SELECT array_agg(x.dup ORDER BY x.ord), array_agg(x.existing ORDER BY x.ord),
           (SELECT coalesce(jsonb_object_agg(k.channel_instance || chr(31) || k.external_id,
                                             jsonb_build_array(k.id, k.customer_id)), '{}')
              FROM known k)
      INTO v_dup, v_existing, v_known
      FROM x;

    SELECT array_agg(cv.id ORDER BY u.ord), array_agg(cv.status ORDER BY u.ord),
           array_agg(cv.resolved_at ORDER BY u.ord), array_agg(cv.case_id ORDER BY u.ord)
      INTO p_conv, p_status, p_resolved, p_case
      FROM unnest(v_items) WITH ORDINALITY
           AS u(inbound_id, instance, channel, event_type, external_id, author, ev, platform_time,
                ready, brand, ord)
      LEFT JOIN LATERAL (
          SELECT c.id, c.status, c.resolved_at, c.case_id
            FROM conversation c
           WHERE u.ready AND NOT u.brand
             AND c.customer_id = (v_known -> (u.instance || chr(31) || u.author) ->> 1)::bigint
             AND c.channel_instance = u.instance AND c.visibility = u.ev ->> 'visibility'
             AND (parley_thread_key(u.ev) IS NULL OR c.thread_key = parley_thread_key(u.ev))
           ORDER BY c.id DESC
           LIMIT 1) AS cv ON true;

    -- New authors, created together when none of them gives an email or a
    -- phone (the usual case): such an identity cannot join an existing
    -- customer and brings no contacts, so each is a new customer and a new
    -- identity, exactly what parley_new_identity() would make. Ids are
    -- drawn in batch order, as the per-item path draws them. With any
    -- email or phone among them, every new author takes the per-item path.
    SELECT coalesce(bool_and(n.email IS NULL AND n.phone IS NULL), true),
           array_agg(n.key ORDER BY n.ord), array_agg(n.ord::integer ORDER BY n.ord)
      INTO b_simple, b_key, b_first
      FROM (SELECT DISTINCT ON (u.instance, u.author) u.instance || chr(31) || u.author AS key, u.ord,
                   nullif(u.ev -> 'author' ->> 'email', '') AS email,
                   nullif(u.ev -> 'author' ->> 'phone', '') AS phone
              FROM unnest(v_items) WITH ORDINALITY
                   AS u(inbound_id, instance, channel, event_type, external_id, author, ev, platform_time,
                        ready, brand, ord)
             WHERE u.ready AND NOT u.brand AND NOT v_dup[u.ord::integer]
               AND NOT (v_known ? (u.instance || chr(31) || u.author))
             ORDER BY u.instance, u.author, u.ord) AS n;
    IF b_simple AND b_key IS NOT NULL THEN
        b_cust := ARRAY(SELECT nextval('customer_id_seq') FROM generate_series(1, cardinality(b_key)));
        b_ident := ARRAY(SELECT nextval('identity_id_seq') FROM generate_series(1, cardinality(b_key)));
        INSERT INTO customer (id, display_name)
        SELECT n.cust, coalesce(nullif(x.ev #>> '{author,display_name}', ''),
                                nullif(x.ev #>> '{author,handle}', ''), x.author)
          FROM unnest(b_first, b_cust) AS n(pos, cust)
          JOIN unnest(v_items) WITH ORDINALITY AS x ON x.ordinality = n.pos
         ORDER BY n.pos;
        INSERT INTO identity (id, customer_id, channel_kind, channel_instance, external_id, handle,
                              display_name, profile, first_seen_at, last_seen_at)
        SELECT n.ident, n.cust, coalesce(x.channel, ''), x.instance, x.author, nullif(y.a ->> 'handle', ''),
               nullif(y.a ->> 'display_name', ''),
               CASE WHEN jsonb_typeof(y.a -> 'profile') = 'object' THEN y.a -> 'profile' ELSE '{}' END,
               parley_event_time(x.platform_time), parley_event_time(x.platform_time)
          FROM unnest(b_first, b_cust, b_ident) AS n(pos, cust, ident)
          JOIN unnest(v_items) WITH ORDINALITY AS x ON x.ordinality = n.pos
         CROSS JOIN LATERAL (SELECT x.ev -> 'author' AS a) AS y
         ORDER BY n.pos;
    ELSE
        b_key := '{}';
        b_first := '{}';
    END IF;

    -- 4. Per item.
    FOREACH it IN ARRAY v_items LOOP
        v_pos := v_pos + 1;
        IF NOT it.ready THEN
            IF it.event_type IN ('message_edited', 'message_deleted', 'delivery_status') THEN
                PERFORM parley_apply_pending(it.instance, it.external_id);
            END IF;
            CONTINUE;
        END IF;
        IF v_dup[v_pos] THEN
            CONTINUE;
        END IF;

        v_at := parley_event_time(it.platform_time);
        v_vis := it.ev ->> 'visibility';
        v_reply := nullif(it.ev ->> 'in_reply_to', '');
        IF v_reply IS NOT NULL AND array_position(m_ext, v_reply) IS NOT NULL THEN
            v_fix_replies := true;
        END IF;

        IF it.brand THEN
            -- An echo: outbound, no identity, never a customer message.
            v_conv := NULL;
            IF v_existing[v_pos] IS NOT NULL THEN
                SELECT m.conversation_id INTO v_conv FROM message m WHERE m.id = v_existing[v_pos];
            END IF;
            IF v_conv IS NULL THEN
                v_conv := parley_echo_conversation(it, m_ext, m_conv);
            END IF;
            IF v_existing[v_pos] IS NOT NULL THEN
                -- Parley sent it itself: attach it, store nothing twice.
                UPDATE message
                   SET conversation_id = coalesce(conversation_id, v_conv),
                       platform_time = coalesce(platform_time, it.platform_time),
                       inbound_event_id = coalesce(inbound_event_id, it.inbound_id)
                 WHERE id = v_existing[v_pos];
            ELSE
                m_pos := m_pos || v_pos;
                m_id := m_id || nextval('message_id_seq');
                m_conv := m_conv || v_conv;
                m_author := m_author || NULL::bigint;
                m_dir := m_dir || 'outbound'::text;
                m_ext := m_ext || it.external_id;
            END IF;
            IF v_conv IS NOT NULL THEN
                c_conv := c_conv || v_conv;
                c_in := c_in || NULL::timestamptz;
                c_out := c_out || v_at;
            END IF;
            CONTINUE;
        END IF;

        -- A customer's message. The identity: returning (step 3), created
        -- by an earlier item of this batch, or new.
        v_new_customer := false;
        v_ref := v_known -> (it.instance || chr(31) || it.author);
        IF v_ref IS NOT NULL THEN
            v_identity := (v_ref ->> 0)::bigint;
            v_customer := (v_ref ->> 1)::bigint;
        ELSE
            v_new_pos := array_position(b_key, it.instance || chr(31) || it.author);
            IF v_new_pos IS NOT NULL THEN
                v_identity := b_ident[v_new_pos];
                v_customer := b_cust[v_new_pos];
                v_new_customer := b_first[v_new_pos] = v_pos;  -- created together above
            ELSE
                SELECT n.identity_id, n.customer_id, n.new_customer
                  INTO v_identity, v_customer, v_new_customer
                  FROM parley_new_identity(it, o) AS n;
                b_key := b_key || (it.instance || chr(31) || it.author);
                b_ident := b_ident || v_identity;
                b_cust := b_cust || v_customer;
                b_first := b_first || v_pos;
            END IF;
        END IF;

        -- References (first, so a message about an existing case never
        -- opens a new one). The regular expressions alone are cheap; the
        -- query runs only when one of them matches.
        v_text := it.ev ->> 'text';
        v_kinds := NULL;
        v_ref_case := NULL;
        IF (o.quick_filter IS NULL OR v_text ~* o.quick_filter)
           AND (v_text ~* o.case_pattern OR v_text ~* o.order_pattern OR v_text ~* o.email_pattern) THEN
            SELECT r.kinds, r.vals, r.case_id, r.kind, r.value
              INTO v_kinds, v_vals, v_ref_case, v_ref_kind, v_ref_value
              FROM parley_reference_case(v_text, o) AS r;
            -- It names a reference an earlier item found: store those and
            -- look again, so the answer is the one stored rows give.
            v_hit := false;
            IF v_kinds IS NOT NULL AND cardinality(r_key) > 0 THEN
                FOR v_i IN 1 .. cardinality(v_kinds) LOOP
                    IF array_position(r_key, v_kinds[v_i] || chr(31) || v_vals[v_i]) IS NOT NULL THEN
                        v_hit := true;
                        EXIT;
                    END IF;
                END LOOP;
            END IF;
            IF v_hit THEN
                PERFORM parley_store_references(r_case, r_kind, r_value, r_msg);
                r_case := '{}';
                r_kind := '{}';
                r_value := '{}';
                r_msg := '{}';
                r_key := '{}';
                SELECT r.kinds, r.vals, r.case_id, r.kind, r.value
                  INTO v_kinds, v_vals, v_ref_case, v_ref_kind, v_ref_value
                  FROM parley_reference_case(v_text, o) AS r;
            END IF;
        END IF;

        -- Threading. Public: the customer's conversation of this root post.
        -- Private: the customer's conversation of this chat, or without a
        -- chat id any private one of theirs on the instance. The newest
        -- joins when open or pending, reopens when resolved within the
        -- window, and is otherwise left alone for a new one.
        v_key := parley_thread_key(it.ev);
        v_conv := NULL;
        IF v_ref IS NOT NULL AND array_position(v_changed, v_customer) IS NULL THEN
            v_conv := p_conv[v_pos];
            v_status := p_status[v_pos];
            v_resolved := p_resolved[v_pos];
            v_case := p_case[v_pos];
        ELSIF NOT v_new_customer THEN
            IF v_key IS NOT NULL THEN
                SELECT c.id, c.status, c.resolved_at, c.case_id INTO v_conv, v_status, v_resolved, v_case
                  FROM conversation c
                 WHERE c.customer_id = v_customer AND c.channel_instance = it.instance
                   AND c.thread_key = v_key AND c.visibility = v_vis
                 ORDER BY c.id DESC LIMIT 1;
            ELSE
                SELECT c.id, c.status, c.resolved_at, c.case_id INTO v_conv, v_status, v_resolved, v_case
                  FROM conversation c
                 WHERE c.customer_id = v_customer AND c.channel_instance = it.instance
                   AND c.visibility = 'private'
                 ORDER BY c.id DESC LIMIT 1;
            END IF;
        END IF;
        IF v_conv IS NOT NULL AND v_status NOT IN ('open', 'pending') THEN
            IF v_resolved >= now() - o.reopen_window THEN
                PERFORM parley_reopen_conversation(v_conv, v_status, it.inbound_id);
                v_changed := v_changed || v_customer;
            ELSE
                v_conv := NULL;
            END IF;
        END IF;

        IF v_conv IS NULL THEN
            -- A new conversation (here, not in a function of its own: this
            -- runs for most items, and a call costs as much as the insert).
            -- Its case: the referenced one, else the customer's case that
            -- still has open work, else a new case (numbered from the
            -- sequence, with the customer's own emails as its first
            -- references, so a later message that mentions one of them
            -- finds it). Created with this message's time: no activity
            -- update needed.
            v_case := v_ref_case;
            IF v_case IS NULL AND NOT v_new_customer THEN
                SELECT cv.case_id INTO v_case FROM conversation cv
                 WHERE cv.customer_id = v_customer AND cv.status IN ('open', 'pending') AND cv.case_id IS NOT NULL
                 ORDER BY cv.id DESC LIMIT 1;
            END IF;
            IF v_case IS NOT NULL THEN
                INSERT INTO conversation (customer_id, identity_id, case_id, channel_kind, channel_instance,
                                          visibility, thread_key, last_inbound_at)
                VALUES (v_customer, v_identity, v_case, coalesce(it.channel, ''), it.instance, v_vis, v_key, v_at)
                RETURNING id INTO v_conv;
            ELSE
                -- A new case takes the customer's emails as references:
                -- store the waiting ones first, so rows are made in the
                -- order of the items. (A customer created together above
                -- has no emails.)
                IF cardinality(r_case) > 0 AND NOT (b_simple AND v_new_customer) THEN
                    PERFORM parley_store_references(r_case, r_kind, r_value, r_msg);
                    r_case := '{}';
                    r_kind := '{}';
                    r_value := '{}';
                    r_msg := '{}';
                    r_key := '{}';
                END IF;
                WITH c AS (
                    INSERT INTO support_case (case_number, customer_id)
                    VALUES (o.case_prefix || nextval('case_number_seq'), v_customer)
                    RETURNING id
                ), refs AS (
                    INSERT INTO case_reference (case_id, kind, value)
                    SELECT c.id, 'email', cc.value FROM c, customer_contact cc
                     WHERE cc.customer_id = v_customer AND cc.kind = 'email'
                    ON CONFLICT ON CONSTRAINT case_reference_unique DO NOTHING
                )
                INSERT INTO conversation (customer_id, identity_id, case_id, channel_kind, channel_instance,
                                          visibility, thread_key, last_inbound_at)
                SELECT v_customer, v_identity, c.id, coalesce(it.channel, ''), it.instance, v_vis, v_key, v_at
                  FROM c
                RETURNING id, conversation.case_id INTO v_conv, v_case;
            END IF;
            IF v_ref_case IS NOT NULL THEN
                PERFORM parley_link_case(v_conv, NULL, v_ref_case, v_ref_kind, v_ref_value, it.inbound_id);
            END IF;
            v_changed := v_changed || v_customer;
            v_started := v_started || v_conv;
        ELSE
            IF v_ref_case IS NOT NULL AND v_ref_case IS DISTINCT FROM v_case THEN
                PERFORM parley_link_case(v_conv, v_case, v_ref_case, v_ref_kind, v_ref_value, it.inbound_id);
                v_case := v_ref_case;
                v_changed := v_changed || v_customer;
            END IF;
            c_conv := c_conv || v_conv;
            c_in := c_in || v_at;
            c_out := c_out || NULL::timestamptz;
        END IF;

        v_message := nextval('message_id_seq');
        IF v_kinds IS NOT NULL THEN
            FOR v_i IN 1 .. cardinality(v_kinds) LOOP
                r_case := r_case || v_case;
                r_kind := r_kind || v_kinds[v_i];
                r_value := r_value || v_vals[v_i];
                r_msg := r_msg || v_message;
                r_key := r_key || (v_kinds[v_i] || chr(31) || v_vals[v_i]);
            END LOOP;
        END IF;

        m_pos := m_pos || v_pos;
        m_id := m_id || v_message;
        m_conv := m_conv || v_conv;
        m_author := m_author || v_identity;
        m_dir := m_dir || 'inbound'::text;
        m_ext := m_ext || it.external_id;
    END LOOP;

    -- 5. The references, in batch order; the messages, in batch order
    --    (their ids were drawn in that order).
    IF cardinality(r_case) > 0 THEN
        PERFORM parley_store_references(r_case, r_kind, r_value, r_msg);
    END IF;
    IF cardinality(m_pos) > 0 THEN
        INSERT INTO message (id, conversation_id, channel_instance, direction, external_id,
                             author_identity_id, text, visibility, in_reply_to_external_id, in_reply_to_id,
                             platform_time, delivery_status, inbound_event_id)
        SELECT d.id, d.conv, x.instance, d.dir, x.external_id, d.author, x.ev ->> 'text',
               x.ev ->> 'visibility', nullif(x.ev ->> 'in_reply_to', ''),
               CASE WHEN nullif(x.ev ->> 'in_reply_to', '') IS NOT NULL THEN
                   (SELECT r.id FROM message r
                     WHERE r.channel_instance = x.instance AND r.external_id = x.ev ->> 'in_reply_to')
               END,
               x.platform_time, CASE WHEN d.dir = 'outbound' THEN 'sent' END, x.inbound_id
          FROM unnest(m_pos, m_id, m_conv, m_author, m_dir) AS d(pos, id, conv, author, dir)
          JOIN unnest(v_items) WITH ORDINALITY AS x ON x.ordinality = d.pos
         ORDER BY d.pos;
        IF v_fix_replies THEN
            -- Replies to a message of the same batch: the INSERT above could not see it.
            UPDATE message m SET in_reply_to_id = r.id
              FROM message r
             WHERE m.id = ANY (m_id) AND m.in_reply_to_id IS NULL AND m.in_reply_to_external_id IS NOT NULL
               AND r.channel_instance = m.channel_instance AND r.external_id = m.in_reply_to_external_id;
        END IF;
    END IF;
    IF cardinality(c_conv) > 0 THEN
        UPDATE conversation c
           SET last_inbound_at = greatest(c.last_inbound_at, u.last_in),
               last_outbound_at = greatest(c.last_outbound_at, u.last_out),
               first_response_at = coalesce(c.first_response_at, u.first_out)
          FROM (SELECT a.conv, max(a.t_in) AS last_in, max(a.t_out) AS last_out, min(a.t_out) AS first_out
                  FROM unnest(c_conv, c_in, c_out) AS a(conv, t_in, t_out)
                 GROUP BY a.conv
                 ORDER BY a.conv) AS u   -- the usual nested loop then locks rows in id order
         WHERE c.id = u.conv;
    END IF;

    IF cardinality(v_started) > 0 THEN
        PERFORM parley_conversations_started(v_started, opts);
    END IF;

    RETURN parley_batch_counts(items, v_items);
END
$$;

-- ------------------------------------------------------ merge and unmerge

-- Lock the authors and verified contacts of these identities / contacts the
-- way ingest does, so a merge and a batch about the same people serialize.
CREATE FUNCTION parley_lock_customer_keys(p_customer bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM parley_lock_sorted(ARRAY(
        SELECT parley_lock_key('a', i.channel_instance, i.external_id)
          FROM identity i WHERE i.customer_id = p_customer
        UNION ALL
        SELECT parley_lock_key(CASE cc.kind WHEN 'email' THEN 'e' ELSE 'p' END, cc.value, NULL)
          FROM customer_contact cc WHERE cc.customer_id = p_customer AND cc.verified));
END
$$;

-- Move everything of customer `source` to `target`: identities,
-- conversations, cases and contacts (a contact the target already has stays
-- with the source; if only the source's copy was verified, the target's
-- becomes verified). The source stays as a row with merged_into = target.
-- Returns the id of the 'customer.merge' audit entry, whose details list
-- exactly what moved, for parley_unmerge.
CREATE FUNCTION parley_merge_customers(source bigint, target bigint, actor text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_source customer%ROWTYPE;
    v_target customer%ROWTYPE;
    v_identities bigint[];
    v_conversations bigint[];
    v_cases bigint[];
    v_contacts bigint[];
    v_verified bigint[];
BEGIN
    IF source IS NULL OR target IS NULL THEN
        RAISE EXCEPTION 'parley_merge_customers: source and target are required';
    END IF;
    IF source = target THEN
        RAISE EXCEPTION 'cannot merge customer % into itself', source;
    END IF;

    -- Ingest's locks first (sorted), then the two rows in id order.
    PERFORM parley_lock_customer_keys(source);
    PERFORM 1 FROM customer WHERE id IN (source, target) ORDER BY id FOR UPDATE;
    SELECT * INTO v_source FROM customer WHERE id = source;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'customer % does not exist', source;
    END IF;
    SELECT * INTO v_target FROM customer WHERE id = target;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'customer % does not exist', target;
    END IF;
    IF v_source.merged_into IS NOT NULL THEN
        RAISE EXCEPTION 'customer % is already merged into customer %', source, v_source.merged_into;
    END IF;
    IF v_target.merged_into IS NOT NULL THEN
        RAISE EXCEPTION 'cannot merge into customer %: it is merged into customer %',
            target, v_target.merged_into;
    END IF;

    WITH m AS (UPDATE identity SET customer_id = target WHERE customer_id = source RETURNING id)
    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO v_identities FROM m;
    WITH m AS (UPDATE conversation SET customer_id = target, updated_at = now()
                WHERE customer_id = source RETURNING id)
    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO v_conversations FROM m;
    WITH m AS (UPDATE support_case SET customer_id = target, updated_at = now()
                WHERE customer_id = source RETURNING id)
    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO v_cases FROM m;
    WITH m AS (UPDATE customer_contact t SET verified = true
                 FROM customer_contact s
                WHERE s.customer_id = source AND s.verified
                  AND t.customer_id = target AND t.kind = s.kind AND t.value = s.value
                  AND NOT t.verified
                RETURNING t.id)
    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO v_verified FROM m;
    WITH m AS (UPDATE customer_contact s SET customer_id = target
                WHERE s.customer_id = source
                  AND NOT EXISTS (SELECT 1 FROM customer_contact t
                                   WHERE t.customer_id = target AND t.kind = s.kind AND t.value = s.value)
                RETURNING id)
    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO v_contacts FROM m;

    UPDATE customer SET merged_into = target, updated_at = now() WHERE id = source;
    UPDATE customer SET updated_at = now() WHERE id = target;

    RETURN parley_audit(actor, 'customer.merge', 'customer', source,
                        jsonb_build_object('source', source, 'target', target,
                                           'identities', to_jsonb(v_identities),
                                           'conversations', to_jsonb(v_conversations),
                                           'cases', to_jsonb(v_cases),
                                           'contacts', to_jsonb(v_contacts),
                                           'contacts_verified', to_jsonb(v_verified)));
END
$$;

-- Undo the merge recorded in audit entry `audit_id`: what it moved goes back
-- to the source (as far as it is still with the target), together with the
-- conversations the moved identities started since, and the source is a
-- customer of its own again. Returns the 'customer.unmerge' audit id.
-- Refused when the merge was already undone, or the target has since been
-- merged itself (undo that first).
CREATE FUNCTION parley_unmerge(audit_id bigint, actor text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_merge  audit_log%ROWTYPE;
    v_source bigint;
    v_target bigint;
    v_row    customer%ROWTYPE;
    v_done   bigint;
    v_identities bigint[];
    v_conversations bigint[];
    v_cases bigint[];
    v_contacts bigint[];
    v_verified bigint[];
BEGIN
    SELECT * INTO v_merge FROM audit_log WHERE id = audit_id;
    IF NOT FOUND OR v_merge.action <> 'customer.merge' THEN
        RAISE EXCEPTION 'audit entry % is not a customer merge', audit_id;
    END IF;
    v_source := (v_merge.details ->> 'source')::bigint;
    v_target := (v_merge.details ->> 'target')::bigint;

    PERFORM parley_lock_customer_keys(v_target);
    PERFORM 1 FROM customer WHERE id IN (v_source, v_target) ORDER BY id FOR UPDATE;

    SELECT a.id INTO v_done FROM audit_log a
     WHERE a.entity = 'customer' AND a.entity_id = v_source AND a.action = 'customer.unmerge'
       AND a.details ->> 'merge_audit_id' = audit_id::text
     LIMIT 1;
    IF v_done IS NOT NULL THEN
        RAISE EXCEPTION 'merge % was already undone (audit entry %)', audit_id, v_done;
    END IF;
    SELECT * INTO v_row FROM customer WHERE id = v_source;
    IF v_row.merged_into IS DISTINCT FROM v_target THEN
        RAISE EXCEPTION 'customer % is not merged into customer %', v_source, v_target;
    END IF;
    SELECT * INTO v_row FROM customer WHERE id = v_target;
    IF v_row.merged_into IS NOT NULL THEN
        RAISE EXCEPTION 'customer % has since been merged into customer %; undo that merge first',
            v_target, v_row.merged_into;
    END IF;

    WITH m AS (UPDATE identity SET customer_id = v_source
                WHERE customer_id = v_target
                  AND id IN (SELECT jsonb_array_elements_text(v_merge.details -> 'identities')::bigint)
                RETURNING id)
    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO v_identities FROM m;
    WITH m AS (UPDATE conversation SET customer_id = v_source, updated_at = now()
                WHERE customer_id = v_target
                  AND (id IN (SELECT jsonb_array_elements_text(v_merge.details -> 'conversations')::bigint)
                       OR identity_id = ANY (v_identities))
                RETURNING id)
    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO v_conversations FROM m;
    WITH m AS (UPDATE support_case SET customer_id = v_source, updated_at = now()
                WHERE customer_id = v_target
                  AND id IN (SELECT jsonb_array_elements_text(v_merge.details -> 'cases')::bigint)
                RETURNING id)
    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO v_cases FROM m;
    WITH m AS (UPDATE customer_contact SET customer_id = v_source
                WHERE customer_id = v_target
                  AND id IN (SELECT jsonb_array_elements_text(v_merge.details -> 'contacts')::bigint)
                RETURNING id)
    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO v_contacts FROM m;
    WITH m AS (UPDATE customer_contact SET verified = false
                WHERE customer_id = v_target
                  AND id IN (SELECT jsonb_array_elements_text(v_merge.details -> 'contacts_verified')::bigint)
                RETURNING id)
    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO v_verified FROM m;

    UPDATE customer SET merged_into = NULL, updated_at = now() WHERE id = v_source;
    UPDATE customer SET updated_at = now() WHERE id = v_target;

    RETURN parley_audit(actor, 'customer.unmerge', 'customer', v_source,
                        jsonb_build_object('merge_audit_id', audit_id,
                                           'source', v_source, 'target', v_target,
                                           'identities', to_jsonb(v_identities),
                                           'conversations', to_jsonb(v_conversations),
                                           'cases', to_jsonb(v_cases),
                                           'contacts', to_jsonb(v_contacts),
                                           'contacts_unverified', to_jsonb(v_verified)));
END
$$;
