-- ingest: the ingest batch. The core calls parley_ingest_batch() once per
-- batch inside one transaction (READ COMMITTED); docs/DATA_MODEL.md has the
-- tables and the ingest rules in prose.
--
-- A batch goes through these steps, each a function below:
--   0. parley_ingest_ticket_events   ticket systems' events: applied, split off
--      parley_ingest_adopt_threads   a public reply joins its parent's thread
--   1. parley_ingest_lock            the batch's advisory locks, in key order
--   2. parley_ingest_store           every item into inbound_event (replays: nothing)
--   3. parley_ingest_authors         messages already stored; returning authors refreshed
--      parley_ingest_known_threads   their conversations, looked up for the whole batch
--      parley_ingest_new_authors     new authors without contacts, created together
--   4. parley_ingest_items           per item: identity, references, conversation, case
--      (parley_ingest_echo: the rarer path of an item)
--   5. parley_ingest_store_messages  the messages (and what waited for them)
--      parley_ingest_activity        the conversations' activity times
--   6. parley_after_ingest           the after-ingest pipeline (pipeline.sql)
-- What cannot be understood stays stored and unprocessed; a real error
-- aborts the whole batch.
--
-- Statements cost more than expressions in PL/pgSQL, and foreign key checks
-- and row updates more than either: the common path (a returning customer
-- in an open conversation) runs one statement of its own, the conversation
-- lookup; everything else is per batch. So the steps are functions per
-- batch, and step 4's loop calls out only on the rarer paths (a new author
-- with contacts, a reference, an echo, a reopen). A new conversation is
-- made in the loop itself: most items of a busy batch start one, and a
-- function call there cost about 5% of a batch of mostly new customers.

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

-- ---------------------------------------------------------- 0. before

