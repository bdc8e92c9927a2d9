-- api_customers: the customers of the agent API (docs/api/openapi.yaml,
-- section "customers"): search, the profile with everything the caller may
-- see, edits of the agents' own fields, merge and its undo.
--
-- Who sees a customer: parley_api_customer_visible, judged on the record a
-- merged customer points to (following merged_into to its end), so a merged
-- id answers for whoever sees the survivor. Merges themselves are the core
-- operations parley_merge_customers / parley_unmerge (customers.sql), which
-- write the audit entry and the conversations' timeline events.

-- The customer a merged one ended up in (itself when not merged).
CREATE FUNCTION parley_api_customer_survivor(p_id bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE chain(id, next, depth) AS (
        SELECT c.id, c.merged_into, 1 FROM customer c WHERE c.id = p_id
        UNION ALL
        SELECT c.id, c.merged_into, chain.depth + 1
          FROM chain JOIN customer c ON c.id = chain.next
         WHERE chain.depth < 100
    )
    SELECT id FROM chain ORDER BY depth DESC LIMIT 1
$$;

-- The customer, locked when p_lock, if the caller may see it; else 404.
CREATE FUNCTION parley_api_customer(p_actor jsonb, p_id bigint, p_lock boolean DEFAULT false)
RETURNS customer
LANGUAGE plpgsql AS $$
DECLARE
    v customer;
BEGIN
    IF p_lock THEN
        SELECT * INTO v FROM customer WHERE id = p_id FOR UPDATE;
    ELSE
        SELECT * INTO v FROM customer WHERE id = p_id;
    END IF;
    IF NOT FOUND OR NOT parley_api_customer_visible(p_actor, parley_api_customer_survivor(v.id)) THEN
        PERFORM parley_api_error(404, 'not_found', 'no customer ' || coalesce(p_id::text, 'null'));
    END IF;
    RETURN v;
END
$$;

-- A customer in lists, merge answers and live events (docs: Customer).
CREATE FUNCTION parley_api_customer_json(c customer) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', c.id,
        'display_name', c.display_name,
        'tags', to_jsonb(c.tags),
        'merged_into', c.merged_into,
        'created_at', c.created_at,
        'updated_at', c.updated_at)
$$;

-- What an agent may change, as the audit log records it before and after.
CREATE FUNCTION parley_api_customer_fields(c customer) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('display_name', c.display_name, 'tags', to_jsonb(c.tags),
                              'attributes', c.attributes)
$$;

-- At most this many of a customer's conversations (newest first) in its
-- profile; conversations_truncated says when there are more.
CREATE FUNCTION parley_api_customer_max_conversations() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 200 $$;

-- The profile (docs: CustomerDetail): contacts, identities (profile shown
-- as the platform gave it; follower counts are information only), and the
-- conversations and cases the caller may see.
CREATE FUNCTION parley_api_customer_detail_json(p_actor jsonb, c customer) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_instances text[] := parley_api_instances(p_actor);
    v_max integer := parley_api_customer_max_conversations();
    v_convs conversation[];
BEGIN
    SELECT coalesce(array_agg(x.cv ORDER BY (x.cv).id DESC), '{}') INTO v_convs
      FROM (SELECT cv FROM conversation cv
             WHERE cv.customer_id = c.id AND parley_api_sees(p_actor, v_instances, cv.channel_instance)
             ORDER BY cv.id DESC LIMIT v_max + 1) x;
    RETURN parley_api_customer_json(c) || jsonb_build_object(
        'attributes', c.attributes,
        'contacts', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                'id', cc.id, 'kind', cc.kind, 'value', cc.value, 'verified', cc.verified,
                                'source_instance', cc.source_instance, 'created_at', cc.created_at)
                            ORDER BY cc.kind, cc.id), '[]')
                       FROM customer_contact cc WHERE cc.customer_id = c.id),
        'identities', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                  'id', i.id, 'channel_kind', i.channel_kind,
                                  'channel_instance', i.channel_instance, 'external_id', i.external_id,
                                  'handle', i.handle, 'display_name', i.display_name, 'profile', i.profile,
                                  'first_seen_at', i.first_seen_at, 'last_seen_at', i.last_seen_at)
                              ORDER BY i.id), '[]')
                         FROM identity i WHERE i.customer_id = c.id),
        'conversations', (SELECT coalesce(jsonb_agg(parley_api_conversation_json(x) ORDER BY x.id DESC), '[]')
                            FROM unnest(v_convs[1:v_max]) x),
        'conversations_truncated', cardinality(v_convs) > v_max,
        'cases', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                             'id', sc.id, 'number', sc.case_number, 'customer_id', sc.customer_id,
                             'created_at', sc.created_at, 'updated_at', sc.updated_at)
                         ORDER BY sc.id DESC), '[]')
                    FROM support_case sc
                   WHERE sc.id IN (SELECT x.case_id FROM unnest(v_convs[1:v_max]) x)));
