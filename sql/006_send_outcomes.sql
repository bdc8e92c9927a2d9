-- 006_send_outcomes: what a send's end records, completed.
--
-- - A send that dies because its lease ran out after the last attempt (its
--   runner crashed, or hung) is a failed reply like any other: the claim
--   makes it visible and notified too.
-- - A private reply whose chat is already a known identity of another
--   customer (the customer had written to the page before commenting) joins
--   the two records: the platform itself says both are the same person.
-- - A channel's note on a successful send (e.g. "a template was sent
--   instead of the text") is kept on the message.
-- - Folding an early echo into the sent message moves every reference to
--   the echo's row, and a concurrent echo never makes the outcome unwritable.
-- - A reply in a moved conversation whose private chat is not open yet is
--   refused: there is nowhere to send it. A reply (or a move) in a
--   conversation without a customer message reads no unassigned record.

-- ------------------------------------------------------------------ claims

DROP FUNCTION parley_job_claim(int, int, text, int);
CREATE FUNCTION parley_job_claim(p_limit int, p_lease_ms int, p_runner text,
                                 p_default_max_attempts int, p_opts jsonb DEFAULT NULL)
RETURNS TABLE (claimed boolean, id bigint, claim_token uuid, target_kind text,
               target_instance text, operation text, payload jsonb,
               idempotency_key text, attempts int)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    r job%ROWTYPE;
