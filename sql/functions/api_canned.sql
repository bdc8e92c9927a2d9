-- api_canned: canned replies, ready answers with variables the server fills
-- in for a conversation, global (team_id NULL) or a team's, per language.
--
-- Who may do what (canned replies and macros alike): everyone reads the
-- global ones and those of their teams; a team's are changed by a
-- supervisor of that team or an admin, global ones by admins only. Another
-- team's is 404.
--
-- Variables: {{customer.first_name}}, {{customer.name}}, {{agent.name}},
-- {{case.number}} (spaces inside the braces allowed). A body naming any
-- other {{...}} is refused when saved (422), so a typo never reaches a
-- customer. Filling is one pass over the saved body: a value (a customer's
-- name, say) is inserted as text and never read for variables itself.

-- ------------------------------------------------------------ ownership

-- Whether the caller reads objects of team p_team (NULL: global).
CREATE FUNCTION parley_api_owner_readable(p_actor jsonb, p_team bigint) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_team IS NULL
        OR p_actor -> 'team_ids' IS NULL OR jsonb_typeof(p_actor -> 'team_ids') = 'null'
        OR p_actor -> 'team_ids' @> to_jsonb(p_team)
$$;

-- The caller may change objects of team p_team (NULL: global), or 403.
-- (Whether they see it at all is parley_api_owner_readable: 404 first.)
CREATE FUNCTION parley_api_owner_writable(p_actor jsonb, p_team bigint, p_what text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_team IS NULL THEN
        IF p_actor ->> 'role' <> 'admin' THEN
            PERFORM parley_api_error(403, 'forbidden', 'global ' || p_what || ' are changed by admins');
        END IF;
    ELSE
        PERFORM parley_api_require_role(p_actor, 'supervisor');
    END IF;
END
$$;

-- The team_id field of a new canned reply or macro: NULL (global) or a
-- team the caller is in (any team for a caller without team limits);
-- another is 422, as a team the caller cannot see does not exist for them.
CREATE FUNCTION parley_api_owner_team(p_actor jsonb, p_body jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_team bigint := parley_api_field_id(p_body, 'team_id', false);
BEGIN
    IF v_team IS NOT NULL AND (NOT EXISTS (SELECT 1 FROM team WHERE id = v_team)
                               OR NOT parley_api_owner_readable(p_actor, v_team)) THEN
        PERFORM parley_api_error(422, 'invalid_field', 'team_id: no team ' || v_team);
    END IF;
    RETURN v_team;
END
$$;

-- The team_id query filter of a list: "global", a team id, or absent.
-- Returns -1 for "global", NULL for none.
CREATE FUNCTION parley_api_owner_filter(p_query jsonb) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v text := p_query ->> 'team_id';
BEGIN
    IF v IS NULL THEN
        RETURN NULL;
    ELSIF v = 'global' THEN
        RETURN -1;
    ELSIF v !~ '^[1-9][0-9]{0,17}$' THEN
        PERFORM parley_api_error(400, 'invalid_parameter', 'team_id: a team id or "global"');
    END IF;
    RETURN v::bigint;
END
$$;

-- A language tag ("en", "de-CH", "pt_BR"): NULL stays NULL; another shape
-- is refused with p_status.
CREATE FUNCTION parley_api_language(p_value text, p_field text, p_status integer) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_value IS NOT NULL AND p_value !~ '^[A-Za-z]{2,3}([_-][A-Za-z0-9]{1,8}){0,3}$' THEN
        PERFORM parley_api_error(p_status, CASE WHEN p_status = 400 THEN 'invalid_parameter' ELSE 'invalid_field' END,
                                 p_field || ': a language tag such as "en" or "de-CH"');
    END IF;
    RETURN p_value;
END
$$;

-- A name field (canned replies, macros): 1..100 characters, no control
-- characters.
CREATE FUNCTION parley_api_name(p_body jsonb, p_required boolean) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v text := parley_api_text(p_body, 'name', 100, p_required);
BEGIN
    IF v IS NOT NULL AND (btrim(v) = '' OR v ~ '[[:cntrl:]]') THEN
        PERFORM parley_api_error(422, 'invalid_field', 'name: 1 to 100 characters, no control characters');
    END IF;
    RETURN btrim(v);
END
$$;

-- ------------------------------------------------------------ variables

CREATE FUNCTION parley_canned_variables() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['customer.first_name', 'customer.name', 'agent.name', 'case.number']
$$;

-- The variables a body names, in order of appearance (repeats included).
CREATE FUNCTION parley_canned_used(p_body text) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(array_agg(btrim(x.v[1]) ORDER BY x.n), '{}')
      FROM regexp_matches(p_body, '\{\{([^{}]*)\}\}', 'g') WITH ORDINALITY AS x (v, n)
$$;

-- A canned reply's body: 1..10000 characters naming only known variables.
CREATE FUNCTION parley_api_canned_body(p_body jsonb, p_required boolean) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v     text := parley_api_text(p_body, 'body', 10000, p_required);
    v_bad text;
BEGIN
    IF v IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT u INTO v_bad FROM unnest(parley_canned_used(v)) AS u
     WHERE NOT (u = ANY (parley_canned_variables())) LIMIT 1;
    IF v_bad IS NOT NULL THEN
        PERFORM parley_api_error(422, 'unknown_variable',
                                 format('body: {{%s}} is not a variable; known: %s', left(v_bad, 60),
                                        array_to_string(parley_canned_variables(), ', ')));
    END IF;
    RETURN v;
END
$$;

-- The values of the variables for conversation c and the caller (a value
-- nobody knows is absent). The customer's name is the customer record's,
-- unless that is only the platform id or handle it fell back to (nobody is
-- greeted as "Hi 1234567"); then the identity's display name, if any.
CREATE FUNCTION parley_canned_values(p_actor jsonb, c conversation) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'customer.name', n.name,
        'customer.first_name', nullif(split_part(n.name, ' ', 1), ''),
        'agent.name', (SELECT a.name FROM agent a WHERE a.id = (p_actor ->> 'agent_id')::bigint),
        'case.number', (SELECT sc.case_number FROM support_case sc WHERE sc.id = c.case_id)))
      FROM (SELECT nullif(btrim(coalesce(
                       CASE WHEN cu.display_name IS DISTINCT FROM i.external_id
                             AND cu.display_name IS DISTINCT FROM i.handle THEN cu.display_name END,
                       i.display_name)), '') AS name
              FROM (SELECT 1) AS one
              LEFT JOIN customer cu ON cu.id = c.customer_id
              LEFT JOIN identity i ON i.id = c.identity_id) AS n
