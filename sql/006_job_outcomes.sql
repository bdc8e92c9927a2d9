-- 006_job_outcomes: what a job's end sets off, by target, and deferrals.
--
-- parley_job_finish and parley_job_claim (003) now hand a finished or dead
-- job to parley_job_done / parley_job_died: a channel send records its
-- message (004), a sink job its ticket (005). A job made dead by the claim
-- because its lease ran out after the last attempt (its runner crashed or
-- hung) is a failure like any other. Their new parameters carry what a
-- send opened (a private chat, the customer's id in it) and the runner's
-- notice settings.
--
-- A RETRY with the platform's own "not before" time (Retry-After, a rate
-- limit's reset) is a deferral, not a failed attempt: a minute of 429s must
-- not use up a job's attempts. Deferrals are capped (1000) so a platform
-- that never lets go still ends the job.
--
-- Targets: a job names a plugin instance ('channel', 'sink', 'notifier') or
-- a built-in operation of the daemon ('core'). A runner claims only jobs for
-- the targets it has loaded (p_targets); a job for a target no running node
-- has waits, and raises a job.unclaimed notice (parley_job_runner_seen).

ALTER TABLE job ADD COLUMN deferrals int NOT NULL DEFAULT 0;

ALTER TABLE job DROP CONSTRAINT job_target_operation;
ALTER TABLE job ADD CONSTRAINT job_target_operation CHECK (
    (target_kind = 'channel' AND operation = 'send') OR
    (target_kind = 'sink' AND operation IN ('open_ticket', 'append_message')) OR
    (target_kind = 'notifier' AND operation = 'deliver') OR
    -- The daemon's own operations, e.g. ('core', 'jobs', 'noop'); the runner
    -- makes a job it has no operation for dead.
    target_kind = 'core');

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

-- What a job's end sets off, by target.
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

DROP FUNCTION parley_job_finish(bigint, uuid, text, text, text, timestamptz, int, int, int);
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

DROP FUNCTION parley_job_claim(int, int, text, int);
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
