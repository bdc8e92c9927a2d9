-- agents: agents, teams and API tokens: who they are and how they are
-- created. (The API's operations on them are in api_*.sql.)

-- A new API token. The secret never comes here, only its SHA-256 (hex) and
-- a short prefix to recognise it by. Returns the token id. p_expires_at:
-- when it stops working (NULL: never). p_actor: the API caller who creates
-- it (POST /api/v1/tokens), recorded as such in the audit log; NULL for the
-- command line, recorded as p_created_by.
CREATE FUNCTION parley_token_create(p_name text, p_role text, p_agent_email text, p_team_ids bigint[],
                                    p_secret_hash text, p_prefix text, p_created_by text,
                                    p_expires_at timestamptz DEFAULT NULL, p_actor jsonb DEFAULT NULL)
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
    INSERT INTO api_token (name, secret_hash, prefix, role, team_ids, agent_id, created_by, expires_at)
    VALUES (p_name, decode(p_secret_hash, 'hex'), p_prefix, p_role,
            (SELECT array_agg(DISTINCT t ORDER BY t) FROM unnest(p_team_ids) AS t), v_agent_id, p_created_by,
            p_expires_at)
    RETURNING id INTO v_id;
    IF p_actor IS NULL THEN
        PERFORM parley_audit(p_created_by, 'token.create', 'api_token', v_id,
                             jsonb_build_object('after', jsonb_build_object('name', p_name, 'role', p_role,
                                                                            'agent_id', v_agent_id,
                                                                            'team_ids', to_jsonb(p_team_ids),
                                                                            'expires_at', p_expires_at)));
    ELSE
        PERFORM parley_api_audit(p_actor, 'token.create', 'api_token', v_id, NULL,
                                 parley_api_token_json((SELECT t FROM api_token t WHERE t.id = v_id)));
    END IF;
    RETURN v_id;
END
$$;

-- The first admin (parleyd --create-admin): p_password_hash is the scrypt
-- hash (PHC string) of the password the operator typed; p_name NULL: the
-- part of the e-mail before the @. Refused when the e-mail is taken.
-- Returns the agent id.
CREATE FUNCTION parley_admin_create(p_email text, p_name text, p_password_hash text, p_created_by text)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_email text := lower(btrim(p_email));
    v_name text := coalesce(p_name, split_part(lower(btrim(p_email)), '@', 1));
    v_id bigint;
BEGIN
    IF v_email IS NULL OR length(v_email) > 254 OR v_email !~ '^[^@[:space:][:cntrl:]]+@[^@[:space:][:cntrl:]]+$' THEN
        RAISE EXCEPTION 'not an e-mail address: %', left(p_email, 254);
    END IF;
    IF v_name !~ '^[^[:cntrl:]]{1,200}$' OR btrim(v_name) = '' THEN
        RAISE EXCEPTION 'a name is 1 to 200 characters without control characters';
    END IF;
    INSERT INTO agent (email, name, role, password_hash, password_changed_at)
    VALUES (v_email, btrim(v_name), 'admin', p_password_hash, now())
    ON CONFLICT (email) DO NOTHING
    RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        RAISE EXCEPTION 'an agent with e-mail % exists', v_email;
    END IF;
    PERFORM parley_audit(p_created_by, 'agent.create', 'agent', v_id,
                         jsonb_build_object('after', jsonb_build_object('email', v_email, 'name', btrim(v_name),
                                                                        'role', 'admin', 'password_set', true)));
    RETURN v_id;
END
$$;
