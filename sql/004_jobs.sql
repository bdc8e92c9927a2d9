-- 004_jobs: the outbox. Every outbound action (a reply, a ticket, a notice)
-- is a row here, written in the same transaction as the data that caused it,
-- and carried out by the job runner in every parleyd (docs/JOBS.md).

CREATE TABLE job (
    id               bigserial   PRIMARY KEY,
    target_kind      text        NOT NULL,
    target_instance  text        NOT NULL,
    operation        text        NOT NULL,
    payload          jsonb       NOT NULL DEFAULT '{}',
    -- Handed to the plugin on every attempt, so a retry after a timeout can
    -- avoid a second ticket or reply. Unique: enqueueing twice with the same
    -- key is one job.
    idempotency_key  text        NOT NULL DEFAULT ('job-' || gen_random_uuid()::text),
    -- Jobs sharing a key run one at a time, in id order.
    ordering_key     text,
    state            text        NOT NULL DEFAULT 'queued',
    attempts         int         NOT NULL DEFAULT 0,
    max_attempts     int,                         -- NULL: the runner's default
    run_at           timestamptz NOT NULL DEFAULT now(),  -- not before
    lease_until      timestamptz,                 -- running: reclaimable after this
    claimed_by       text,                        -- host:pid of the last runner
    -- New on every claim: a runner whose lease ran out and whose job was
    -- claimed again can no longer record an outcome for it.
    claim_token      uuid,
    last_error       text,
    external_id      text,                        -- the result, e.g. the ticket id
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    -- RETRYs with the platform's own "not before" time (Retry-After, a rate
    -- limit's reset): not failed attempts, but capped so a platform that
    -- never lets go still ends the job.
    deferrals        int         NOT NULL DEFAULT 0,
    CONSTRAINT job_idempotency_key UNIQUE (idempotency_key),
    CONSTRAINT job_state CHECK (state IN ('queued', 'running', 'done', 'dead')),
    CONSTRAINT job_target_operation CHECK (
        (target_kind = 'channel' AND operation = 'send') OR
        (target_kind = 'sink' AND operation IN ('open_ticket', 'append_message')) OR
        (target_kind = 'notifier' AND operation = 'deliver') OR
        -- The daemon's own operations, e.g. ('core', 'jobs', 'noop'); the
        -- runner makes a job it has no operation for dead.
        target_kind = 'core'),
    CONSTRAINT job_payload_object CHECK (jsonb_typeof(payload) = 'object'),
    CONSTRAINT job_max_attempts CHECK (max_attempts IS NULL OR max_attempts >= 1),
    CONSTRAINT job_attempts CHECK (attempts >= 0),
    CONSTRAINT job_running_lease CHECK (state <> 'running' OR (lease_until IS NOT NULL AND claim_token IS NOT NULL))
);

-- The claim walks this in (run_at, id) order. Finished jobs drop out of it,
-- so its size is the backlog, not the history.
CREATE INDEX job_due ON job (run_at, id) WHERE state IN ('queued', 'running');
-- "Is an earlier job with my ordering key still queued or running?"
CREATE INDEX job_ordering ON job (ordering_key, id)
    WHERE ordering_key IS NOT NULL AND state IN ('queued', 'running');
-- The metrics count unfinished and dead jobs per state and target.
CREATE INDEX job_unfinished ON job (state, target_kind, target_instance) WHERE state <> 'done';

-- The runners alive: each one's sweep records which targets it can run
-- ('kind/instance'), so a job none of them can take is noticed.
CREATE TABLE job_runner (
    runner   text        PRIMARY KEY,          -- host:pid
    targets  text[]      NOT NULL,
    seen_at  timestamptz NOT NULL DEFAULT now()
);

-- Targets whose jobs no running node can take, noticed once per episode:
-- the row goes when the target's jobs are claimable (or gone) again.
CREATE TABLE job_unclaimed (
    target      text        PRIMARY KEY,       -- kind/instance
    noticed_at  timestamptz NOT NULL DEFAULT now()
);
