-- cases: the references in a message (case numbers, order numbers, emails)
-- and the case they point at; a conversation moving to another case.

-- The references in a message text (kind, normalized value; each once;
-- a pattern with a capture group yields group 1, else the whole match) and
-- the case they point at: the newest mentioned case number that exists,
-- else the newest case that knows one of the order numbers or emails, else
-- the newest case of a customer who has one of the emails.
CREATE FUNCTION parley_reference_case(p_text text, o parley_ingest_options,
                                      OUT kinds text[], OUT vals text[],
                                      OUT case_id bigint, OUT kind text, OUT value text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    SELECT array_agg(r.kind), array_agg(r.value) INTO kinds, vals
      FROM (SELECT DISTINCT f.kind, f.value
              FROM (SELECT 'case_number' AS kind, upper(m[1]) AS value
                      FROM regexp_matches(p_text, o.case_pattern, 'gi') AS m
                    UNION ALL
                    SELECT 'order_number', upper(m[1])
                      FROM regexp_matches(p_text, o.order_pattern, 'gi') AS m
                    UNION ALL
                    SELECT 'email', lower(m[1])
                      FROM regexp_matches(p_text, o.email_pattern, 'gi') AS m) AS f
             WHERE f.value <> '') AS r;
    IF kinds IS NULL THEN
        RETURN;
    END IF;
    SELECT x.case_id, x.kind, x.value INTO case_id, kind, value
      FROM (SELECT 1 AS rank, s.id AS case_id, r.kind, r.value
              FROM unnest(kinds, vals) AS r(kind, value)
              JOIN support_case s ON upper(s.case_number) = r.value
             WHERE r.kind = 'case_number'
            UNION ALL
            SELECT 2, cr.case_id, r.kind, r.value
              FROM unnest(kinds, vals) AS r(kind, value)
              JOIN case_reference cr ON cr.kind = r.kind AND cr.value = r.value
             WHERE r.kind IN ('order_number', 'email')
            UNION ALL
            -- A customer's own email counts for all their cases, also those
            -- opened before they gave it (new cases list it as a reference).
            SELECT 3, s.id, r.kind, r.value
              FROM unnest(kinds, vals) AS r(kind, value)
              JOIN customer_contact cc ON cc.kind = 'email' AND cc.value = r.value
              JOIN support_case s ON s.customer_id = cc.customer_id
             WHERE r.kind = 'email') AS x
     ORDER BY x.rank, x.case_id DESC
     LIMIT 1;
END
$$;

-- Store references found in messages (case, kind, value, message; in this
-- order). A reference a case has already keeps its first message.
CREATE FUNCTION parley_store_references(p_case bigint[], p_kind text[], p_value text[], p_message bigint[])
RETURNS void
LANGUAGE plpgsql AS $$   -- (not sql: PL/pgSQL keeps the plan)
BEGIN
    INSERT INTO case_reference (case_id, kind, value, message_id)
    SELECT r.case_id, r.kind, r.value, r.message_id
      FROM unnest(p_case, p_kind, p_value, p_message) WITH ORDINALITY AS r(case_id, kind, value, message_id, ord)
     ORDER BY r.ord
    ON CONFLICT ON CONSTRAINT case_reference_unique DO NOTHING;
END
$$;

-- A conversation moves to another case because a message referenced it.
CREATE FUNCTION parley_link_case(p_conv bigint, p_from bigint, p_to bigint, p_kind text, p_value text,
                                 p_inbound bigint)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_from IS NOT NULL THEN
        UPDATE conversation SET case_id = p_to, updated_at = now() WHERE id = p_conv;
    END IF;
    PERFORM parley_audit('ingest', 'conversation.case_link', 'conversation', p_conv,
                         jsonb_build_object('from_case_id', p_from, 'to_case_id', p_to,
                                            'kind', p_kind, 'value', p_value,
                                            'inbound_event_id', p_inbound));
END
$$;
