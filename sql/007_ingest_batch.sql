-- 007_ingest_batch: the ingest batch (002) behind a first pass over its
-- items.
--
-- Ticket events (a sink's webhook, "ticket_event" items) are split off and
-- applied by parley_ticket_events (005) in the same transaction.
--
-- A public reply to a known message joins that message's thread. Some
-- platforms do not say which thread a public reply belongs to: X's Account
-- Activity events name only the tweet answered. A customer who answers the
-- brand's reply would then start a new thread (the brand's tweet as its
-- root) instead of continuing their conversation. So a public new message
-- whose in_reply_to is a message already stored in a public conversation of
-- the same instance takes that conversation's thread; the channel's own
-- thread id is kept in the event as platform_thread_id. Channels that do
-- name the thread (Facebook and Instagram comments) are unaffected: the
-- parent's thread is theirs already.

ALTER FUNCTION parley_ingest_batch(jsonb, jsonb) RENAME TO parley_ingest_batch_items;

CREATE FUNCTION parley_ingest_batch(items jsonb, opts jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_tickets jsonb;
BEGIN
    IF jsonb_typeof(items) = 'array'
       AND EXISTS (SELECT 1 FROM jsonb_array_elements(items) AS t(e) WHERE t.e ? 'ticket_event') THEN
        SELECT coalesce(jsonb_agg(t.e ORDER BY t.ord) FILTER (WHERE t.e ? 'ticket_event'), '[]'),
               coalesce(jsonb_agg(t.e ORDER BY t.ord) FILTER (WHERE NOT t.e ? 'ticket_event'), '[]')
          INTO v_tickets, items
          FROM jsonb_array_elements(items) WITH ORDINALITY AS t(e, ord);
        PERFORM parley_ticket_events(v_tickets);
    END IF;
    -- Most batches have no public reply at all: one pass over the items.
    IF jsonb_typeof(items) = 'array' AND EXISTS (
           SELECT 1 FROM jsonb_array_elements(items) AS t(e)
            WHERE t.e #>> '{event,type}' = 'message_created'
              AND t.e #>> '{event,visibility}' = 'public'
              AND coalesce(t.e #>> '{event,in_reply_to}', '') <> '') THEN
        SELECT jsonb_agg(CASE WHEN p.thread IS NULL OR p.thread IS NOT DISTINCT FROM t.e #>> '{event,thread_id}'
                              THEN t.e
                              ELSE jsonb_set(t.e, '{event}',
                                             (t.e -> 'event') || jsonb_build_object(
                                                 'thread_id', p.thread,
                                                 'platform_thread_id', t.e #> '{event,thread_id}'))
                         END ORDER BY t.ord)
          INTO items
          FROM jsonb_array_elements(items) WITH ORDINALITY AS t(e, ord)
          LEFT JOIN LATERAL (
              SELECT c.thread_key AS thread
                FROM message m
                JOIN conversation c ON c.id = m.conversation_id
               WHERE t.e #>> '{event,type}' = 'message_created'
                 AND t.e #>> '{event,visibility}' = 'public'
                 AND m.channel_instance = t.e ->> 'instance'
                 AND m.external_id = t.e #>> '{event,in_reply_to}'
                 AND c.visibility = 'public' AND c.thread_key IS NOT NULL) AS p ON true;
    END IF;
    RETURN parley_ingest_batch_items(items, opts);
END
$$;
