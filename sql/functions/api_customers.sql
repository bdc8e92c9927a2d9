-- api_customers: the customers of the agent API (docs/api/openapi.yaml,
-- section "customers"): the profile with everything the caller may
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

-- A positive whole number in a JSON body (a number, not a string), or 422.
CREATE FUNCTION parley_api_body_id(b jsonb, p_field text) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF jsonb_typeof(b -> p_field) IS DISTINCT FROM 'number' OR (b ->> p_field) !~ '^[1-9][0-9]{0,17}$' THEN
        PERFORM parley_api_error(422, 'invalid_field', p_field || ': an id (a positive whole number)');
    END IF;
    RETURN (b ->> p_field)::bigint;
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
