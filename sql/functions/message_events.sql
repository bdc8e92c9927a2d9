-- message_events: edits, deletions and delivery receipts. They apply to
-- their message when it exists, else they wait (unprocessed) until it does:
-- ingest applies them for the messages it stores, parley_job_mark_sent for
-- an outbound message that just got its platform id.

-- Apply one edit, deletion or delivery status to its message. False when
-- the event makes no sense (then it stays unprocessed).
CREATE FUNCTION parley_apply_event(p_message bigint, p_event bigint, p_type text, ev jsonb,
                                   p_at timestamptz)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_by   text := nullif(ev -> 'author' ->> 'external_id', '');
    v_rank integer;
BEGIN
    IF p_type = 'message_edited' THEN
        INSERT INTO message_revision (message_id, kind, text, at, by, inbound_event_id)
        VALUES (p_message, 'edit', ev ->> 'text', p_at, v_by, p_event);
        UPDATE message
           SET edited_text = CASE WHEN edited_at IS NULL OR p_at >= edited_at THEN ev ->> 'text'
                                  ELSE edited_text END,
               edited_at = greatest(edited_at, p_at)
         WHERE id = p_message;
        RETURN true;
    ELSIF p_type = 'message_deleted' THEN
        -- The text stays: a deleted post is evidence of what was said.
        INSERT INTO message_revision (message_id, kind, text, at, by, inbound_event_id)
        VALUES (p_message, 'delete', NULL, p_at, v_by, p_event);
        UPDATE message
           SET deleted_at = coalesce(deleted_at, p_at),
               deleted_by = coalesce(deleted_by, v_by)
         WHERE id = p_message;
        RETURN true;
    ELSIF p_type = 'delivery_status' THEN
        v_rank := parley_delivery_rank(ev ->> 'delivery_status');
        IF v_rank IS NULL THEN
            RETURN false;
        END IF;
        -- A lower status arriving late is processed but changes nothing.
        UPDATE message
           SET delivery_status = ev ->> 'delivery_status',
               delivery_detail = ev ->> 'detail'
         WHERE id = p_message AND coalesce(parley_delivery_rank(delivery_status), 0) < v_rank;
        RETURN true;
    END IF;
    RETURN false;
END
$$;

-- Apply the unprocessed edits, deletions and receipts of one message, in
-- platform time order, once the message exists. Called for each such event
-- of a batch, for the messages a batch stored (parley_apply_pending_stored)
-- and for an outbound message that just got its platform id
-- (parley_job_mark_sent). Returns the message when anything was applied to
-- it (its live event is then due), else NULL.
--
-- The message's lock makes an event and its message meet even when they
-- arrive in concurrent transactions: whichever commits second sees the other.
CREATE FUNCTION parley_apply_pending(p_instance text, p_external_id text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    e         record;
    v_message bigint;
    v_applied integer := 0;
BEGIN
    IF p_instance IS NULL OR p_external_id IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock(parley_lock_space(), parley_lock_key('m', p_instance, p_external_id));
    FOR e IN
        SELECT ie.id, ie.event_type, ie.event, coalesce(ie.platform_time, ie.received_at) AS at
          FROM inbound_event ie
         WHERE ie.channel_instance = p_instance AND ie.external_id = p_external_id
           AND ie.processed_at IS NULL
           AND ie.event_type IN ('message_edited', 'message_deleted', 'delivery_status')
         ORDER BY coalesce(ie.platform_time, ie.received_at), ie.id
    LOOP
        IF v_message IS NULL THEN
            SELECT m.id INTO v_message FROM message m
             WHERE m.channel_instance = p_instance AND m.external_id = p_external_id;
            IF v_message IS NULL THEN
                RETURN NULL;  -- not there yet: the events wait
            END IF;
        END IF;
        IF parley_apply_event(v_message, e.id, e.event_type, e.event, e.at) THEN
            UPDATE inbound_event SET processed_at = now() WHERE id = e.id;
            v_applied := v_applied + 1;
        END IF;
    END LOOP;
    RETURN CASE WHEN v_applied > 0 THEN v_message END;
END
$$;

-- After messages are stored (a whole ingest batch at once): apply what
-- waited for them. Their locks first (already held by ingest), so an event
-- committed concurrently cannot be missed. p_instances and p_external_ids
-- pair up; NULL ids are skipped.
CREATE FUNCTION parley_apply_pending_stored(p_instances text[], p_external_ids text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    PERFORM parley_lock_sorted(ARRAY(SELECT parley_lock_key('m', a.instance, a.external_id)
                                       FROM unnest(p_instances, p_external_ids) AS a(instance, external_id)
                                      WHERE a.external_id IS NOT NULL));
    FOR r IN
        SELECT DISTINCT a.instance, a.external_id
          FROM unnest(p_instances, p_external_ids) AS a(instance, external_id)
         WHERE a.external_id IS NOT NULL
           AND EXISTS (SELECT 1 FROM inbound_event ie
                        WHERE ie.channel_instance = a.instance AND ie.external_id = a.external_id
                          AND ie.processed_at IS NULL)
    LOOP
        PERFORM parley_apply_pending(r.instance, r.external_id);
    END LOOP;
END
$$;
