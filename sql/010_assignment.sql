-- 010_assignment: team queues served in due order, and dead jobs an
-- operator chose not to run again.

-- A team's queue in the order it is served: the next answer's due time
-- first (conversations without one after those with one), then the time it
-- joined the queue. The claim walks it with FOR UPDATE SKIP LOCKED LIMIT 1,
-- so serving one conversation never sorts the whole queue.
CREATE INDEX conversation_team_queue ON conversation (team_id, next_response_due_at, queued_at, id)
    WHERE queued_at IS NOT NULL AND assignee_id IS NULL;

-- An operator may discard a dead job (POST /api/v1/jobs/{id}/discard): it
-- is kept as a record but no longer listed among the dead ones.
ALTER TABLE job DROP CONSTRAINT job_state;
ALTER TABLE job ADD CONSTRAINT job_state
    CHECK (state IN ('queued', 'running', 'done', 'dead', 'discarded'));

-- The dead jobs, newest first (GET /api/v1/jobs/dead).
CREATE INDEX job_dead ON job (id) WHERE state = 'dead';
