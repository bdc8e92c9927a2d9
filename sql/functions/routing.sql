-- routing: which sinks and notifiers take what, from parley_settings
-- 'routing' (written by parleyd from its configuration).

-- Does a routing rule (sink route or notice route) take this conversation?
-- Absent filters take everything.
CREATE FUNCTION parley_route_matches(r jsonb, c conversation) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT (jsonb_typeof(r -> 'channels') IS DISTINCT FROM 'array' OR r -> 'channels' ? c.channel_instance)
       AND (r ->> 'visibility' IS NULL OR r ->> 'visibility' = c.visibility)
       AND (jsonb_typeof(r -> 'categories') IS DISTINCT FROM 'array'
            OR r -> 'categories' ? coalesce(c.category, ''))
$$;

-- The notifier instances that take notices of `kind` about conversation c
-- (c may be NULL: then only routes without conversation filters match).
CREATE FUNCTION parley_notice_targets(p_kind text, c conversation) RETURNS SETOF text
LANGUAGE sql STABLE AS $$
    SELECT DISTINCT r ->> 'notifier'
      FROM parley_settings s, jsonb_array_elements(coalesce(s.value -> 'notices', '[]')) AS r
     WHERE s.key = 'routing'
       AND (jsonb_typeof(r -> 'kinds') IS DISTINCT FROM 'array' OR r -> 'kinds' ? p_kind)
       AND CASE WHEN c.id IS NULL
                THEN r -> 'channels' IS NULL AND r -> 'visibility' IS NULL AND r -> 'categories' IS NULL
                ELSE parley_route_matches(r, c) END
$$;

-- The sink instances conversation c is routed to.
CREATE FUNCTION parley_sink_targets(c conversation) RETURNS SETOF text
LANGUAGE sql STABLE AS $$
    SELECT DISTINCT r ->> 'name'
      FROM parley_settings s, jsonb_array_elements(coalesce(s.value -> 'sinks', '[]')) AS r
     WHERE s.key = 'routing' AND parley_route_matches(r, c)
$$;
