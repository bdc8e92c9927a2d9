-- pgbench script: one customer's whole timeline across channels, every
-- message of every conversation, oldest first, with channel and direction.
-- :active (pgbench -D) is the number of customers with messages; gen.sql
-- makes them customers 1..active. Served by conversation_customer
-- (customer_id, id) and message_conversation (conversation_id, id).
\set customer random(1, :active)
SELECT m.id, m.conversation_id, c.channel_kind, c.channel_instance, c.visibility, m.direction,
       coalesce(m.platform_time, m.received_at) AS at, coalesce(m.edited_text, m.text) AS text,
       m.author_identity_id, m.delivery_status
  FROM conversation c
  JOIN message m ON m.conversation_id = c.id
 WHERE c.customer_id = :customer
 ORDER BY at, m.id;
