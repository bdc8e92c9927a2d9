-- api_macros: macros, named lists of actions applied to a conversation at
-- once, global or a team's (who may do what: see api_canned.sql).
--
-- Actions, checked when a macro is saved (and their targets again when it
-- is applied):
--   {"type": "reply", "canned_reply_id"}  the canned reply, filled for the
--        conversation in its language (a global macro uses global ones)
--   {"type": "note", "text"}
--   {"type": "set_status", "status"} / "set_priority" {"priority"} /
--        "set_category" {"category" or null}
--   {"type": "add_tags" | "remove_tags", "tags": [...]}
--   {"type": "assign_team", "team_id"} / "assign_agent" {"agent_id"}
-- Applying runs them in order in one transaction: when one fails, nothing
-- of any of them stays, and the answer names the action's index.
--
-- The field and assignment actions are the shared operations, with their
-- rules, timeline events, audit entries and live events:
-- set_status, set_priority, set_category, add_tags, remove_tags →
-- parley_conversation_set (api_conversation_set.sql); assign_agent →
-- parley_conversation_assign, assign_team → parley_conversation_transfer
-- (assignment_api.sql). Who may ask for the assignment actions is decided
-- when the macro is written (a team's macros: its supervisors), so applying
-- one needs no more than seeing the conversation.

-- ------------------------------------------------------------ checking

-- Refuse action p_index of a macro: 422 "invalid_action".
CREATE FUNCTION parley_macro_invalid(p_index integer, p_detail text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM parley_api_error(422, 'invalid_action', format('actions[%s]: %s', p_index, p_detail));
END
$$;

-- A list of tags: 1..20 tags, each as parley_api_tags takes them (the
-- rule PATCH and the apply use), trimmed, each once.
CREATE FUNCTION parley_macro_tags_of(p_index integer, p_tags jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_err text;
BEGIN
    IF p_tags IS NULL OR jsonb_typeof(p_tags) <> 'array' OR jsonb_array_length(p_tags) NOT BETWEEN 1 AND 20 THEN
        PERFORM parley_macro_invalid(p_index, 'tags: a list of 1 to 20 tags');
    END IF;
    BEGIN
        RETURN to_jsonb(parley_api_tags(p_tags, 'tags'));
    EXCEPTION WHEN SQLSTATE 'PA422' THEN
        GET STACKED DIAGNOSTICS v_err = MESSAGE_TEXT;
        PERFORM parley_macro_invalid(p_index, substr(v_err, position(': ' IN v_err) + 2));
    END;
END
$$;

-- The actions of a macro of team p_team (NULL: global), checked and in
-- their stored shape; 400 for an unknown field, 422 for anything else.
CREATE FUNCTION parley_api_macro_actions(p_actions jsonb, p_team bigint) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    a       jsonb;
    i       integer := 0;
    v_type  text;
    v_keys  text[];
    v_key   text;
    v_id    bigint;
    v_text  text;
    v_out   jsonb := '[]';
    allowed constant jsonb := '{"reply": ["canned_reply_id"], "note": ["text"], "set_status": ["status"],
        "set_priority": ["priority"], "set_category": ["category"], "add_tags": ["tags"],
        "remove_tags": ["tags"], "assign_team": ["team_id"], "assign_agent": ["agent_id"]}';
BEGIN
    IF p_actions IS NULL OR jsonb_typeof(p_actions) <> 'array'
       OR jsonb_array_length(p_actions) NOT BETWEEN 1 AND 20 THEN
        PERFORM parley_api_error(422, 'invalid_field', 'actions: a list of 1 to 20 actions');
    END IF;
    FOR a IN SELECT e FROM jsonb_array_elements(p_actions) AS e LOOP
        IF jsonb_typeof(a) <> 'object' OR jsonb_typeof(a -> 'type') IS DISTINCT FROM 'string'
           OR NOT allowed ? (a ->> 'type') THEN
            PERFORM parley_macro_invalid(i, 'an object whose type is one of '
                || (SELECT string_agg(k, ', ' ORDER BY k) FROM jsonb_object_keys(allowed) AS k));
        END IF;
        v_type := a ->> 'type';
        v_keys := ARRAY(SELECT jsonb_array_elements_text(allowed -> v_type));
        SELECT k INTO v_key FROM jsonb_object_keys(a) AS k
         WHERE k <> 'type' AND NOT (k = ANY (v_keys)) ORDER BY k LIMIT 1;
        IF v_key IS NOT NULL THEN
            PERFORM parley_api_error(400, 'unknown_field',
                                     format('actions[%s]: unknown field "%s"', i, left(v_key, 64)));
        END IF;
        IF v_type IN ('reply', 'assign_team', 'assign_agent') THEN
            IF jsonb_typeof(a -> v_keys[1]) IS DISTINCT FROM 'number' OR (a ->> v_keys[1]) !~ '^[1-9][0-9]{0,17}$' THEN
                PERFORM parley_macro_invalid(i, v_keys[1] || ': an id');
            END IF;
            v_id := (a ->> v_keys[1])::bigint;
        END IF;
        IF v_type = 'reply' AND NOT EXISTS (SELECT 1 FROM canned_reply r WHERE r.id = v_id
                                            AND (r.team_id IS NULL OR r.team_id = p_team)) THEN
            PERFORM parley_macro_invalid(i, format('canned_reply_id: no canned reply %s this macro can use '
                                                   '(a global macro uses global ones)', v_id));
        ELSIF v_type = 'assign_team' AND NOT EXISTS (SELECT 1 FROM team WHERE id = v_id) THEN
            PERFORM parley_macro_invalid(i, format('team_id: no team %s', v_id));
        ELSIF v_type = 'assign_agent' AND NOT EXISTS (SELECT 1 FROM agent WHERE id = v_id AND disabled_at IS NULL) THEN
            PERFORM parley_macro_invalid(i, format('agent_id: no agent %s', v_id));
        ELSIF v_type = 'note' THEN
            v_text := CASE WHEN jsonb_typeof(a -> 'text') = 'string' THEN a ->> 'text' END;
            IF v_text IS NULL OR btrim(v_text) = '' OR length(v_text) > 10000 THEN
                PERFORM parley_macro_invalid(i, 'text: 1 to 10000 characters');
            END IF;
        ELSIF v_type = 'set_status' AND NOT coalesce(a ->> 'status' IN ('open', 'pending', 'resolved', 'closed'), false) THEN
            PERFORM parley_macro_invalid(i, 'status: one of open, pending, resolved, closed');
        ELSIF v_type = 'set_priority' AND NOT coalesce(a ->> 'priority' IN ('low', 'normal', 'high', 'urgent'), false) THEN
            PERFORM parley_macro_invalid(i, 'priority: one of low, normal, high, urgent');
        ELSIF v_type = 'set_category' AND jsonb_typeof(a -> 'category') IS DISTINCT FROM 'null'
              AND (jsonb_typeof(a -> 'category') IS DISTINCT FROM 'string' OR btrim(a ->> 'category') = ''
                   OR length(a ->> 'category') > 100 OR (a ->> 'category') ~ '[[:cntrl:]]') THEN
            PERFORM parley_macro_invalid(i, 'category: 1 to 100 characters, or null to clear it');
        END IF;
        IF v_type IN ('add_tags', 'remove_tags') THEN
            a := jsonb_build_object('type', v_type, 'tags', parley_macro_tags_of(i, a -> 'tags'));
        ELSIF v_type = 'set_category' THEN
            a := jsonb_build_object('type', v_type, 'category', a -> 'category');
        END IF;
        v_out := v_out || jsonb_build_array(a);
        i := i + 1;
    END LOOP;
    RETURN v_out;
END
$$;

-- ------------------------------------------------------------ objects

CREATE FUNCTION parley_api_macro_json(m macro) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('id', m.id, 'team_id', m.team_id, 'name', m.name, 'actions', m.actions,
                              'created_by', m.created_by, 'created_at', m.created_at,
                              'updated_at', m.updated_at)
$$;

-- The macro of the path, if the caller reads it; otherwise 404.
CREATE FUNCTION parley_api_macro(p_actor jsonb, p_id text) RETURNS macro
LANGUAGE plpgsql STABLE AS $$
DECLARE
    m macro;
BEGIN
    SELECT * INTO m FROM macro WHERE id = parley_api_id(p_id, 'macro');
    IF NOT FOUND OR NOT parley_api_owner_readable(p_actor, m.team_id) THEN
        PERFORM parley_api_error(404, 'not_found', 'no macro ' || left(p_id, 40));
    END IF;
    RETURN m;
END
$$;

-- ------------------------------------------------------------ CRUD

-- GET /api/v1/macros?team_id=&limit=&cursor=
CREATE FUNCTION parley_api_macro_list(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    q       jsonb := p_req -> 'query';
    v_team  bigint;
    v_limit integer;
    v_after bigint;
    v_items jsonb;
    v_last  bigint;
    v_more  boolean;
BEGIN
    PERFORM parley_api_only(q, '{team_id,limit,cursor}', 'query');
    v_team := parley_api_owner_filter(q);
    v_limit := parley_api_limit(q);
    v_after := (parley_api_cursor_decode('macro', q ->> 'cursor') ->> 'id')::bigint;
    SELECT jsonb_agg(parley_api_macro_json(s.m) ORDER BY (s.m).id), max((s.m).id), count(*) > v_limit
      INTO v_items, v_last, v_more
      FROM (SELECT mc FROM macro mc
             WHERE parley_api_owner_readable(p_actor, mc.team_id)
               AND (v_team IS NULL OR coalesce(mc.team_id, -1) = v_team)
               AND mc.id > coalesce(v_after, 0)
             ORDER BY mc.id
             LIMIT v_limit + 1) AS s (m);
    IF v_more THEN
        v_items := v_items - v_limit;
        v_last := (v_items -> (v_limit - 1) ->> 'id')::bigint;
    END IF;
    RETURN QUERY SELECT 200, parley_api_page(v_items,
        CASE WHEN v_more THEN parley_api_cursor_encode('macro', jsonb_build_object('id', v_last)) END);
END
$$;

-- POST /api/v1/macros {"name", "actions", "team_id"?}
CREATE FUNCTION parley_api_macro_create(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    b      jsonb := p_req -> 'body';
    v_team bigint;
    m      macro;
BEGIN
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    PERFORM parley_api_only(b, '{name,actions,team_id}', 'body');
    v_team := parley_api_owner_team(p_actor, b);
    PERFORM parley_api_owner_writable(p_actor, v_team, 'macros');
    BEGIN
        INSERT INTO macro (team_id, name, actions, created_by)
        VALUES (v_team, parley_api_name(b, true), parley_api_macro_actions(b -> 'actions', v_team),
                parley_api_actor_label(p_actor))
        RETURNING * INTO m;
    EXCEPTION WHEN unique_violation THEN
        PERFORM parley_api_error(409, 'duplicate', 'a macro with this name exists for this team already');
    END;
    PERFORM parley_api_audit(p_actor, 'macro.create', 'macro', m.id, NULL, parley_api_macro_json(m));
    RETURN QUERY SELECT 201, parley_api_macro_json(m);
END
$$;

-- GET /api/v1/macros/{id}
CREATE FUNCTION parley_api_macro_get(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    RETURN QUERY SELECT 200, parley_api_macro_json(parley_api_macro(p_actor, p_req #>> '{path,id}'));
END
$$;

-- PATCH /api/v1/macros/{id} {"name"?, "actions"?}
CREATE FUNCTION parley_api_macro_update(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    b     jsonb := p_req -> 'body';
    m     macro;
    v_new macro;
BEGIN
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    PERFORM parley_api_only(b, '{name,actions}', 'body');
    m := parley_api_macro(p_actor, p_req #>> '{path,id}');
    PERFORM parley_api_owner_writable(p_actor, m.team_id, 'macros');
    BEGIN
        UPDATE macro
           SET name = coalesce(parley_api_name(b, false), name),
               actions = CASE WHEN b ? 'actions' THEN parley_api_macro_actions(b -> 'actions', m.team_id)
                              ELSE actions END,
               updated_at = now()
         WHERE id = m.id
        RETURNING * INTO v_new;
    EXCEPTION WHEN unique_violation THEN
        PERFORM parley_api_error(409, 'duplicate', 'a macro with this name exists for this team already');
    END;
    PERFORM parley_api_audit(p_actor, 'macro.update', 'macro', m.id, parley_api_macro_json(m),
                             parley_api_macro_json(v_new));
    RETURN QUERY SELECT 200, parley_api_macro_json(v_new);
END
$$;

-- DELETE /api/v1/macros/{id}
CREATE FUNCTION parley_api_macro_delete(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    m macro;
BEGIN
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    m := parley_api_macro(p_actor, p_req #>> '{path,id}');
    PERFORM parley_api_owner_writable(p_actor, m.team_id, 'macros');
    DELETE FROM macro WHERE id = m.id;
    PERFORM parley_api_audit(p_actor, 'macro.delete', 'macro', m.id, parley_api_macro_json(m), NULL);
    RETURN QUERY SELECT 204, NULL::jsonb;
END
$$;

-- ------------------------------------------------------------ applying

-- The text of a reply action for conversation c: canned reply p_canned
-- (in the conversation's language when there is one), filled. A variable
-- without a value refuses the action: a macro never sends "Hi ,".
CREATE FUNCTION parley_macro_reply_text(p_actor jsonb, c conversation, p_canned bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    r canned_reply;
    f record;
BEGIN
    SELECT * INTO r FROM canned_reply WHERE id = p_canned;
    IF NOT FOUND THEN
        PERFORM parley_api_error(422, 'invalid_action', format('canned reply %s no longer exists', p_canned));
    END IF;
    r := parley_canned_for(p_actor, r, c);
    SELECT * INTO f FROM parley_canned_fill(r.body, parley_canned_values(p_actor, c));
    IF cardinality(f.missing) > 0 THEN
        PERFORM parley_api_error(422, 'missing_variable',
            format('canned reply %s needs %s, which this conversation has no value for: render it, '
                   'edit the text and reply yourself', r.id, array_to_string(f.missing, ', ')));
    END IF;
    RETURN f.filled;
END
$$;

-- How a failed action is answered (the transaction's changes are gone by
-- then): the error of the action, its detail prefixed with the action, and
-- action_index. NULL for a failure that is not the request's (a bug: 500).
CREATE FUNCTION parley_macro_failure(p_index integer, p_type text, p_state text, p_rule text,
                                     p_message text)
RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN v.status IS NULL THEN NULL ELSE jsonb_build_object(
               'status', v.status, 'error', v.code,
               'detail', format('actions[%s] (%s): %s', p_index, p_type, v.detail),
               'action_index', p_index) END
      FROM (SELECT CASE WHEN p_state ~ '^PA[45][0-9][0-9]$' THEN substr(p_state, 3)::integer
                        WHEN p_state = '55000' THEN 409
                        WHEN p_state IN ('22023', '23514') THEN 422 END AS status,
                   CASE WHEN p_state LIKE 'PA%' THEN split_part(p_message, ': ', 1)
                        ELSE coalesce(nullif(p_rule, ''), 'action_refused') END AS code,
                   CASE WHEN p_state LIKE 'PA%' AND position(': ' IN p_message) > 0
                        THEN substr(p_message, position(': ' IN p_message) + 2)
                        ELSE p_message END AS detail) AS v
$$;

-- POST /api/v1/conversations/{id}/macros/{macro_id}/apply
--   {"last_seen_message_id", "force"?}
-- 200 {"conversation", "messages"}: every action applied, in order; the
-- messages the reply and note actions wrote. A failing action: its error
-- with action_index, and nothing changed. Called with "preview" first
-- (API_SENDS): the replies it would send.
CREATE FUNCTION parley_api_macro_apply(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    b           jsonb := p_req -> 'body';
    c           conversation;
    mc          macro;
    v_collision jsonb;
    a           jsonb;
    v_index     integer := -1;
    v_type      text;
    v_msg       bigint;
    m           message;
    v_msgs      jsonb := '[]';
    v_sends     jsonb := '[]';
    v_text      text;
    v_fail      jsonb;
    v_state     text;
    v_rule      text;
    v_err       text;
    v_agent     bigint := (p_actor ->> 'agent_id')::bigint;
    v_had       bigint;
    v_team      bigint;
    v_drain     boolean := false;
    v_kick      boolean := false;
BEGIN
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    PERFORM parley_api_only(b, '{last_seen_message_id,force}', 'body');
    c := parley_api_conversation_locked(p_actor, p_req);
    mc := parley_api_macro(p_actor, p_req #>> '{path,macro_id}');
    v_collision := parley_api_collision(p_actor, c.id, b);
    IF v_collision IS NOT NULL THEN
        RETURN QUERY SELECT 409, v_collision;
        RETURN;
    END IF;
    BEGIN
        FOR a IN SELECT e FROM jsonb_array_elements(mc.actions) AS e LOOP
            v_index := v_index + 1;
            v_type := a ->> 'type';
            IF p_req ? 'preview' THEN
                -- What the replies would send; the rest needs no channel.
                IF v_type = 'reply' THEN
                    v_text := parley_macro_reply_text(p_actor, c, (a ->> 'canned_reply_id')::bigint);
                    v_sends := v_sends || jsonb_build_object(
                        'instance', c.channel_instance,
                        'payload', parley_send_payload(c, v_text, parley_reply_check(c, NULL),
                                                       (parley_last_inbound(c.id)).external_id, NULL, 'message'));
                END IF;
                CONTINUE;
            END IF;
            v_msg := NULL;
            CASE v_type
            WHEN 'reply' THEN
                v_msg := parley_reply(c.id, parley_macro_reply_text(p_actor, c, (a ->> 'canned_reply_id')::bigint),
                                      NULL, parley_api_actor_label(p_actor), v_agent);
            WHEN 'note' THEN
                v_msg := parley_note(c.id, a ->> 'text', parley_api_actor_label(p_actor), v_agent);
            WHEN 'set_status', 'set_priority', 'set_category' THEN
                PERFORM parley_conversation_set(p_actor, c.id,
                                                jsonb_build_object(substr(v_type, 5), a -> substr(v_type, 5)));
            WHEN 'add_tags', 'remove_tags' THEN
                PERFORM parley_conversation_set(p_actor, c.id, jsonb_build_object(v_type, a -> 'tags'));
            WHEN 'assign_agent' THEN
                v_had := (SELECT assignee_id FROM conversation WHERE id = c.id);
                IF v_had IS DISTINCT FROM (a ->> 'agent_id')::bigint THEN
                    PERFORM parley_conversation_assign(p_actor, c.id, (a ->> 'agent_id')::bigint);
                    v_kick := v_kick OR v_had IS NOT NULL;
                END IF;
            WHEN 'assign_team' THEN
                -- A conversation in that team already stays as it is, as a
                -- field already set does.
                SELECT assignee_id, team_id INTO v_had, v_team FROM conversation WHERE id = c.id;
                IF v_team IS DISTINCT FROM (a ->> 'team_id')::bigint THEN
                    PERFORM parley_conversation_transfer(p_actor, c.id, (a ->> 'team_id')::bigint);
                    v_drain := true;
                    v_kick := v_kick OR v_had IS NOT NULL;
                END IF;
            END CASE;
            IF v_msg IS NOT NULL THEN
                SELECT * INTO m FROM message WHERE id = v_msg;
                PERFORM parley_live_event('message.created', c.channel_instance, c.id, NULL,
                                          parley_api_message_json(m));
                v_msgs := v_msgs || jsonb_build_array(parley_api_message_json(m));
            END IF;
        END LOOP;
    EXCEPTION WHEN OTHERS THEN
        -- Leaving this block undid every action of the macro.
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_rule = CONSTRAINT_NAME, v_err = MESSAGE_TEXT;
        v_fail := parley_macro_failure(v_index, v_type, v_state, v_rule, v_err);
        IF v_fail IS NULL THEN
            RAISE;
        END IF;
        RETURN QUERY SELECT (v_fail ->> 'status')::integer, v_fail - 'status';
        RETURN;
    END;
    IF p_req ? 'preview' THEN
        RETURN QUERY SELECT 200, jsonb_build_object('sends', v_sends);
        RETURN;
    END IF;
    PERFORM parley_api_audit(p_actor, 'macro.apply', 'conversation', c.id, NULL,
                             jsonb_build_object('macro_id', mc.id, 'name', mc.name,
                                                'actions', jsonb_array_length(mc.actions)));
    -- The queues, as the transfer and assign operations serve them: the
    -- team the conversation waits in now, then the sweep (last: it locks
    -- the sweep job's row) when an agent lost it.
    SELECT * INTO c FROM conversation WHERE id = c.id;
    IF v_drain AND c.assignee_id IS NULL AND c.queued_at IS NOT NULL THEN
        PERFORM parley_assignment_drain(c.team_id, 10, 'system');
        SELECT * INTO c FROM conversation WHERE id = c.id;
    END IF;
    IF v_kick THEN
        PERFORM parley_assignment_kick();
    END IF;
    RETURN QUERY SELECT 200, jsonb_build_object('conversation', parley_api_conversation_json(c),
                                                'messages', v_msgs);
END
$$;
