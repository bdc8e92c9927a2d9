-- conversations: reopening, the conversation of an echo, and the JSON shapes
-- of a conversation and a message that notices and sinks receive.

CREATE FUNCTION parley_reopen_conversation(p_conv bigint, p_previous text, p_inbound bigint)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE conversation SET status = 'open', resolved_at = NULL, updated_at = now() WHERE id = p_conv;
    PERFORM parley_audit('ingest', 'conversation.reopen', 'conversation', p_conv,
                         jsonb_build_object('previous_status', p_previous, 'inbound_event_id', p_inbound));
END
$$;

-- The conversation of a message the brand's own account wrote (an echo):
-- that of the message it replies to (stored, or earlier in this batch:
-- batch_ext / batch_conv), else the newest one of its thread on the
-- instance. NULL when there is none.
CREATE FUNCTION parley_echo_conversation(it parley_ingest_item, batch_ext text[], batch_conv bigint[])
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_reply  text := nullif(it.ev ->> 'in_reply_to', '');
    v_thread text := nullif(it.ev ->> 'thread_id', '');
    v_pos    integer;
    v_conv   bigint;
BEGIN
    IF v_reply IS NOT NULL THEN
        v_pos := array_position(batch_ext, v_reply);
        IF v_pos IS NOT NULL THEN
            v_conv := batch_conv[v_pos];
        ELSE
            SELECT m.conversation_id INTO v_conv FROM message m
             WHERE m.channel_instance = it.instance AND m.external_id = v_reply;
        END IF;
    END IF;
    IF v_conv IS NULL AND v_thread IS NOT NULL THEN
        SELECT c.id INTO v_conv FROM conversation c
         WHERE c.channel_instance = it.instance AND c.thread_key = v_thread
           AND c.visibility = it.ev ->> 'visibility'
         ORDER BY c.id DESC LIMIT 1;
    END IF;
    RETURN v_conv;
END
$$;

-- The customer's newest message of a conversation (the one a reply answers).
CREATE FUNCTION parley_last_inbound(p_conversation bigint, OUT id bigint, OUT external_id text,
                                    OUT at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT m.id, m.external_id, coalesce(m.platform_time, m.received_at)
      FROM message m
     WHERE m.conversation_id = p_conversation AND m.direction = 'inbound'
     ORDER BY coalesce(m.platform_time, m.received_at) DESC, m.id DESC
     LIMIT 1
$$;

-- A conversation as notices and sinks see it (docs/JOBS.md, "the
-- conversation object"), with the customer's email and phone when known
-- (verified ones first).
CREATE FUNCTION parley_conversation_json(p_conversation bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
               'conversation_id', c.id::text,
               'case_number', sc.case_number,
               'channel_instance', c.channel_instance,
               'channel_kind', c.channel_kind,
               'visibility', c.visibility,
               'category', c.category,
               'status', c.status,
               'customer', jsonb_strip_nulls(jsonb_build_object(
                   'customer_id', cu.id::text,
                   'display_name', coalesce(cu.display_name, i.display_name),
                   'email', (SELECT cc.value FROM customer_contact cc
                              WHERE cc.customer_id = cu.id AND cc.kind = 'email'
                              ORDER BY cc.verified DESC, cc.id LIMIT 1),
                   'phone', (SELECT cc.value FROM customer_contact cc
                              WHERE cc.customer_id = cu.id AND cc.kind = 'phone'
                              ORDER BY cc.verified DESC, cc.id LIMIT 1),
                   'external_id', i.external_id,
                   'handle', i.handle))))
      FROM conversation c
      JOIN customer cu ON cu.id = c.customer_id
      LEFT JOIN identity i ON i.id = c.identity_id
      LEFT JOIN support_case sc ON sc.id = c.case_id
     WHERE c.id = p_conversation
$$;

-- A message for sinks (docs/JOBS.md, "the message object").
CREATE FUNCTION parley_message_json(p_message bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
               'message_id', m.id::text,
               'external_id', m.external_id,
               'author_name', coalesce(i.display_name, i.handle, i.external_id),
               'text', coalesce(m.edited_text, m.text),
               'visibility', m.visibility,
               'inbound', m.direction = 'inbound',
               'created_ms', floor(extract(epoch FROM coalesce(m.platform_time, m.received_at)) * 1000)::bigint))
      FROM message m
      LEFT JOIN identity i ON i.id = m.author_identity_id
     WHERE m.id = p_message
$$;
