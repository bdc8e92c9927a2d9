-- api_accounts: the API's operations on who may use it: agents and teams
-- (API tokens and the audit log: api_tokens.sql; sessions and passwords:
-- api_sessions.sql).
--
-- Managing accounts (every write here and in api_tokens.sql, the token list
-- and the audit log) needs an admin whose reach no team list limits: a
-- team-limited admin token could otherwise make itself an unlimited one.
-- Supervisors read the agents of their teams; every caller reads its own
-- teams. Another team's agent or team is 404, like any object the caller
-- cannot see.
--
-- The C side keeps secrets out of here: a password comes as its scrypt hash
-- and a token as the SHA-256 of its secret, both in req.internal, a part of
-- the request only the C handler writes (clients write path, query, body).

-- ------------------------------------------------------------ who may

-- The caller manages accounts: an admin without team limits, or 403.
CREATE FUNCTION parley_api_require_admin(p_actor jsonb) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM parley_api_require_role(p_actor, 'admin');
    IF jsonb_typeof(p_actor -> 'team_ids') = 'array' THEN
        PERFORM parley_api_error(403, 'forbidden', 'managing accounts needs an admin without team limits');
    END IF;
END
$$;

-- The teams the caller works in; NULL: every team.
CREATE FUNCTION parley_api_actor_teams(p_actor jsonb) RETURNS bigint[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(p_actor -> 'team_ids') = 'array'
                THEN ARRAY(SELECT jsonb_array_elements_text(p_actor -> 'team_ids')::bigint) END
$$;

-- ------------------------------------------------------------ agents

-- Whether the caller may see the agent: every agent without team limits,
-- otherwise the agents who share one of the caller's teams.
CREATE FUNCTION parley_api_agent_visible(p_actor jsonb, p_agent_id bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT parley_api_actor_teams(p_actor) IS NULL
        OR EXISTS (SELECT 1 FROM agent_team
                    WHERE agent_id = p_agent_id AND team_id = ANY (parley_api_actor_teams(p_actor)))
$$;

-- The agent of the path's id when the caller may see it, else 404.
CREATE FUNCTION parley_api_agent_of(p_actor jsonb, p_req jsonb, p_lock boolean) RETURNS agent
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint := parley_api_id(p_req -> 'path' ->> 'id', 'agent');
    v agent;
BEGIN
    IF p_lock THEN
        SELECT * INTO v FROM agent WHERE id = v_id FOR UPDATE;
    ELSE
        SELECT * INTO v FROM agent WHERE id = v_id;
    END IF;
    IF NOT FOUND OR NOT parley_api_agent_visible(p_actor, v_id) THEN
        PERFORM parley_api_error(404, 'not_found', 'no agent ' || v_id);
    END IF;
    RETURN v;
END
$$;

-- GET /api/v1/agents: supervisors the agents of their teams, admins all;
-- by id, filtered by team_id, role, availability, disabled.
CREATE FUNCTION parley_api_agents_list(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    q jsonb := p_req -> 'query';
    v_limit integer;
    v_after bigint;
    v_team bigint;
    v_role text;
    v_avail text;
    v_disabled boolean;
    v_scope bigint[] := parley_api_actor_teams(p_actor);
    v_rows agent[];
BEGIN
    PERFORM parley_api_require_role(p_actor, 'supervisor');
    PERFORM parley_api_only(q, '{team_id,role,availability,disabled,limit,cursor}', 'query');
    v_limit := parley_api_limit(q);
    v_after := (parley_api_cursor_decode('agents', q ->> 'cursor') ->> 'id')::bigint;
    v_team := parley_api_id_param(q, 'team_id');
    v_role := parley_api_choice(q ->> 'role', '{agent,supervisor,admin}', 'role', 400);
    v_avail := parley_api_choice(q ->> 'availability', '{online,away,offline}', 'availability', 400);
    v_disabled := parley_api_bool_param(q, 'disabled');
    SELECT array_agg(a ORDER BY a.id) INTO v_rows
      FROM (SELECT a.* FROM agent a
             WHERE a.id > coalesce(v_after, 0)
               AND (v_scope IS NULL OR EXISTS (SELECT 1 FROM agent_team s
                                                WHERE s.agent_id = a.id AND s.team_id = ANY (v_scope)))
               AND (v_team IS NULL OR EXISTS (SELECT 1 FROM agent_team t
                                               WHERE t.agent_id = a.id AND t.team_id = v_team))
               AND (v_role IS NULL OR a.role = v_role)
               AND (v_avail IS NULL OR a.availability = v_avail)
               AND (v_disabled IS NULL OR (a.disabled_at IS NOT NULL) = v_disabled)
             ORDER BY a.id
             LIMIT v_limit + 1) a;
    RETURN QUERY SELECT 200, parley_api_page(
        (SELECT jsonb_agg(parley_api_agent_json(r) ORDER BY r.id) FROM unnest(v_rows[1:v_limit]) r),
        CASE WHEN coalesce(array_length(v_rows, 1), 0) > v_limit
             THEN parley_api_cursor_encode('agents', jsonb_build_object('id', v_rows[v_limit].id)) END);
END
$$;

-- GET /api/v1/agents/{id}
CREATE FUNCTION parley_api_agent_get(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM parley_api_require_role(p_actor, 'supervisor');
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    RETURN QUERY SELECT 200, parley_api_agent_json(parley_api_agent_of(p_actor, p_req, false));
END
$$;

-- Set the agent's teams to exactly p_team_ids.
CREATE FUNCTION parley_agent_set_teams(p_agent_id bigint, p_team_ids bigint[]) RETURNS void
LANGUAGE sql AS $$
    DELETE FROM agent_team WHERE agent_id = p_agent_id AND team_id <> ALL (p_team_ids);
    INSERT INTO agent_team (agent_id, team_id)
    SELECT p_agent_id, t FROM unnest(p_team_ids) AS t
    ON CONFLICT DO NOTHING;
$$;

-- End the agent's open sessions (all of them, or all but p_keep).
CREATE FUNCTION parley_agent_end_sessions(p_agent_id bigint, p_keep bigint) RETURNS void
LANGUAGE sql AS $$
    UPDATE agent_session SET ended_at = now()
     WHERE agent_id = p_agent_id AND ended_at IS NULL AND id IS DISTINCT FROM p_keep;
$$;

-- Queue the live event that the agent's availability changed.
CREATE FUNCTION parley_agent_availability_event(p_agent agent) RETURNS void
LANGUAGE sql AS $$
    SELECT parley_live_event('agent.availability', NULL, NULL, p_agent.id,
                             jsonb_build_object('agent_id', p_agent.id,
                                                'availability', p_agent.availability,
                                                'changed_at', p_agent.availability_changed_at));
$$;

-- POST /api/v1/agents (a password, if any, comes hashed in internal.password_hash)
CREATE FUNCTION parley_api_agent_create(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    b jsonb := p_req -> 'body';
    v_email text;
    v_teams bigint[];
    v agent;
BEGIN
    PERFORM parley_api_require_admin(p_actor);
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    IF b IS NULL OR jsonb_typeof(b) = 'null' THEN
        PERFORM parley_api_error(422, 'invalid_field', 'email: required');
    END IF;
    PERFORM parley_api_only(b, '{email,name,role,team_ids,languages,capacity,availability}', 'body');
    v_email := parley_api_email_field(b, 'email', true);
    v_teams := coalesce(parley_api_id_array(b, 'team_ids', 100), '{}');
    PERFORM parley_api_teams_exist(v_teams, 'team_ids');
    IF EXISTS (SELECT 1 FROM agent WHERE email = v_email) THEN
        PERFORM parley_api_error(409, 'conflict', 'an agent with this e-mail exists');
    END IF;
    INSERT INTO agent (email, name, role, password_hash, password_changed_at, languages, capacity, availability)
    VALUES (v_email,
            parley_api_name_field(b, 'name', 200, true),
            parley_api_choice(parley_api_text(b, 'role', 20, true), '{agent,supervisor,admin}', 'role'),
            p_req -> 'internal' ->> 'password_hash',
            CASE WHEN p_req -> 'internal' ->> 'password_hash' IS NOT NULL THEN now() END,
            coalesce(parley_api_text_array(b, 'languages', 20, '^[a-z]{2,3}(-[A-Za-z0-9]{1,8}){0,3}$',
                                           'language tags such as "en" or "pt-BR"'), '{}'),
            coalesce(parley_api_int_field(b, 'capacity', 0, 1000), 10),
            coalesce(parley_api_choice(parley_api_text(b, 'availability', 20), '{online,away,offline}',
                                       'availability'), 'offline'))
    ON CONFLICT (email) DO NOTHING
    RETURNING * INTO v;
    IF v.id IS NULL THEN  -- created at the same moment by another call
        PERFORM parley_api_error(409, 'conflict', 'an agent with this e-mail exists');
    END IF;
    PERFORM parley_agent_set_teams(v.id, v_teams);
    PERFORM parley_api_audit(p_actor, 'agent.create', 'agent', v.id, NULL,
                             parley_api_agent_json(v) || jsonb_build_object('password_set', v.password_hash IS NOT NULL));
    RETURN QUERY SELECT 201, parley_api_agent_json(v);
END
$$;

-- PATCH /api/v1/agents/{id}: the fields given change; team_ids replaces the
-- agent's teams; disabled true ends the agent's sessions (and its tokens
-- stop working) and makes it offline; a new password (internal.password_hash)
-- ends its sessions too. No change may leave the system without an enabled
-- admin (409 last_admin).
CREATE FUNCTION parley_api_agent_update(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    b jsonb := coalesce(p_req -> 'body', 'null');
    v_old agent;
    v agent;
    v_before jsonb;
    v_after jsonb;
    v_teams bigint[];
    v_disabled boolean;
    v_hash text := p_req -> 'internal' ->> 'password_hash';
BEGIN
    PERFORM parley_api_require_admin(p_actor);
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    PERFORM parley_api_only(b, '{email,name,role,team_ids,languages,capacity,availability,disabled}', 'body');
    -- Changes that can take away an admin wait for each other (see the
    -- last-admin check below), in one order, so they never deadlock.
    PERFORM pg_advisory_xact_lock(parley_lock_space(), parley_lock_key('admins', NULL, NULL));
    v_old := parley_api_agent_of(p_actor, p_req, true);
    v := v_old;
    v_before := parley_api_agent_json(v_old);
    IF jsonb_typeof(b) = 'object' THEN
        v.email := coalesce(parley_api_email_field(b, 'email', false), v.email);
        v.name := coalesce(parley_api_name_field(b, 'name', 200, false), v.name);
        v.role := coalesce(parley_api_choice(parley_api_text(b, 'role', 20), '{agent,supervisor,admin}', 'role'),
                           v.role);
        v.languages := coalesce(parley_api_text_array(b, 'languages', 20, '^[a-z]{2,3}(-[A-Za-z0-9]{1,8}){0,3}$',
                                                      'language tags such as "en" or "pt-BR"'), v.languages);
        v.capacity := coalesce(parley_api_int_field(b, 'capacity', 0, 1000), v.capacity);
        v.availability := coalesce(parley_api_choice(parley_api_text(b, 'availability', 20),
                                                     '{online,away,offline}', 'availability'), v.availability);
        v_teams := parley_api_id_array(b, 'team_ids', 100);
        v_disabled := parley_api_bool_field(b, 'disabled');
    END IF;
    IF v_teams IS NOT NULL THEN
        PERFORM parley_api_teams_exist(v_teams, 'team_ids');
    END IF;
    IF v_disabled IS NOT NULL AND v_disabled <> (v_old.disabled_at IS NOT NULL) THEN
        v.disabled_at := CASE WHEN v_disabled THEN now() END;
    END IF;
    -- A disabled agent is nobody to route work to.
    IF v.disabled_at IS NOT NULL THEN
        v.availability := 'offline';
    END IF;
    IF v_old.role = 'admin' AND v_old.disabled_at IS NULL AND (v.role <> 'admin' OR v.disabled_at IS NOT NULL)
       AND NOT EXISTS (SELECT 1 FROM agent
                        WHERE role = 'admin' AND disabled_at IS NULL AND id <> v_old.id) THEN
        PERFORM parley_api_error(409, 'last_admin', 'this is the last enabled admin; make another admin first');
    END IF;
    IF v.email <> v_old.email AND EXISTS (SELECT 1 FROM agent WHERE email = v.email) THEN
        PERFORM parley_api_error(409, 'conflict', 'an agent with this e-mail exists');
    END IF;
    IF v.availability <> v_old.availability THEN
        v.availability_changed_at := now();
    END IF;
    IF v_hash IS NOT NULL THEN
        v.password_hash := v_hash;
        v.password_changed_at := now();
    END IF;
    UPDATE agent SET email = v.email, name = v.name, role = v.role, languages = v.languages,
                     capacity = v.capacity, availability = v.availability,
                     availability_changed_at = v.availability_changed_at, disabled_at = v.disabled_at,
                     password_hash = v.password_hash, password_changed_at = v.password_changed_at,
                     updated_at = now()
     WHERE id = v.id
    RETURNING * INTO v;
    IF v_teams IS NOT NULL THEN
        PERFORM parley_agent_set_teams(v.id, v_teams);
    END IF;
    IF v.disabled_at IS NOT NULL OR v_hash IS NOT NULL THEN
        PERFORM parley_agent_end_sessions(v.id, NULL);
    END IF;
    IF v.availability_changed_at IS DISTINCT FROM v_old.availability_changed_at THEN
        PERFORM parley_agent_availability_event(v);
    END IF;
    v_after := parley_api_agent_json(v);
    IF v_after IS DISTINCT FROM v_before OR v_hash IS NOT NULL THEN
        PERFORM parley_api_audit(p_actor, 'agent.update', 'agent', v.id, v_before,
                                 v_after || CASE WHEN v_hash IS NOT NULL
                                                 THEN '{"password_changed": true}'::jsonb ELSE '{}' END);
    END IF;
    RETURN QUERY SELECT 200, v_after;
END
$$;

-- PUT /api/v1/me/availability: the caller's own agent.
CREATE FUNCTION parley_api_me_availability(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    b jsonb := p_req -> 'body';
    v_avail text;
    v_old agent;
    v agent;
BEGIN
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    PERFORM parley_api_only(b, '{availability}', 'body');
    v_avail := parley_api_choice(parley_api_text(b, 'availability', 20, true), '{online,away,offline}',
                                 'availability');
    SELECT * INTO v_old FROM agent WHERE id = (p_actor ->> 'agent_id')::bigint FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM parley_api_error(403, 'forbidden', 'this caller acts for no agent');
    END IF;
    IF v_old.availability = v_avail THEN
        RETURN QUERY SELECT 200, parley_api_agent_json(v_old);
        RETURN;
    END IF;
    UPDATE agent SET availability = v_avail, availability_changed_at = now(), updated_at = now()
     WHERE id = v_old.id
    RETURNING * INTO v;
    PERFORM parley_agent_availability_event(v);
    PERFORM parley_api_audit(p_actor, 'agent.availability', 'agent', v.id,
                             jsonb_build_object('availability', v_old.availability),
                             jsonb_build_object('availability', v.availability));
    RETURN QUERY SELECT 200, parley_api_agent_json(v);
END
$$;

-- ------------------------------------------------------------ teams

CREATE FUNCTION parley_api_team_json(p_team team) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', p_team.id, 'name', p_team.name,
        'channel_instances', (SELECT coalesce(jsonb_agg(channel_instance ORDER BY channel_instance), '[]')
                                FROM team_channel WHERE team_id = p_team.id),
        'categories', (SELECT coalesce(jsonb_agg(category ORDER BY category), '[]')
                         FROM team_category WHERE team_id = p_team.id),
        'agent_ids', (SELECT coalesce(jsonb_agg(agent_id ORDER BY agent_id), '[]')
                        FROM agent_team WHERE team_id = p_team.id),
        'created_at', p_team.created_at, 'updated_at', p_team.updated_at)
$$;

-- The team of the path's id when the caller works in it (or may see every
-- team), else 404.
CREATE FUNCTION parley_api_team_of(p_actor jsonb, p_req jsonb, p_lock boolean) RETURNS team
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint := parley_api_id(p_req -> 'path' ->> 'id', 'team');
    v_scope bigint[] := parley_api_actor_teams(p_actor);
    v team;
BEGIN
    IF p_lock THEN
        SELECT * INTO v FROM team WHERE id = v_id FOR UPDATE;
    ELSE
        SELECT * INTO v FROM team WHERE id = v_id;
    END IF;
    IF NOT FOUND OR NOT (v_scope IS NULL OR v_id = ANY (v_scope)) THEN
        PERFORM parley_api_error(404, 'not_found', 'no team ' || v_id);
    END IF;
    RETURN v;
END
$$;

-- The team's channel instances and categories, as a request body names them.
CREATE FUNCTION parley_team_set_scope(p_team_id bigint, p_body jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_instances text[] := parley_api_text_array(p_body, 'channel_instances', 100, '^[A-Za-z0-9_-]{1,64}$',
                                                'channel instance names');
    v_categories text[] := parley_api_text_array(p_body, 'categories', 100, '^[^[:cntrl:]]{1,100}$',
                                                 'categories of 1..100 characters');
BEGIN
    IF v_instances IS NOT NULL THEN
        DELETE FROM team_channel WHERE team_id = p_team_id AND channel_instance <> ALL (v_instances);
        INSERT INTO team_channel (team_id, channel_instance)
        SELECT p_team_id, i FROM unnest(v_instances) AS i ON CONFLICT DO NOTHING;
    END IF;
    IF v_categories IS NOT NULL THEN
        DELETE FROM team_category WHERE team_id = p_team_id AND category <> ALL (v_categories);
        INSERT INTO team_category (team_id, category)
        SELECT p_team_id, c FROM unnest(v_categories) AS c ON CONFLICT DO NOTHING;
    END IF;
END
$$;

-- GET /api/v1/teams: every team for an admin, otherwise the caller's own.
CREATE FUNCTION parley_api_teams_list(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    q jsonb := p_req -> 'query';
    v_limit integer;
    v_after bigint;
    v_scope bigint[] := parley_api_actor_teams(p_actor);
    v_rows team[];
BEGIN
    PERFORM parley_api_only(q, '{limit,cursor}', 'query');
    v_limit := parley_api_limit(q);
    v_after := (parley_api_cursor_decode('teams', q ->> 'cursor') ->> 'id')::bigint;
    SELECT array_agg(t ORDER BY t.id) INTO v_rows
      FROM (SELECT * FROM team
             WHERE id > coalesce(v_after, 0) AND (v_scope IS NULL OR id = ANY (v_scope))
             ORDER BY id LIMIT v_limit + 1) t;
    RETURN QUERY SELECT 200, parley_api_page(
        (SELECT jsonb_agg(parley_api_team_json(r) ORDER BY r.id) FROM unnest(v_rows[1:v_limit]) r),
        CASE WHEN coalesce(array_length(v_rows, 1), 0) > v_limit
             THEN parley_api_cursor_encode('teams', jsonb_build_object('id', v_rows[v_limit].id)) END);
END
$$;

-- GET /api/v1/teams/{id}
CREATE FUNCTION parley_api_team_get(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    RETURN QUERY SELECT 200, parley_api_team_json(parley_api_team_of(p_actor, p_req, false));
END
$$;

-- POST /api/v1/teams
CREATE FUNCTION parley_api_team_create(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    b jsonb := p_req -> 'body';
    v_name text;
    v team;
BEGIN
    PERFORM parley_api_require_admin(p_actor);
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    PERFORM parley_api_only(b, '{name,channel_instances,categories}', 'body');
    v_name := parley_api_name_field(coalesce(b, '{}'), 'name', 100, true);
    INSERT INTO team (name) VALUES (v_name) ON CONFLICT DO NOTHING RETURNING * INTO v;
    IF v.id IS NULL THEN
        PERFORM parley_api_error(409, 'conflict', 'a team with this name exists');
    END IF;
    PERFORM parley_team_set_scope(v.id, b);
    PERFORM parley_api_audit(p_actor, 'team.create', 'team', v.id, NULL, parley_api_team_json(v));
    RETURN QUERY SELECT 201, parley_api_team_json(v);
END
$$;

-- PATCH /api/v1/teams/{id}: name; channel_instances and categories replace
-- the team's.
CREATE FUNCTION parley_api_team_update(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    b jsonb := coalesce(p_req -> 'body', '{}');
    v team;
    v_before jsonb;
    v_after jsonb;
    v_name text;
BEGIN
    PERFORM parley_api_require_admin(p_actor);
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    PERFORM parley_api_only(b, '{name,channel_instances,categories}', 'body');
    v := parley_api_team_of(p_actor, p_req, true);
    v_before := parley_api_team_json(v);
    v_name := parley_api_name_field(b, 'name', 100, false);
    IF v_name IS NOT NULL AND lower(v_name) <> lower(v.name)
       AND EXISTS (SELECT 1 FROM team WHERE lower(name) = lower(v_name)) THEN
        PERFORM parley_api_error(409, 'conflict', 'a team with this name exists');
    END IF;
    PERFORM parley_team_set_scope(v.id, b);
    UPDATE team SET name = coalesce(v_name, name), updated_at = now() WHERE id = v.id RETURNING * INTO v;
    v_after := parley_api_team_json(v);
    IF (v_after - 'updated_at') IS DISTINCT FROM (v_before - 'updated_at') THEN
        PERFORM parley_api_audit(p_actor, 'team.update', 'team', v.id, v_before, v_after);
    END IF;
    RETURN QUERY SELECT 200, v_after;
END
$$;

-- DELETE /api/v1/teams/{id}: only an empty team (no agents, no conversation
-- waiting in its queue), so nobody loses their work unnoticed. Its canned
-- replies and macros go with it.
CREATE FUNCTION parley_api_team_delete(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v team;
    v_before jsonb;
BEGIN
    PERFORM parley_api_require_admin(p_actor);
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    v := parley_api_team_of(p_actor, p_req, true);
    IF EXISTS (SELECT 1 FROM agent_team WHERE team_id = v.id) THEN
        PERFORM parley_api_error(409, 'team_in_use', 'the team still has agents; take them out first');
    END IF;
    IF EXISTS (SELECT 1 FROM conversation WHERE team_id = v.id AND queued_at IS NOT NULL) THEN
        PERFORM parley_api_error(409, 'team_in_use', 'conversations wait in the team''s queue');
    END IF;
    v_before := parley_api_team_json(v);
    DELETE FROM team WHERE id = v.id;
    PERFORM parley_api_audit(p_actor, 'team.delete', 'team', v.id, v_before, NULL);
    RETURN QUERY SELECT 204, NULL::jsonb;
END
$$;
