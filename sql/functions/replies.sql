-- replies: answering customers. The core operations "reply to a
-- conversation" and "move a public conversation to private", and what a
-- send's end records: the message's platform id and status (an echo stored
-- before the send's answer is folded into it), a private reply's chat and
-- the customer's id in it, and a reply that did not go out, visible on the
-- conversation and notified.

-- What a channel 'send' is handed for a message of conversation c (the
-- payload of the job; docs/JOBS.md): the text, visibility and message it
-- answers, the customer and the thread, and when the customer last wrote
-- (messaging windows count from it). p_message NULL: a message not stored
-- yet (the API's preview, put to the channel's check_send before anything
-- is stored).
CREATE FUNCTION parley_send_payload(c conversation, p_text text, p_visibility text,
                                    p_in_reply_to text, p_message bigint, p_kind text)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'conversation_id', c.id::text,
        'visibility', p_visibility,
        'text', p_text,
        'recipient_id', (SELECT i.external_id FROM identity i WHERE i.id = c.identity_id),
        'thread_id', c.thread_key,
        'in_reply_to', p_in_reply_to,
        'message_id', p_message::text,
        'kind', p_kind,
        'last_inbound_ms', floor(extract(epoch FROM c.last_inbound_at) * 1000)::bigint))
$$;

