-- 003_jobs: the outbox. Every outbound action (a reply, a ticket, a notice)
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
    CONSTRAINT job_idempotency_key UNIQUE (idempotency_key),
    CONSTRAINT job_state CHECK (state IN ('queued', 'running', 'done', 'dead')),
    CONSTRAINT job_target_operation CHECK (
        (target_kind = 'channel' AND operation = 'send') OR
        (target_kind = 'sink' AND operation IN ('open_ticket', 'append_message')) OR
        (target_kind = 'notifier' AND operation = 'deliver')),
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

-- Wake the runners. One notification per statement (and PostgreSQL folds
-- equal notifications of one transaction into one), delivered at commit.
-- Retries need none: the runner's timers cover run_at in the future.
CREATE FUNCTION parley_job_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('parley_jobs', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER job_notify AFTER INSERT ON job
    FOR EACH STATEMENT EXECUTE FUNCTION parley_job_notify();

-- Enqueue one job; returns its id. With an idempotency key that exists
-- already, nothing is inserted and the existing job's id is returned.
CREATE FUNCTION parley_job_enqueue(
    p_target_kind text,
    p_target_instance text,
    p_operation text,
    p_payload jsonb,
    p_idempotency_key text DEFAULT NULL,
    p_ordering_key text DEFAULT NULL,
    p_run_at timestamptz DEFAULT now(),
    p_max_attempts int DEFAULT NULL
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
BEGIN
    INSERT INTO job (target_kind, target_instance, operation, payload, idempotency_key,
                     ordering_key, run_at, max_attempts)
    VALUES (p_target_kind, p_target_instance, p_operation, coalesce(p_payload, '{}'),
            coalesce(p_idempotency_key, 'job-' || gen_random_uuid()::text),
            p_ordering_key, coalesce(p_run_at, now()), p_max_attempts)
    ON CONFLICT ON CONSTRAINT job_idempotency_key DO NOTHING
    RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        SELECT id INTO v_id FROM job WHERE idempotency_key = p_idempotency_key;
    END IF;
    RETURN v_id;
END
$$;

-- Claim up to p_limit due jobs for runner p_runner, leased for p_lease_ms.
-- Due: queued with run_at reached, or running with an expired lease (its
-- runner died or hung). A job with an ordering key is due only when no
-- earlier job (smaller id) with that key is queued or running; dead jobs do
-- not block. SKIP LOCKED lets runners claim side by side without waiting
-- and without ever taking the same job.
--
-- An expired job that has used up its attempts is not run again: it is made
-- dead here and returned with claimed = false, so the runner can count it.
CREATE FUNCTION parley_job_claim(p_limit int, p_lease_ms int, p_runner text,
                                 p_default_max_attempts int)
RETURNS TABLE (claimed boolean, id bigint, claim_token uuid, target_kind text,
               target_instance text, operation text, payload jsonb,
               idempotency_key text, attempts int)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH expired AS (
        SELECT j.id FROM job j
        WHERE j.state = 'running' AND j.lease_until < now()
          AND j.attempts >= coalesce(j.max_attempts, p_default_max_attempts)
        FOR UPDATE SKIP LOCKED
    )
    UPDATE job j
    SET state = 'dead', lease_until = NULL, claim_token = NULL, finished_at = now(),
        updated_at = now(),
        last_error = 'lease expired after the last attempt (runner ' ||
                     coalesce(j.claimed_by, '?') || ' did not finish it)'
    FROM expired WHERE j.id = expired.id
    RETURNING false, j.id, NULL::uuid, j.target_kind, j.target_instance, j.operation,
              NULL::jsonb, j.idempotency_key, j.attempts;

    RETURN QUERY
    WITH due AS (
        SELECT j.id FROM job j
        -- A running job's run_at is always past (it was due when claimed),
        -- so both cases walk job_due in claim order and stop at p_limit.
        WHERE j.state IN ('queued', 'running') AND j.run_at <= now()
          AND (j.state = 'queued' OR j.lease_until < now())
          AND (j.ordering_key IS NULL OR NOT EXISTS (
                SELECT 1 FROM job p
                WHERE p.ordering_key = j.ordering_key AND p.id < j.id
                  AND p.state IN ('queued', 'running')))
        ORDER BY j.run_at, j.id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE job j
    SET state = 'running', attempts = j.attempts + 1,
        lease_until = now() + p_lease_ms * interval '1 millisecond',
        claimed_by = p_runner, claim_token = gen_random_uuid(), updated_at = now()
    FROM due WHERE j.id = due.id
    RETURNING true, j.id, j.claim_token, j.target_kind, j.target_instance, j.operation,
              j.payload, j.idempotency_key, j.attempts;
END
$$;

-- A channel 'send' succeeded: the outbound message gets its platform id and
-- the status sent, each only where nothing is known yet (a receipt may have
-- arrived first; delivery status only moves forward). When the platform's
-- echo of the message was stored first, it holds that platform id already
-- (unique per instance); the message then only gets its status, so the
-- outcome can always be recorded.
CREATE FUNCTION parley_job_mark_sent(p_message bigint, p_external_id text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        UPDATE message
        SET external_id = coalesce(external_id, p_external_id),
            delivery_status = coalesce(delivery_status, 'sent')
        WHERE id = p_message AND (external_id IS NULL OR delivery_status IS NULL);
    EXCEPTION WHEN unique_violation THEN
        UPDATE message SET delivery_status = coalesce(delivery_status, 'sent')
        WHERE id = p_message AND delivery_status IS NULL;
    END;
END
$$;

-- Record the outcome of a claimed job: p_outcome is 'ok', 'retry', 'fail',
-- or 'release' (claimed but never started: back to queued, the attempt not
-- counted). Only the claim that is current counts: a runner whose lease ran
-- out and whose job was claimed again gets no row back and changes nothing.
--
-- RETRY waits full-jitter exponential backoff,
--   random() * least(backoff_max, backoff_base * 2^(attempts - 1)),
-- and never less than the plugin's not-before time p_retry_at. When the
-- attempts are used up the job is dead instead. The reason is kept in
-- last_error either way.
--
-- A channel 'send' that succeeded fills in the outbound message's platform
-- id and marks it sent, where nothing newer is known already.
CREATE FUNCTION parley_job_finish(p_id bigint, p_claim_token uuid, p_outcome text,
                                  p_reason text, p_external_id text, p_retry_at timestamptz,
                                  p_backoff_base_ms int, p_backoff_max_ms int,
                                  p_default_max_attempts int,
                                  OUT new_state text, OUT retry_in_ms bigint)
RETURNS SETOF record LANGUAGE plpgsql AS $$
DECLARE
    j job%ROWTYPE;
    v_cap_ms double precision;
    v_run_at timestamptz;
BEGIN
    SELECT * INTO j FROM job
    WHERE job.id = p_id AND job.claim_token = p_claim_token AND job.state = 'running'
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;

    IF p_outcome = 'ok' THEN
        UPDATE job SET state = 'done', external_id = p_external_id, last_error = NULL,
                       lease_until = NULL, claim_token = NULL, finished_at = now(),
                       updated_at = now()
        WHERE job.id = p_id;
        IF j.target_kind = 'channel' AND j.operation = 'send'
           AND (j.payload ->> 'message_id') ~ '^[0-9]{1,18}$' THEN
            PERFORM parley_job_mark_sent((j.payload ->> 'message_id')::bigint, p_external_id);
        END IF;
        new_state := 'done';
    ELSIF p_outcome = 'release' THEN
        UPDATE job SET state = 'queued', attempts = greatest(j.attempts - 1, 0),
                       lease_until = NULL, claim_token = NULL, updated_at = now()
        WHERE job.id = p_id;
        new_state := 'queued';
    ELSIF p_outcome = 'retry'
          AND j.attempts < coalesce(j.max_attempts, p_default_max_attempts) THEN
        -- 2^(attempts - 1) is capped in the exponent so it stays a finite double.
        v_cap_ms := least(p_backoff_max_ms::double precision,
                          p_backoff_base_ms * power(2::double precision,
                                                    least(greatest(j.attempts - 1, 0), 60)));
        v_run_at := greatest(coalesce(p_retry_at, '-infinity'),
                             now() + random() * v_cap_ms * interval '1 millisecond');
        UPDATE job SET state = 'queued', run_at = v_run_at, last_error = p_reason,
                       lease_until = NULL, claim_token = NULL, updated_at = now()
        WHERE job.id = p_id;
        new_state := 'queued';
        retry_in_ms := greatest(0, ceil(extract(epoch FROM v_run_at - now()) * 1000))::bigint;
    ELSIF p_outcome IN ('retry', 'fail') THEN
        UPDATE job SET state = 'dead', last_error = p_reason, lease_until = NULL,
                       claim_token = NULL, finished_at = now(), updated_at = now()
        WHERE job.id = p_id;
        new_state := 'dead';
    ELSE
        RAISE EXCEPTION 'parley_job_finish: unknown outcome %', p_outcome;
    END IF;
    RETURN NEXT;
END
$$;

-- Milliseconds until the next queued job becomes due (NULL: none waiting),
-- so a runner can wake for a retry instead of waiting for its sweep.
CREATE FUNCTION parley_job_next_due_ms() RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT greatest(0, ceil(extract(epoch FROM min(run_at) - now()) * 1000))::bigint
    FROM job WHERE state = 'queued' AND run_at > now()
$$;

-- ------------------------------------------- work set off by new conversations

-- Replaces the no-op of 002: ingest calls this once per batch with the
-- conversations customers started in it (never for echoes), inside the
-- batch's transaction, so a notice exists exactly when its conversation does.
-- For each notifier in opts.notify_new_conversation: one 'deliver' job whose
-- idempotency key makes a second call for the same conversation a no-op.
-- PL/pgSQL (plans kept per session) with an early return: this runs once
-- per ingest batch, usually with nothing to notify.
CREATE OR REPLACE FUNCTION parley_conversations_started(conversation_ids bigint[], opts jsonb)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(jsonb_array_length(opts -> 'notify_new_conversation'), 0) = 0 THEN
        RETURN;
    END IF;
    INSERT INTO job (target_kind, target_instance, operation, payload, idempotency_key, ordering_key)
    SELECT 'notifier', n.name, 'deliver',
           jsonb_build_object(
               'kind', 'conversation.created',
               'title', format('New %s conversation with %s on %s', c.visibility,
                               coalesce(cu.display_name, i.display_name, i.handle, 'a customer'),
                               c.channel_instance),
               'text', left(coalesce(first.text, ''), 500),
               'conversation', jsonb_strip_nulls(jsonb_build_object(
                   'conversation_id', c.id::text,
                   'case_number', sc.case_number,
                   'channel_instance', c.channel_instance,
                   'channel_kind', c.channel_kind,
                   'visibility', c.visibility,
                   'category', c.category,
                   'status', c.status,
                   'customer', jsonb_strip_nulls(jsonb_build_object(
                       'customer_id', cu.id::text,
                       'display_name', coalesce(cu.display_name, i.display_name),
                       'external_id', i.external_id,
                       'handle', i.handle)))),
               'payload', jsonb_build_object('conversation_id', c.id, 'customer_id', cu.id,
                                             'case_number', sc.case_number)),
           'conversation.created:' || c.id || ':' || n.name,
           'conversation:' || c.id
      FROM unnest(conversation_ids) AS x(id)
      JOIN conversation c ON c.id = x.id
      JOIN customer cu ON cu.id = c.customer_id
      LEFT JOIN identity i ON i.id = c.identity_id
      LEFT JOIN support_case sc ON sc.id = c.case_id
      LEFT JOIN LATERAL (SELECT m.text FROM message m WHERE m.conversation_id = c.id
                          ORDER BY m.id LIMIT 1) AS first ON true
     CROSS JOIN jsonb_array_elements_text(coalesce(opts -> 'notify_new_conversation', '[]'::jsonb)) AS n(name)
    ON CONFLICT ON CONSTRAINT job_idempotency_key DO NOTHING;
END
$$;
