-- jobs_api: the agent API's view of dead jobs (core/api.c, "jobs"), for
-- admins: list them, run one again, or discard it (docs/JOBS.md, "Operating").
-- Payloads are not shown: they hold customers' messages.

CREATE FUNCTION parley_api_job_json(j job) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
        'id', j.id,
        'target_kind', j.target_kind,
        'target_instance', j.target_instance,
        'operation', j.operation,
        'state', j.state,
        'attempts', j.attempts,
        'max_attempts', j.max_attempts,
        'last_error', j.last_error,
        'ordering_key', j.ordering_key,
        'run_at', j.run_at,
        'created_at', j.created_at,
        'updated_at', j.updated_at,
        'finished_at', j.finished_at)
$$;

-- GET /api/v1/jobs/dead: dead jobs, newest first; filters target_kind and
-- target_instance. Cursor: the last id served.
CREATE FUNCTION parley_api_jobs_dead(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    q          jsonb := p_req -> 'query';
    v_limit    integer;
    v_cursor   jsonb;
    v_before   bigint;
    v_kind     text;
    v_instance text;
    v_items    jsonb;
    v_last     bigint;
    v_n        integer;
BEGIN
    PERFORM parley_api_require_role(p_actor, 'admin');
    PERFORM parley_api_only(q, ARRAY['limit', 'cursor', 'target_kind', 'target_instance'], 'query');
    v_limit := parley_api_limit(q);
    v_kind := parley_api_choice(q ->> 'target_kind', ARRAY['channel', 'sink', 'notifier', 'core'],
                                'target_kind', 400);
    v_instance := q ->> 'target_instance';
    IF v_instance IS NOT NULL AND (length(v_instance) NOT BETWEEN 1 AND 200) THEN
        PERFORM parley_api_error(400, 'invalid_parameter', 'target_instance: 1 to 200 characters');
    END IF;
    v_cursor := parley_api_cursor_decode('jobs.dead', q ->> 'cursor');
    IF v_cursor IS NOT NULL THEN
        IF jsonb_typeof(v_cursor) <> 'number' OR (v_cursor #>> '{}') !~ '^[1-9][0-9]{0,17}$' THEN
            PERFORM parley_api_error(400, 'invalid_cursor', 'cursor: not one this API gave out');
        END IF;
        v_before := (v_cursor #>> '{}')::bigint;
    END IF;
    SELECT jsonb_agg(parley_api_job_json(j) ORDER BY j.id DESC), min(j.id), count(*)
      INTO v_items, v_last, v_n
      FROM (SELECT * FROM job
             WHERE state = 'dead' AND (v_before IS NULL OR id < v_before)
               AND (v_kind IS NULL OR target_kind = v_kind)
               AND (v_instance IS NULL OR target_instance = v_instance)
             ORDER BY id DESC
             LIMIT v_limit) j;
    RETURN QUERY SELECT 200, parley_api_page(
        v_items,
        CASE WHEN v_n = v_limit AND EXISTS (SELECT 1 FROM job
                                              WHERE state = 'dead' AND id < v_last
                                                AND (v_kind IS NULL OR target_kind = v_kind)
                                                AND (v_instance IS NULL OR target_instance = v_instance))
             THEN parley_api_cursor_encode('jobs.dead', to_jsonb(v_last)) END);
END
$$;

-- The dead job a path names, locked; 404 when there is no such job, 409
-- when it is not dead.
CREATE FUNCTION parley_api_dead_job(p_actor jsonb, p_req jsonb) RETURNS job
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    j    job;
BEGIN
    PERFORM parley_api_require_role(p_actor, 'admin');
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    PERFORM parley_api_only(p_req -> 'body', '{}', 'body');
    v_id := parley_api_id(p_req #>> '{path,id}', 'job');
    SELECT * INTO j FROM job WHERE id = v_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM parley_api_error(404, 'not_found', 'no job ' || v_id);
    END IF;
    IF j.state <> 'dead' THEN
        PERFORM parley_api_error(409, 'not_dead', 'the job is ' || j.state || ', not dead');
    END IF;
    RETURN j;
END
$$;

-- A dead job is about to run again: what its death set off that would
-- stand in its way is undone. A send's message (and the public note of a
-- private reply) is no longer failed: it is being sent; the conversation
-- keeps its delivery error until the send succeeds. A ticket that never
-- opened is opening again, with the messages that died with it, unless the case got a ticket in that sink since
-- (a later message opened one): then running the job would open a second
-- ticket, and the retry is refused (409; discard the job). Takes the lock
-- routing takes for the case and sink (tickets.sql).
CREATE FUNCTION parley_job_revive(j job) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    l      ticket_link;
    v_live bigint;
BEGIN
    IF j.target_kind = 'channel' AND j.operation = 'send' THEN
        UPDATE message SET delivery_status = NULL, delivery_detail = NULL
         WHERE delivery_status = 'failed'
           AND id IN (SELECT (j.payload ->> k)::bigint FROM unnest(ARRAY['message_id', 'public_message_id']) AS k
                       WHERE (j.payload ->> k) ~ '^[0-9]{1,18}$');
    ELSIF j.target_kind = 'sink' AND j.operation = 'open_ticket'
          AND (j.payload ->> 'ticket_link_id') ~ '^[0-9]{1,18}$' THEN
        SELECT * INTO l FROM ticket_link WHERE id = (j.payload ->> 'ticket_link_id')::bigint;
        IF NOT FOUND OR l.state <> 'failed' THEN
            RETURN;
        END IF;
        PERFORM pg_advisory_xact_lock(parley_lock_space(),
                                      parley_lock_key('t', l.case_id::text, l.sink_instance));
        SELECT id INTO v_live FROM ticket_link
         WHERE case_id = l.case_id AND sink_instance = l.sink_instance
           AND state IN ('opening', 'open', 'pending', 'solved')
         LIMIT 1;
        IF v_live IS NOT NULL THEN
            PERFORM parley_api_error(409, 'superseded',
                                     'the case has had a ticket in ' || l.sink_instance ||
                                     ' since (ticket link ' || v_live || '); discard this job');
        END IF;
        UPDATE ticket_link SET state = 'opening', updated_at = now() WHERE id = l.id AND state = 'failed';
        -- The messages that died with it wait for it again (same ordering
        -- key, later ids) and get the ticket's id when it opens.
        UPDATE job SET state = 'queued', attempts = 0, deferrals = 0, run_at = now(), last_error = NULL,
                       finished_at = NULL, updated_at = now()
         WHERE state = 'dead' AND target_kind = 'sink' AND operation = 'append_message'
           AND target_instance = j.target_instance AND payload ->> 'ticket_link_id' = l.id::text
           AND payload ->> 'external_ticket_id' IS NULL
           AND last_error = format('not added: the ticket was never opened (job %s)', j.id);
    END IF;
END
$$;

-- POST /api/v1/jobs/{id}/retry: a dead job is queued again, due now, with
-- a fresh set of attempts (parley_job_revive undoes what its death set off).
CREATE FUNCTION parley_api_job_retry(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    j job := parley_api_dead_job(p_actor, p_req);
    v job;
BEGIN
    PERFORM parley_job_revive(j);
    UPDATE job SET state = 'queued', attempts = 0, deferrals = 0, run_at = now(), last_error = NULL,
                   finished_at = NULL, lease_until = NULL, claim_token = NULL, updated_at = now()
     WHERE id = j.id
    RETURNING * INTO v;
    PERFORM parley_jobs_wake();
    PERFORM parley_api_audit(p_actor, 'job.retry', 'job', j.id, parley_api_job_json(j), parley_api_job_json(v));
    RETURN QUERY SELECT 200, parley_api_job_json(v);
END
$$;

-- POST /api/v1/jobs/{id}/discard: a dead job is set aside for good
-- (state discarded): kept as a record, no longer listed as dead.
CREATE FUNCTION parley_api_job_discard(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    j job := parley_api_dead_job(p_actor, p_req);
    v job;
BEGIN
    UPDATE job SET state = 'discarded', updated_at = now() WHERE id = j.id RETURNING * INTO v;
    PERFORM parley_api_audit(p_actor, 'job.discard', 'job', j.id, parley_api_job_json(j), parley_api_job_json(v));
    RETURN QUERY SELECT 200, parley_api_job_json(v);
END
$$;