$$;

-- Fill p_body's variables from p_values in one pass. filled: the result;
-- missing: the variables without a value (filled with ""). A {{...}} that
-- is no variable (none is saved: parley_api_canned_body) stays as it is.
CREATE FUNCTION parley_canned_fill(p_body text, p_values jsonb, OUT filled text, OUT missing text[])
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_parts  text[] := regexp_split_to_array(p_body, '\{\{[^{}]*\}\}');
    v_tokens text[];
    v_names  text[];
    v_val    text;
BEGIN
    SELECT coalesce(array_agg(x.v[1] ORDER BY x.n), '{}'), coalesce(array_agg(btrim(x.v[2]) ORDER BY x.n), '{}')
      INTO v_tokens, v_names
      FROM regexp_matches(p_body, '(\{\{([^{}]*)\}\})', 'g') WITH ORDINALITY AS x (v, n);
    filled := v_parts[1];
    missing := '{}';
    FOR i IN 1 .. cardinality(v_names) LOOP
        IF NOT (v_names[i] = ANY (parley_canned_variables())) THEN
            v_val := v_tokens[i];
        ELSE
            v_val := p_values ->> v_names[i];
        END IF;
        IF v_val IS NULL THEN
            IF NOT (v_names[i] = ANY (missing)) THEN
                missing := missing || v_names[i];
            END IF;
            v_val := '';
        END IF;
        filled := filled || v_val || v_parts[i + 1];
    END LOOP;
END
$$;

-- ------------------------------------------------------------ objects

