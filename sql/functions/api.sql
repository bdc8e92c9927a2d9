-- api: what every /api/v1 call shares: who is asking (authentication of a
-- token or a browser session), what they may see (the one query scope), the
-- errors the API answers with, request checking and cursors.
--
-- The C side (core/api.c) runs every call as one transaction of two
-- statements: parley_api_authenticate, which puts the caller into the
-- transaction-local setting parley.actor, then the operation's function
-- fn(actor jsonb, req jsonb) RETURNS TABLE (status integer, body jsonb).
-- req is {"path": {...}, "query": {...}, "body": <JSON or null>}.
--
-- Errors: raise with parley_api_error(status, code, detail). The SQLSTATE is
-- 'PA' followed by the HTTP status ('PA404'), the message "code: detail";
-- the C side answers {"error": code, "detail": detail} with that status and
-- the transaction rolls back, so a refused call changes nothing.

CREATE FUNCTION parley_api_error(p_status integer, p_code text, p_detail text)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'PA' || p_status::text, MESSAGE = p_code || ': ' || p_detail;
END
$$;

-- Who is asking. kind 'token' or 'session'; secret_hash is the SHA-256 of
-- the secret the client sent (computed by the caller, so the secret never
-- reaches the database or its logs). For a session, a state-changing call
-- (is_write) must carry the session's CSRF token (csrf_hash its digest).
-- Sets parley.actor for the transaction and returns it:
--   {"kind", "agent_id" (or null), "role", "team_ids" (null: every team),
--    "token_id" | "session_id", "name"}
CREATE FUNCTION parley_api_authenticate(p_kind text, p_secret_hash text, p_csrf_hash text,
                                        p_is_write boolean)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_actor jsonb;
    v_tok   api_token;
    v_ses   agent_session;
    v_agent agent;
BEGIN
    IF p_kind = 'token' THEN
        SELECT * INTO v_tok FROM api_token
         WHERE secret_hash = decode(p_secret_hash, 'hex')
           AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now());
        IF NOT FOUND THEN
            PERFORM parley_api_error(401, 'unauthorized', 'unknown, revoked or expired token');
        END IF;
        IF v_tok.agent_id IS NOT NULL THEN
            SELECT * INTO v_agent FROM agent WHERE id = v_tok.agent_id;
            IF v_agent.disabled_at IS NOT NULL THEN
                PERFORM parley_api_error(401, 'unauthorized', 'the token''s agent is disabled');
            END IF;
        END IF;
        -- Once a minute is enough for "last used", and keeps reads from
        -- writing a row on every call.
        UPDATE api_token SET last_used_at = now()
         WHERE id = v_tok.id AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute');
        v_actor := jsonb_build_object(
            'kind', 'token', 'token_id', v_tok.id, 'agent_id', v_tok.agent_id,
            'role', v_tok.role, 'name', coalesce(v_agent.name, v_tok.name),
            'team_ids', CASE
                WHEN v_tok.team_ids IS NOT NULL THEN to_jsonb(v_tok.team_ids)
                WHEN v_tok.role = 'admin' THEN NULL
                WHEN v_tok.agent_id IS NOT NULL THEN
                    (SELECT coalesce(jsonb_agg(team_id ORDER BY team_id), '[]')
                       FROM agent_team WHERE agent_id = v_tok.agent_id)
                ELSE '[]'::jsonb END);
    ELSIF p_kind = 'session' THEN
        SELECT * INTO v_ses FROM agent_session
         WHERE secret_hash = decode(p_secret_hash, 'hex')
           AND ended_at IS NULL AND expires_at > now()
           AND (idle_timeout IS NULL OR last_seen_at + idle_timeout > now());
        IF NOT FOUND THEN
            PERFORM parley_api_error(401, 'unauthorized', 'no session, or it expired');
        END IF;
        SELECT * INTO v_agent FROM agent WHERE id = v_ses.agent_id;
        IF v_agent.disabled_at IS NOT NULL THEN
            PERFORM parley_api_error(401, 'unauthorized', 'the agent is disabled');
        END IF;
        IF p_is_write AND (p_csrf_hash IS NULL OR decode(p_csrf_hash, 'hex') <> v_ses.csrf_hash) THEN
            PERFORM parley_api_error(403, 'csrf_failed',
                                     'a state-changing request needs the session''s X-CSRF-Token header');
        END IF;
        UPDATE agent_session SET last_seen_at = now()
         WHERE id = v_ses.id AND last_seen_at < now() - interval '1 minute';
        v_actor := jsonb_build_object(
            'kind', 'session', 'session_id', v_ses.id, 'agent_id', v_agent.id,
            'role', v_agent.role, 'name', v_agent.name,
            'team_ids', CASE WHEN v_agent.role = 'admin' THEN NULL ELSE
                (SELECT coalesce(jsonb_agg(team_id ORDER BY team_id), '[]')
                   FROM agent_team WHERE agent_id = v_agent.id) END);
    ELSE
        PERFORM parley_api_error(401, 'unauthorized', 'no credentials');
    END IF;
    PERFORM set_config('parley.actor', v_actor::text, true);
    RETURN v_actor;