-- Enqueue the channel 'send' of outbound message p_message (its row holds
-- the text, visibility and conversation). p_kind: 'message' or
-- 'private_reply'; p_extra: more payload fields. Sends of one conversation
-- go one at a time, in order. Returns the job's id.
CREATE FUNCTION parley_enqueue_send(p_message bigint, p_kind text, p_extra jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    m message%ROWTYPE;
    c conversation%ROWTYPE;
BEGIN
    SELECT * INTO m FROM message WHERE id = p_message;
    SELECT * INTO c FROM conversation WHERE id = m.conversation_id;
    RETURN parley_job_enqueue('channel', c.channel_instance, 'send',
        parley_send_payload(c, m.text, m.visibility, m.in_reply_to_external_id, m.id, p_kind)
        || p_extra,
        'send:' || m.id,
        'send:' || coalesce(c.origin_conversation_id, c.id));
END
$$;

-- The rules a reply to conversation c must keep, checked before anything is
-- stored: the visibility is the conversation's own (NULL: the
-- conversation's; a private answer to a public conversation is
-- parley_move_to_private), and a moved conversation takes replies once its
-- private chat is open. Returns the reply's visibility. A broken rule is
-- raised with its name as the constraint (what the API answers as its
-- error code): 22023 for a request that can never work, 55000 for one the
-- conversation's state refuses now.
CREATE FUNCTION parley_reply_check(c conversation, p_visibility text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_vis text := coalesce(p_visibility, c.visibility);
BEGIN
    IF v_vis NOT IN ('public', 'private') THEN
        RAISE EXCEPTION 'visibility must be "public" or "private"'
            USING ERRCODE = '22023', CONSTRAINT = 'invalid_visibility';
    END IF;
    IF v_vis <> c.visibility THEN
        RAISE EXCEPTION 'conversation % is %: a % reply is not possible here%', c.id, c.visibility, v_vis,
            CASE WHEN c.visibility = 'public' THEN ' (move it to private instead)' ELSE '' END
            USING ERRCODE = '22023', CONSTRAINT = 'visibility_mismatch';
    END IF;
    IF c.origin_conversation_id IS NOT NULL AND c.thread_key IS NULL THEN
        RAISE EXCEPTION 'conversation % has no private chat yet: its first private message has not '
                        'been sent (see its delivery status)', c.id
            USING ERRCODE = '55000', CONSTRAINT = 'private_chat_not_open';
    END IF;
    RETURN v_vis;
END
$$;

-- Reply to a conversation: the reply is stored as an outbound message and
-- its send is enqueued in the same transaction. p_visibility must be the
-- conversation's own (NULL: the conversation's); see parley_reply_check.
-- p_actor: who, for the audit log; p_agent: the agent who wrote it (the
-- message's author; NULL: the brand). Returns the message's id.
CREATE FUNCTION parley_reply(p_conversation bigint, p_text text,
                                        p_visibility text DEFAULT NULL, p_actor text DEFAULT NULL,
                                        p_agent bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    c        conversation%ROWTYPE;
    v_vis    text;
    v_in_id  bigint;
    v_in_ext text;
    v_msg    bigint;
BEGIN
    IF p_text IS NULL OR btrim(p_text) = '' THEN
        RAISE EXCEPTION 'the reply text is empty' USING ERRCODE = '22023', CONSTRAINT = 'empty_text';
    END IF;
    SELECT * INTO c FROM conversation WHERE conversation.id = p_conversation FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conversation % does not exist', p_conversation USING ERRCODE = 'P0002';
    END IF;
    v_vis := parley_reply_check(c, p_visibility);
    -- Scalars, not a record: a conversation may have no customer message
    -- yet (a moved one), and an unassigned record cannot be read.
    SELECT li.id, li.external_id INTO v_in_id, v_in_ext FROM parley_last_inbound(c.id) AS li;
    INSERT INTO message (conversation_id, channel_instance, direction, text, visibility,
                         in_reply_to_external_id, in_reply_to_id, agent_id)
    VALUES (c.id, c.channel_instance, 'outbound', p_text, v_vis, v_in_ext, v_in_id, p_agent)
    RETURNING message.id INTO v_msg;
    UPDATE conversation
       SET last_outbound_at = now(), first_response_at = coalesce(first_response_at, now()),
           updated_at = now()
     WHERE conversation.id = c.id;
    PERFORM parley_enqueue_send(v_msg, 'message');
    PERFORM parley_audit(coalesce(p_actor, 'system'), 'conversation.reply', 'conversation', c.id,
                         jsonb_strip_nulls(jsonb_build_object('message_id', v_msg, 'visibility', v_vis,
                                                              'agent_id', p_agent)));
    RETURN v_msg;
END
$$;

-- An internal note on a conversation: seen by agents only, never sent.
-- p_agent: who wrote it. Returns the message's id.
CREATE FUNCTION parley_note(p_conversation bigint, p_text text, p_actor text, p_agent bigint)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    c     conversation%ROWTYPE;
    v_msg bigint;
BEGIN
    IF p_text IS NULL OR btrim(p_text) = '' THEN
        RAISE EXCEPTION 'the note text is empty' USING ERRCODE = '22023', CONSTRAINT = 'empty_text';
    END IF;
    SELECT * INTO c FROM conversation WHERE conversation.id = p_conversation;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conversation % does not exist', p_conversation USING ERRCODE = 'P0002';
    END IF;
    INSERT INTO message (conversation_id, channel_instance, direction, text, visibility, agent_id)
    VALUES (c.id, c.channel_instance, 'note', p_text, 'private', p_agent)
    RETURNING message.id INTO v_msg;
    UPDATE conversation SET updated_at = now() WHERE conversation.id = c.id;
    PERFORM parley_audit(coalesce(p_actor, 'system'), 'conversation.note', 'conversation', c.id,
                         jsonb_strip_nulls(jsonb_build_object('message_id', v_msg, 'agent_id', p_agent)));
    RETURN v_msg;
END
$$;

-- The rules a move to private must keep, checked before anything is
-- stored (raised like parley_reply_check's): the conversation is public,
-- has a customer message to answer, and that message has no private reply
-- yet (one per public message: Meta allows one per comment, and a second
-- one elsewhere would open a second chat for the same matter; one that
-- failed does not count). Returns the message answered: its id, platform
-- id and time.
CREATE FUNCTION parley_move_to_private_check(c conversation, OUT in_id bigint, OUT in_external_id text,
                                             OUT in_at timestamptz)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_private bigint;
BEGIN
    IF c.visibility <> 'public' THEN
        RAISE EXCEPTION 'conversation % is private already', c.id
            USING ERRCODE = '55000', CONSTRAINT = 'already_private';
    END IF;
    SELECT li.id, li.external_id, li.at INTO in_id, in_external_id, in_at
      FROM parley_last_inbound(c.id) AS li;
    IF in_external_id IS NULL THEN
        RAISE EXCEPTION 'conversation % has no customer message to answer privately', c.id
            USING ERRCODE = '55000', CONSTRAINT = 'nothing_to_answer';
    END IF;
    SELECT p.id INTO v_private
      FROM conversation p JOIN message m ON m.conversation_id = p.id
     WHERE p.origin_conversation_id = c.id AND m.in_reply_to_id = in_id
       AND m.direction = 'outbound' AND m.visibility = 'private'
       AND m.delivery_status IS DISTINCT FROM 'failed'
     LIMIT 1;
    IF v_private IS NOT NULL THEN
        RAISE EXCEPTION 'the customer''s message % has a private reply already (conversation %): '
                        'one per public message', in_id, v_private
            USING ERRCODE = '55000', CONSTRAINT = 'private_reply_used';
    END IF;
END
$$;

-- Move a public conversation to private (product rule 6): a private message
-- to the customer (a comment's private reply, a DM) in a new private
-- conversation of the same case, linked to the public one, and, once that
-- message is sent, a short public reply saying so (p_public_text; NULL or
-- empty: none). The private chat's thread is what the channel reports when
-- the send succeeds. p_agent: who wrote the two messages (NULL: the brand).
-- Returns the new conversation's id.
CREATE FUNCTION parley_move_to_private(p_conversation bigint, p_text text, p_public_text text,
                                                  p_actor text DEFAULT NULL, p_agent bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    c        conversation%ROWTYPE;
    v_in     record;
    v_conv   bigint;
    v_msg    bigint;
    v_public bigint;
BEGIN
    IF p_text IS NULL OR btrim(p_text) = '' THEN
        RAISE EXCEPTION 'the private message text is empty'
            USING ERRCODE = '22023', CONSTRAINT = 'empty_text';
    END IF;
    SELECT * INTO c FROM conversation WHERE conversation.id = p_conversation FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conversation % does not exist', p_conversation USING ERRCODE = 'P0002';
    END IF;
    SELECT * INTO v_in FROM parley_move_to_private_check(c);

    INSERT INTO conversation (customer_id, identity_id, case_id, channel_kind, channel_instance,
                              visibility, thread_key, status, origin_conversation_id,
                              last_outbound_at, first_response_at, team_id, assignee_id, assigned_at,
                              language)
    VALUES (c.customer_id, c.identity_id, c.case_id, c.channel_kind, c.channel_instance,
            'private', NULL, 'pending', c.id, now(), now(), c.team_id, c.assignee_id, c.assigned_at,
            c.language)
    RETURNING conversation.id INTO v_conv;
    INSERT INTO message (conversation_id, channel_instance, direction, text, visibility,
                         in_reply_to_external_id, in_reply_to_id, agent_id)
    VALUES (v_conv, c.channel_instance, 'outbound', p_text, 'private', v_in.in_external_id, v_in.in_id,
            p_agent)
    RETURNING message.id INTO v_msg;
    IF p_public_text IS NOT NULL AND btrim(p_public_text) <> '' THEN
        -- Sent only after the private message went out (parley_send_done).
        INSERT INTO message (conversation_id, channel_instance, direction, text, visibility,
                             in_reply_to_external_id, in_reply_to_id, agent_id)
        VALUES (c.id, c.channel_instance, 'outbound', p_public_text, 'public', v_in.in_external_id,
                v_in.in_id, p_agent)
        RETURNING message.id INTO v_public;
    END IF;
    UPDATE conversation
       SET last_outbound_at = now(), first_response_at = coalesce(first_response_at, now()),
           updated_at = now()
     WHERE conversation.id = c.id;
    PERFORM parley_enqueue_send(v_msg, 'private_reply',
        jsonb_strip_nulls(jsonb_build_object(
            'thread_id', c.thread_key,
            'last_inbound_ms', floor(extract(epoch FROM v_in.in_at) * 1000)::bigint,
            'public_message_id', v_public::text)));
    INSERT INTO conversation_event (conversation_id, kind, actor, details)
    VALUES (c.id, 'moved_to_private', coalesce(p_actor, 'system'),
            jsonb_build_object('private_conversation_id', v_conv));
    PERFORM parley_audit(coalesce(p_actor, 'system'), 'conversation.move_to_private', 'conversation',
                         c.id, jsonb_strip_nulls(jsonb_build_object(
                             'private_conversation_id', v_conv, 'message_id', v_msg,
                             'public_message_id', v_public, 'agent_id', p_agent)));
    RETURN v_conv;
END
$$;

-- A channel 'send' succeeded: the outbound message gets its platform id and
-- the status sent, each only where nothing is known yet (a receipt may have
-- arrived first; delivery status only moves forward). When the platform's
-- echo of the message was stored first (an echo can overtake the send's
-- answer), that row is this message: it is folded into it (status,
-- evidence, revisions, references), so the message exists once. An echo
-- committed concurrently never makes the outcome unwritable. Once the
-- message has its platform id, the edits and receipts that waited for it
-- are applied (parley_apply_pending).
CREATE FUNCTION parley_job_mark_sent(p_message bigint, p_external_id text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    m message%ROWTYPE;
    e message%ROWTYPE;
BEGIN
    SELECT * INTO m FROM message WHERE id = p_message FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF m.external_id IS NULL AND p_external_id IS NOT NULL THEN
        SELECT * INTO e FROM message
         WHERE channel_instance = m.channel_instance AND external_id = p_external_id
           FOR UPDATE;
        IF FOUND AND e.direction = 'outbound' AND e.author_identity_id IS NULL THEN
            -- The echo's row is this message: everything pointing at it
            -- points here now, then it goes.
            UPDATE message_revision SET message_id = m.id WHERE message_id = e.id;
            UPDATE message SET in_reply_to_id = m.id WHERE in_reply_to_id = e.id;
            UPDATE case_reference SET message_id = m.id WHERE message_id = e.id;
            DELETE FROM message WHERE id = e.id;
            UPDATE message
               SET external_id = p_external_id,
                   delivery_status = CASE WHEN coalesce(parley_delivery_rank(e.delivery_status), 0)
                                               > coalesce(parley_delivery_rank(m.delivery_status), 0)
                                          THEN e.delivery_status ELSE coalesce(m.delivery_status, 'sent') END,
                   delivery_detail = coalesce(m.delivery_detail, e.delivery_detail),
                   platform_time = coalesce(m.platform_time, e.platform_time),
                   inbound_event_id = coalesce(m.inbound_event_id, e.inbound_event_id),
                   edited_text = coalesce(m.edited_text, e.edited_text),
                   edited_at = coalesce(m.edited_at, e.edited_at),
                   deleted_at = coalesce(m.deleted_at, e.deleted_at),
                   deleted_by = coalesce(m.deleted_by, e.deleted_by)
             WHERE id = m.id;
            PERFORM parley_apply_pending(m.channel_instance, p_external_id);
            RETURN;
        ELSIF FOUND THEN
            -- The id belongs to something else: only the status is known.
            UPDATE message SET delivery_status = coalesce(delivery_status, 'sent') WHERE id = m.id;
            RETURN;
        END IF;
    END IF;
    BEGIN
        UPDATE message
           SET external_id = coalesce(external_id, p_external_id),
               delivery_status = coalesce(delivery_status, 'sent')
         WHERE id = m.id;
        -- It has its platform id now: what waited for it applies.
        IF m.external_id IS NULL AND p_external_id IS NOT NULL THEN
            PERFORM parley_apply_pending(m.channel_instance, p_external_id);
        END IF;
    EXCEPTION WHEN unique_violation THEN
        -- An echo with this id was being stored by a concurrent batch and
        -- committed meanwhile: the outcome must still be recordable (a
        -- failed write would send the message again). The status is known;
        -- the echo stays its own row.
        UPDATE message SET delivery_status = coalesce(delivery_status, 'sent') WHERE id = m.id;
    END;
END
$$;

-- What a channel 'send' job's success sets off: the message is sent; a
-- private reply's conversation gets its chat (thread) and the customer's
-- identity in that chat; the public "we sent you a message" reply goes out
-- now; the conversation's delivery error is over. Agents watching see the
-- message's new state (and the conversation's, when its error ends) live.
-- When the chat's customer id is already another customer's (they wrote
-- privately before they commented), the two records are merged: the
-- platform delivered the private reply to the public message's author. A
-- channel's note on the send (a template sent instead of the text) is kept
-- on the message.
CREATE FUNCTION parley_send_done(j job, p_external_id text, p_thread_id text, p_recipient_id text,
                                 p_note text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_msg    bigint;
    v_conv   bigint;
    c        conversation%ROWTYPE;
    v_other  bigint;
BEGIN
    IF (j.payload ->> 'message_id') !~ '^[0-9]{1,18}$' THEN
        RETURN;
    END IF;
    v_msg := (j.payload ->> 'message_id')::bigint;
    PERFORM parley_job_mark_sent(v_msg, p_external_id);
    IF p_note IS NOT NULL THEN
        UPDATE message SET delivery_detail = p_note WHERE id = v_msg;
    END IF;
    PERFORM parley_live_message_event('message.updated', v_msg);
    SELECT m.conversation_id INTO v_conv FROM message m WHERE m.id = v_msg;
    SELECT * INTO c FROM conversation WHERE id = v_conv FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE conversation SET delivery_error = NULL, delivery_error_at = NULL
     WHERE id = c.id AND delivery_error IS NOT NULL;
    IF FOUND THEN
        PERFORM parley_live_conversation_event('conversation.updated', c.id);
    END IF;
    IF j.payload ->> 'kind' = 'private_reply' THEN
        IF p_thread_id IS NOT NULL AND c.thread_key IS NULL THEN
            UPDATE conversation SET thread_key = p_thread_id, updated_at = now() WHERE id = c.id;
        END IF;
        IF p_recipient_id IS NOT NULL THEN
            INSERT INTO identity (customer_id, channel_kind, channel_instance, external_id)
            VALUES (c.customer_id, c.channel_kind, c.channel_instance, p_recipient_id)
            ON CONFLICT DO NOTHING;
            -- Known already, as someone else: the platform delivered the
            -- private reply to the author of the public message, so both
            -- records are this customer (undo: parley_unmerge).
            SELECT cu.id INTO v_other
              FROM identity i JOIN customer cu ON cu.id = i.customer_id
             WHERE i.channel_instance = c.channel_instance AND i.external_id = p_recipient_id
               AND cu.id <> c.customer_id AND cu.merged_into IS NULL;
            IF v_other IS NOT NULL THEN
                BEGIN
                    PERFORM parley_merge_customers(v_other, c.customer_id,
                                                   'channel:' || c.channel_instance);
                EXCEPTION WHEN others THEN
                    PERFORM parley_audit('jobs', 'customer.link_failed', 'conversation', c.id,
                                         jsonb_build_object('identity', p_recipient_id,
                                                            'customer_id', v_other,
                                                            'reason', SQLERRM));
                END;
            END IF;
        END IF;
        IF (j.payload ->> 'public_message_id') ~ '^[0-9]{1,18}$' THEN
            PERFORM parley_enqueue_send((j.payload ->> 'public_message_id')::bigint, 'message');
        END IF;
    END IF;
END
$$;

-- A channel 'send' job is dead: the reply did not go out, and a customer is
-- waiting. The message is failed with the reason, the conversation shows
-- the reason, the audit log has it, and a 'delivery.failed' notice goes to
-- the routed notifiers (notices) and those of p_opts.notify_delivery_failed;
-- agents watching see the message and the conversation change live.
CREATE FUNCTION parley_send_failed(j job, p_reason text, p_opts jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_msg    bigint;
    m        message%ROWTYPE;
    v_reason text := coalesce(p_reason, 'the channel refused the message');
    v_who    text;
BEGIN
    IF (j.payload ->> 'message_id') !~ '^[0-9]{1,18}$' THEN
        RETURN;
    END IF;
    v_msg := (j.payload ->> 'message_id')::bigint;
    UPDATE message
       SET delivery_status = 'failed', delivery_detail = v_reason
     WHERE id = v_msg AND coalesce(parley_delivery_rank(delivery_status), 0) < parley_delivery_rank('failed')
    RETURNING * INTO m;
    IF NOT FOUND THEN
        SELECT * INTO m FROM message WHERE id = v_msg;
        IF NOT FOUND THEN
            RETURN;
        END IF;
    END IF;
    PERFORM parley_live_message_event('message.updated', m.id);
    IF (j.payload ->> 'public_message_id') ~ '^[0-9]{1,18}$' THEN
        UPDATE message
           SET delivery_status = 'failed',
               delivery_detail = 'not sent: the private message did not go out'
         WHERE id = (j.payload ->> 'public_message_id')::bigint AND delivery_status IS NULL;
        IF FOUND THEN
            PERFORM parley_live_message_event('message.updated', (j.payload ->> 'public_message_id')::bigint);
        END IF;
    END IF;
    UPDATE conversation SET delivery_error = v_reason, delivery_error_at = now(), updated_at = now()
     WHERE id = m.conversation_id;
    PERFORM parley_live_conversation_event('conversation.updated', m.conversation_id);
    PERFORM parley_audit('jobs', 'message.delivery_failed', 'conversation', m.conversation_id,
                         jsonb_build_object('message_id', m.id, 'job_id', j.id, 'reason', v_reason));
    SELECT coalesce(cu.display_name, i.display_name, i.handle, 'a customer') INTO v_who
      FROM conversation c
      JOIN customer cu ON cu.id = c.customer_id
      LEFT JOIN identity i ON i.id = c.identity_id
     WHERE c.id = m.conversation_id;
    PERFORM parley_notify('delivery.failed', m.conversation_id, j.id::text,
                          format('A reply to %s on %s was not sent', coalesce(v_who, 'a customer'),
                                 j.target_instance),
                          format(E'%s\n\nThe reply: %s', v_reason, coalesce(m.text, '')),
                          jsonb_build_object('conversation_id', m.conversation_id, 'message_id', m.id,
                                             'job_id', j.id, 'reason', v_reason),
                          coalesce(p_opts -> 'notify_delivery_failed', '[]'));
END
$$;
