-- api_replies: answering customers through the API: replies, internal
-- notes and moves to private (the core operations of replies.sql, with the
-- caller as the messages' author).
--
-- Every reply and note carries last_seen_message_id, the newest message its
-- author saw in the conversation. When someone else has written since (the
-- customer, another agent, the brand elsewhere), the answer is 409
-- "collision" with those messages and nothing changes, unless force is
-- true: two agents do not answer one customer twice without knowing.
--
-- Operations that queue sends (replies, moves to private) are called twice
-- by core/api.c (API_SENDS): first with "preview": true in the request,
-- answering 200 {"sends": [{"instance", "payload"}]} after every check of
-- the request and the conversation, so each channel can check the sends
-- against its platform's rules (check_send) before anything is stored;
-- then for real. A rule the database knows (visibility, one private reply
-- per public message) is answered from here, by its name.

-- ------------------------------------------------------------ request fields

-- An id field of a JSON body: a whole number >= 0; absent/null: NULL, or
-- 422 when p_required.
CREATE FUNCTION parley_api_field_id(p_obj jsonb, p_field text, p_required boolean)
RETURNS bigint
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v jsonb := p_obj -> p_field;
BEGIN
    IF v IS NULL OR jsonb_typeof(v) = 'null' THEN
        IF p_required THEN
            PERFORM parley_api_error(422, 'invalid_field', p_field || ': required');
        END IF;
        RETURN NULL;
    END IF;
    IF jsonb_typeof(v) <> 'number' OR v::text !~ '^[0-9]{1,18}$' THEN
        PERFORM parley_api_error(422, 'invalid_field', p_field || ': a whole number >= 0');
    END IF;
    RETURN v::text::bigint;
END
$$;

-- A rule of replies.sql that refused (raised with its name as the
-- constraint): 409 for a state of the conversation (55000), else 422.
CREATE FUNCTION parley_api_refused(p_state text, p_rule text, p_message text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM parley_api_error(CASE WHEN p_state = '55000' THEN 409 ELSE 422 END,
                             coalesce(nullif(p_rule, ''), 'refused'), p_message);
END
$$;

-- ------------------------------------------------------------ collision

-- The messages of conversation p_conv after p_last_seen that the caller did
-- not write (a message of the caller's own agent is not news to them; a
-- token without an agent wrote none), oldest first, at most the newest 50.
CREATE FUNCTION parley_api_new_messages(p_actor jsonb, p_conv bigint, p_last_seen bigint)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(parley_api_message_json(s.m) ORDER BY (s.m).id), '[]')
      FROM (SELECT m FROM message m
             WHERE m.conversation_id = p_conv AND m.id > p_last_seen
               AND (m.agent_id IS NULL OR p_actor ->> 'agent_id' IS NULL
                    OR m.agent_id <> (p_actor ->> 'agent_id')::bigint)
             ORDER BY m.id DESC
             LIMIT 50) AS s (m)
$$;

-- The 409 answer when the body's last_seen_message_id is stale for
-- conversation p_conv and force is not true; NULL otherwise. The caller
-- holds the conversation's row lock, so no other reply slips in between
-- this check and the caller's change.
CREATE FUNCTION parley_api_collision(p_actor jsonb, p_conv bigint, p_body jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_seen  bigint := parley_api_field_id(p_body, 'last_seen_message_id', true);
    v_force boolean := coalesce(parley_api_bool_field(p_body, 'force'), false);
    v_new   jsonb;
BEGIN
    IF v_force THEN
        RETURN NULL;
    END IF;
    v_new := parley_api_new_messages(p_actor, p_conv, v_seen);
    IF jsonb_array_length(v_new) = 0 THEN
        RETURN NULL;
    END IF;
    RETURN jsonb_build_object(
        'error', 'collision',
        'detail', format('%s new message(s) in conversation %s since message %s: read them, '
                         'then send again with the newest id (or force: true)',
                         jsonb_array_length(v_new), p_conv, v_seen),
        'new_messages', v_new);
END
$$;

-- The conversation of the path, visible to the caller (else 404), locked
-- for the rest of the call.
CREATE FUNCTION parley_api_conversation_locked(p_actor jsonb, p_req jsonb) RETURNS conversation
LANGUAGE plpgsql AS $$
DECLARE
    c conversation;
BEGIN
    c := parley_api_conversation(p_actor, parley_api_id(p_req #>> '{path,id}', 'conversation'));
    SELECT * INTO c FROM conversation WHERE id = c.id FOR UPDATE;
    RETURN c;
END
$$;

-- ------------------------------------------------------------ operations

-- POST /api/v1/conversations/{id}/replies
--   {"text", "visibility"?, "last_seen_message_id", "force"?}
-- 202 {"message", "delivery": "queued"}: stored and queued for the channel.
CREATE FUNCTION parley_api_reply(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_body      jsonb := p_req -> 'body';
    c           conversation;
    v_text      text;
    v_vis       text;
    v_collision jsonb;
    v_msg       bigint;
    m           message;
    v_state     text;
    v_rule      text;
    v_err       text;
BEGIN
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    PERFORM parley_api_only(v_body, ARRAY['text', 'visibility', 'last_seen_message_id', 'force'], 'body');
    c := parley_api_conversation_locked(p_actor, p_req);
    v_text := parley_api_text(v_body, 'text', 10000, true);
    v_vis := parley_api_choice(parley_api_text(v_body, 'visibility', 20), '{public,private}', 'visibility');
    v_collision := parley_api_collision(p_actor, c.id, v_body);
    IF v_collision IS NOT NULL THEN
        RETURN QUERY SELECT 409, v_collision;
        RETURN;
    END IF;
    BEGIN
        IF p_req ? 'preview' THEN
            v_vis := parley_reply_check(c, v_vis);
            RETURN QUERY SELECT 200, jsonb_build_object('sends', jsonb_build_array(jsonb_build_object(
                'instance', c.channel_instance,
                'payload', parley_send_payload(c, v_text, v_vis, (parley_last_inbound(c.id)).external_id,
                                               NULL, 'message'))));
            RETURN;
        END IF;
        v_msg := parley_reply(c.id, v_text, v_vis, parley_api_actor_label(p_actor),
                              (p_actor ->> 'agent_id')::bigint);
    EXCEPTION WHEN SQLSTATE '22023' OR SQLSTATE '55000' THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_rule = CONSTRAINT_NAME, v_err = MESSAGE_TEXT;
        PERFORM parley_api_refused(v_state, v_rule, v_err);
    END;
    SELECT * INTO m FROM message WHERE id = v_msg;
    PERFORM parley_live_event('message.created', c.channel_instance, c.id, NULL,
                              parley_api_message_json(m));
    RETURN QUERY SELECT 202, jsonb_build_object('message', parley_api_message_json(m), 'delivery', 'queued');
END
$$;

-- POST /api/v1/conversations/{id}/notes
--   {"text", "last_seen_message_id", "force"?}
-- 201 {"message"}: an internal note, seen by agents only.
CREATE FUNCTION parley_api_note(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_body      jsonb := p_req -> 'body';
    c           conversation;
    v_text      text;
    v_collision jsonb;
    v_msg       bigint;
    m           message;
BEGIN
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    PERFORM parley_api_only(v_body, ARRAY['text', 'last_seen_message_id', 'force'], 'body');
    c := parley_api_conversation_locked(p_actor, p_req);
    v_text := parley_api_text(v_body, 'text', 10000, true);
    v_collision := parley_api_collision(p_actor, c.id, v_body);
    IF v_collision IS NOT NULL THEN
        RETURN QUERY SELECT 409, v_collision;
        RETURN;
    END IF;
    v_msg := parley_note(c.id, v_text, parley_api_actor_label(p_actor), (p_actor ->> 'agent_id')::bigint);
    SELECT * INTO m FROM message WHERE id = v_msg;
    PERFORM parley_live_event('message.created', c.channel_instance, c.id, NULL,
                              parley_api_message_json(m));
    RETURN QUERY SELECT 201, jsonb_build_object('message', parley_api_message_json(m));
END
$$;

-- POST /api/v1/conversations/{id}/move-to-private
--   {"text", "public_text"?, "last_seen_message_id", "force"?}
-- public_text absent or null: the channel instance's move_to_private_text
-- of the node's file (core/api.c hands it in as node.move_to_private_text);
-- "": no public note. 202 {"conversation", "message", "public_message",
-- "delivery": "queued"}: the new private conversation and its first
-- message, and the public note sent once that message went out.
CREATE FUNCTION parley_api_move_to_private(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_body      jsonb := p_req -> 'body';
    c           conversation;
    v_text      text;
    v_public    text;
    v_collision jsonb;
    v_in        record;
    v_conv      bigint;
    p           conversation;
    m           message;
    pm          message;
    v_sends     jsonb;
    v_state     text;
    v_rule      text;
    v_err       text;
BEGIN
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    PERFORM parley_api_only(v_body, ARRAY['text', 'public_text', 'last_seen_message_id', 'force'], 'body');
    c := parley_api_conversation_locked(p_actor, p_req);
    v_text := parley_api_text(v_body, 'text', 10000, true);
    v_public := coalesce(parley_api_text(v_body, 'public_text', 1000),
                         p_req #>> ARRAY['node', 'move_to_private_text', c.channel_instance],
                         p_req #>> '{node,move_to_private_default}');
    v_collision := parley_api_collision(p_actor, c.id, v_body);
    IF v_collision IS NOT NULL THEN
        RETURN QUERY SELECT 409, v_collision;
        RETURN;
    END IF;
    BEGIN
        IF p_req ? 'preview' THEN
            SELECT * INTO v_in FROM parley_move_to_private_check(c);
            v_sends := jsonb_build_array(jsonb_build_object(
                'instance', c.channel_instance,
                'payload', parley_send_payload(c, v_text, 'private', v_in.in_external_id, NULL, 'private_reply')
                           || jsonb_strip_nulls(jsonb_build_object(
                                  'last_inbound_ms', floor(extract(epoch FROM v_in.in_at) * 1000)::bigint))));
            IF btrim(v_public) <> '' THEN
                v_sends := v_sends || jsonb_build_object(
                    'instance', c.channel_instance,
                    'payload', parley_send_payload(c, v_public, 'public', v_in.in_external_id, NULL, 'message'));
            END IF;
            RETURN QUERY SELECT 200, jsonb_build_object('sends', v_sends);
            RETURN;
        END IF;
        v_conv := parley_move_to_private(c.id, v_text, v_public, parley_api_actor_label(p_actor),
                                         (p_actor ->> 'agent_id')::bigint);
    EXCEPTION WHEN SQLSTATE '22023' OR SQLSTATE '55000' THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_rule = CONSTRAINT_NAME, v_err = MESSAGE_TEXT;
        PERFORM parley_api_refused(v_state, v_rule, v_err);
    END;
    SELECT * INTO p FROM conversation WHERE id = v_conv;
    SELECT * INTO m FROM message WHERE conversation_id = v_conv ORDER BY id LIMIT 1;
    SELECT * INTO pm FROM message
     WHERE conversation_id = c.id AND direction = 'outbound' AND id > m.id ORDER BY id LIMIT 1;
    PERFORM parley_live_event('message.created', p.channel_instance, p.id, NULL,
                              parley_api_message_json(m));
    IF pm.id IS NOT NULL THEN
        PERFORM parley_live_event('message.created', c.channel_instance, c.id, NULL,
                                  parley_api_message_json(pm));
    END IF;
    RETURN QUERY SELECT 202, jsonb_build_object(
        'conversation', parley_api_conversation_json(p),
        'message', parley_api_message_json(m),
        'public_message', CASE WHEN pm.id IS NULL THEN NULL ELSE parley_api_message_json(pm) END,
        'delivery', 'queued');
END
$$;