BEGIN
    -- Expired after the last attempt: dead, returned with claimed = false.
    FOR r IN
        WITH expired AS (
            SELECT j.id FROM job j
            WHERE j.state = 'running' AND j.lease_until < now()
              AND j.attempts >= coalesce(j.max_attempts, p_default_max_attempts)
            FOR UPDATE SKIP LOCKED
        )
        UPDATE job j
        SET state = 'dead', lease_until = NULL, claim_token = NULL, finished_at = now(),
            updated_at = now(),
            last_error = 'lease expired after the last attempt (runner ' ||
                         coalesce(j.claimed_by, '?') || ' did not finish it)'
        FROM expired WHERE j.id = expired.id
        RETURNING j.*
    LOOP
        IF r.target_kind = 'channel' AND r.operation = 'send' THEN
            PERFORM parley_send_failed(r, r.last_error, coalesce(p_opts, '{}'));
        END IF;
        claimed := false;
        id := r.id;
        claim_token := NULL;
        target_kind := r.target_kind;
        target_instance := r.target_instance;
        operation := r.operation;
        payload := NULL;
        idempotency_key := r.idempotency_key;
        attempts := r.attempts;
        RETURN NEXT;
    END LOOP;

    RETURN QUERY
    WITH due AS (
        SELECT j.id FROM job j
        WHERE j.state IN ('queued', 'running') AND j.run_at <= now()
          AND (j.state = 'queued' OR j.lease_until < now())
          AND (j.ordering_key IS NULL OR NOT EXISTS (
                SELECT 1 FROM job p
                WHERE p.ordering_key = j.ordering_key AND p.id < j.id
                  AND p.state IN ('queued', 'running')))
        ORDER BY j.run_at, j.id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE job j
    SET state = 'running', attempts = j.attempts + 1,
        lease_until = now() + p_lease_ms * interval '1 millisecond',
        claimed_by = p_runner, claim_token = gen_random_uuid(), updated_at = now()
    FROM due WHERE j.id = due.id
    RETURNING true, j.id, j.claim_token, j.target_kind, j.target_instance, j.operation,
              j.payload, j.idempotency_key, j.attempts;
END
$$;

-- ------------------------------------------------------------ sent messages

CREATE OR REPLACE FUNCTION parley_job_mark_sent(p_message bigint, p_external_id text) RETURNS void
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
    EXCEPTION WHEN unique_violation THEN
        -- An echo with this id was being stored by a concurrent batch and
        -- committed meanwhile: the outcome must still be recordable (a
        -- failed write would send the message again). The status is known;
        -- the echo stays its own row.
        UPDATE message SET delivery_status = coalesce(delivery_status, 'sent') WHERE id = m.id;
    END;
END
$$;

DROP FUNCTION parley_send_done(job, text, text, text);
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
    SELECT m.conversation_id INTO v_conv FROM message m WHERE m.id = v_msg;
    SELECT * INTO c FROM conversation WHERE id = v_conv FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE conversation SET delivery_error = NULL, delivery_error_at = NULL
     WHERE id = c.id AND delivery_error IS NOT NULL;
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

-- As in 004, with the channel's note on a successful send.
CREATE OR REPLACE FUNCTION parley_job_finish(p_id bigint, p_claim_token uuid, p_outcome text,
                                             p_reason text, p_external_id text, p_retry_at timestamptz,
                                             p_backoff_base_ms int, p_backoff_max_ms int,
                                             p_default_max_attempts int, p_thread_id text DEFAULT NULL,
                                             p_recipient_id text DEFAULT NULL, p_opts jsonb DEFAULT NULL,
                                             OUT new_state text, OUT retry_in_ms bigint)
RETURNS SETOF record LANGUAGE plpgsql AS $$
DECLARE
    j job%ROWTYPE;
    v_cap_ms double precision;
    v_run_at timestamptz;
BEGIN
    SELECT * INTO j FROM job
    WHERE job.id = p_id AND job.claim_token = p_claim_token AND job.state = 'running'
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;

    IF p_outcome = 'ok' THEN
        UPDATE job SET state = 'done', external_id = p_external_id, last_error = NULL,
                       lease_until = NULL, claim_token = NULL, finished_at = now(),
                       updated_at = now()
        WHERE job.id = p_id;
        IF j.target_kind = 'channel' AND j.operation = 'send' THEN
            PERFORM parley_send_done(j, p_external_id, p_thread_id, p_recipient_id, p_reason);
        END IF;
        new_state := 'done';
    ELSIF p_outcome = 'release' THEN
        UPDATE job SET state = 'queued', attempts = greatest(j.attempts - 1, 0),
                       lease_until = NULL, claim_token = NULL, updated_at = now()
        WHERE job.id = p_id;
        new_state := 'queued';
    ELSIF p_outcome = 'retry'
          AND j.attempts < coalesce(j.max_attempts, p_default_max_attempts) THEN
        v_cap_ms := least(p_backoff_max_ms::double precision,
                          p_backoff_base_ms * power(2::double precision,
                                                    least(greatest(j.attempts - 1, 0), 60)));
        v_run_at := greatest(coalesce(p_retry_at, '-infinity'),
                             now() + random() * v_cap_ms * interval '1 millisecond');
        UPDATE job SET state = 'queued', run_at = v_run_at, last_error = p_reason,
                       lease_until = NULL, claim_token = NULL, updated_at = now()
        WHERE job.id = p_id;
        new_state := 'queued';
        retry_in_ms := greatest(0, ceil(extract(epoch FROM v_run_at - now()) * 1000))::bigint;
    ELSIF p_outcome IN ('retry', 'fail') THEN
        UPDATE job SET state = 'dead', last_error = p_reason, lease_until = NULL,
                       claim_token = NULL, finished_at = now(), updated_at = now()
        WHERE job.id = p_id;
        IF j.target_kind = 'channel' AND j.operation = 'send' THEN
            PERFORM parley_send_failed(j, p_reason, coalesce(p_opts, '{}'));
        END IF;
        new_state := 'dead';
    ELSE
        RAISE EXCEPTION 'parley_job_finish: unknown outcome %', p_outcome;
    END IF;
    RETURN NEXT;
END
$$;

-- ----------------------------------------------------------------- replies

CREATE OR REPLACE FUNCTION parley_reply(p_conversation bigint, p_text text,
                                        p_visibility text DEFAULT NULL, p_actor text DEFAULT NULL)
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
        RAISE EXCEPTION 'the reply text is empty' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO c FROM conversation WHERE conversation.id = p_conversation FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conversation % does not exist', p_conversation USING ERRCODE = 'P0002';
    END IF;
    v_vis := coalesce(p_visibility, c.visibility);
    IF v_vis NOT IN ('public', 'private') THEN
        RAISE EXCEPTION 'visibility must be "public" or "private"' USING ERRCODE = '22023';
    END IF;
    IF v_vis <> c.visibility THEN
        RAISE EXCEPTION 'conversation % is %: a % reply is not possible here%', c.id, c.visibility, v_vis,
            CASE WHEN c.visibility = 'public' THEN ' (move it to private instead)' ELSE '' END
            USING ERRCODE = '22023';
    END IF;
    IF c.origin_conversation_id IS NOT NULL AND c.thread_key IS NULL THEN
        RAISE EXCEPTION 'conversation % has no private chat yet: its first private message has not '
                        'been sent (see its delivery status)', c.id USING ERRCODE = '22023';
    END IF;
    -- Scalars, not a record: a conversation may have no customer message
    -- yet (a moved one), and an unassigned record cannot be read.
    SELECT li.id, li.external_id INTO v_in_id, v_in_ext FROM parley_last_inbound(c.id) AS li;
    INSERT INTO message (conversation_id, channel_instance, direction, text, visibility,
                         in_reply_to_external_id, in_reply_to_id)
    VALUES (c.id, c.channel_instance, 'outbound', p_text, v_vis, v_in_ext, v_in_id)
    RETURNING message.id INTO v_msg;
    UPDATE conversation
       SET last_outbound_at = now(), first_response_at = coalesce(first_response_at, now()),
           updated_at = now()
     WHERE conversation.id = c.id;
    PERFORM parley_enqueue_send(v_msg, 'message');
    PERFORM parley_audit(coalesce(p_actor, 'system'), 'conversation.reply', 'conversation', c.id,
                         jsonb_build_object('message_id', v_msg, 'visibility', v_vis));
    RETURN v_msg;
END
$$;

CREATE OR REPLACE FUNCTION parley_move_to_private(p_conversation bigint, p_text text, p_public_text text,
                                                  p_actor text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    c        conversation%ROWTYPE;
    v_in_id  bigint;
    v_in_ext text;
    v_in_at  timestamptz;
    v_conv   bigint;
    v_msg    bigint;
    v_public bigint;
BEGIN
    IF p_text IS NULL OR btrim(p_text) = '' THEN
        RAISE EXCEPTION 'the private message text is empty' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO c FROM conversation WHERE conversation.id = p_conversation FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conversation % does not exist', p_conversation USING ERRCODE = 'P0002';
    END IF;
    IF c.visibility <> 'public' THEN
        RAISE EXCEPTION 'conversation % is private already', c.id USING ERRCODE = '22023';
    END IF;
    SELECT li.id, li.external_id, li.at INTO v_in_id, v_in_ext, v_in_at
      FROM parley_last_inbound(c.id) AS li;
    IF v_in_ext IS NULL THEN
        RAISE EXCEPTION 'conversation % has no customer message to answer privately', c.id
            USING ERRCODE = '22023';
    END IF;

    INSERT INTO conversation (customer_id, identity_id, case_id, channel_kind, channel_instance,
                              visibility, thread_key, status, origin_conversation_id,
                              last_outbound_at, first_response_at)
    VALUES (c.customer_id, c.identity_id, c.case_id, c.channel_kind, c.channel_instance,
            'private', NULL, 'pending', c.id, now(), now())
    RETURNING conversation.id INTO v_conv;
    INSERT INTO message (conversation_id, channel_instance, direction, text, visibility,
                         in_reply_to_external_id, in_reply_to_id)
    VALUES (v_conv, c.channel_instance, 'outbound', p_text, 'private', v_in_ext, v_in_id)
    RETURNING message.id INTO v_msg;
    IF p_public_text IS NOT NULL AND btrim(p_public_text) <> '' THEN
        -- Sent only after the private message went out (parley_send_done).
        INSERT INTO message (conversation_id, channel_instance, direction, text, visibility,
                             in_reply_to_external_id, in_reply_to_id)
        VALUES (c.id, c.channel_instance, 'outbound', p_public_text, 'public', v_in_ext, v_in_id)
        RETURNING message.id INTO v_public;
    END IF;
    UPDATE conversation
       SET last_outbound_at = now(), first_response_at = coalesce(first_response_at, now()),
           updated_at = now()
     WHERE conversation.id = c.id;
    PERFORM parley_enqueue_send(v_msg, 'private_reply',
        jsonb_strip_nulls(jsonb_build_object(
            'thread_id', c.thread_key,
            'last_inbound_ms', floor(extract(epoch FROM v_in_at) * 1000)::bigint,
            'public_message_id', v_public::text)));
    PERFORM parley_audit(coalesce(p_actor, 'system'), 'conversation.move_to_private', 'conversation',
                         c.id, jsonb_strip_nulls(jsonb_build_object(
                             'private_conversation_id', v_conv, 'message_id', v_msg,
                             'public_message_id', v_public)));
    RETURN v_conv;
END
$$;
