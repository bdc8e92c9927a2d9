-- api_conversations: the agents' conversations through /api/v1: the list
-- (filters, the queue order, keyset pages), one conversation with its
-- customer and case, and marking a conversation read. Changes are in
-- api_conversation_set.sql, the timeline and cases in api_timeline.sql.
--
-- Scope: every row comes from a channel instance in parley_api_instances
-- (the caller's teams' instances); anything else is 404, never 403.
--
-- Unread: a conversation is unread when its newest customer message is newer
-- (by id) than agent_read_id, which POST .../read moves forward.

-- ------------------------------------------------------------ helpers

-- An id given as a filter: a positive whole number, or 400 (a filter value
-- that cannot be an id is a malformed request, not a missing object).
CREATE FUNCTION parley_api_query_id(p_value text, p_field text) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_value IS NULL THEN
        RETURN NULL;
    END IF;
    IF p_value !~ '^[1-9][0-9]{0,17}$' THEN
        PERFORM parley_api_error(400, 'invalid_parameter', p_field || ': a positive whole number');
    END IF;
    RETURN p_value::bigint;
END
$$;

-- A text filter: 1..p_max characters without control characters, or 400.
CREATE FUNCTION parley_api_query_text(p_value text, p_field text, p_max integer) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_value IS NULL THEN
        RETURN NULL;
    END IF;
    IF length(p_value) NOT BETWEEN 1 AND p_max OR p_value ~ '[[:cntrl:]]' THEN
        PERFORM parley_api_error(400, 'invalid_parameter',
                                 p_field || ': 1 to ' || p_max || ' characters, no control characters');
    END IF;
    RETURN p_value;
END
$$;

-- The `status` filter: one or several of open, pending, resolved, closed,
-- comma-separated; default open and pending (the work still to do).
CREATE FUNCTION parley_api_statuses(p_value text) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v text[];
BEGIN
    IF p_value IS NULL THEN
        RETURN ARRAY['open', 'pending'];
    END IF;
    v := string_to_array(p_value, ',');
    IF length(p_value) > 100 OR cardinality(v) = 0
       OR EXISTS (SELECT 1 FROM unnest(v) AS s WHERE s NOT IN ('open', 'pending', 'resolved', 'closed')) THEN
        PERFORM parley_api_error(400, 'invalid_parameter',
                                 'status: open, pending, resolved or closed, comma-separated');
    END IF;
    RETURN (SELECT array_agg(DISTINCT s ORDER BY s) FROM unnest(v) AS s);
END
$$;

