-- 012_assignment: team queues served in due order.

-- A team's queue in the order it is served: the next answer's due time
-- first (conversations without one after those with one), then the time it
-- joined the queue. The claim walks it with FOR UPDATE SKIP LOCKED LIMIT 1,
-- so serving one conversation never sorts the whole queue.
CREATE INDEX conversation_team_queue ON conversation (team_id, next_response_due_at, queued_at, id)
    WHERE queued_at IS NOT NULL AND assignee_id IS NULL;
