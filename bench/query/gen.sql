-- Synthetic data for bench/query, set-based (generate_series), in steps that
-- bench/query/run.sh runs with psql. Each step is chosen with a psql
-- variable: -v step_prepare=1, -v step_base=1, -v step_messages=1 (with
-- -v lo=N -v hi=M, so several sessions can load messages at once), or
-- -v step_finish=1. Sizes: -v customers=N (all of them have identities),
-- -v active=N (customers 1..active have conversations and messages),
-- -v conversations=N, -v messages=N.
--
-- The tables stay ordinary logged tables. For the load only, their
-- secondary indexes and unique constraints are dropped and rebuilt after
-- (exactly as defined: the definitions are read from the catalog), and
-- triggers (foreign key checks, the message trigger that applies pending
-- events) are off in the loading sessions; the data is consistent by
-- construction.
--
-- Shape (with the defaults of run.sh: 1M customers, 800k active, 2M
-- conversations, 10M messages, 90 days):
--   identity      one per customer on instance "web", a second on "fb" for
--                 every fifth customer
--   conversation  customer c owns conversation c (c <= active), the rest go
--                 to active customers by a multiplicative hash; 30% public
--                 (thread "post-N"), 70% private; created over 90 days; the
--                 newest quarter mostly open or pending, older ones mostly
--                 resolved or closed; open ones have a next response due
--                 time; every seventh belongs to a case
--   message       message m <= conversations opens conversation m; later
--                 ones go to older conversations more often (u^1.3), at a
--                 random time after the conversation began; 80% inbound,
--                 17% outbound, 3% notes; one in 33 edited
--   support_case, case_reference, message_revision  to match

\set ON_ERROR_STOP on
\timing off
SET client_min_messages = warning;

-- The tables whose secondary indexes are rebuilt after the load.
\set bench_tables '''{customer,identity,support_case,case_reference,conversation,message,message_revision}'''

\if :{?step_prepare}
DROP TABLE IF EXISTS bench_saved_index;
CREATE TABLE bench_saved_index (ord serial, ddl text NOT NULL, drop_ddl text NOT NULL);
INSERT INTO bench_saved_index (ddl, drop_ddl)
SELECT CASE WHEN con.oid IS NOT NULL
            THEN format('ALTER TABLE %s ADD CONSTRAINT %I %s', i.indrelid::regclass, con.conname,
                        pg_get_constraintdef(con.oid))
            ELSE pg_get_indexdef(i.indexrelid) END,
       CASE WHEN con.oid IS NOT NULL
            THEN format('ALTER TABLE %s DROP CONSTRAINT %I', i.indrelid::regclass, con.conname)
            ELSE format('DROP INDEX %s', i.indexrelid::regclass) END
  FROM pg_index i
  LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
                             AND con.contype IN ('u', 'x')
 WHERE i.indrelid IN (SELECT unnest(:bench_tables::text[])::regclass)
   AND NOT i.indisprimary
 ORDER BY i.indrelid::regclass::text, i.indexrelid::regclass::text;
SELECT drop_ddl FROM bench_saved_index ORDER BY ord \gexec
\endif

\if :{?step_base}
SET session_replication_role = replica;
SELECT setseed(0.42);

INSERT INTO customer (id, display_name, created_at, updated_at)
SELECT g, 'Customer ' || g, t, t
  FROM generate_series(1, :customers) AS g,
       LATERAL (SELECT now() - interval '90 days' + (g::float8 / :customers) * interval '90 days' AS t) AS x;

INSERT INTO identity (id, customer_id, channel_kind, channel_instance, external_id, handle,
                      display_name, first_seen_at, last_seen_at)
SELECT g, g, 'webhook', 'web', 'cust-' || g, NULL, 'Customer ' || g, c.created_at, c.created_at
  FROM generate_series(1, :customers) AS g JOIN customer c ON c.id = g;
INSERT INTO identity (id, customer_id, channel_kind, channel_instance, external_id, handle,
                      display_name, profile, first_seen_at, last_seen_at)