-- Ticket events (a sink's webhook, "ticket_event" items) are applied by
-- parley_ticket_events (tickets.sql) in the batch's transaction; the other
-- items are returned, in order.
CREATE FUNCTION parley_ingest_ticket_events(items jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_tickets jsonb;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM jsonb_array_elements(items) AS t(e) WHERE t.e ? 'ticket_event') THEN
        RETURN items;
    END IF;
    SELECT coalesce(jsonb_agg(t.e ORDER BY t.ord) FILTER (WHERE t.e ? 'ticket_event'), '[]'),
           coalesce(jsonb_agg(t.e ORDER BY t.ord) FILTER (WHERE NOT t.e ? 'ticket_event'), '[]')
      INTO v_tickets, items
      FROM jsonb_array_elements(items) WITH ORDINALITY AS t(e, ord);
    PERFORM parley_ticket_events(v_tickets);
    RETURN items;
END
$$;

-- A public reply to a known message joins that message's thread. Some
-- platforms do not say which thread a public reply belongs to: X's Account
-- Activity events name only the tweet answered. A customer who answers the
-- brand's reply would then start a new thread (the brand's tweet as its
-- root) instead of continuing their conversation. So a public new message
-- whose in_reply_to is a message already stored in a public conversation of
-- the same instance takes that conversation's thread; the channel's own
-- thread id is kept in the event as platform_thread_id. Channels that do
-- name the thread (Facebook and Instagram comments) are unaffected: the
-- parent's thread is theirs already. Most batches have no public reply at
-- all: then one pass over the items.
CREATE FUNCTION parley_ingest_adopt_threads(items jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (
           SELECT 1 FROM jsonb_array_elements(items) AS t(e)
            WHERE t.e #>> '{event,type}' = 'message_created'
              AND t.e #>> '{event,visibility}' = 'public'
              AND coalesce(t.e #>> '{event,in_reply_to}', '') <> '') THEN
        RETURN items;
    END IF;
    SELECT jsonb_agg(CASE WHEN p.thread IS NULL OR p.thread IS NOT DISTINCT FROM t.e #>> '{event,thread_id}'
                          THEN t.e
                          ELSE jsonb_set(t.e, '{event}',
                                         (t.e -> 'event') || jsonb_build_object(
                                             'thread_id', p.thread,
                                             'platform_thread_id', t.e #> '{event,thread_id}'))
                     END ORDER BY t.ord)
      INTO items
      FROM jsonb_array_elements(items) WITH ORDINALITY AS t(e, ord)
      LEFT JOIN LATERAL (
          SELECT c.thread_key AS thread
            FROM message m
            JOIN conversation c ON c.id = m.conversation_id
           WHERE t.e #>> '{event,type}' = 'message_created'
             AND t.e #>> '{event,visibility}' = 'public'
             AND m.channel_instance = t.e ->> 'instance'
             AND m.external_id = t.e #>> '{event,in_reply_to}'
             AND c.visibility = 'public' AND c.thread_key IS NOT NULL) AS p ON true;
    RETURN items;
END
$$;

-- ------------------------------------------------------- 1. and 2.

-- 1. Before anything else, lock in ascending key order every author and
-- every message the batch names (and the verified emails and phones of
-- new messages, which may auto-merge), so concurrent batches about the
-- same people serialize instead of creating them twice, and cannot
-- deadlock on each other. The message lock also makes an edit and its
-- message meet when they arrive in concurrent batches. Taken from the items
-- as they came (a replay takes them too: two deliveries of one event wait
-- for each other here instead of meeting in the dedupe index in opposite
-- orders).
CREATE FUNCTION parley_ingest_lock(p_items jsonb, o parley_ingest_options) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(parley_lock_space(), k.key)
       FROM (SELECT DISTINCT x.key
               FROM jsonb_array_elements(p_items) AS t(e)
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
END
$$;

-- 2. One statement stores every item in inbound_event. A replay (same
-- instance and dedupe key; also twice within the batch, where the first
-- wins) inserts nothing and is not processed again. Returns the stored
-- items in batch order (NULL: none).
CREATE FUNCTION parley_ingest_store(items jsonb) RETURNS parley_ingest_item[]
LANGUAGE plpgsql AS $$
DECLARE
    v_items parley_ingest_item[];
BEGIN
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
    RETURN v_items;
END
$$;

-- ---------------------------------------------------------- 3. authors

-- Per stored item: dup, a message stored already or earlier in the batch;
-- existing, the stored message with its external id. known: the returning
-- authors, "instance<US>author" -> [identity, customer], each refreshed
-- once with the profile of their last item. An echo of a stored message
-- still counts (it is matched, not doubled); a customer message not.
CREATE FUNCTION parley_ingest_authors(p_items parley_ingest_item[],
                                      OUT dup boolean[], OUT existing bigint[], OUT known jsonb)
LANGUAGE plpgsql AS $$
BEGIN
    WITH x AS (
        SELECT u.*, u.ready AND (m.id IS NOT NULL AND NOT u.brand
                                 OR row_number() OVER (PARTITION BY u.instance, u.external_id, u.ready
                                                       ORDER BY u.ord) > 1) AS dup,
               m.id AS existing
          FROM unnest(p_items) WITH ORDINALITY
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
      INTO dup, existing, known
      FROM x;END
$$;

-- Per stored item: the newest conversation of a returning customer on the
-- item's thread (and its status, resolution time and case), looked up for
-- the whole batch at once.
CREATE FUNCTION parley_ingest_known_threads(p_items parley_ingest_item[], p_known jsonb,
                                            OUT conv bigint[], OUT status text[],
                                            OUT resolved timestamptz[], OUT case_id bigint[])
LANGUAGE plpgsql AS $$
BEGIN
    SELECT array_agg(cv.id ORDER BY u.ord), array_agg(cv.status ORDER BY u.ord),
           array_agg(cv.resolved_at ORDER BY u.ord), array_agg(cv.case_id ORDER BY u.ord)
      INTO conv, status, resolved, case_id
      FROM unnest(p_items) WITH ORDINALITY
           AS u(inbound_id, instance, channel, event_type, external_id, author, ev, platform_time,
                ready, brand, ord)
      LEFT JOIN LATERAL (
          SELECT c.id, c.status, c.resolved_at, c.case_id
            FROM conversation c
           WHERE u.ready AND NOT u.brand
             AND c.customer_id = (p_known -> (u.instance || chr(31) || u.author) ->> 1)::bigint
             AND c.channel_instance = u.instance AND c.visibility = u.ev ->> 'visibility'
             AND (parley_thread_key(u.ev) IS NULL OR c.thread_key = parley_thread_key(u.ev))
           ORDER BY c.id DESC
           LIMIT 1) AS cv ON true;
END
$$;

-- New authors, created together when none of them gives an email or a
-- phone (the usual case): such an identity cannot join an existing
-- customer and brings no contacts, so each is a new customer and a new
-- identity, exactly what parley_new_identity() would make. Ids are drawn
-- in batch order, as the per-item path draws them. With any email or phone
-- among them (simple = false), nothing is created and every new author
-- takes the per-item path. keys: "instance<US>author"; firsts: the
-- position of the item that created it (that item is the new customer's
-- first).
CREATE FUNCTION parley_ingest_new_authors(p_items parley_ingest_item[], p_dup boolean[], p_known jsonb,
                                          OUT simple boolean, OUT keys text[], OUT firsts integer[],
                                          OUT customers bigint[], OUT identities bigint[])
LANGUAGE plpgsql AS $$
BEGIN
    customers := '{}';
    identities := '{}';
    SELECT coalesce(bool_and(n.email IS NULL AND n.phone IS NULL), true),
           array_agg(n.key ORDER BY n.ord), array_agg(n.ord::integer ORDER BY n.ord)
      INTO simple, keys, firsts
      FROM (SELECT DISTINCT ON (u.instance, u.author) u.instance || chr(31) || u.author AS key, u.ord,
                   nullif(u.ev -> 'author' ->> 'email', '') AS email,
                   nullif(u.ev -> 'author' ->> 'phone', '') AS phone
              FROM unnest(p_items) WITH ORDINALITY
                   AS u(inbound_id, instance, channel, event_type, external_id, author, ev, platform_time,
                        ready, brand, ord)
             WHERE u.ready AND NOT u.brand AND NOT p_dup[u.ord::integer]
               AND NOT (p_known ? (u.instance || chr(31) || u.author))
             ORDER BY u.instance, u.author, u.ord) AS n;
    IF simple AND keys IS NOT NULL THEN
        customers := ARRAY(SELECT nextval('customer_id_seq') FROM generate_series(1, cardinality(keys)));
        identities := ARRAY(SELECT nextval('identity_id_seq') FROM generate_series(1, cardinality(keys)));
        INSERT INTO customer (id, display_name)
        SELECT n.cust, coalesce(nullif(x.ev #>> '{author,display_name}', ''),
                                nullif(x.ev #>> '{author,handle}', ''), x.author)
          FROM unnest(firsts, customers) AS n(pos, cust)
          JOIN unnest(p_items) WITH ORDINALITY AS x ON x.ordinality = n.pos
         ORDER BY n.pos;
        INSERT INTO identity (id, customer_id, channel_kind, channel_instance, external_id, handle,
                              display_name, profile, first_seen_at, last_seen_at)
        SELECT n.ident, n.cust, coalesce(x.channel, ''), x.instance, x.author, nullif(y.a ->> 'handle', ''),
               nullif(y.a ->> 'display_name', ''),
               CASE WHEN jsonb_typeof(y.a -> 'profile') = 'object' THEN y.a -> 'profile' ELSE '{}' END,
               parley_event_time(x.platform_time), parley_event_time(x.platform_time)
          FROM unnest(firsts, customers, identities) AS n(pos, cust, ident)
          JOIN unnest(p_items) WITH ORDINALITY AS x ON x.ordinality = n.pos
         CROSS JOIN LATERAL (SELECT x.ev -> 'author' AS a) AS y
         ORDER BY n.pos;
    ELSE
        keys := '{}';
        firsts := '{}';
    END IF;
END
$$;

-- ------------------------------------------------------------- 4. items

-- An echo (a message the brand's own account wrote): its conversation, that
-- of the stored message it is (p_existing, Parley sent it itself: then it
-- is attached to it, nothing is stored twice), else parley_echo_conversation
-- (batch_ext / batch_conv: the batch's messages so far). NULL when none.
CREATE FUNCTION parley_ingest_echo(it parley_ingest_item, p_existing bigint, batch_ext text[],
                                   batch_conv bigint[])
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_conv bigint;
BEGIN
    IF p_existing IS NOT NULL THEN
        SELECT m.conversation_id INTO v_conv FROM message m WHERE m.id = p_existing;
    END IF;
    IF v_conv IS NULL THEN
        v_conv := parley_echo_conversation(it, batch_ext, batch_conv);
    END IF;
    IF p_existing IS NOT NULL THEN
        UPDATE message
           SET conversation_id = coalesce(conversation_id, v_conv),
               platform_time = coalesce(platform_time, it.platform_time),
               inbound_event_id = coalesce(inbound_event_id, it.inbound_id)
         WHERE id = p_existing;
    END IF;
    RETURN v_conv;
END
$$;

-- 4. Per item, in batch order: the identity of a new author (unless
-- created together in step 3), references, the conversation (join, reopen
-- or new) and its case. Edits, deletions and receipts are applied when
-- their message exists, else they wait. Then step 5, and what the batch
-- stored goes back for the after-ingest pipeline.
--
-- The new messages, references and activity times are collected in arrays
-- and stored together (step 5); message ids are drawn in batch order.
-- References are stored earlier when a later item names one of them, or a
-- new case takes a customer's emails: rows are made in item order.
CREATE FUNCTION parley_ingest_items(v_items parley_ingest_item[], o parley_ingest_options, opts jsonb)
RETURNS parley_ingested
LANGUAGE plpgsql AS $$
DECLARE
    it         parley_ingest_item;
    v_pos      integer := 0;
    v_new_pos  integer;
    v_dup      boolean[];   -- per item: a message stored already or earlier in the batch
    v_existing bigint[];    -- per item: the stored message with its external id
    v_known    jsonb;       -- "instance<US>author" -> [identity, customer] of returning authors
    v_ref      jsonb;       -- this author's entry in v_known
    -- Per item: the newest conversation of a returning customer on the
    -- item's thread (step 3).
    p_conv     bigint[];
    p_status   text[];
    p_resolved timestamptz[];
    p_case     bigint[];
    -- Authors whose identity this batch created (step 3, then here), and
    -- the position of the item that created it.
    b_simple boolean;
    b_key    text[];
    b_ident  bigint[];
    b_cust   bigint[];
    b_first  integer[];
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
    v_new      record;      -- what a step or a rarer path's function returned
    v_hit      boolean;     -- the item names a reference an earlier item found
    v_message  bigint;
    v_changed_msg bigint;   -- the message an edit, deletion or receipt changed
    v_fix_replies boolean := false;
    -- Customers whose conversations this batch created or changed: for
    -- them the lookups of step 3 are stale.
    v_changed  bigint[] := '{}';
    v_started  bigint[] := '{}';    -- conversations this batch created
    v_updated  bigint[] := '{}';    -- existing messages edits, deletions and receipts changed
    v_echoes   bigint[] := '{}';    -- the brand's new messages
    -- The batch's new messages.
    m_pos    integer[] := '{}';
    m_id     bigint[] := '{}';
    m_conv   bigint[] := '{}';
    m_author bigint[] := '{}';
    m_dir    text[] := '{}';
    m_ext    text[] := '{}';
    m_in     bigint[] := '{}';      -- the customers' messages among them
    -- References found in messages, stored before anything could read
    -- them (a later item of the batch that mentions one of them, and the
    -- end of the loop).
    r_case   bigint[] := '{}';
    r_kind   text[] := '{}';
    r_value  text[] := '{}';
    r_msg    bigint[] := '{}';
    r_key    text[] := '{}';     -- kind<US>value of the above
    -- Conversation activity.
    c_conv   bigint[] := '{}';
    c_in     timestamptz[] := '{}';
    c_out    timestamptz[] := '{}';
BEGIN
    -- 3. Authors and threads, for the whole batch.
    v_new := parley_ingest_authors(v_items);
    v_dup := v_new.dup;
    v_existing := v_new.existing;
    v_known := v_new.known;
    v_new := parley_ingest_known_threads(v_items, v_known);
    p_conv := v_new.conv;
    p_status := v_new.status;
    p_resolved := v_new.resolved;
    p_case := v_new.case_id;
    v_new := parley_ingest_new_authors(v_items, v_dup, v_known);
    b_simple := v_new.simple;
    b_key := v_new.keys;
    b_first := v_new.firsts;
    b_cust := v_new.customers;
    b_ident := v_new.identities;

    FOREACH it IN ARRAY v_items LOOP
        v_pos := v_pos + 1;
        IF NOT it.ready THEN
            IF it.event_type IN ('message_edited', 'message_deleted', 'delivery_status') THEN
                v_changed_msg := parley_apply_pending(it.instance, it.external_id);
                IF v_changed_msg IS NOT NULL THEN
                    v_updated := v_updated || v_changed_msg;
                END IF;
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
            v_conv := parley_ingest_echo(it, v_existing[v_pos], m_ext, m_conv);
            IF v_existing[v_pos] IS NULL THEN
                m_pos := m_pos || v_pos;
                m_id := m_id || nextval('message_id_seq');
                v_echoes := v_echoes || m_id[cardinality(m_id)];
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
            -- Inline, not a function of its own: a call would copy the
            -- batch's growing reference arrays for every such item.
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
        m_in := m_in || v_message;
        m_ext := m_ext || it.external_id;
    END LOOP;

    -- 5. Store what the loop collected.
    IF cardinality(r_case) > 0 THEN
        PERFORM parley_store_references(r_case, r_kind, r_value, r_msg);
    END IF;
    IF cardinality(m_pos) > 0 THEN
        PERFORM parley_ingest_store_messages(v_items, m_pos, m_id, m_conv, m_author, m_dir, v_fix_replies);
    END IF;
    IF cardinality(c_conv) > 0 THEN
        PERFORM parley_ingest_activity(c_conv, c_in, c_out);
    END IF;
    RETURN ROW(m_in, v_started, opts, v_echoes, v_updated)::parley_ingested;
END
$$;

-- ------------------------------------------------------------- 5. store

-- The batch's messages, in batch order (their ids were drawn in that
-- order): m_pos is the item's position in v_items, the other arrays pair
-- up with it. Then what waited for them (edits, deletions, receipts), and
-- the links of replies to a message of the same batch.
CREATE FUNCTION parley_ingest_store_messages(v_items parley_ingest_item[], m_pos integer[], m_id bigint[],
                                             m_conv bigint[], m_author bigint[], m_dir text[],
                                             p_fix_replies boolean)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_instances    text[];
    v_external_ids text[];
BEGIN
    IF cardinality(m_pos) = 0 THEN
        RETURN;
    END IF;
    WITH ins AS (
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
         ORDER BY d.pos
        RETURNING channel_instance, external_id)
    SELECT array_agg(ins.channel_instance), array_agg(ins.external_id) INTO v_instances, v_external_ids
      FROM ins;
    PERFORM parley_apply_pending_stored(v_instances, v_external_ids);
    IF p_fix_replies THEN
        -- Replies to a message of the same batch: the INSERT above could not see it.
        UPDATE message m SET in_reply_to_id = r.id
          FROM message r
         WHERE m.id = ANY (m_id) AND m.in_reply_to_id IS NULL AND m.in_reply_to_external_id IS NOT NULL
           AND r.channel_instance = m.channel_instance AND r.external_id = m.in_reply_to_external_id;
    END IF;
END
$$;

-- The conversations' activity times, moved forward together: c_conv and the
-- inbound (c_in) or outbound (c_out) time of each of the batch's messages.
CREATE FUNCTION parley_ingest_activity(c_conv bigint[], c_in timestamptz[], c_out timestamptz[])
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
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
END
$$;

-- ------------------------------------------------------------ the batch

-- The one call the core makes per batch, in one transaction:
--   items: [{"instance", "channel", "event": {...normalized event...}, "raw"}, ...]
--          (or {"instance", "ticket_event": {...}, "raw"} from a sink)
--   opts:  see parley_ingest_options; notify_new_conversation (older settings)
-- Returns {"inserted": N, "replays": M, "instances": {...}}, N + M = number
-- of items other than ticket events (see parley_batch_counts). The steps
-- are listed at the top of this file.
CREATE FUNCTION parley_ingest_batch(items jsonb, opts jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    o       parley_ingest_options;
    v_items parley_ingest_item[];
BEGIN
    IF jsonb_typeof(items) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'parley_ingest_batch: items must be a JSON array, not %',
            coalesce(jsonb_typeof(items), 'NULL');
    END IF;
    o := parley_ingest_options(opts);
    items := parley_ingest_ticket_events(items);
    items := parley_ingest_adopt_threads(items);
    PERFORM parley_ingest_lock(items, o);
    v_items := parley_ingest_store(items);
    IF v_items IS NOT NULL THEN
        PERFORM parley_after_ingest(parley_ingest_items(v_items, o, opts));
    END IF;
    RETURN parley_batch_counts(items, v_items);
END
$$;
