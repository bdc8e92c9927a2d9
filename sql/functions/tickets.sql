-- tickets: ticket systems (sinks). One ticket per case and sink
-- (ticket_link): the first routed customer message of a case opens the
-- ticket, later ones of the same case (any channel) are appended as the
-- customer's comments, and a message after the ticket was closed opens a
-- follow-up ticket (the pipeline step parley_route_to_sinks). The ticket
-- system's webhook comes back as ticket events (ticket_event, through the
-- ingest batch): a public agent comment becomes a reply on the
-- conversation's channel, an internal note stays a note, solved/closed
-- resolves the case's conversations and open/pending reopens them. Comments
-- Parley posted itself (ticket_comment) are never sent back.

-- After-ingest step (parley_after_ingest): the customers' new messages go
-- to the case's ticket in each sink their conversation is routed to
-- (opening it, appending to it, or opening a follow-up of a closed one),
-- in message order. One lock per (case, sink), taken in a fixed order, so
-- concurrent batches never open two tickets for one case and never
-- deadlock.
CREATE FUNCTION parley_route_to_sinks(b parley_ingested) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    m      record;
    c      conversation%ROWTYPE;
    v_sink text;
    l      ticket_link%ROWTYPE;
    v_prev text;
    v_link bigint;
    v_conv jsonb;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM parley_settings
                    WHERE key = 'routing' AND jsonb_array_length(coalesce(value -> 'sinks', '[]')) > 0) THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(parley_lock_space(), k.key)
       FROM (SELECT DISTINCT parley_lock_key('t', cv.case_id::text, s.name) AS key
               FROM message n
               JOIN conversation cv ON cv.id = n.conversation_id
              CROSS JOIN LATERAL parley_sink_targets(cv) AS s(name)
              WHERE n.id = ANY (b.messages) AND cv.case_id IS NOT NULL
              ORDER BY 1) AS k;

    FOR m IN SELECT n.id, n.conversation_id FROM message n
              WHERE n.id = ANY (b.messages) AND n.conversation_id IS NOT NULL
              ORDER BY n.id LOOP
        SELECT * INTO c FROM conversation WHERE id = m.conversation_id;
        IF NOT FOUND OR c.case_id IS NULL THEN
            CONTINUE;
        END IF;
        v_conv := NULL;
        FOR v_sink IN SELECT parley_sink_targets(c) LOOP
            v_conv := coalesce(v_conv, parley_conversation_json(c.id));
            SELECT * INTO l FROM ticket_link
             WHERE case_id = c.case_id AND sink_instance = v_sink
               AND state IN ('opening', 'open', 'pending', 'solved')
             ORDER BY id DESC LIMIT 1;
            IF NOT FOUND THEN
                SELECT external_ticket_id INTO v_prev FROM ticket_link
                 WHERE case_id = c.case_id AND sink_instance = v_sink AND state = 'closed'
                 ORDER BY id DESC LIMIT 1;
                INSERT INTO ticket_link (case_id, sink_instance, state, follow_up_of, first_message_id)
                VALUES (c.case_id, v_sink, 'opening', v_prev, m.id)
                RETURNING id INTO v_link;
                PERFORM parley_job_enqueue('sink', v_sink, 'open_ticket',
                    jsonb_strip_nulls(jsonb_build_object(
                        'conversation', v_conv, 'message', parley_message_json(m.id),
                        'follow_up_of', v_prev, 'ticket_link_id', v_link::text)),
                    'ticket:' || v_link, 'ticket:' || c.case_id || ':' || v_sink);
            ELSE
                PERFORM parley_job_enqueue('sink', v_sink, 'append_message',
                    jsonb_strip_nulls(jsonb_build_object(
                        'external_ticket_id', l.external_ticket_id,
                        'conversation', v_conv, 'message', parley_message_json(m.id),
                        'ticket_link_id', l.id::text)),
                    'append:' || m.id || ':' || v_sink, 'ticket:' || c.case_id || ':' || v_sink);
            END IF;
        END LOOP;
    END LOOP;
END
$$;