END
$$;

-- How the audit log names the caller: "agent:5", "token:3".
CREATE FUNCTION parley_api_actor_label(p_actor jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_actor ->> 'agent_id' IS NOT NULL THEN 'agent:' || (p_actor ->> 'agent_id')
                ELSE 'token:' || (p_actor ->> 'token_id') END
$$;

-- An audit entry for a change made through the API: before and after as
-- the API shows them.
CREATE FUNCTION parley_api_audit(p_actor jsonb, p_action text, p_entity text, p_entity_id bigint,
                                 p_before jsonb, p_after jsonb)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
BEGIN
    INSERT INTO audit_log (actor, action, entity, entity_id, details, agent_id, token_id)
    VALUES (parley_api_actor_label(p_actor), p_action, p_entity, p_entity_id,
            jsonb_strip_nulls(jsonb_build_object('before', p_before, 'after', p_after)),
            (p_actor ->> 'agent_id')::bigint, (p_actor ->> 'token_id')::bigint)
    RETURNING id INTO v_id;
    RETURN v_id;
END
$$;

-- The caller's role is at least p_role (agent < supervisor < admin), or 403.
CREATE FUNCTION parley_api_require_role(p_actor jsonb, p_role text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    rank constant jsonb := '{"agent": 1, "supervisor": 2, "admin": 3}';
BEGIN
    IF (rank ->> (p_actor ->> 'role'))::int < (rank ->> p_role)::int THEN
        PERFORM parley_api_error(403, 'forbidden', 'this needs the ' || p_role || ' role');
    END IF;
END
$$;

-- THE scope: the channel instances whose conversations the caller may see
-- and touch. NULL means every instance (an admin, or an admin token without
-- team limits). Every query over conversations, messages, customers and
-- cases goes through it.
CREATE FUNCTION parley_api_instances(p_actor jsonb) RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_actor -> 'team_ids' IS NULL OR jsonb_typeof(p_actor -> 'team_ids') = 'null'
                THEN NULL
                ELSE (SELECT coalesce(array_agg(DISTINCT tc.channel_instance), '{}')
                        FROM team_channel tc
                       WHERE tc.team_id IN (SELECT jsonb_array_elements_text(p_actor -> 'team_ids')::bigint))
           END
$$;

-- Whether the caller may see conversations of this instance.
CREATE FUNCTION parley_api_sees(p_actor jsonb, p_instances text[], p_instance text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_instances IS NULL OR p_instance = ANY (p_instances)
$$;

-- The conversation, when the caller may see it; otherwise 404 (never 403:
-- another team's conversation does not exist for the caller).
CREATE FUNCTION parley_api_conversation(p_actor jsonb, p_id bigint) RETURNS conversation
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v conversation;
BEGIN
    SELECT * INTO v FROM conversation WHERE id = p_id;
    IF NOT FOUND OR NOT parley_api_sees(p_actor, parley_api_instances(p_actor), v.channel_instance) THEN
        PERFORM parley_api_error(404, 'not_found', 'no conversation ' || coalesce(p_id::text, 'null'));
    END IF;
    RETURN v;
END
$$;

-- Whether the caller sees the customer: through any of its conversations
-- (or its merged-in customers' ones), or always for a caller without limits.
CREATE FUNCTION parley_api_customer_visible(p_actor jsonb, p_customer_id bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT parley_api_instances(p_actor) IS NULL
        OR EXISTS (SELECT 1 FROM conversation c
                    WHERE c.customer_id IN (SELECT p_customer_id
                                            UNION ALL
                                            SELECT m.id FROM customer m WHERE m.merged_into = p_customer_id)
                      AND c.channel_instance = ANY (parley_api_instances(p_actor)))
$$;

-- ------------------------------------------------------------ requests

-- Refuse fields the operation does not know (a typo must not be silently
-- ignored): p_obj's keys must all be in p_allowed. p_where names the part
-- ("body", "query") for the message.
CREATE FUNCTION parley_api_only(p_obj jsonb, p_allowed text[], p_where text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_key text;
BEGIN
    IF p_obj IS NULL OR jsonb_typeof(p_obj) = 'null' THEN
        RETURN;
    END IF;
    IF jsonb_typeof(p_obj) <> 'object' THEN
        PERFORM parley_api_error(400, 'invalid_request', p_where || ' must be a JSON object');
    END IF;
    SELECT k INTO v_key FROM jsonb_object_keys(p_obj) AS k WHERE NOT (k = ANY (p_allowed)) ORDER BY k LIMIT 1;
    IF v_key IS NOT NULL THEN
        PERFORM parley_api_error(400, 'unknown_field', p_where || ': unknown field "' || left(v_key, 64) || '"');
    END IF;
END
$$;

-- A path or query id: a positive whole number, or 404 (a malformed id names
-- nothing).
CREATE FUNCTION parley_api_id(p_value text, p_what text) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_value IS NULL OR p_value !~ '^[1-9][0-9]{0,17}$' THEN
        PERFORM parley_api_error(404, 'not_found', 'no ' || p_what || ' ' || coalesce(left(p_value, 40), 'null'));
    END IF;
    RETURN p_value::bigint;
END
$$;

-- A string field of a JSON body: absent/null → NULL; another type, or longer
-- than p_max characters → 422 naming the field.
CREATE FUNCTION parley_api_text(p_obj jsonb, p_field text, p_max integer, p_required boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v jsonb := p_obj -> p_field;
BEGIN
    IF v IS NULL OR jsonb_typeof(v) = 'null' THEN
        IF p_required THEN
            PERFORM parley_api_error(422, 'invalid_field', p_field || ': required');
        END IF;
        RETURN NULL;
    END IF;
    IF jsonb_typeof(v) <> 'string' THEN
        PERFORM parley_api_error(422, 'invalid_field', p_field || ': must be a string');
    END IF;
    IF length(v #>> '{}') > p_max THEN
        PERFORM parley_api_error(422, 'invalid_field', p_field || ': at most ' || p_max || ' characters');
    END IF;
    IF p_required AND length(btrim(v #>> '{}')) = 0 THEN
        PERFORM parley_api_error(422, 'invalid_field', p_field || ': must not be empty');
    END IF;
    RETURN v #>> '{}';
END
$$;

-- A positive whole number in field p_field of a JSON body, or 422.
CREATE FUNCTION parley_api_body_id(p_obj jsonb, p_field text) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v jsonb := p_obj -> p_field;
BEGIN
    IF v IS NULL OR jsonb_typeof(v) = 'null' THEN
        PERFORM parley_api_error(422, 'invalid_field', p_field || ': required');
    END IF;
    IF jsonb_typeof(v) <> 'number' OR (v #>> '{}') !~ '^[1-9][0-9]{0,17}$' THEN
        PERFORM parley_api_error(422, 'invalid_field', p_field || ': must be a positive whole number');
    END IF;
    RETURN (v #>> '{}')::bigint;
END
$$;

-- One of a fixed set of values (a filter, a sort, a status), or 400/422.
CREATE FUNCTION parley_api_choice(p_value text, p_allowed text[], p_field text, p_status integer DEFAULT 422)
RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_value IS NOT NULL AND NOT (p_value = ANY (p_allowed)) THEN
        PERFORM parley_api_error(p_status, CASE WHEN p_status = 400 THEN 'invalid_parameter' ELSE 'invalid_field' END,
                                 p_field || ': one of ' || array_to_string(p_allowed, ', '));
    END IF;
    RETURN p_value;
END
$$;

-- The page size: `limit` 1..200, default 50.
CREATE FUNCTION parley_api_limit(p_query jsonb) RETURNS integer
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v text := p_query ->> 'limit';
BEGIN
    IF v IS NULL THEN
        RETURN 50;
    END IF;
    IF v !~ '^[0-9]{1,3}$' OR v::int NOT BETWEEN 1 AND 200 THEN
        PERFORM parley_api_error(400, 'invalid_parameter', 'limit: a whole number from 1 to 200');
    END IF;
    RETURN v::int;
END
$$;

-- Cursors are opaque to clients: base64url of a small JSON object holding the
-- sort key of the last row served (and a kind, so a cursor of one list is
-- refused by another).
CREATE FUNCTION parley_api_cursor_encode(p_kind text, p_key jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT rtrim(translate(encode(convert_to(jsonb_build_object('k', p_kind, 'v', p_key)::text, 'UTF8'),
                                  'base64'), E'+/\n', '-_'), '=')
$$;

-- The key of a cursor from parley_api_cursor_encode(p_kind, ...); NULL when
-- p_cursor is NULL; 400 for anything else.
CREATE FUNCTION parley_api_cursor_decode(p_kind text, p_cursor text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_b64 text;
    v jsonb;
BEGIN
    IF p_cursor IS NULL THEN
        RETURN NULL;
    END IF;
    IF length(p_cursor) > 1000 OR p_cursor !~ '^[A-Za-z0-9_-]+$' THEN
        PERFORM parley_api_error(400, 'invalid_cursor', 'cursor: not one this API gave out');
    END IF;
    v_b64 := translate(p_cursor, '-_', '+/');
    v_b64 := v_b64 || repeat('=', (4 - length(v_b64) % 4) % 4);
    BEGIN
        v := convert_from(decode(v_b64, 'base64'), 'UTF8')::jsonb;
    EXCEPTION WHEN OTHERS THEN
        v := NULL;
    END;
    IF v IS NULL OR jsonb_typeof(v) <> 'object' OR v ->> 'k' IS DISTINCT FROM p_kind OR v -> 'v' IS NULL THEN
        PERFORM parley_api_error(400, 'invalid_cursor', 'cursor: not one this API gave out');
    END IF;
    RETURN v -> 'v';
END
$$;

-- A page: {"items": [...], "next_cursor": cursor or null}.
CREATE FUNCTION parley_api_page(p_items jsonb, p_next_cursor text) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('items', coalesce(p_items, '[]'::jsonb), 'next_cursor', p_next_cursor)
$$;

-- ------------------------------------------------------------ live events

-- Queue a live event (written to live_event when this transaction commits
-- and the sequencer runs; see 007_agents.sql). Wakes the sequencer.
CREATE FUNCTION parley_live_event(p_kind text, p_instance text, p_conversation_id bigint,
                                  p_agent_id bigint, p_payload jsonb)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO live_event_pending (kind, channel_instance, conversation_id, agent_id, payload)
    VALUES (p_kind, p_instance, p_conversation_id, p_agent_id, p_payload);
    PERFORM pg_notify('parley_live_pending', '');
END
$$;

-- ------------------------------------------------------------ /me

CREATE FUNCTION parley_api_agent_json(p_agent agent) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', p_agent.id, 'email', p_agent.email, 'name', p_agent.name, 'role', p_agent.role,
        'languages', to_jsonb(p_agent.languages), 'capacity', p_agent.capacity,
        'availability', p_agent.availability,
        'team_ids', (SELECT coalesce(jsonb_agg(team_id ORDER BY team_id), '[]')
                       FROM agent_team WHERE agent_id = p_agent.id),
        'disabled', p_agent.disabled_at IS NOT NULL,
        'created_at', p_agent.created_at)
$$;

-- GET /api/v1/me: who the caller is and what they may do.
CREATE FUNCTION parley_api_me(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_agent agent;
BEGIN
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    SELECT * INTO v_agent FROM agent WHERE id = (p_actor ->> 'agent_id')::bigint;
    RETURN QUERY SELECT 200, jsonb_build_object(
        'kind', p_actor ->> 'kind',
        'role', p_actor ->> 'role',
        'team_ids', p_actor -> 'team_ids',
        'token_id', p_actor -> 'token_id',
        'agent', CASE WHEN v_agent.id IS NULL THEN NULL ELSE parley_api_agent_json(v_agent) END);
END
$$;