SELECT :customers + g / 5, g, 'facebook', 'fb', 'fb-' || g, 'fan' || g, 'Customer ' || g,
       jsonb_build_object('followers', g % 9973), c.created_at, c.created_at
  FROM generate_series(5, :customers, 5) AS g JOIN customer c ON c.id = g;

-- Conversation c: its customer, channel and creation time are functions of
-- c (see conv below), so messages can be generated without a join.
CREATE TEMP VIEW conv AS
SELECT c, cust,
       (cust % 5 = 0 AND c % 3 = 0) AS on_fb,
       now() - interval '90 days' + ((c - 1)::float8 / :conversations) * interval '90 days' AS created
  FROM (SELECT c, CASE WHEN c <= :active THEN c
                       ELSE 1 + (c * 2654435761) % :active END AS cust
          FROM generate_series(1, :conversations) AS c) AS s;

INSERT INTO support_case (id, case_number, customer_id, created_at, updated_at)
SELECT c / 7, 'PC-' || (9999 + c / 7), cust, created, created
  FROM conv WHERE c % 7 = 0;

INSERT INTO case_reference (case_id, kind, value, created_at)
SELECT id, 'case_number', case_number, created_at FROM support_case;
INSERT INTO case_reference (case_id, kind, value, created_at)
SELECT id, 'order_number', (100000 + id * 7)::text, created_at FROM support_case WHERE id % 2 = 0;

INSERT INTO conversation (id, customer_id, identity_id, case_id, channel_kind, channel_instance,
                          visibility, thread_key, status, priority, assignee_id, team_id, created_at,
                          updated_at, last_inbound_at, first_response_at, resolved_at,
                          first_response_due_at, next_response_due_at)
SELECT c, cust,
       CASE WHEN on_fb THEN :customers + cust / 5 ELSE cust END,
       CASE WHEN c % 7 = 0 THEN c / 7 END,
       CASE WHEN on_fb THEN 'facebook' ELSE 'webhook' END,
       CASE WHEN on_fb THEN 'fb' ELSE 'web' END,
       CASE WHEN c % 10 < 3 THEN 'public' ELSE 'private' END,
       CASE WHEN c % 10 < 3 THEN 'post-' || (c % 5000) ELSE 'dm:cust-' || cust END,
       st.status,
       coalesce((ARRAY['urgent', 'high', 'high', 'low', 'low', 'low'])[c % 20 + 1], 'normal'),
       -- Agents 1..40 and teams 1..2 (bench/api creates them; team 1 owns
       -- "web", team 2 "fb").
       CASE WHEN c % 4 = 0 THEN 1 + c % 40 END,
       CASE WHEN on_fb THEN 2 ELSE 1 END,
       created, created, created,
       CASE WHEN st.status <> 'open' THEN created + interval '35 minutes' END,
       CASE WHEN st.status IN ('resolved', 'closed') THEN created + interval '1 day' END,
       created + interval '1 hour',
       -- Open work has a due time (a few without: NULLS LAST puts them at
       -- the end); pending work waits for the customer, half with a due time.
       CASE WHEN st.status = 'open' AND c % 50 <> 0 THEN created + interval '1 hour' * (1 + c % 24)
            WHEN st.status = 'pending' AND c % 2 = 0 THEN created + interval '1 day' END
  FROM conv,
       LATERAL (SELECT CASE
                WHEN c > :conversations * 3 / 4 THEN
                     (ARRAY['open', 'open', 'open', 'open', 'open', 'pending', 'pending',
                            'resolved', 'resolved', 'resolved'])[c % 10 + 1]
                ELSE (ARRAY['open', 'pending', 'resolved', 'resolved', 'resolved', 'resolved',
                            'resolved', 'resolved', 'resolved', 'resolved', 'resolved', 'resolved',
                            'closed', 'closed', 'closed', 'closed', 'closed', 'closed', 'closed',
                            'closed'])[c % 20 + 1] END AS status) AS st;
\endif

\if :{?step_messages}
SET session_replication_role = replica;
SELECT setseed(:lo::float8 / :messages);

INSERT INTO message (id, conversation_id, channel_instance, direction, external_id,
                     author_identity_id, text, edited_text, visibility, platform_time, received_at,
                     delivery_status, edited_at, created_at)
