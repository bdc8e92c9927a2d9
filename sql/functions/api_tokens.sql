-- api_tokens: the API's operations on API tokens (a new token's secret is
-- made by the C handler, core/api_accounts.c; only its digest comes here)
-- and the audit log. Both are for admins without team limits
-- (parley_api_require_admin, api_accounts.sql).

-- ------------------------------------------------------------ tokens

CREATE FUNCTION parley_api_token_json(p_token api_token) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
        'id', p_token.id, 'name', p_token.name, 'prefix', p_token.prefix, 'role', p_token.role,
        'team_ids', to_jsonb(p_token.team_ids), 'agent_id', p_token.agent_id,
        'created_by', p_token.created_by, 'created_at', p_token.created_at,
        'expires_at', p_token.expires_at, 'last_used_at', p_token.last_used_at,
        'revoked', p_token.revoked_at IS NOT NULL, 'revoked_at', p_token.revoked_at)
$$;

-- POST /api/v1/tokens: the C handler made the secret; internal holds its
-- SHA-256 (secret_hash) and first characters (prefix). A token acting for
-- an agent has at most that agent's role.
CREATE FUNCTION parley_api_token_create(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    b jsonb := coalesce(p_req -> 'body', '{}');
    rank constant jsonb := '{"agent": 1, "supervisor": 2, "admin": 3}';
    v_role text;
    v_teams bigint[];
    v_agent agent;
    v_agent_id bigint;
    v_expires timestamptz;
    v_id bigint;
BEGIN
    PERFORM parley_api_require_admin(p_actor);
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    PERFORM parley_api_only(b, '{name,role,team_ids,agent_id,expires_at}', 'body');
    v_role := parley_api_choice(parley_api_text(b, 'role', 20, true), '{agent,supervisor,admin}', 'role');
    v_teams := parley_api_id_array(b, 'team_ids', 100);
    PERFORM parley_api_teams_exist(v_teams, 'team_ids');
    v_agent_id := parley_api_int_field(b, 'agent_id', 1, 999999999999999999);
    IF v_agent_id IS NOT NULL THEN
        SELECT * INTO v_agent FROM agent WHERE id = v_agent_id;
        IF NOT FOUND THEN
            PERFORM parley_api_error(422, 'invalid_field', 'agent_id: no agent ' || v_agent_id);
        END IF;
        IF v_agent.disabled_at IS NOT NULL THEN
            PERFORM parley_api_error(422, 'invalid_field', 'agent_id: the agent is disabled');
        END IF;
        IF (rank ->> v_role)::int > (rank ->> v_agent.role)::int THEN
            PERFORM parley_api_error(422, 'invalid_field', 'role: more than the agent''s own role');
        END IF;
    END IF;
    v_expires := parley_api_time_field(b, 'expires_at');
    IF v_expires <= now() THEN
        PERFORM parley_api_error(422, 'invalid_field', 'expires_at: must be in the future');
    END IF;
    v_id := parley_token_create(parley_api_name_field(b, 'name', 100, true), v_role, v_agent.email, v_teams,
                                p_req -> 'internal' ->> 'secret_hash', p_req -> 'internal' ->> 'prefix',
                                parley_api_actor_label(p_actor), v_expires, p_actor);
    RETURN QUERY SELECT 201, parley_api_token_json(t) FROM api_token t WHERE t.id = v_id;
END
$$;

-- GET /api/v1/tokens: newest first; never the secret or its digest.
CREATE FUNCTION parley_api_tokens_list(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    q jsonb := p_req -> 'query';
    v_limit integer;
    v_before bigint;
    v_revoked boolean;
    v_agent bigint;
    v_rows api_token[];
BEGIN
    PERFORM parley_api_require_admin(p_actor);
    PERFORM parley_api_only(q, '{revoked,agent_id,limit,cursor}', 'query');
    v_limit := parley_api_limit(q);
    v_before := (parley_api_cursor_decode('tokens', q ->> 'cursor') ->> 'id')::bigint;
    v_revoked := parley_api_bool_param(q, 'revoked');
    v_agent := parley_api_id_param(q, 'agent_id');
    SELECT array_agg(t ORDER BY t.id DESC) INTO v_rows
      FROM (SELECT * FROM api_token
             WHERE (v_before IS NULL OR id < v_before)
               AND (v_revoked IS NULL OR (revoked_at IS NOT NULL) = v_revoked)
               AND (v_agent IS NULL OR agent_id = v_agent)
             ORDER BY id DESC LIMIT v_limit + 1) t;
    RETURN QUERY SELECT 200, parley_api_page(
        (SELECT jsonb_agg(parley_api_token_json(r) ORDER BY r.id DESC) FROM unnest(v_rows[1:v_limit]) r),
        CASE WHEN coalesce(array_length(v_rows, 1), 0) > v_limit
             THEN parley_api_cursor_encode('tokens', jsonb_build_object('id', v_rows[v_limit].id)) END);
END
$$;

-- DELETE /api/v1/tokens/{id}: revoked at once; revoking a revoked token
-- changes nothing and is no error.
CREATE FUNCTION parley_api_token_revoke(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    v api_token;
    v_after api_token;
BEGIN
    PERFORM parley_api_require_admin(p_actor);
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    v_id := parley_api_id(p_req -> 'path' ->> 'id', 'token');
    SELECT * INTO v FROM api_token WHERE id = v_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM parley_api_error(404, 'not_found', 'no token ' || v_id);
    END IF;
    IF v.revoked_at IS NULL THEN
        UPDATE api_token SET revoked_at = now() WHERE id = v_id RETURNING * INTO v_after;
        PERFORM parley_api_audit(p_actor, 'token.revoke', 'api_token', v_id,
                                 parley_api_token_json(v), parley_api_token_json(v_after));
    END IF;
    RETURN QUERY SELECT 204, NULL::jsonb;
END
$$;

-- ------------------------------------------------------------ audit

-- GET /api/v1/audit: newest first, filtered by entity (with entity_id) and
-- agent_id. Uses audit_log_entity_newest, audit_log_entity or audit_log_agent.
CREATE FUNCTION parley_api_audit_list(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    q jsonb := p_req -> 'query';
    v_limit integer;
    v_before bigint;
    v_entity text;
    v_entity_id bigint;
    v_agent bigint;
    v_rows audit_log[];
BEGIN
    PERFORM parley_api_require_admin(p_actor);
    PERFORM parley_api_only(q, '{entity,entity_id,agent_id,limit,cursor}', 'query');
    v_limit := parley_api_limit(q);
    v_before := (parley_api_cursor_decode('audit', q ->> 'cursor') ->> 'id')::bigint;
    v_entity := q ->> 'entity';
    IF v_entity IS NOT NULL AND v_entity !~ '^[a-z_]{1,40}$' THEN
        PERFORM parley_api_error(400, 'invalid_parameter', 'entity: a name such as agent or conversation');
    END IF;
    v_entity_id := parley_api_id_param(q, 'entity_id');
    IF v_entity_id IS NOT NULL AND v_entity IS NULL THEN
        PERFORM parley_api_error(400, 'invalid_parameter', 'entity_id: goes with entity');
    END IF;
    v_agent := parley_api_id_param(q, 'agent_id');
    -- Only the filters given, planned for their values: a generic plan for
    -- "filter IS NULL OR column = filter" would walk the whole log by id.
    EXECUTE 'SELECT array_agg(s.l ORDER BY (s.l).id DESC) FROM (SELECT a AS l FROM audit_log a WHERE true'
            || CASE WHEN v_before IS NOT NULL THEN ' AND a.id < $1' ELSE '' END
            || CASE WHEN v_entity IS NOT NULL THEN ' AND a.entity = $2' ELSE '' END
            || CASE WHEN v_entity_id IS NOT NULL THEN ' AND a.entity_id = $3' ELSE '' END
            || CASE WHEN v_agent IS NOT NULL THEN ' AND a.agent_id = $4' ELSE '' END
            || ' ORDER BY a.id DESC LIMIT $5) s'
       INTO v_rows
      USING v_before, v_entity, v_entity_id, v_agent, v_limit + 1;
    RETURN QUERY SELECT 200, parley_api_page(
        (SELECT jsonb_agg(jsonb_build_object(
                    'id', r.id, 'at', r.at, 'actor', r.actor, 'action', r.action, 'entity', r.entity,
                    'entity_id', r.entity_id, 'agent_id', r.agent_id, 'token_id', r.token_id,
                    'details', r.details) ORDER BY r.id DESC)
           FROM unnest(v_rows[1:v_limit]) r),
        CASE WHEN coalesce(array_length(v_rows, 1), 0) > v_limit
             THEN parley_api_cursor_encode('audit', jsonb_build_object('id', v_rows[v_limit].id)) END);
END
$$;
