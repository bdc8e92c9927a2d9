-- jobs: the outbox (docs/JOBS.md). Enqueueing, claiming, recording an
-- outcome, and handing a finished or dead job to what its end sets off
-- (replies: a send; tickets: a sink job).

-- Wake the runners: they LISTEN on parley_jobs. Called by whatever inserts
-- jobs, after the insert; delivered at commit (not at all on rollback), and
-- PostgreSQL folds equal notifications of one transaction into one. Retries
-- need none: the runner's timers cover run_at in the future.
CREATE FUNCTION parley_jobs_wake() RETURNS void
LANGUAGE sql AS $$ SELECT pg_notify('parley_jobs', '') $$;

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
    ELSE
        PERFORM parley_jobs_wake();
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
-- dead here (and handed to parley_job_died, with the runner's notice
-- settings p_opts) and returned with claimed = false, so the runner can
-- count it.
CREATE FUNCTION parley_job_claim(p_limit int, p_lease_ms int, p_runner text,
                                 p_default_max_attempts int, p_opts jsonb DEFAULT NULL,
                                 p_targets text[] DEFAULT NULL)
RETURNS TABLE (claimed boolean, id bigint, claim_token uuid, target_kind text,
               target_instance text, operation text, payload jsonb,
               idempotency_key text, attempts int)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    r job%ROWTYPE;