SELECT m, k.c,
       CASE WHEN k.on_fb THEN 'fb' ELSE 'web' END,
       d.direction,
       CASE WHEN d.direction <> 'note' THEN 'm' || m END,
       CASE WHEN d.direction = 'inbound' THEN CASE WHEN k.on_fb THEN :customers + k.cust / 5 ELSE k.cust END END,
       (ARRAY['Hi, my order has not arrived yet. Can you check?',
              'Where is my parcel? Tracking says delivered but nothing here.',
              'I was charged twice for my last order, please refund one of them',
              'Thanks, that worked!',
              'We are sorry to hear that. Could you send us your order number?',
              'Your refund is on its way and should arrive within 3 to 5 working days.',
              'Customer called back, promised a callback tomorrow morning.',
              'The discount code does not work at checkout, it says the code has expired although the mail says it is valid until the end of the month.'])
         [CASE d.direction WHEN 'inbound' THEN 1 + m % 4 WHEN 'outbound' THEN 5 + m % 2 ELSE 7 + m % 2 END],
       CASE WHEN m % 33 = 0 AND d.direction = 'inbound' THEN 'Edit: never mind, it arrived.' END,
       CASE WHEN k.c % 10 < 3 THEN 'public' ELSE 'private' END,
       t.at - interval '1 second', t.at,
       CASE WHEN d.direction = 'outbound' THEN 'delivered' END,
       CASE WHEN m % 33 = 0 AND d.direction = 'inbound' THEN t.at + interval '2 minutes' END,
       t.at
  FROM generate_series(:lo, :hi) AS m,
       -- Message m <= conversations opens conversation m; later ones pick
       -- older conversations more often.
       LATERAL (SELECT CASE WHEN m <= :conversations THEN m
                            ELSE 1 + floor(:conversations * random() ^ 1.3)::bigint END AS c) AS pick,
       LATERAL (SELECT pick.c AS c,
                       CASE WHEN pick.c <= :active THEN pick.c
                            ELSE 1 + (pick.c * 2654435761) % :active END AS cust) AS k0,
       LATERAL (SELECT k0.c, k0.cust, (k0.cust % 5 = 0 AND k0.c % 3 = 0) AS on_fb,
                       now() - interval '90 days' + ((k0.c - 1)::float8 / :conversations) * interval '90 days' AS created) AS k,
       LATERAL (SELECT CASE WHEN m <= :conversations THEN 'inbound'
                            WHEN m % 100 < 80 THEN 'inbound'
                            WHEN m % 100 < 97 THEN 'outbound'
                            ELSE 'note' END AS direction) AS d,
       LATERAL (SELECT CASE WHEN m <= :conversations THEN k.created
                            ELSE k.created + random() * (now() - k.created) END AS at) AS t;
\endif

\if :{?step_finish}
SET session_replication_role = replica;
INSERT INTO message_revision (message_id, kind, text, at, created_at)
SELECT id, 'edit', edited_text, edited_at, edited_at FROM message WHERE edited_at IS NOT NULL;
RESET session_replication_role;

SELECT setval(pg_get_serial_sequence('customer', 'id'), (SELECT max(id) + 1 FROM customer), false);
SELECT setval(pg_get_serial_sequence('identity', 'id'), (SELECT max(id) + 1 FROM identity), false);
SELECT setval(pg_get_serial_sequence('support_case', 'id'), (SELECT max(id) + 1 FROM support_case), false);
SELECT setval('case_number_seq', (SELECT max(id) + 10000 FROM support_case), false);
SELECT setval(pg_get_serial_sequence('conversation', 'id'), (SELECT max(id) + 1 FROM conversation), false);
SELECT setval(pg_get_serial_sequence('message', 'id'), (SELECT max(id) + 1 FROM message), false);

-- Rebuild what step_prepare dropped, as it was defined.
SET maintenance_work_mem = '512MB';
SELECT ddl FROM bench_saved_index ORDER BY ord \gexec
DROP TABLE bench_saved_index;
\endif