END
$$;

-- The LIKE pattern of "starts with p" (p's own %, _ and \ taken literally).
CREATE FUNCTION parley_api_like_prefix(p text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT replace(replace(replace(p, '\', '\\'), '%', '\%'), '_', '\_') || '%'
$$;

-- How deeply a JSON value nests (a scalar 0, {} or [] 1, {"a": {}} 2).
-- Callers bound the size first.
CREATE FUNCTION parley_api_json_depth(p jsonb) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    WITH RECURSIVE t(v, d) AS (
        SELECT p, 0
        UNION ALL
        SELECT e.v, t.d + 1
          FROM t, LATERAL (
              SELECT value FROM jsonb_each(CASE WHEN jsonb_typeof(t.v) = 'object' THEN t.v ELSE '{}' END)
              UNION ALL
              SELECT value
                FROM jsonb_array_elements(CASE WHEN jsonb_typeof(t.v) = 'array' THEN t.v ELSE '[]' END)
              UNION ALL
              -- an empty container still counts as a level
              SELECT 'null'::jsonb WHERE t.v IN ('{}', '[]')) e(v)
    )
    SELECT max(d) FROM t
$$;

-- ------------------------------------------------------------ operations

-- GET /api/v1/customers?q=: the customers (not merged away) the caller may
-- see whose name, handle or e-mail starts with q (case-insensitively; a
-- leading @ is no part of a handle), whose phone number starts with q's
-- digits, or with an account whose platform id is exactly q.
--
-- Each customer is listed once, for the first of these keys it matches
-- (name, handle, e-mail, phone, platform id; within a key its smallest
-- matching value), as a hit {customer, match: {field, value}}; hits are
-- ordered by the matched value (bytewise, lowercased), then key, then id.
-- Every key is read in that order off its index (009_customer_search.sql)
-- from the cursor on and stops after a page, so a broad q costs what a
-- precise one does. Whether a hit's customer matched an earlier key, or
-- this key with a smaller value, is checked with left(), which no value
-- index serves: each check is a probe of that customer's own rows, made
-- for the few rows a page reads. Who may see a customer is
-- parley_api_customer_visible's rule, with the caller's instances worked
-- out once instead of for every row.
--
-- plan_cache_mode: the patterns and the cursor must be constants when the
-- statement is planned, or a LIKE prefix is no index range. jit: the
-- planner prices each index walk as if it ran to the end of its range (it
-- stops after a page), which is enough to make JIT compile the statement,
-- at a cost of far more than the whole search.
CREATE FUNCTION parley_api_customers_search(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan SET jit = off AS $$
DECLARE
    c_max    constant bigint := 9223372036854775807;
    v_query  jsonb := p_req -> 'query';
    v_q      text := btrim(p_req -> 'query' ->> 'q');
    v_inst   text[] := parley_api_instances(p_actor);
    v_all    boolean := parley_api_instances(p_actor) IS NULL;
    v_limit  integer;
    v_after  jsonb;
    -- The cursor: the last hit's value, and per key the customers with
    -- that value already served (up to v_min[key]).
    v_k      text COLLATE "C" := '';
    v_min    bigint[] := '{-1,-1,-1,-1,-1}';
    v_b      integer;
    v_id     bigint;
    v_lname   text;   -- q lowercased: what names and e-mails start with
    v_lhandle text;   -- ... and handles (without a leading @)
    v_phone   text;   -- '+' and q's digits, when q looks like a phone number
    v_name    text;   -- the same as LIKE patterns
    v_handle  text;
    v_items  jsonb;
    v_n      integer;
    v_last   jsonb;
BEGIN
    PERFORM parley_api_only(v_query, '{q,limit,cursor}', 'query');
    IF v_q IS NULL OR length(v_q) NOT BETWEEN 2 AND 200 THEN
        PERFORM parley_api_error(400, 'invalid_parameter', 'q: 2 to 200 characters to search for');
    END IF;
    v_limit := parley_api_limit(v_query);
    v_after := parley_api_cursor_decode('customers', v_query ->> 'cursor');
    IF v_after IS NOT NULL THEN
        IF NOT (jsonb_typeof(v_after) = 'array' AND jsonb_array_length(v_after) = 3
                AND jsonb_typeof(v_after -> 0) = 'string'
                AND (v_after ->> 1) ~ '^[1-5]$' AND (v_after ->> 2) ~ '^[0-9]{1,18}$') THEN
            PERFORM parley_api_error(400, 'invalid_cursor', 'cursor: not one this API gave out');
        END IF;
        v_k := v_after ->> 0;
        v_b := (v_after ->> 1)::integer;
        v_id := (v_after ->> 2)::bigint;
        v_min := ARRAY(SELECT CASE WHEN b < v_b THEN c_max WHEN b = v_b THEN v_id ELSE -1 END
                         FROM generate_series(1, 5) b ORDER BY b);
    END IF;

    v_lname := lower(v_q);
    v_lhandle := lower(regexp_replace(v_q, '^@', ''));
    v_name := parley_api_like_prefix(v_lname);
    v_handle := parley_api_like_prefix(v_lhandle);
    IF v_q ~ '^\+?[0-9][0-9 ()./-]*$' THEN
        v_phone := '+' || regexp_replace(v_q, '[^0-9]', '', 'g');
    END IF;

    -- A key's rows come after the cursor when (value, key, customer) is
    -- greater: for key b, value > v_k, or value = v_k and customer >
    -- v_min[b]. Written as value >= v_k and a tie-break, not as a row
    -- comparison: the index scan then starts at the higher of v_k and the
    -- prefix, where a row comparison it cannot weigh against the prefix may
    -- make it start at the cursor's value, or at the very beginning.
    WITH hits AS (
        (SELECT lower(c.display_name) COLLATE "C" AS k, 1 AS b, c.id,
                'name' AS field, c.display_name AS value
           FROM customer c
          WHERE lower(c.display_name) COLLATE "C" LIKE v_name AND c.merged_into IS NULL
            AND (v_k = '' OR (lower(c.display_name) COLLATE "C" >= v_k
                              AND (lower(c.display_name) COLLATE "C" > v_k OR c.id > v_min[1])))
            AND (SELECT v_all OR EXISTS (SELECT 1 FROM conversation cv
                                          WHERE cv.customer_id = c.id AND cv.channel_instance = ANY (v_inst)))
          ORDER BY 1, 3 LIMIT v_limit + 1)
        UNION ALL
        (SELECT DISTINCT ON (1, 3) lower(i.handle) COLLATE "C", 2, i.customer_id, 'handle', i.handle
           FROM identity i
          WHERE lower(i.handle) COLLATE "C" LIKE v_handle AND i.handle IS NOT NULL
            AND (v_k = '' OR (lower(i.handle) COLLATE "C" >= v_k
                              AND (lower(i.handle) COLLATE "C" > v_k OR i.customer_id > v_min[2])))
            AND (SELECT c.merged_into IS NULL
                        AND (v_all OR EXISTS (SELECT 1 FROM conversation cv
                                               WHERE cv.customer_id = c.id
                                                 AND cv.channel_instance = ANY (v_inst)))
                        AND left(lower(c.display_name), length(v_lname)) IS DISTINCT FROM v_lname
                        AND lower(i.handle) COLLATE "C"
                            = (SELECT min(lower(o.handle) COLLATE "C") FROM identity o
                                WHERE o.customer_id = c.id
                                  AND left(lower(o.handle), length(v_lhandle)) = v_lhandle)
                   FROM customer c WHERE c.id = i.customer_id)
          ORDER BY 1, 3 LIMIT v_limit + 1)
        UNION ALL
        (SELECT lower(cc.value) COLLATE "C", 3, cc.customer_id, 'email', cc.value
           FROM customer_contact cc
          WHERE cc.kind = 'email' AND lower(cc.value) COLLATE "C" LIKE v_name
            AND (v_k = '' OR (lower(cc.value) COLLATE "C" >= v_k
                              AND (lower(cc.value) COLLATE "C" > v_k OR cc.customer_id > v_min[3])))
            AND (SELECT c.merged_into IS NULL
                        AND (v_all OR EXISTS (SELECT 1 FROM conversation cv
                                               WHERE cv.customer_id = c.id
                                                 AND cv.channel_instance = ANY (v_inst)))
                        AND left(lower(c.display_name), length(v_lname)) IS DISTINCT FROM v_lname
                        AND NOT EXISTS (SELECT 1 FROM identity o WHERE o.customer_id = c.id
                                           AND left(lower(o.handle), length(v_lhandle)) = v_lhandle)
                        AND lower(cc.value) COLLATE "C"
                            = (SELECT min(lower(o.value) COLLATE "C") FROM customer_contact o
                                WHERE o.customer_id = c.id AND o.kind = 'email'
                                  AND left(lower(o.value), length(v_lname)) = v_lname)
                   FROM customer c WHERE c.id = cc.customer_id)
          ORDER BY 1, 3 LIMIT v_limit + 1)
        UNION ALL
        (SELECT lower(cc.value) COLLATE "C", 4, cc.customer_id, 'phone', cc.value
           FROM customer_contact cc
          WHERE cc.kind = 'phone' AND lower(cc.value) COLLATE "C" LIKE v_phone || '%'
            AND (v_k = '' OR (lower(cc.value) COLLATE "C" >= v_k
                              AND (lower(cc.value) COLLATE "C" > v_k OR cc.customer_id > v_min[4])))
            AND (SELECT c.merged_into IS NULL
                        AND (v_all OR EXISTS (SELECT 1 FROM conversation cv
                                               WHERE cv.customer_id = c.id
                                                 AND cv.channel_instance = ANY (v_inst)))
                        AND left(lower(c.display_name), length(v_lname)) IS DISTINCT FROM v_lname
                        AND NOT EXISTS (SELECT 1 FROM identity o WHERE o.customer_id = c.id
                                           AND left(lower(o.handle), length(v_lhandle)) = v_lhandle)
                        AND NOT EXISTS (SELECT 1 FROM customer_contact o WHERE o.customer_id = c.id
                                           AND o.kind = 'email'
                                           AND left(lower(o.value), length(v_lname)) = v_lname)
                        AND lower(cc.value) COLLATE "C"
                            = (SELECT min(lower(o.value) COLLATE "C") FROM customer_contact o
                                WHERE o.customer_id = c.id AND o.kind = 'phone'
                                  AND left(lower(o.value), length(v_phone)) = v_phone)
                   FROM customer c WHERE c.id = cc.customer_id)
          ORDER BY 1, 3 LIMIT v_limit + 1)
        UNION ALL
        (SELECT DISTINCT ON (1, 3) i.external_id COLLATE "C", 5, i.customer_id, 'external_id', i.external_id
           FROM identity i
          WHERE i.external_id = v_q
            AND (v_k = '' OR (i.external_id COLLATE "C" >= v_k
                              AND (i.external_id COLLATE "C" > v_k OR i.customer_id > v_min[5])))
            AND (SELECT c.merged_into IS NULL
                        AND (v_all OR EXISTS (SELECT 1 FROM conversation cv
                                               WHERE cv.customer_id = c.id
                                                 AND cv.channel_instance = ANY (v_inst)))
                        AND left(lower(c.display_name), length(v_lname)) IS DISTINCT FROM v_lname
                        AND NOT EXISTS (SELECT 1 FROM identity o WHERE o.customer_id = c.id
                                           AND left(lower(o.handle), length(v_lhandle)) = v_lhandle)
                        AND NOT EXISTS (SELECT 1 FROM customer_contact o WHERE o.customer_id = c.id
                                           AND CASE o.kind
                                               WHEN 'email' THEN left(lower(o.value), length(v_lname)) = v_lname
                                               ELSE left(lower(o.value), length(v_phone)) = v_phone END)
                   FROM customer c WHERE c.id = i.customer_id)
          ORDER BY 1, 3 LIMIT v_limit + 1)
    ), page AS (
        SELECT h.*, row_number() OVER (ORDER BY h.k, h.b, h.id) AS n
          FROM (SELECT * FROM hits ORDER BY k, b, id LIMIT v_limit + 1) h
    )
    SELECT coalesce(jsonb_agg(parley_api_customer_json(c) || jsonb_build_object(
                                  'match', jsonb_build_object('field', p.field, 'value', p.value))
                              ORDER BY p.n) FILTER (WHERE p.n <= v_limit), '[]'),
           count(*),
           (array_agg(jsonb_build_array(p.k, p.b, p.id)) FILTER (WHERE p.n = v_limit))[1]
      INTO v_items, v_n, v_last
      FROM page p JOIN customer c ON c.id = p.id;

    RETURN QUERY SELECT 200, parley_api_page(v_items,
        CASE WHEN v_n > v_limit THEN parley_api_cursor_encode('customers', v_last) END);
END
$$;

-- GET /api/v1/customers/{id}: the profile. A merged customer answers too,
-- with merged_into naming the record that carries on (follow it).
CREATE FUNCTION parley_api_customer_get(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v customer;
BEGIN
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    v := parley_api_customer(p_actor, parley_api_id(p_req -> 'path' ->> 'id', 'customer'));
    RETURN QUERY SELECT 200, parley_api_customer_detail_json(p_actor, v);
END
$$;

-- The tags of a PATCH: at most 50 strings of 1..64 characters without
-- control characters, trimmed, duplicates dropped (first kept).
CREATE FUNCTION parley_api_customer_tags(p jsonb) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_bad text;
BEGIN
    IF jsonb_typeof(p) IS DISTINCT FROM 'array' OR jsonb_array_length(p) > 50 THEN
        PERFORM parley_api_error(422, 'invalid_field', 'tags: a list of at most 50 strings');
    END IF;
    SELECT coalesce(e::text, '') INTO v_bad FROM jsonb_array_elements(p) e
     WHERE jsonb_typeof(e) <> 'string' OR length(btrim(e #>> '{}')) NOT BETWEEN 1 AND 64
        OR (e #>> '{}') ~ '[[:cntrl:]]'
     LIMIT 1;
    IF FOUND THEN
        PERFORM parley_api_error(422, 'invalid_field',
                                 'tags: each a string of 1 to 64 characters without control characters');
    END IF;
    RETURN ARRAY(SELECT t FROM (SELECT btrim(e #>> '{}') AS t, min(n) AS first
                                  FROM jsonb_array_elements(p) WITH ORDINALITY AS x(e, n) GROUP BY 1) s
                  ORDER BY first);
END
$$;

-- PATCH /api/v1/customers/{id}: display_name, tags (replaced), attributes
-- (replaced; at most 16 KiB as JSON and 5 levels deep). Audited with before
-- and after; a 'customer.updated' live event goes to every channel instance
-- the customer has conversations on (a customer belongs to no one instance).
CREATE FUNCTION parley_api_customer_patch(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    b jsonb := p_req -> 'body';
    v customer;
    v_before jsonb;
    v_name text;
    v_inst text;
BEGIN
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    PERFORM parley_api_only(b, '{display_name,tags,attributes}', 'body');
    v := parley_api_customer(p_actor, parley_api_id(p_req -> 'path' ->> 'id', 'customer'), true);
    IF b IS NULL OR jsonb_typeof(b) = 'null' OR b = '{}' THEN
        PERFORM parley_api_error(422, 'invalid_request',
                                 'nothing to change: give display_name, tags or attributes');
    END IF;
    IF v.merged_into IS NOT NULL THEN
        PERFORM parley_api_error(409, 'customer_merged',
                                 'customer ' || v.id || ' is merged into customer ' || v.merged_into
                                 || '; change that one');
    END IF;
    v_before := parley_api_customer_fields(v);

    IF b ? 'display_name' THEN
        v_name := btrim(parley_api_text(b, 'display_name', 200, true));
        IF v_name ~ '[[:cntrl:]]' THEN
            PERFORM parley_api_error(422, 'invalid_field', 'display_name: no control characters');
        END IF;
        v.display_name := v_name;
    END IF;
    IF b ? 'tags' THEN
        v.tags := parley_api_customer_tags(b -> 'tags');
    END IF;
    IF b ? 'attributes' THEN
        IF jsonb_typeof(b -> 'attributes') <> 'object' THEN
            PERFORM parley_api_error(422, 'invalid_field', 'attributes: must be a JSON object');
        END IF;
        IF octet_length((b -> 'attributes')::text) > 16384 THEN
            PERFORM parley_api_error(422, 'invalid_field', 'attributes: at most 16384 bytes as JSON');
        END IF;
        IF parley_api_json_depth(b -> 'attributes') > 5 THEN
            PERFORM parley_api_error(422, 'invalid_field', 'attributes: at most 5 levels deep');
        END IF;
        v.attributes := b -> 'attributes';
    END IF;

    IF parley_api_customer_fields(v) IS DISTINCT FROM v_before THEN
        UPDATE customer SET display_name = v.display_name, tags = v.tags, attributes = v.attributes,
                            updated_at = now()
         WHERE id = v.id
        RETURNING * INTO v;
        PERFORM parley_api_audit(p_actor, 'customer.update', 'customer', v.id, v_before,
                                 parley_api_customer_fields(v));
        FOR v_inst IN SELECT DISTINCT channel_instance FROM conversation WHERE customer_id = v.id LOOP
            PERFORM parley_live_event('customer.updated', v_inst, NULL, NULL,
                                      jsonb_build_object('customer', parley_api_customer_json(v)));
        END LOOP;
    END IF;
    RETURN QUERY SELECT 200, parley_api_customer_detail_json(p_actor, v);
END
$$;

-- A 'customer.merged' / 'customer.unmerged' live event to every instance
-- the survivor now has conversations on.
CREATE FUNCTION parley_api_customer_merge_event(p_kind text, p_target bigint, p_payload jsonb)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_inst text;
BEGIN
    FOR v_inst IN SELECT DISTINCT channel_instance FROM conversation
                   WHERE customer_id IN (p_target, (p_payload ->> 'source_id')::bigint) LOOP
        PERFORM parley_live_event(p_kind, v_inst, NULL, NULL, p_payload);
    END LOOP;
END
$$;

-- POST /api/v1/customers/{id}/merge {"into": target}: supervisors and
-- admins, both customers visible. The core operation moves everything and
-- writes the audit entry (with the caller) and the conversations' 'merged'
-- events; its refusals are 409 with its reason.
CREATE FUNCTION parley_api_customer_merge(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_source customer;
    v_target customer;
    v_audit  bigint;
    v_result jsonb;
BEGIN
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    PERFORM parley_api_only(p_req -> 'body', '{into}', 'body');
    PERFORM parley_api_require_role(p_actor, 'supervisor');
    v_source := parley_api_customer(p_actor, parley_api_id(p_req -> 'path' ->> 'id', 'customer'));
    v_target := parley_api_customer(p_actor, parley_api_body_id(p_req -> 'body', 'into'));
    BEGIN
        v_audit := parley_merge_customers(v_source.id, v_target.id, parley_api_actor_label(p_actor), p_actor);
    EXCEPTION WHEN SQLSTATE 'PM001' THEN
        PERFORM parley_api_error(409, 'merge_refused', SQLERRM);
    END;
    v_result := jsonb_build_object('audit_id', v_audit, 'source_id', v_source.id, 'target_id', v_target.id);
    PERFORM parley_api_customer_merge_event('customer.merged', v_target.id, v_result);
    RETURN QUERY SELECT 200, v_result;
END
$$;

-- POST /api/v1/customers/unmerge {"audit_id": N}: undo the merge of that
-- audit entry (supervisors and admins; both customers visible, else 404).
CREATE FUNCTION parley_api_customer_unmerge(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_merge  audit_log;
    v_source bigint;
    v_target bigint;
    v_id     bigint;
    v_audit  bigint;
    v_result jsonb;
BEGIN
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    PERFORM parley_api_only(p_req -> 'body', '{audit_id}', 'body');
    PERFORM parley_api_require_role(p_actor, 'supervisor');
    v_id := parley_api_body_id(p_req -> 'body', 'audit_id');
    SELECT * INTO v_merge FROM audit_log WHERE id = v_id AND action = 'customer.merge';
    v_source := (v_merge.details ->> 'source')::bigint;
    v_target := (v_merge.details ->> 'target')::bigint;
    IF v_merge.id IS NULL
       OR NOT parley_api_customer_visible(p_actor, parley_api_customer_survivor(v_source))
       OR NOT parley_api_customer_visible(p_actor, parley_api_customer_survivor(v_target)) THEN
        PERFORM parley_api_error(404, 'not_found', 'no customer merge ' || v_id);
    END IF;
    BEGIN
        v_audit := parley_unmerge(v_id, parley_api_actor_label(p_actor), p_actor);
    EXCEPTION WHEN SQLSTATE 'PM001' THEN
        PERFORM parley_api_error(409, 'merge_refused', SQLERRM);
    END;
    v_result := jsonb_build_object('audit_id', v_audit, 'merge_audit_id', v_id,
                                   'source_id', v_source, 'target_id', v_target);
    PERFORM parley_api_customer_merge_event('customer.unmerged', v_target, v_result);
    RETURN QUERY SELECT 200, v_result;
END
$$;