-- A sink job succeeded: an opened ticket's id goes to its link and to the
-- appends waiting for it; an appended comment's id is remembered (never
-- sent back).
CREATE FUNCTION parley_sink_done(j job, p_external_id text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_link bigint;
BEGIN
    IF (j.payload ->> 'ticket_link_id') !~ '^[0-9]{1,18}$' THEN
        RETURN;
    END IF;
    v_link := (j.payload ->> 'ticket_link_id')::bigint;
    IF j.operation = 'open_ticket' AND p_external_id IS NOT NULL THEN
        UPDATE ticket_link SET external_ticket_id = p_external_id, state = 'open', updated_at = now()
         WHERE id = v_link AND state = 'opening';
        UPDATE job SET payload = payload || jsonb_build_object('external_ticket_id', p_external_id),
                       updated_at = now()
         WHERE state = 'queued' AND target_kind = 'sink' AND operation = 'append_message'
           AND target_instance = j.target_instance AND payload ->> 'ticket_link_id' = v_link::text
           AND payload ->> 'external_ticket_id' IS NULL;
    ELSIF j.operation = 'append_message' AND p_external_id IS NOT NULL THEN
        INSERT INTO ticket_comment (sink_instance, comment_id, external_ticket_id, message_id, direction)
        VALUES (j.target_instance, p_external_id, j.payload ->> 'external_ticket_id',
                CASE WHEN (j.payload #>> '{message,message_id}') ~ '^[0-9]{1,18}$'
                     THEN (j.payload #>> '{message,message_id}')::bigint END,
                'to_ticket')
        ON CONFLICT DO NOTHING;
    END IF;
END
$$;

-- A sink job is dead: the ticket system refused it (unauthorized, invalid)
-- or was unreachable for all attempts. A ticket that never opened is
-- failed (the next message tries again), the messages waiting to be added
-- to it end with it (one notice says so, not one each), and people are told.
CREATE FUNCTION parley_sink_failed(j job, p_reason text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_conv    bigint;
    v_waiting integer := 0;
BEGIN
    IF j.operation = 'open_ticket' AND (j.payload ->> 'ticket_link_id') ~ '^[0-9]{1,18}$' THEN
        UPDATE ticket_link SET state = 'failed', updated_at = now()
         WHERE id = (j.payload ->> 'ticket_link_id')::bigint AND state = 'opening';
        UPDATE job
           SET state = 'dead', finished_at = now(), updated_at = now(),
               last_error = format('not added: the ticket was never opened (job %s)', j.id)
         WHERE state = 'queued' AND target_kind = 'sink' AND operation = 'append_message'
           AND target_instance = j.target_instance
           AND payload ->> 'ticket_link_id' = j.payload ->> 'ticket_link_id'
           AND payload ->> 'external_ticket_id' IS NULL;
        GET DIAGNOSTICS v_waiting = ROW_COUNT;
    END IF;
    IF (j.payload #>> '{conversation,conversation_id}') ~ '^[0-9]{1,18}$' THEN
        v_conv := (j.payload #>> '{conversation,conversation_id}')::bigint;
    END IF;
    PERFORM parley_notify('sink.failed', v_conv, j.id::text,
                          format('Ticket system %s: %s failed', j.target_instance,
                                 replace(j.operation, '_', ' ')),
                          coalesce(p_reason, 'no reason given')
                          || CASE WHEN v_waiting > 0
                                  THEN format(E'\n%s later message(s) of the case were not added either.',
                                              v_waiting) ELSE '' END,
                          jsonb_build_object('job_id', j.id, 'sink', j.target_instance,
                                             'operation', j.operation, 'reason', p_reason,
                                             'messages_not_added', v_waiting));
END
$$;

-- The conversation a ticket's comments answer: the one whose message
-- opened the ticket (where the customer asked), else the case's
-- conversation the customer wrote in last.
CREATE FUNCTION parley_ticket_conversation(l ticket_link) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT m.conversation_id FROM message m
          JOIN conversation c ON c.id = m.conversation_id AND c.case_id = l.case_id
          WHERE m.id = l.first_message_id),
        (SELECT c.id FROM conversation c
          WHERE c.case_id = l.case_id
          ORDER BY c.last_inbound_at DESC NULLS LAST, c.id DESC
          LIMIT 1))
$$;

-- Apply what ticket systems reported (items of an ingest batch with a
-- "ticket_event"). A replay changes nothing; an event that cannot be
-- applied is kept with the reason in `result`, never failing the batch.
CREATE FUNCTION parley_ticket_events(items jsonb) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    it      jsonb;
    ev      jsonb;
    v_inst  text;
    v_id    bigint;
    l       ticket_link%ROWTYPE;
    v_conv  bigint;
    v_msg   bigint;
    v_res   text;
    v_state text;
    v_n     integer := 0;
BEGIN
    FOR it IN SELECT e FROM jsonb_array_elements(items) AS t(e) LOOP
        ev := it -> 'ticket_event';
        v_inst := it ->> 'instance';
        INSERT INTO ticket_event (sink_instance, dedupe_key, event_type, external_ticket_id, event, raw)
        VALUES (v_inst, ev ->> 'dedupe_key', ev ->> 'type', ev ->> 'external_ticket_id', ev,
                nullif(it -> 'raw', 'null'::jsonb))
        ON CONFLICT ON CONSTRAINT ticket_event_dedupe DO NOTHING
        RETURNING id INTO v_id;
        IF v_id IS NULL THEN
            CONTINUE;  -- a replay
        END IF;
        v_n := v_n + 1;
        SELECT * INTO l FROM ticket_link
         WHERE sink_instance = v_inst AND external_ticket_id = ev ->> 'external_ticket_id'
         ORDER BY id DESC LIMIT 1
           FOR UPDATE;
        IF NOT FOUND THEN
            UPDATE ticket_event SET result = 'ignored: not a ticket Parley opened' WHERE id = v_id;
            CONTINUE;
        END IF;
        UPDATE ticket_link SET last_event_at = now() WHERE id = l.id;
        v_conv := parley_ticket_conversation(l);
        v_res := NULL;

        IF ev ->> 'type' = 'comment' THEN
            IF coalesce((ev ->> 'from_parley')::boolean, false)
               OR EXISTS (SELECT 1 FROM ticket_comment tc
                           WHERE tc.sink_instance = v_inst AND tc.comment_id = ev ->> 'comment_id') THEN
                v_res := 'ignored: posted by Parley';
            ELSIF v_conv IS NULL THEN
                v_res := 'ignored: the case has no conversation';
            ELSIF coalesce((ev ->> 'is_public')::boolean, false) THEN
                BEGIN
                    v_msg := parley_reply(v_conv, ev ->> 'text', NULL,
                                          'sink:' || v_inst || coalesce(':' || (ev ->> 'author_name'), ''));
                    v_res := 'reply ' || v_msg;
                EXCEPTION WHEN OTHERS THEN
                    v_msg := NULL;
                    v_res := 'refused: ' || SQLERRM;
                END;
            ELSE
                INSERT INTO message (conversation_id, channel_instance, direction, text, visibility)
                SELECT v_conv, c.channel_instance, 'note', ev ->> 'text', 'private'
                  FROM conversation c WHERE c.id = v_conv
                RETURNING id INTO v_msg;
                v_res := 'note ' || v_msg;
            END IF;
            IF v_res NOT LIKE 'ignored: posted%' THEN
                INSERT INTO ticket_comment (sink_instance, comment_id, external_ticket_id, message_id,
                                            direction)
                VALUES (v_inst, ev ->> 'comment_id', ev ->> 'external_ticket_id', v_msg, 'from_ticket')
                ON CONFLICT DO NOTHING;
            END IF;
        ELSE
            v_state := ev ->> 'status';
            IF v_state IN ('solved', 'closed') THEN
                UPDATE conversation
                   SET status = 'resolved', resolved_at = now(), updated_at = now()
                 WHERE case_id = l.case_id AND status IN ('open', 'pending');
                v_res := 'resolved';
            ELSE
                UPDATE conversation
                   SET status = v_state, resolved_at = NULL, updated_at = now()
                 WHERE case_id = l.case_id
                   AND id = coalesce(v_conv, -1)
                   AND status IS DISTINCT FROM v_state;
                v_res := 'now ' || v_state;
            END IF;
            UPDATE ticket_link SET state = v_state, updated_at = now()
             WHERE id = l.id AND state <> 'failed';
            PERFORM parley_audit('sink:' || v_inst, 'ticket.' || v_state, 'case', l.case_id,
                                 jsonb_build_object('ticket', l.external_ticket_id, 'event', v_id));
        END IF;
        UPDATE ticket_event SET result = v_res WHERE id = v_id;
    END LOOP;
    RETURN v_n;
END
$$;
