-- api_fields: reading the fields of a request beyond api.sql's text and
-- choice: numbers, booleans, id and text lists, times, names, e-mail
-- addresses, and query parameters of those kinds. A body field that breaks
-- its rule is 422 naming the field; a query parameter 400.

-- A whole-number body field within [p_min, p_max]: absent/null → NULL, else 422.
CREATE FUNCTION parley_api_int_field(p_obj jsonb, p_field text, p_min bigint, p_max bigint)
RETURNS bigint
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v jsonb := p_obj -> p_field;
BEGIN
    IF v IS NULL OR jsonb_typeof(v) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(v) <> 'number' OR (v #>> '{}') !~ '^-?[0-9]{1,18}$'
       OR (v #>> '{}')::bigint NOT BETWEEN p_min AND p_max THEN
        PERFORM parley_api_error(422, 'invalid_field',
                                 p_field || ': a whole number from ' || p_min || ' to ' || p_max);
    END IF;
    RETURN (v #>> '{}')::bigint;
END
$$;

-- A true/false body field: absent/null → NULL, else 422.
CREATE FUNCTION parley_api_bool_field(p_obj jsonb, p_field text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v jsonb := p_obj -> p_field;
BEGIN
    IF v IS NULL OR jsonb_typeof(v) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(v) <> 'boolean' THEN
        PERFORM parley_api_error(422, 'invalid_field', p_field || ': true or false');
    END IF;
    RETURN v::text::boolean;
END
$$;

-- A true/false query parameter: absent → NULL, else 400.
CREATE FUNCTION parley_api_bool_param(p_query jsonb, p_name text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT parley_api_choice(p_query ->> p_name, '{true,false}', p_name, 400)::boolean
$$;

-- An id query parameter: absent → NULL; not an id → 400 (a filter, not a path).
CREATE FUNCTION parley_api_id_param(p_query jsonb, p_name text) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v text := p_query ->> p_name;
BEGIN
    IF v IS NULL THEN
        RETURN NULL;
    END IF;
    IF v !~ '^[1-9][0-9]{0,17}$' THEN
        PERFORM parley_api_error(400, 'invalid_parameter', p_name || ': an id');
    END IF;
    RETURN v::bigint;
END
$$;

-- An array of ids (at most p_max), sorted, without repeats: absent/null → NULL, else 422.
CREATE FUNCTION parley_api_id_array(p_obj jsonb, p_field text, p_max integer) RETURNS bigint[]
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v jsonb := p_obj -> p_field;
BEGIN
    IF v IS NULL OR jsonb_typeof(v) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(v) <> 'array' OR jsonb_array_length(v) > p_max
       OR EXISTS (SELECT 1 FROM jsonb_array_elements(v) e
                   WHERE jsonb_typeof(e) <> 'number' OR (e #>> '{}') !~ '^[1-9][0-9]{0,17}$') THEN
        PERFORM parley_api_error(422, 'invalid_field', p_field || ': a list of at most ' || p_max || ' ids');
    END IF;
    RETURN ARRAY(SELECT DISTINCT (e #>> '{}')::bigint FROM jsonb_array_elements(v) e ORDER BY 1);
END
$$;

-- An array of strings (at most p_max_items, each matching p_pattern, which
-- p_shape describes), sorted, without repeats: absent/null → NULL, else 422.
CREATE FUNCTION parley_api_text_array(p_obj jsonb, p_field text, p_max_items integer, p_pattern text,
                                      p_shape text)
RETURNS text[]
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v jsonb := p_obj -> p_field;
BEGIN
    IF v IS NULL OR jsonb_typeof(v) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(v) <> 'array' OR jsonb_array_length(v) > p_max_items
       OR EXISTS (SELECT 1 FROM jsonb_array_elements(v) e
                   WHERE jsonb_typeof(e) <> 'string' OR (e #>> '{}') !~ p_pattern) THEN
        PERFORM parley_api_error(422, 'invalid_field',
                                 p_field || ': a list of at most ' || p_max_items || ' ' || p_shape);
    END IF;
    RETURN ARRAY(SELECT DISTINCT e #>> '{}' FROM jsonb_array_elements(v) e ORDER BY 1);
END
$$;

-- An RFC 3339 time with its offset ("2030-01-31T12:00:00Z"): absent/null →
-- NULL, else 422. Words PostgreSQL would take ('now', 'infinity') are not times.
CREATE FUNCTION parley_api_time_field(p_obj jsonb, p_field text) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v jsonb := p_obj -> p_field;
    t timestamptz;
BEGIN
    IF v IS NULL OR jsonb_typeof(v) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(v) = 'string' AND length(v #>> '{}') <= 40
       AND (v #>> '{}') ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?([Zz]|[+-][0-9]{2}:?[0-9]{2})$' THEN
        BEGIN
            t := (v #>> '{}')::timestamptz;
        EXCEPTION WHEN OTHERS THEN
            t := NULL;
        END;
    END IF;
    IF t IS NULL THEN
        PERFORM parley_api_error(422, 'invalid_field', p_field || ': a time such as 2030-01-31T12:00:00Z');
    END IF;
    RETURN t;
END
$$;

-- Every id of p_ids names a team, or 422 naming the first that does not.
CREATE FUNCTION parley_api_teams_exist(p_ids bigint[], p_field text) RETURNS void
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_missing bigint;
BEGIN
    SELECT t INTO v_missing FROM unnest(p_ids) AS t
     WHERE NOT EXISTS (SELECT 1 FROM team WHERE id = t) ORDER BY t LIMIT 1;
    IF v_missing IS NOT NULL THEN
        PERFORM parley_api_error(422, 'invalid_field', p_field || ': no team ' || v_missing);
    END IF;
END
$$;

-- A name: 1..p_max characters, no control characters, not only blanks.
CREATE FUNCTION parley_api_name_field(p_obj jsonb, p_field text, p_max integer, p_required boolean)
RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v text := parley_api_text(p_obj, p_field, p_max, p_required);
BEGIN
    IF v IS NOT NULL AND (v ~ '[[:cntrl:]]' OR btrim(v) = '') THEN
        PERFORM parley_api_error(422, 'invalid_field', p_field || ': no control characters, not empty');
    END IF;
    RETURN btrim(v);
END
$$;

-- An e-mail address, stored in lower case.
CREATE FUNCTION parley_api_email_field(p_obj jsonb, p_field text, p_required boolean) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v text := lower(btrim(parley_api_text(p_obj, p_field, 254, p_required)));
BEGIN
    IF v IS NOT NULL AND v !~ '^[^@[:space:][:cntrl:]]+@[^@[:space:][:cntrl:]]+$' THEN
        PERFORM parley_api_error(422, 'invalid_field', p_field || ': an e-mail address');
    END IF;
    RETURN v;
END
$$;
