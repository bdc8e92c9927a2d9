-- agents: agents, teams and API tokens: who they are and how they are
-- created. (The API's operations on them are in api_*.sql.)

-- A new API token. The secret never comes here, only its SHA-256 (hex) and
-- a short prefix to recognise it by. Returns the token id.
CREATE FUNCTION parley_token_create(p_name text, p_role text, p_agent_email text, p_team_ids bigint[],
                                    p_secret_hash text, p_prefix text, p_created_by text)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_agent_id bigint;
    v_missing bigint;
    v_id bigint;
BEGIN
    IF p_role IS NULL OR p_role NOT IN ('agent', 'supervisor', 'admin') THEN
        RAISE EXCEPTION 'a role is agent, supervisor or admin';
    END IF;
    IF p_agent_email IS NOT NULL THEN
        SELECT id INTO v_agent_id FROM agent WHERE email = lower(p_agent_email);
        IF NOT FOUND THEN
            RAISE EXCEPTION 'no agent with e-mail %', p_agent_email;
        END IF;
    END IF;
    SELECT t INTO v_missing FROM unnest(p_team_ids) AS t WHERE NOT EXISTS (SELECT 1 FROM team WHERE id = t) LIMIT 1;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'no team %', v_missing;
    END IF;
    INSERT INTO api_token (name, secret_hash, prefix, role, team_ids, agent_id, created_by)
    VALUES (p_name, decode(p_secret_hash, 'hex'), p_prefix, p_role,
            (SELECT array_agg(DISTINCT t ORDER BY t) FROM unnest(p_team_ids) AS t), v_agent_id, p_created_by)
    RETURNING id INTO v_id;
    PERFORM parley_audit(p_created_by, 'token.create', 'api_token', v_id,
                         jsonb_build_object('after', jsonb_build_object('name', p_name, 'role', p_role,
                                                                        'agent_id', v_agent_id,
                                                                        'team_ids', to_jsonb(p_team_ids))));
    RETURN v_id;
END
$$;
