-- 011_conversations_api: what the agents' conversation list reads by.
--
-- GET /api/v1/conversations (sql/functions/api_conversations.sql) walks one
-- of these indexes per (channel instance, status) the caller may see and
-- asked for, each in the list's order from the cursor on, and merges the
-- few rows each gives: a page costs about (instances x statuses x page size)
-- index entries however large the table, and an instance with little open
-- work is not buried under a busy one. Not partial, so resolved and closed
-- work lists as cheaply as open work.
--
-- The queue order (sort=due): the next answer's due time (none: last), then
-- severity (urgent first), then id; never follower counts. The expressions
-- are repeated word for word in the list's query, which is how the planner
-- matches them; a function here would tie the index to the function set.
CREATE INDEX conversation_list_due ON conversation
    (channel_instance, status, coalesce(next_response_due_at, 'infinity'::timestamptz),
     (CASE priority WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'normal' THEN 2 ELSE 3 END), id);
-- sort=oldest and sort=newest (walked backwards).
CREATE INDEX conversation_list_age ON conversation (channel_instance, status, created_at, id);
