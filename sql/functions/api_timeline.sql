-- api_timeline: a case as agents read it: GET /api/v1/conversations/{id}/timeline
-- (every message and system event of the conversation's case, across its
-- channels, oldest first) and GET /api/v1/cases/{id} (a case by id or
-- number, with its conversations and references). Only conversations of
-- instances the caller sees (parley_api_instances) take part; the helpers
-- for a case's conversations and references are in api_conversations.sql.

-- ------------------------------------------------------------ the timeline

CREATE FUNCTION parley_api_timeline_message(p_id bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'type', 'message',
        'message', parley_api_message_json(m),
        'revisions', (SELECT coalesce(jsonb_agg(jsonb_build_object('kind', r.kind, 'text', r.text, 'at', r.at,
                                                                   'by', r.by) ORDER BY r.at, r.id), '[]')
                        FROM message_revision r WHERE r.message_id = m.id))
      FROM message m WHERE m.id = p_id
$$;

CREATE FUNCTION parley_api_timeline_event(p_id bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'type', 'event',
        'event', jsonb_build_object('id', e.id, 'conversation_id', e.conversation_id, 'kind', e.kind,
                                    'actor', e.actor, 'details', e.details, 'at', e.at))
      FROM conversation_event e WHERE e.id = p_id
$$;

-- GET /api/v1/conversations/{id}/timeline: everything that happened in the
-- conversation's case, in every conversation of it the caller sees, oldest
-- first: messages (inbound, outbound, notes; with their edits and deletion)
-- by platform time (else when received), and system events by their time;
-- at the same moment messages before events, then by id. The cursor holds
-- [time, 0 = message | 1 = event, id] of the last item served.
CREATE FUNCTION parley_api_conversation_timeline(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    q       jsonb := coalesce(p_req -> 'query', '{}');
    v       conversation;
    v_inst  text[];
    v_convs bigint[];
    v_limit integer;
    v_cur   jsonb;
    v_t     timestamptz := '-infinity';
    v_rank  integer;
    v_id    bigint;
    v_mid   bigint := 0;   -- messages at v_t after this id
    v_eid   bigint := 0;   -- events at v_t after this id
    v_items jsonb;
    v_n     bigint;
    v_last  jsonb;
BEGIN
    v := parley_api_conversation(p_actor, parley_api_id(p_req -> 'path' ->> 'id', 'conversation'));
    PERFORM parley_api_only(q, ARRAY['limit', 'cursor'], 'query');
    v_limit := parley_api_limit(q);
    v_cur := parley_api_cursor_decode('timeline', q ->> 'cursor');
    IF v_cur IS NOT NULL THEN
        SELECT k1, k2, k3 INTO v_t, v_rank, v_id FROM parley_api_cursor_key3(v_cur);
        IF v_rank > 1 THEN
            PERFORM parley_api_error(400, 'invalid_cursor', 'cursor: not one this API gave out');
        END IF;
        -- After a message: later messages of that moment, and all its events.
        -- After an event: only later events of that moment.
        v_mid := CASE WHEN v_rank = 0 THEN v_id ELSE 9223372036854775807 END;
        v_eid := CASE WHEN v_rank = 1 THEN v_id ELSE 0 END;
    END IF;
    v_inst := parley_api_instances(p_actor);
    IF v.case_id IS NULL THEN
        v_convs := ARRAY[v.id];
    ELSE
        SELECT array_agg(c.id) INTO v_convs FROM conversation c
         WHERE c.case_id = v.case_id AND (v_inst IS NULL OR c.channel_instance = ANY (v_inst));
    END IF;

    WITH page AS (
        (SELECT coalesce(m.platform_time, m.received_at, m.created_at) AS t, 0 AS rank, m.id
           FROM message m
          WHERE m.conversation_id = ANY (v_convs)
            AND (coalesce(m.platform_time, m.received_at, m.created_at), m.id) > (v_t, v_mid)
          ORDER BY 1, 3 LIMIT v_limit + 1)
        UNION ALL
        (SELECT e.at, 1, e.id
           FROM conversation_event e
          WHERE e.conversation_id = ANY (v_convs) AND (e.at, e.id) > (v_t, v_eid)
          ORDER BY 1, 3 LIMIT v_limit + 1)
        ORDER BY 1, 2, 3 LIMIT v_limit + 1),
    numbered AS (
        SELECT p.*, row_number() OVER (ORDER BY p.t, p.rank, p.id) AS n FROM page p)
    SELECT coalesce(jsonb_agg(CASE WHEN x.rank = 0 THEN parley_api_timeline_message(x.id)
                                   ELSE parley_api_timeline_event(x.id) END ORDER BY x.n)
                    FILTER (WHERE x.n <= v_limit), '[]'),
           count(*),
           (array_agg(jsonb_build_array(x.t, x.rank, x.id) ORDER BY x.n))[v_limit]
      INTO v_items, v_n, v_last
      FROM numbered x;

    RETURN QUERY SELECT 200, parley_api_page(
        v_items, CASE WHEN v_n > v_limit THEN parley_api_cursor_encode('timeline', v_last) END);
END
$$;

-- ------------------------------------------------------------ cases

-- GET /api/v1/cases/{id}: a case by id or by number (PC-10234, any letter
-- case), with the conversations of it the caller sees and its references.
-- A case none of whose conversations the caller sees is 404.
CREATE FUNCTION parley_api_case_get(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_ref   text := p_req -> 'path' ->> 'id';
    sc      support_case;
    v_inst  text[];
    v_convs jsonb;
BEGIN
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    IF v_ref ~ '^[1-9][0-9]{0,17}$' THEN
        SELECT * INTO sc FROM support_case WHERE id = v_ref::bigint;
    END IF;
    IF sc.id IS NULL AND v_ref ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$' THEN
        SELECT * INTO sc FROM support_case WHERE upper(case_number) = upper(v_ref) ORDER BY id LIMIT 1;
    END IF;
    v_inst := parley_api_instances(p_actor);
    IF sc.id IS NOT NULL THEN
        SELECT jsonb_agg(parley_api_conversation_json(c) ORDER BY c.id) INTO v_convs
          FROM parley_api_case_conversations(sc.id, v_inst, 200) AS c;
    END IF;
    IF v_convs IS NULL THEN
        PERFORM parley_api_error(404, 'not_found', 'no case ' || coalesce(left(v_ref, 64), 'null'));
    END IF;
    RETURN QUERY SELECT 200, jsonb_build_object(
        'id', sc.id,
        'number', sc.case_number,
        'customer', (SELECT jsonb_build_object('id', cu.id, 'display_name', cu.display_name)
                       FROM customer cu
                      WHERE cu.id = sc.customer_id AND parley_api_customer_visible(p_actor, cu.id)),
        'created_at', sc.created_at,
        'updated_at', sc.updated_at,
        'conversations', v_convs,
        'references', parley_api_case_references(sc.id, v_inst));
END
$$;