BEGIN
    FOR r IN
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
        RETURNING j.*
    LOOP
        PERFORM parley_job_died(r, r.last_error, p_opts);
        claimed := false;
        id := r.id;
        claim_token := NULL;
        target_kind := r.target_kind;
        target_instance := r.target_instance;
        operation := r.operation;
        payload := NULL;
        idempotency_key := r.idempotency_key;
        attempts := r.attempts;
        RETURN NEXT;
    END LOOP;

    RETURN QUERY
    WITH due AS (
        SELECT j.id FROM job j
        WHERE j.state IN ('queued', 'running') AND j.run_at <= now()
          AND (j.state = 'queued' OR j.lease_until < now())
          -- NULL: any target. Otherwise a job for a target this runner has
          -- not loaded is left for one that has.
          AND (p_targets IS NULL OR j.target_kind || '/' || j.target_instance = ANY (p_targets))
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

-- Record the outcome of a claimed job: p_outcome is 'ok', 'retry', 'fail',
-- or 'release' (claimed but never started: back to queued, the attempt not
-- counted). Only the claim that is current counts: a runner whose lease ran
-- out and whose job was claimed again gets no row back and changes nothing.
--
-- RETRY with the platform's own "not before" time p_retry_at (Retry-After,
-- a rate limit's reset) is a deferral, not a failed attempt: a minute of
-- 429s must not use up a job's attempts. Deferrals are capped (1000) so a
-- platform that never lets go still ends the job. Any other RETRY waits
-- full-jitter exponential backoff,
--   random() * least(backoff_max, backoff_base * 2^(attempts - 1)),
-- and never less than p_retry_at. When the attempts are used up the job is
-- dead instead. The reason is kept in last_error either way.
--
-- A finished job goes to parley_job_done (with what a send opened: a
-- private chat p_thread_id, the customer's id in it p_recipient_id), a dead
-- one to parley_job_died (with the runner's notice settings p_opts).
CREATE FUNCTION parley_job_finish(p_id bigint, p_claim_token uuid, p_outcome text,
                                  p_reason text, p_external_id text, p_retry_at timestamptz,
                                  p_backoff_base_ms int, p_backoff_max_ms int,
                                  p_default_max_attempts int, p_thread_id text DEFAULT NULL,
                                  p_recipient_id text DEFAULT NULL, p_opts jsonb DEFAULT NULL,
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
        PERFORM parley_job_done(j, p_external_id, p_thread_id, p_recipient_id, p_reason);
        new_state := 'done';
    ELSIF p_outcome = 'release' THEN
        UPDATE job SET state = 'queued', attempts = greatest(j.attempts - 1, 0),
                       lease_until = NULL, claim_token = NULL, updated_at = now()
        WHERE job.id = p_id;
        new_state := 'queued';
    ELSIF p_outcome = 'retry' AND p_retry_at > now() AND j.deferrals < 1000 THEN
        UPDATE job SET state = 'queued', run_at = p_retry_at, last_error = p_reason,
                       attempts = greatest(j.attempts - 1, 0), deferrals = j.deferrals + 1,
                       lease_until = NULL, claim_token = NULL, updated_at = now()
        WHERE job.id = p_id;
        new_state := 'queued';
        retry_in_ms := greatest(0, ceil(extract(epoch FROM p_retry_at - now()) * 1000))::bigint;
    ELSIF p_outcome = 'retry'
          AND j.attempts < coalesce(j.max_attempts, p_default_max_attempts) THEN
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
        PERFORM parley_job_died(j, p_reason, p_opts);
        new_state := 'dead';
    ELSE
        RAISE EXCEPTION 'parley_job_finish: unknown outcome %', p_outcome;
    END IF;
    RETURN NEXT;
END
$$;

-- What a job's end sets off, by target: a channel send records its message
-- (replies), a sink job its ticket (tickets).
CREATE FUNCTION parley_job_done(j job, p_external_id text, p_thread_id text, p_recipient_id text,
                                p_note text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF j.target_kind = 'channel' AND j.operation = 'send' THEN
        PERFORM parley_send_done(j, p_external_id, p_thread_id, p_recipient_id, p_note);
    ELSIF j.target_kind = 'sink' THEN
        PERFORM parley_sink_done(j, p_external_id);
    END IF;
END
$$;

-- What a dead job sets off, by target. A job made dead by the claim because
-- its lease ran out after the last attempt (its runner crashed or hung) is a
-- failure like any other.
CREATE FUNCTION parley_job_died(j job, p_reason text, p_opts jsonb) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF j.target_kind = 'channel' AND j.operation = 'send' THEN
        PERFORM parley_send_failed(j, p_reason, coalesce(p_opts, '{}'));
    ELSIF j.target_kind = 'sink' THEN
        PERFORM parley_sink_failed(j, p_reason);
    END IF;
END
$$;

-- Milliseconds until the next queued job becomes due (NULL: none waiting),
-- so a runner can wake for a retry instead of waiting for its sweep.
CREATE FUNCTION parley_job_next_due_ms() RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT greatest(0, ceil(extract(epoch FROM min(run_at) - now()) * 1000))::bigint
    FROM job WHERE state = 'queued' AND run_at > now()
$$;

-- A runner's sweep: record that p_runner is alive and runs p_targets, forget
-- runners not seen for a day, and notice the targets no runner seen within
-- p_alive_ms can run whose jobs have been due for p_notice_ms (one
-- job.unclaimed notice per target and episode, to the notifiers routed for
-- it). unclaimed: the targets noticed by this call. reporter: whether this
-- runner reports the cluster-wide gauges (the live runner with the least
-- name), so they are exported once per cluster.
CREATE FUNCTION parley_job_runner_seen(p_runner text, p_targets text[], p_alive_ms int,
                                       p_notice_ms int, OUT reporter boolean,
                                       OUT unclaimed text[])
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    INSERT INTO job_runner (runner, targets, seen_at) VALUES (p_runner, p_targets, now())
    ON CONFLICT (runner) DO UPDATE SET targets = excluded.targets, seen_at = excluded.seen_at;
    DELETE FROM job_runner WHERE seen_at < now() - interval '1 day';
    reporter := p_runner = (SELECT min(runner) FROM job_runner
                             WHERE seen_at >= now() - p_alive_ms * interval '1 millisecond');
    unclaimed := '{}';
    -- The episode ends for targets a live runner has or without waiting jobs.
    DELETE FROM job_unclaimed u
     WHERE EXISTS (SELECT 1 FROM job_runner w
                    WHERE w.seen_at >= now() - p_alive_ms * interval '1 millisecond'
                      AND u.target = ANY (w.targets))
        OR NOT EXISTS (SELECT 1 FROM job j
                        WHERE j.state IN ('queued', 'running')
                          AND j.target_kind || '/' || j.target_instance = u.target);
    FOR r IN
        SELECT j.target_kind || '/' || j.target_instance AS target, count(*) AS jobs,
               min(j.id) AS first_id, min(j.run_at) AS since
          FROM job j
         -- Waiting: due, or running on a runner whose lease ran out (it died).
         WHERE (j.state = 'queued' AND j.run_at <= now() - p_notice_ms * interval '1 millisecond')
            OR (j.state = 'running' AND j.lease_until <= now() - p_notice_ms * interval '1 millisecond')
         GROUP BY 1
    LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM job_runner w
                               WHERE w.seen_at >= now() - p_alive_ms * interval '1 millisecond'
                                 AND r.target = ANY (w.targets));
        INSERT INTO job_unclaimed (target) VALUES (r.target) ON CONFLICT DO NOTHING;
        CONTINUE WHEN NOT FOUND;
        PERFORM parley_notify('job.unclaimed', NULL, r.target || ':' || r.first_id,
                              format('No running node can take jobs for %s', r.target),
                              format('%s job(s) for %s have waited since %s: no running parleyd '
                                     'loads that instance.', r.jobs, r.target, r.since),
                              jsonb_build_object('target', r.target, 'jobs', r.jobs,
                                                 'first_job_id', r.first_id,
                                                 'due_since', r.since));
        unclaimed := unclaimed || r.target;
    END LOOP;
END
$$;
