-- notices: notifier jobs ('deliver'), to the notifiers routed for a notice's
-- kind (and, for the older settings, named in the batch's opts).

-- Enqueue one notice of `kind` about conversation p_conversation (NULL: none)
-- to every notifier routed for it, plus `extra` notifiers (legacy settings).
-- The idempotency key makes a second call for the same occasion a no-op.
CREATE FUNCTION parley_notify(p_kind text, p_conversation bigint, p_occasion text, p_title text,
                              p_text text, p_payload jsonb, p_extra jsonb DEFAULT '[]')
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    c conversation%ROWTYPE;
BEGIN
    IF p_conversation IS NOT NULL THEN
        SELECT * INTO c FROM conversation WHERE id = p_conversation;
    END IF;
    INSERT INTO job (target_kind, target_instance, operation, payload, idempotency_key, ordering_key)
    SELECT 'notifier', n.name, 'deliver',
           jsonb_strip_nulls(jsonb_build_object(
               'kind', p_kind, 'title', p_title, 'text', left(coalesce(p_text, ''), 1000),
               'conversation', CASE WHEN p_conversation IS NOT NULL
                                    THEN parley_conversation_json(p_conversation) END,
               'payload', p_payload)),
           p_kind || ':' || p_occasion || ':' || n.name,
           CASE WHEN p_conversation IS NOT NULL THEN 'conversation:' || p_conversation END
      FROM (SELECT parley_notice_targets(p_kind, c) AS name
            UNION
            SELECT jsonb_array_elements_text(coalesce(p_extra, '[]'))) AS n
     WHERE n.name IS NOT NULL
    ON CONFLICT ON CONSTRAINT job_idempotency_key DO NOTHING;
    IF FOUND THEN
        PERFORM parley_jobs_wake();
    END IF;
    -- Agents see notices live too, except the two that new messages and
    -- conversations already announce with events of their own.
    IF p_kind NOT IN ('conversation.created', 'message.received') THEN
        PERFORM parley_live_event('notice', c.channel_instance, p_conversation, NULL,
                                  jsonb_build_object('kind', p_kind, 'title', p_title,
                                                     'text', left(coalesce(p_text, ''), 1000),
                                                     'conversation_id', p_conversation,
                                                     'details', coalesce(p_payload, '{}'),
                                                     'at', now()));
    END IF;
END
$$;

-- After-ingest step: the conversations the batch started, to the notifiers
-- routed for conversation.created and those of opts.notify_new_conversation
-- (older settings). Inside the batch's transaction, so a notice exists
-- exactly when its conversation does; its idempotency key makes a second
-- call for the same conversation a no-op. Returns at once when nobody
-- takes such notices (most batches).
CREATE FUNCTION parley_notice_conversations_created(b parley_ingested) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_id    bigint;
    v_who   text;
    v_vis   text;
    v_ch    text;
    v_first text;
    v_case  text;
BEGIN
    IF cardinality(b.conversations) = 0
       OR (coalesce(jsonb_array_length(b.opts -> 'notify_new_conversation'), 0) = 0
           AND NOT EXISTS (SELECT 1 FROM parley_settings
                            WHERE key = 'routing' AND jsonb_array_length(coalesce(value -> 'notices', '[]')) > 0)) THEN
        RETURN;
    END IF;
    FOREACH v_id IN ARRAY b.conversations LOOP
        SELECT coalesce(cu.display_name, i.display_name, i.handle, 'a customer'), c.visibility,
               c.channel_instance, sc.case_number,
               (SELECT m.text FROM message m WHERE m.conversation_id = c.id ORDER BY m.id LIMIT 1)
          INTO v_who, v_vis, v_ch, v_case, v_first
          FROM conversation c
          JOIN customer cu ON cu.id = c.customer_id
          LEFT JOIN identity i ON i.id = c.identity_id
          LEFT JOIN support_case sc ON sc.id = c.case_id
         WHERE c.id = v_id;
        PERFORM parley_notify('conversation.created', v_id, v_id::text,
                              format('New %s conversation with %s on %s', v_vis, v_who, v_ch),
                              left(coalesce(v_first, ''), 500),
                              jsonb_build_object('conversation_id', v_id,
                                                 'customer_id', (SELECT customer_id FROM conversation WHERE id = v_id),
                                                 'case_number', v_case),
                              b.opts -> 'notify_new_conversation');
    END LOOP;
END
$$;

-- After-ingest step: message.received notices for the customers' messages
-- after a conversation's first (the first is announced as
-- conversation.created), in message order.
CREATE FUNCTION parley_notice_messages_received(b parley_ingested) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    m record;
BEGIN
    IF cardinality(b.messages) = 0
       OR NOT EXISTS (SELECT 1 FROM parley_settings
                       WHERE key = 'routing' AND jsonb_array_length(coalesce(value -> 'notices', '[]')) > 0) THEN
        RETURN;
    END IF;
    FOR m IN SELECT n.id, n.conversation_id, n.text, c.channel_instance
               FROM message n JOIN conversation c ON c.id = n.conversation_id
              WHERE n.id = ANY (b.messages)
                AND EXISTS (SELECT 1 FROM message p WHERE p.conversation_id = n.conversation_id AND p.id < n.id)
              ORDER BY n.id LOOP
        PERFORM parley_notify('message.received', m.conversation_id, m.id::text,
                              format('New message on %s conversation %s', m.channel_instance, m.conversation_id),
                              left(coalesce(m.text, ''), 500),
                              jsonb_build_object('conversation_id', m.conversation_id, 'message_id', m.id));
    END LOOP;
END
$$;
