-- settings: the cluster policy (006_cluster_policy, docs/CONFIG.md "Node
-- settings and cluster policy"): storing a new version atomically and the
-- routing the database's functions read from it (parley_settings 'routing').

-- The routing the database's functions read (parley_settings 'routing'):
-- {"sinks": [route + name], "notices": [rules]} from a policy body.
CREATE FUNCTION parley_policy_routing(p_body jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
        'sinks', coalesce((SELECT jsonb_agg(coalesce(s -> 'route', '{}')
                                            || jsonb_build_object('name', s ->> 'name')
                                            ORDER BY s ->> 'name')
                             FROM jsonb_array_elements(coalesce(p_body -> 'sinks', '[]')) AS s),
                          '[]'),
        'notices', coalesce(p_body -> 'notices', '[]'))
$$;

-- Store p_body as the next version, atomically.
--   p_expect: the version the caller read (0: none exists yet); NULL: any.
--             A different current version is refused (SQLSTATE PY001) and
--             nothing is stored.
--   p_if_none: store only if no version exists (a node's first start);
--             otherwise answer the current version unchanged.
-- A body equal to the current one (same checksum) is not stored again.
-- Answers (version, previous, changed); a change also rewrites
-- parley_settings 'routing' and notifies channel parley_policy with the
-- version, in the same transaction.
CREATE FUNCTION parley_policy_apply(p_body jsonb, p_expect bigint, p_if_none boolean, p_by text,
                                    OUT version bigint, OUT previous bigint, OUT changed boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_sum text := md5(p_body::text);
    v_cur cluster_policy%ROWTYPE;
BEGIN
    -- One applier at a time, also while the table is still empty.
    PERFORM pg_advisory_xact_lock(parley_lock_space(), parley_lock_key('policy', NULL, NULL));
    SELECT * INTO v_cur FROM cluster_policy ORDER BY cluster_policy.version DESC LIMIT 1;
    previous := coalesce(v_cur.version, 0);
    IF p_if_none AND v_cur.version IS NOT NULL THEN
        version := v_cur.version;
        changed := false;
        RETURN;
    END IF;
    IF p_expect IS NOT NULL AND p_expect <> previous THEN
        RAISE EXCEPTION 'the cluster policy is at version %, not the expected version %',
              previous, p_expect USING ERRCODE = 'PY001';
    END IF;
    IF v_cur.checksum = v_sum THEN
        version := previous;
        changed := false;
        RETURN;
    END IF;
    version := previous + 1;
    changed := true;
    INSERT INTO cluster_policy (version, body, checksum, applied_by)
    VALUES (version, p_body, v_sum, p_by);
    INSERT INTO parley_settings (key, value) VALUES ('routing', parley_policy_routing(p_body))
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now();
    PERFORM pg_notify('parley_policy', version::text);
END
$$;
