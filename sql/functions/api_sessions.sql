-- api_sessions: browser logins and passwords. The C side (core/api_session.c)
-- checks passwords off the loop and makes the secrets; here are the rules:
-- the login throttle, which agent may log in, the session's life, and who
-- may change a password. Neither a password nor a secret comes here: only
-- scrypt hashes (PHC strings) and SHA-256 digests, in req.internal.

-- ------------------------------------------------------------ throttle

-- Failed logins count per key ('account:<email>', 'address:<ip>') in fixed
-- windows of 15 minutes, shared by every node through login_failure.
CREATE FUNCTION parley_login_window() RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT to_timestamp(floor(extract(epoch FROM now()) / 900) * 900)
$$;

-- Count an attempt against each key, unless a key is at its limit already
-- (p_limits pairs with p_keys). Returns 0 when counted, else the seconds
-- until the window ends (for Retry-After), counting nothing. An attempt
-- counts as a failure from the start, as its password check runs later and
-- elsewhere: so parallel guesses cannot all pass the check before the first
-- failure is written. A success gives it back (parley_login_refund).
CREATE FUNCTION parley_login_attempt(p_keys text[], p_limits integer[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_window timestamptz := parley_login_window();
    v_over boolean;
BEGIN
    DELETE FROM login_failure WHERE window_start < v_window;
    -- The upsert locks each key's row (in key order: no deadlocks) until the
    -- commit, so concurrent attempts on one key are counted one by one.
    WITH counted AS (
        INSERT INTO login_failure AS f (key, window_start, failures)
        SELECT k.key, v_window, 1 FROM unnest(p_keys, p_limits) AS k(key, lim) ORDER BY k.key
        ON CONFLICT (key, window_start) DO UPDATE SET failures = f.failures + 1
        RETURNING f.key, f.failures)
    SELECT bool_or(c.failures > k.lim) INTO v_over
      FROM counted c JOIN unnest(p_keys, p_limits) AS k(key, lim) ON k.key = c.key;
    IF NOT coalesce(v_over, true) THEN
        RETURN 0;
    END IF;
    UPDATE login_failure SET failures = failures - 1
     WHERE key = ANY (p_keys) AND window_start = v_window;
    RETURN greatest(1, ceil(extract(epoch FROM v_window + interval '15 minutes' - now()))::integer);
END
$$;

-- Give back the attempt a success made (p_reset: forget the key's failures).
-- Only the current window's row: older ones are the clean-up's, and rows
-- are locked in one order (old windows, then keys in order) by everyone.
CREATE FUNCTION parley_login_refund(p_key text, p_reset boolean) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_reset THEN
        DELETE FROM login_failure WHERE key = p_key AND window_start = parley_login_window();
    ELSE
        UPDATE login_failure SET failures = failures - 1
         WHERE key = p_key AND window_start = parley_login_window() AND failures > 0;
    END IF;
END
$$;

-- ------------------------------------------------------------ login

-- POST /api/v1/session, first step (internal: email, address). 429 with
-- retry_after when the account or the address is throttled; otherwise the
-- hash to check the password against: NULL for an unknown e-mail, a
-- disabled agent or one without a password, so that the C side checks a
-- dummy hash and the answer is the same 401 in the same time.
CREATE FUNCTION parley_api_login_begin(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    i jsonb := p_req -> 'internal';
    v_email text := lower(btrim(i ->> 'email'));
    v_retry integer;
    v agent;
BEGIN
    v_retry := parley_login_attempt(ARRAY['account:' || v_email, 'address:' || (i ->> 'address')],
                                    ARRAY[5, 20]);
    IF v_retry > 0 THEN
        RETURN QUERY SELECT 429, jsonb_build_object('retry_after', v_retry);
        RETURN;
    END IF;
    SELECT * INTO v FROM agent WHERE email = v_email;
    RETURN QUERY SELECT 200, jsonb_build_object(
        'agent_id', v.id,
        'password_hash', CASE WHEN v.disabled_at IS NULL THEN v.password_hash END);
END
$$;

-- POST /api/v1/session, second step (internal: email, address, agent_id,
-- matched, verified_hash, secret_hash, csrf_hash, idle_minutes, max_hours,
-- peer). A wrong password stays counted: 401. A right one starts the
-- session, unless the agent was disabled or its password changed meanwhile.
-- A success forgets the account's failures; the address keeps its count
-- (one good password must not reopen an address that guesses at others).
CREATE FUNCTION parley_api_login_finish(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    i jsonb := p_req -> 'internal';
    v_email text := lower(btrim(i ->> 'email'));
    v agent;
    v_session agent_session;
BEGIN
    IF (i ->> 'matched')::boolean THEN
        SELECT * INTO v FROM agent WHERE id = (i ->> 'agent_id')::bigint FOR UPDATE;
    END IF;
    IF v.id IS NULL OR v.disabled_at IS NOT NULL OR v.password_hash IS DISTINCT FROM i ->> 'verified_hash' THEN
        RETURN QUERY SELECT 401, jsonb_build_object('error', 'invalid_credentials',
                                                    'detail', 'wrong e-mail or password');
        RETURN;
    END IF;
    PERFORM parley_login_refund('account:' || v_email, true);
    PERFORM parley_login_refund('address:' || (i ->> 'address'), false);
    INSERT INTO agent_session (secret_hash, csrf_hash, agent_id, expires_at, idle_timeout, peer)
    VALUES (decode(i ->> 'secret_hash', 'hex'), decode(i ->> 'csrf_hash', 'hex'), v.id,
            now() + (i ->> 'max_hours')::integer * interval '1 hour',
            (i ->> 'idle_minutes')::integer * interval '1 minute', i ->> 'peer')
    RETURNING * INTO v_session;
    PERFORM parley_api_audit(jsonb_build_object('kind', 'session', 'agent_id', v.id, 'session_id', v_session.id),
                             'session.create', 'agent_session', v_session.id, NULL,
                             jsonb_build_object('agent_id', v.id, 'expires_at', v_session.expires_at,
                                                'peer', v_session.peer));
    RETURN QUERY SELECT 201, jsonb_build_object('agent', parley_api_agent_json(v),
                                                'expires_at', v_session.expires_at);
END
$$;

-- The caller's session, or 404 for a caller with a token.
CREATE FUNCTION parley_api_session_of(p_actor jsonb) RETURNS agent_session
LANGUAGE plpgsql AS $$
DECLARE
    v agent_session;
BEGIN
    IF p_actor ->> 'kind' IS DISTINCT FROM 'session' THEN
        PERFORM parley_api_error(404, 'no_session', 'this call was not made with a session');
    END IF;
    SELECT * INTO v FROM agent_session WHERE id = (p_actor ->> 'session_id')::bigint;
    RETURN v;
END
$$;

-- GET /api/v1/session: the session's agent and when it ends (the C side
-- adds the session's CSRF token).
CREATE FUNCTION parley_api_session_get(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v agent_session;
BEGIN
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    v := parley_api_session_of(p_actor);
    RETURN QUERY SELECT 200, jsonb_build_object(
        'agent', (SELECT parley_api_agent_json(a) FROM agent a WHERE a.id = v.agent_id),
        'expires_at', v.expires_at);
END
$$;

-- DELETE /api/v1/session: log out.
CREATE FUNCTION parley_api_session_end(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v agent_session;
BEGIN
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    v := parley_api_session_of(p_actor);
    UPDATE agent_session SET ended_at = now() WHERE id = v.id AND ended_at IS NULL;
    PERFORM parley_api_audit(p_actor, 'session.end', 'agent_session', v.id, NULL, NULL);
    RETURN QUERY SELECT 204, NULL::jsonb;
END
$$;

-- ------------------------------------------------------------ passwords

-- PUT /api/v1/me/password, first step: the caller's agent and the hash to
-- check current_password against (counted by the throttle like a login,
-- so a stolen session cannot guess the password at leisure). 403 without
-- an agent; 409 when the agent has no password (an admin sets the first);
-- 429 with retry_after when throttled.
CREATE FUNCTION parley_api_password_begin(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v agent;
    v_retry integer;
BEGIN
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    SELECT * INTO v FROM agent WHERE id = (p_actor ->> 'agent_id')::bigint;
    IF NOT FOUND THEN
        PERFORM parley_api_error(403, 'forbidden', 'this caller acts for no agent');
    END IF;
    IF v.password_hash IS NULL THEN
        PERFORM parley_api_error(409, 'no_password', 'the agent has no password yet; an admin sets the first');
    END IF;
    v_retry := parley_login_attempt(ARRAY['account:' || v.email], ARRAY[5]);
    IF v_retry > 0 THEN
        RETURN QUERY SELECT 429, jsonb_build_object('retry_after', v_retry);
        RETURN;
    END IF;
    RETURN QUERY SELECT 200, jsonb_build_object('agent_id', v.id, 'password_hash', v.password_hash);
END
$$;

-- PUT /api/v1/me/password, last step (internal: verified_hash, the hash
-- current_password matched; password_hash, the new one). 409 when the
-- password changed meanwhile. The agent's other sessions end; the one
-- making the change goes on.
CREATE FUNCTION parley_api_password_set(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    i jsonb := p_req -> 'internal';
    v agent;
BEGIN
    SELECT * INTO v FROM agent WHERE id = (p_actor ->> 'agent_id')::bigint FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM parley_api_error(403, 'forbidden', 'this caller acts for no agent');
    END IF;
    IF v.password_hash IS DISTINCT FROM i ->> 'verified_hash' THEN
        PERFORM parley_api_error(409, 'conflict', 'the password changed meanwhile; try again');
    END IF;
    UPDATE agent SET password_hash = i ->> 'password_hash', password_changed_at = now(), updated_at = now()
     WHERE id = v.id;
    PERFORM parley_login_refund('account:' || v.email, true);
    PERFORM parley_agent_end_sessions(v.id, (p_actor ->> 'session_id')::bigint);
    PERFORM parley_api_audit(p_actor, 'agent.password_change', 'agent', v.id, NULL, NULL);
    RETURN QUERY SELECT 204, NULL::jsonb;
END
$$;
