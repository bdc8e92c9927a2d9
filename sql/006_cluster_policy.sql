-- 006_cluster_policy: the settings every node shares, stored once, versioned.
--
-- The cluster policy (docs/CONFIG.md, "Node settings and cluster policy") is
-- the cluster-scoped part of the configuration: ingest rules, notice rules,
-- sinks' routes. Each change is a new row; the highest version is in force
-- and every node applies it. A change names the version it replaces
-- (`parleyd --apply-policy FILE --expect-version N`), so two operators
-- cannot overwrite each other unknowingly.

CREATE TABLE cluster_policy (
    version    bigint      PRIMARY KEY CHECK (version > 0),
    body       jsonb       NOT NULL CHECK (jsonb_typeof(body) = 'object'),
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    applied_by text        NOT NULL
);
