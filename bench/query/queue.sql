-- pgbench script: an agent's queue, the 50 open conversations due first,
-- with the customer's name. Served by conversation_open_by_due
-- (next_response_due_at, id) WHERE status IN ('open', 'pending').
SELECT c.id, c.status, c.priority, c.channel_instance, c.visibility, c.assignee_id,
       c.next_response_due_at, c.last_inbound_at, c.customer_id, cu.display_name
  FROM conversation c
  JOIN customer cu ON cu.id = c.customer_id
 WHERE c.status IN ('open', 'pending')
 ORDER BY c.next_response_due_at NULLS LAST, c.id
 LIMIT 50;