-- A language tag as conversations store it: lowercase BCP 47 ("en", "pt-br").
CREATE FUNCTION parley_language_ok(p_value text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_value ~ '^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,3}$'
$$;

-- Queue severity: urgent first. The same CASE as the index
-- conversation_list_due (011_conversations_api.sql).
CREATE FUNCTION parley_priority_rank(p_priority text) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_priority WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'normal' THEN 2 ELSE 3 END
$$;

-- Every channel instance that has conversations, by a loose scan of
-- conversation_list_age (one index probe per instance, not a table scan):
-- the branches of the list for a caller who sees everything.
CREATE FUNCTION parley_conversation_instances() RETURNS text[]
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE i AS (
        (SELECT c.channel_instance AS inst FROM conversation c ORDER BY c.channel_instance LIMIT 1)
        UNION ALL
        SELECT (SELECT c.channel_instance FROM conversation c WHERE c.channel_instance > i.inst
                 ORDER BY c.channel_instance LIMIT 1)
          FROM i WHERE i.inst IS NOT NULL)
    SELECT coalesce(array_agg(inst), '{}') FROM i WHERE inst IS NOT NULL
$$;

-- The id of the conversation's newest customer message (NULL: none).
CREATE FUNCTION parley_conversation_last_inbound_id(p_conversation bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT max(m.id) FROM message m WHERE m.conversation_id = p_conversation AND m.direction = 'inbound'
$$;

CREATE FUNCTION parley_conversation_unread(c conversation) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce(parley_conversation_last_inbound_id(c.id), 0) > coalesce(c.agent_read_id, 0)
$$;

-- A list's sort key of a conversation, as its cursor holds it:
-- due [due time or "infinity", severity, id]; oldest/newest [created_at, 0, id].
CREATE FUNCTION parley_api_conversation_key(c conversation, p_sort text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_sort = 'due'
                THEN jsonb_build_array(coalesce(c.next_response_due_at, 'infinity'::timestamptz),
                                       parley_priority_rank(c.priority), c.id)
                ELSE jsonb_build_array(c.created_at, 0, c.id) END
$$;

-- A cursor key [time, small integer, id] back in its types; 400 for
-- anything a client may have made up.
CREATE FUNCTION parley_api_cursor_key3(p_key jsonb, OUT k1 timestamptz, OUT k2 integer, OUT k3 bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_ok boolean := false;
BEGIN
    IF jsonb_typeof(p_key) = 'array' AND jsonb_array_length(p_key) = 3
       AND jsonb_typeof(p_key -> 0) = 'string' AND jsonb_typeof(p_key -> 1) = 'number'
       AND jsonb_typeof(p_key -> 2) = 'number' THEN
        BEGIN
            k1 := (p_key ->> 0)::timestamptz;
            k2 := (p_key ->> 1)::integer;
            k3 := (p_key ->> 2)::bigint;
            v_ok := k2 BETWEEN 0 AND 3 AND k3 >= 0;
        EXCEPTION WHEN OTHERS THEN
            v_ok := false;
        END;
    END IF;
    IF NOT v_ok THEN
        PERFORM parley_api_error(400, 'invalid_cursor', 'cursor: not one this API gave out');
    END IF;
END
$$;

-- q as an ILIKE pattern that matches it literally anywhere.
CREATE FUNCTION parley_like_contains(p_text text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT '%' || replace(replace(replace(p_text, '\', '\\'), '%', '\%'), '_', '\_') || '%'
$$;

-- ------------------------------------------------------------ the list

-- GET /api/v1/conversations. Filters (all optional, each checked, 400
-- invalid_parameter for a value that is not allowed): status (comma list;
-- default open,pending), channel_instance, visibility, team (its instances;
-- conversations in another team's queue left out), assignee (agent id, me,
-- none), category, priority, language, has_unread, customer, and q (text in
-- the conversation's messages). sort: due (default), oldest, newest.
--
-- How it stays fast (see 011_conversations_api.sql): one branch per (channel
-- instance, status), each an index scan in the list's order from the cursor
-- on, LIMITed; the branches' rows are merged. q is checked only on the
-- conversations that pass every other filter, at most a window of them per
-- page: a page may come back short with a next_cursor, and the next page
-- goes on from the last conversation looked at.
--
-- The statement is EXECUTEd so that it is planned for the filters given
-- (an unused filter is absent, not "$n IS NULL OR ..."). Its text is put
-- together only from the constant fragments below, chosen by which filters
-- are present and by the whitelisted sort; every value the client sent is
-- a parameter (USING), never part of the text.
CREATE FUNCTION parley_api_conversations_list(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    q           jsonb := coalesce(p_req -> 'query', '{}');
    q_window    constant integer := 250;
    v_limit     integer;
    v_sort      text;
    v_statuses  text[];
    v_scope     text[];
    v_instances text[];
    v_inst      text;
    v_vis       text;
    v_team      bigint;
    v_assignee  text;
    v_agent     bigint;
    v_category  text;
    v_priority  text;
    v_language  text;
    v_unread    text;
    v_q         text;
    v_pattern   text;
    v_customer  bigint;
    v_cur       jsonb;
    v_k1        timestamptz;
    v_k2        integer;
    v_k3        bigint;
    v_scan      integer;
    v_keys      text;
    v_order     text;
    v_where     text := '';
    v_sql       text;
    v_cands     conversation[];
    v_found     conversation[] := '{}';
    v_c         conversation;
    v_next      jsonb;
BEGIN
    PERFORM parley_api_only(q, ARRAY['status', 'channel_instance', 'visibility', 'team', 'assignee',
                                     'category', 'priority', 'language', 'has_unread', 'q', 'customer',
                                     'sort', 'limit', 'cursor'], 'query');
    v_limit := parley_api_limit(q);
    v_sort := coalesce(parley_api_choice(q ->> 'sort', ARRAY['due', 'oldest', 'newest'], 'sort', 400), 'due');
    v_statuses := parley_api_statuses(q ->> 'status');
    v_inst := parley_api_query_text(q ->> 'channel_instance', 'channel_instance', 100);
    v_vis := parley_api_choice(q ->> 'visibility', ARRAY['public', 'private'], 'visibility', 400);
    v_team := parley_api_query_id(q ->> 'team', 'team');
    v_assignee := q ->> 'assignee';
    IF v_assignee = 'me' THEN
        v_agent := (p_actor ->> 'agent_id')::bigint;
        IF v_agent IS NULL THEN
            PERFORM parley_api_error(400, 'invalid_parameter', 'assignee: "me" needs a caller who is an agent');
        END IF;
    ELSIF v_assignee IS NOT NULL AND v_assignee <> 'none' THEN
        IF v_assignee !~ '^[1-9][0-9]{0,17}$' THEN
            PERFORM parley_api_error(400, 'invalid_parameter', 'assignee: an agent id, me or none');
        END IF;
        v_agent := v_assignee::bigint;
    END IF;
    v_category := parley_api_query_text(q ->> 'category', 'category', 100);
    v_priority := parley_api_choice(q ->> 'priority', ARRAY['low', 'normal', 'high', 'urgent'], 'priority', 400);
    v_language := q ->> 'language';
    IF v_language IS NOT NULL AND NOT parley_language_ok(v_language) THEN
        PERFORM parley_api_error(400, 'invalid_parameter', 'language: a language tag such as en or pt-br');
    END IF;
    v_unread := parley_api_choice(q ->> 'has_unread', ARRAY['true', 'false'], 'has_unread', 400);
    v_q := q ->> 'q';
    IF v_q IS NOT NULL AND (length(btrim(v_q)) < 2 OR length(v_q) > 200) THEN
        PERFORM parley_api_error(400, 'invalid_parameter', 'q: 2 to 200 characters');
    END IF;
    v_customer := parley_api_query_id(q ->> 'customer', 'customer');
    v_cur := parley_api_cursor_decode('conversations:' || v_sort, q ->> 'cursor');
    IF v_cur IS NOT NULL THEN
        SELECT * INTO v_k1, v_k2, v_k3 FROM parley_api_cursor_key3(v_cur);
    END IF;

    -- The instances to walk: the caller's scope, narrowed by channel_instance
    -- and team.
    v_scope := parley_api_instances(p_actor);
    v_instances := v_scope;
    IF v_inst IS NOT NULL THEN
        v_instances := CASE WHEN v_scope IS NULL OR v_inst = ANY (v_scope) THEN ARRAY[v_inst] ELSE '{}' END;
    END IF;
    IF v_team IS NOT NULL THEN
        SELECT coalesce(array_agg(tc.channel_instance ORDER BY tc.channel_instance), '{}') INTO v_instances
          FROM team_channel tc
         WHERE tc.team_id = v_team AND (v_instances IS NULL OR tc.channel_instance = ANY (v_instances));
    END IF;
    IF v_instances IS NULL THEN
        v_instances := parley_conversation_instances();
    END IF;
    IF cardinality(v_instances) = 0 THEN
        RETURN QUERY SELECT 200, parley_api_page('[]', NULL);
        RETURN;
    END IF;

    -- The statement, from constant fragments only.
    IF v_sort = 'due' THEN
        v_keys := 'coalesce(c.next_response_due_at, ''infinity''::timestamptz) AS k1, '
               || '(CASE c.priority WHEN ''urgent'' THEN 0 WHEN ''high'' THEN 1 WHEN ''normal'' THEN 2 ELSE 3 END) AS k2, '
               || 'c.id AS k3';
        v_order := 'k1, k2, k3';
        IF v_cur IS NOT NULL THEN
            v_where := v_where || ' AND (coalesce(c.next_response_due_at, ''infinity''::timestamptz), '
                    || '(CASE c.priority WHEN ''urgent'' THEN 0 WHEN ''high'' THEN 1 WHEN ''normal'' THEN 2 ELSE 3 END), '
                    || 'c.id) > ($10, $11, $12)';
        END IF;
    ELSE
        v_keys := 'c.created_at AS k1, 0 AS k2, c.id AS k3';
        IF v_sort = 'oldest' THEN
            v_order := 'k1, k3';
            IF v_cur IS NOT NULL THEN
                v_where := v_where || ' AND (c.created_at, c.id) > ($10, $12)';
            END IF;
        ELSE
            v_order := 'k1 DESC, k3 DESC';
            IF v_cur IS NOT NULL THEN
                v_where := v_where || ' AND (c.created_at, c.id) < ($10, $12)';
            END IF;
        END IF;
    END IF;
    IF v_vis IS NOT NULL THEN
        v_where := v_where || ' AND c.visibility = $3';
    END IF;
    IF v_team IS NOT NULL THEN
        v_where := v_where || ' AND (c.team_id = $4 OR c.team_id IS NULL)';
    END IF;
    IF v_assignee = 'none' THEN
        v_where := v_where || ' AND c.assignee_id IS NULL';
    ELSIF v_assignee IS NOT NULL THEN
        v_where := v_where || ' AND c.assignee_id = $5';
    END IF;
    IF v_category IS NOT NULL THEN
        v_where := v_where || ' AND c.category = $6';
    END IF;
    IF v_priority IS NOT NULL THEN
        v_where := v_where || ' AND c.priority = $7';
    END IF;
    IF v_language IS NOT NULL THEN
        v_where := v_where || ' AND c.language = lower($8)';
    END IF;
    IF v_customer IS NOT NULL THEN
        v_where := v_where || ' AND c.customer_id = $9';
    END IF;
    IF v_unread IS NOT NULL THEN
        v_where := v_where || ' AND coalesce((SELECT max(m.id) FROM message m WHERE m.conversation_id = c.id'
                || ' AND m.direction = ''inbound''), 0) '
                || CASE WHEN v_unread = 'true' THEN '>' ELSE '<=' END || ' coalesce(c.agent_read_id, 0)';
    END IF;
    IF v_agent IS NOT NULL OR v_customer IS NOT NULL THEN
        -- An agent's or a customer's conversations are few and have indexes
        -- of their own (conversation_assignee, conversation_customer): one
        -- statement the planner can take from there.
        v_sql := 'SELECT array_agg(x.r ORDER BY ' || v_order || ') FROM ('
              || 'SELECT c AS r, ' || v_keys || ' FROM conversation c'
              || ' WHERE c.channel_instance = ANY ($1) AND c.status = ANY ($2)' || v_where
              || ' ORDER BY ' || v_order || ' LIMIT $13) AS x';
    ELSE
        v_sql := 'SELECT array_agg(x.r ORDER BY ' || v_order || ') FROM ('
              || 'SELECT b.r, b.k1, b.k2, b.k3 FROM unnest($1::text[]) AS i(inst) CROSS JOIN unnest($2::text[]) AS s(st)'
              || ' CROSS JOIN LATERAL (SELECT c AS r, ' || v_keys || ' FROM conversation c'
              || ' WHERE c.channel_instance = i.inst AND c.status = s.st' || v_where
              || ' ORDER BY ' || v_order || ' LIMIT $13) AS b'
              || ' ORDER BY ' || v_order || ' LIMIT $13) AS x';
    END IF;

    v_scan := CASE WHEN v_q IS NULL THEN v_limit + 1 ELSE greatest(q_window, v_limit + 1) END;
    EXECUTE v_sql INTO v_cands
      USING v_instances, v_statuses, v_vis, v_team, v_agent, v_category, v_priority, v_language,
            v_customer, v_k1, v_k2, v_k3, v_scan;
    v_cands := coalesce(v_cands, '{}');

    IF v_q IS NULL THEN
        v_found := v_cands;
    ELSE
        v_pattern := parley_like_contains(v_q);
        FOREACH v_c IN ARRAY v_cands LOOP
            IF EXISTS (SELECT 1 FROM message m
                        WHERE m.conversation_id = v_c.id
                          AND (m.text ILIKE v_pattern OR m.edited_text ILIKE v_pattern)) THEN
                v_found := v_found || v_c;
                EXIT WHEN cardinality(v_found) > v_limit;
            END IF;
        END LOOP;
    END IF;

    IF cardinality(v_found) > v_limit THEN
        v_next := parley_api_conversation_key(v_found[v_limit], v_sort);
        v_found := v_found[1:v_limit];
    ELSIF cardinality(v_cands) = v_scan THEN
        -- q's window is used up: go on after the last conversation looked at.
        v_next := parley_api_conversation_key(v_cands[v_scan], v_sort);
    END IF;
    RETURN QUERY SELECT 200, parley_api_page(
        (SELECT jsonb_agg(parley_api_conversation_json(v_found[n]) ORDER BY n)
           FROM generate_subscripts(v_found, 1) AS n),
        CASE WHEN v_next IS NOT NULL THEN parley_api_cursor_encode('conversations:' || v_sort, v_next) END);
END
$$;

-- ------------------------------------------------------------ one conversation

-- The conversations of a case the caller sees (p_instances NULL: all), by id.
CREATE FUNCTION parley_api_case_conversations(p_case bigint, p_instances text[], p_max integer)
RETURNS SETOF conversation
LANGUAGE sql STABLE AS $$
    SELECT c.* FROM conversation c
     WHERE c.case_id = p_case AND (p_instances IS NULL OR c.channel_instance = ANY (p_instances))
     ORDER BY c.id LIMIT p_max
$$;

-- A case's references (case and order numbers, emails, phones) the caller
-- may see: the customer's own contacts, and those found in messages of
-- instances the caller sees (another team's message stays theirs).
CREATE FUNCTION parley_api_case_references(p_case bigint, p_instances text[]) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('kind', r.kind, 'value', r.value, 'message_id', r.message_id,
                                                 'created_at', r.created_at) ORDER BY r.id), '[]')
      FROM (SELECT r.* FROM case_reference r
              LEFT JOIN message m ON m.id = r.message_id
             WHERE r.case_id = p_case
               AND (r.message_id IS NULL OR p_instances IS NULL OR m.channel_instance = ANY (p_instances))
             ORDER BY r.id LIMIT 200) AS r
$$;

-- The customer as a conversation shows them: identities and contacts from
-- the instances the caller sees (contacts without a source instance too).
CREATE FUNCTION parley_api_customer_summary(p_customer bigint, p_instances text[]) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', cu.id,
        'display_name', cu.display_name,
        'tags', to_jsonb(cu.tags),
        'created_at', cu.created_at,
        'identities', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                 'id', i.id, 'channel_kind', i.channel_kind, 'channel_instance', i.channel_instance,
                                 'external_id', i.external_id, 'handle', i.handle, 'display_name', i.display_name)
                                 ORDER BY i.id), '[]')
                         FROM identity i
                        WHERE i.customer_id = cu.id
                          AND (p_instances IS NULL OR i.channel_instance = ANY (p_instances))),
        'contacts', (SELECT coalesce(jsonb_agg(jsonb_build_object('kind', k.kind, 'value', k.value,
                                                                  'verified', k.verified)
                                               ORDER BY k.kind, k.id), '[]')
                       FROM customer_contact k
                      WHERE k.customer_id = cu.id
                        AND (p_instances IS NULL OR k.source_instance IS NULL
                             OR k.source_instance = ANY (p_instances))))
      FROM customer cu WHERE cu.id = p_customer
$$;

-- GET /api/v1/conversations/{id}: the conversation, whether it has unread
-- customer messages, its customer, its case and the case's other
-- conversations the caller sees.
CREATE FUNCTION parley_api_conversation_get(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v      conversation;
    v_inst text[];
BEGIN
    v := parley_api_conversation(p_actor, parley_api_id(p_req -> 'path' ->> 'id', 'conversation'));
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    v_inst := parley_api_instances(p_actor);
    RETURN QUERY SELECT 200, jsonb_build_object(
        'conversation', parley_api_conversation_json(v),
        'unread', parley_conversation_unread(v),
        'agent_read_id', v.agent_read_id,
        'customer', parley_api_customer_summary(v.customer_id, v_inst),
        'case', (SELECT jsonb_build_object('id', sc.id, 'number', sc.case_number, 'created_at', sc.created_at,
                                           'references', parley_api_case_references(sc.id, v_inst))
                   FROM support_case sc WHERE sc.id = v.case_id),
        'linked_conversations', (SELECT coalesce(jsonb_agg(parley_api_conversation_json(l) ORDER BY l.id), '[]')
                                   FROM parley_api_case_conversations(v.case_id, v_inst, 51) AS l
                                  WHERE l.id <> v.id));
END
$$;

-- POST /api/v1/conversations/{id}/read {"message_id": N}: the agents have
-- seen the conversation up to message N (default: its newest message).
-- agent_read_id only moves forward; a read is not audited (it changes
-- nothing of the customer's record), but the other agents' views learn of
-- it (live event conversation.read).
CREATE FUNCTION parley_api_conversation_read(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v      conversation;
    v_body jsonb := p_req -> 'body';
    v_msg  bigint;
BEGIN
    v := parley_api_conversation(p_actor, parley_api_id(p_req -> 'path' ->> 'id', 'conversation'));
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    PERFORM parley_api_only(v_body, ARRAY['message_id'], 'body');
    IF v_body IS NOT NULL AND jsonb_typeof(v_body -> 'message_id') IS DISTINCT FROM 'null'
       AND v_body ? 'message_id' THEN
        IF jsonb_typeof(v_body -> 'message_id') <> 'number' OR (v_body ->> 'message_id') !~ '^[1-9][0-9]{0,17}$' THEN
            PERFORM parley_api_error(422, 'invalid_field', 'message_id: a message id');
        END IF;
        v_msg := (v_body ->> 'message_id')::bigint;
        IF NOT EXISTS (SELECT 1 FROM message m WHERE m.id = v_msg AND m.conversation_id = v.id) THEN
            PERFORM parley_api_error(422, 'invalid_field', 'message_id: not a message of this conversation');
        END IF;
    ELSE
        SELECT max(m.id) INTO v_msg FROM message m WHERE m.conversation_id = v.id;
    END IF;
    UPDATE conversation SET agent_read_id = v_msg
     WHERE id = v.id AND coalesce(agent_read_id, 0) < v_msg;
    IF FOUND THEN
        PERFORM parley_live_event('conversation.read', v.channel_instance, v.id, NULL,
                                  jsonb_build_object('conversation_id', v.id, 'agent_read_id', v_msg,
                                                     'agent_id', p_actor -> 'agent_id'));
    END IF;
    SELECT * INTO v FROM conversation WHERE id = v.id;
    RETURN QUERY SELECT 200, jsonb_build_object('conversation_id', v.id, 'agent_read_id', v.agent_read_id,
                                                'unread', parley_conversation_unread(v));
END
$$;