CREATE FUNCTION parley_api_canned_json(r canned_reply) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
        'id', r.id, 'team_id', r.team_id, 'name', r.name, 'language', r.language, 'body', r.body,
        'variables', (SELECT coalesce(jsonb_agg(DISTINCT u), '[]') FROM unnest(parley_canned_used(r.body)) AS u),
        'created_by', r.created_by, 'created_at', r.created_at, 'updated_at', r.updated_at)
$$;

-- The canned reply of the path, if the caller reads it; otherwise 404.
CREATE FUNCTION parley_api_canned(p_actor jsonb, p_id text) RETURNS canned_reply
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r canned_reply;
BEGIN
    SELECT * INTO r FROM canned_reply WHERE id = parley_api_id(p_id, 'canned reply');
    IF NOT FOUND OR NOT parley_api_owner_readable(p_actor, r.team_id) THEN
        PERFORM parley_api_error(404, 'not_found', 'no canned reply ' || left(p_id, 40));
    END IF;
    RETURN r;
END
$$;

-- ------------------------------------------------------------ operations

-- GET /api/v1/canned-replies?team_id=&language=&limit=&cursor=
CREATE FUNCTION parley_api_canned_list(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    q       jsonb := p_req -> 'query';
    v_team  bigint;
    v_lang  text;
    v_limit integer;
    v_after bigint;
    v_items jsonb;
    v_last  bigint;
    v_more  boolean;
BEGIN
    PERFORM parley_api_only(q, '{team_id,language,limit,cursor}', 'query');
    v_team := parley_api_owner_filter(q);
    v_lang := parley_api_language(q ->> 'language', 'language', 400);
    v_limit := parley_api_limit(q);
    v_after := (parley_api_cursor_decode('canned', q ->> 'cursor') ->> 'id')::bigint;
    SELECT jsonb_agg(parley_api_canned_json(s.r) ORDER BY (s.r).id), max((s.r).id), count(*) > v_limit
      INTO v_items, v_last, v_more
      FROM (SELECT cr FROM canned_reply cr
             WHERE parley_api_owner_readable(p_actor, cr.team_id)
               AND (v_team IS NULL OR coalesce(cr.team_id, -1) = v_team)
               AND (v_lang IS NULL OR cr.language = v_lang)
               AND cr.id > coalesce(v_after, 0)
             ORDER BY cr.id
             LIMIT v_limit + 1) AS s (r);
    IF v_more THEN
        v_items := v_items - v_limit;
        v_last := (v_items -> (v_limit - 1) ->> 'id')::bigint;
    END IF;
    RETURN QUERY SELECT 200, parley_api_page(v_items,
        CASE WHEN v_more THEN parley_api_cursor_encode('canned', jsonb_build_object('id', v_last)) END);
END
$$;

-- POST /api/v1/canned-replies {"name", "body", "language"?, "team_id"?}
CREATE FUNCTION parley_api_canned_create(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    b      jsonb := p_req -> 'body';
    v_team bigint;
    r      canned_reply;
BEGIN
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    PERFORM parley_api_only(b, '{name,body,language,team_id}', 'body');
    v_team := parley_api_owner_team(p_actor, b);
    PERFORM parley_api_owner_writable(p_actor, v_team, 'canned replies');
    BEGIN
        INSERT INTO canned_reply (team_id, name, language, body, created_by)
        VALUES (v_team, parley_api_name(b, true),
                coalesce(parley_api_language(parley_api_text(b, 'language', 35), 'language', 422), 'en'),
                parley_api_canned_body(b, true), parley_api_actor_label(p_actor))
        RETURNING * INTO r;
    EXCEPTION WHEN unique_violation THEN
        PERFORM parley_api_error(409, 'duplicate', 'a canned reply with this name and language exists '
                                                   'for this team already');
    END;
    PERFORM parley_api_audit(p_actor, 'canned_reply.create', 'canned_reply', r.id, NULL,
                             parley_api_canned_json(r));
    RETURN QUERY SELECT 201, parley_api_canned_json(r);
END
$$;

-- GET /api/v1/canned-replies/{id}
CREATE FUNCTION parley_api_canned_get(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    RETURN QUERY SELECT 200, parley_api_canned_json(parley_api_canned(p_actor, p_req #>> '{path,id}'));
END
$$;

-- PATCH /api/v1/canned-replies/{id} {"name"?, "body"?, "language"?}
-- (a canned reply stays with its team: make a new one for another).
CREATE FUNCTION parley_api_canned_update(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    b      jsonb := p_req -> 'body';
    r      canned_reply;
    v_new  canned_reply;
BEGIN
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    PERFORM parley_api_only(b, '{name,body,language}', 'body');
    r := parley_api_canned(p_actor, p_req #>> '{path,id}');
    PERFORM parley_api_owner_writable(p_actor, r.team_id, 'canned replies');
    BEGIN
        UPDATE canned_reply
           SET name = coalesce(parley_api_name(b, false), name),
               body = coalesce(parley_api_canned_body(b, false), canned_reply.body),
               language = coalesce(parley_api_language(parley_api_text(b, 'language', 35), 'language', 422),
                                   language),
               updated_at = now()
         WHERE id = r.id
        RETURNING * INTO v_new;
    EXCEPTION WHEN unique_violation THEN
        PERFORM parley_api_error(409, 'duplicate', 'a canned reply with this name and language exists '
                                                   'for this team already');
    END;
    PERFORM parley_api_audit(p_actor, 'canned_reply.update', 'canned_reply', r.id,
                             parley_api_canned_json(r), parley_api_canned_json(v_new));
    RETURN QUERY SELECT 200, parley_api_canned_json(v_new);
END
$$;

-- DELETE /api/v1/canned-replies/{id}. Macros that use it are refused (409)
-- until they stop.
CREATE FUNCTION parley_api_canned_delete(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    r       canned_reply;
    v_macro bigint;
BEGIN
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    r := parley_api_canned(p_actor, p_req #>> '{path,id}');
    PERFORM parley_api_owner_writable(p_actor, r.team_id, 'canned replies');
    SELECT mc.id INTO v_macro FROM macro mc
     WHERE mc.actions @> jsonb_build_array(jsonb_build_object('type', 'reply', 'canned_reply_id', r.id))
     LIMIT 1;
    IF v_macro IS NOT NULL THEN
        PERFORM parley_api_error(409, 'in_use', format('macro %s uses this canned reply', v_macro));
    END IF;
    DELETE FROM canned_reply WHERE id = r.id;
    PERFORM parley_api_audit(p_actor, 'canned_reply.delete', 'canned_reply', r.id,
                             parley_api_canned_json(r), NULL);
    RETURN QUERY SELECT 204, NULL::jsonb;
END
$$;

-- The canned reply to use for conversation c when r was picked: the one of
-- the same owner and name in the conversation's language, when the caller
-- reads one; else r.
CREATE FUNCTION parley_canned_for(p_actor jsonb, r canned_reply, c conversation) RETURNS canned_reply
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT x FROM canned_reply x
                      WHERE coalesce(x.team_id, 0) = coalesce(r.team_id, 0)
                        AND lower(x.name) = lower(r.name) AND x.language = c.language
                        AND x.language <> r.language
                        AND parley_api_owner_readable(p_actor, x.team_id)
                      LIMIT 1), r)
$$;

-- POST /api/v1/conversations/{id}/canned-replies/{canned_id}/render
-- 200 {"text", "canned_reply_id", "language", "missing"}: the text to send
-- (with the reply call as usual); missing names the variables that had no
-- value (filled with "").
CREATE FUNCTION parley_api_canned_render(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    c conversation;
    r canned_reply;
    f record;
BEGIN
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    PERFORM parley_api_only(p_req -> 'body', '{}', 'body');
    c := parley_api_conversation(p_actor, parley_api_id(p_req #>> '{path,id}', 'conversation'));
    r := parley_canned_for(p_actor, parley_api_canned(p_actor, p_req #>> '{path,canned_id}'), c);
    SELECT * INTO f FROM parley_canned_fill(r.body, parley_canned_values(p_actor, c));
    RETURN QUERY SELECT 200, jsonb_build_object('text', f.filled, 'canned_reply_id', r.id,
                                                'language', r.language, 'missing', to_jsonb(f.missing));
END
$$;
