-- live_events: the API's event stream (GET /api/v1/events) on the database
-- side: what writes events, the one sequencer that numbers them, their
-- retention, the callers' reach as a stream sees it, and presence.
--
-- Transactions queue events with parley_live_event (api.sql) into
-- live_event_pending and NOTIFY 'parley_live_pending'. Every parleyd runs
-- parley_live_events_sequence when it hears that (and on a sweep): under a
-- try-lock, so one sequencer runs at a time, it moves the committed pending
-- rows into live_event with ids drawn in that one transaction and NOTIFYs
-- 'parley_live'. Because sequencer transactions never overlap, ids become
-- visible in increasing order: a reader that has seen id N and reads
-- id > N later never skips a lower id committed after it looked. Every
-- parleyd reads live_event on 'parley_live' and fans the events out to its
-- clients (core/live_hub.c), so an event written through one node reaches
-- agents connected to any node, and Last-Event-ID resumes on any node.
--
-- Who sees an event (core/live_hub.c, live_client_sees):
--   channel_instance set       the callers who see that instance's conversations
--   only agent_id set          that agent, and callers who see every instance
--   neither                    callers who see every instance (admins)
-- A presence event is not sent back to the agent who announced it.

-- The sequencer's advisory lock and the retention's (two-integer form,
-- parley_lock_space; see common.sql).
CREATE FUNCTION parley_live_lock(p_what text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT parley_lock_key('live', p_what, NULL)
$$;

-- Move up to p_limit committed pending events into live_event, in queue
-- order, and NOTIFY 'parley_live' with the newest id. Returns how many
-- moved, or -1 when another sequencer holds the lock (it will NOTIFY; the
-- caller may try again shortly for what that one's snapshot missed).
CREATE FUNCTION parley_live_events_sequence(p_limit integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_moved integer;
    v_last  bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(parley_lock_space(), parley_live_lock('sequence')) THEN
        RETURN -1;
    END IF;
    -- A statement of its own after the lock, so its snapshot sees everything
    -- the previous sequencer committed before it let go of the lock.
    WITH batch AS (
        DELETE FROM live_event_pending
         WHERE seq IN (SELECT seq FROM live_event_pending ORDER BY seq LIMIT p_limit)
        RETURNING *
    ), moved AS (
        INSERT INTO live_event (id, kind, channel_instance, conversation_id, agent_id, payload, at)
        -- The ORDER BY in a subquery of its own: ids are drawn in queue order.
        SELECT nextval('live_event_id_seq'), b.kind, b.channel_instance, b.conversation_id,
               b.agent_id, b.payload, b.at
          FROM (SELECT * FROM batch ORDER BY seq) AS b
        RETURNING id
    )
    SELECT count(*), max(id) INTO v_moved, v_last FROM moved;
    IF v_moved > 0 THEN
        PERFORM pg_notify('parley_live', v_last::text);
    END IF;
    RETURN v_moved;
END
$$;

-- Retention: delete events older than p_keep_s seconds among the oldest
-- p_limit (ids follow time closely enough; reading only the oldest rows
-- keeps every call an index range of p_limit rows, however long the table),
-- and presence rows as old. Returns the events deleted; p_limit of them
-- means there may be more.
CREATE FUNCTION parley_live_events_expire(p_keep_s integer, p_limit integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_cutoff  timestamptz := now() - make_interval(secs => p_keep_s);
    v_deleted integer;
BEGIN
    IF NOT pg_try_advisory_xact_lock(parley_lock_space(), parley_live_lock('expire')) THEN
        RETURN 0;
    END IF;
    DELETE FROM live_event
     WHERE id IN (SELECT o.id FROM (SELECT id, at FROM live_event ORDER BY id LIMIT p_limit) AS o
                   WHERE o.at < v_cutoff);
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    DELETE FROM agent_presence
     WHERE (agent_id, conversation_id) IN (SELECT agent_id, conversation_id FROM agent_presence
                                            WHERE at < v_cutoff LIMIT p_limit);
    RETURN v_deleted;
END
$$;

-- Whether a reader resuming after id p_after can be given every event
-- since: 'ok' when they are all still here and at most p_max of them;
-- otherwise why it must reload instead: 'expired' (retention deleted some),
-- 'too_far_behind', 'unknown_id' (an id this database never gave out: from
-- another database, or a restored one).
CREATE FUNCTION parley_live_resume_check(p_after bigint, p_max integer) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_oldest bigint;
    v_newest bigint;
    v_issued bigint;
BEGIN
    SELECT min(id), max(id) INTO v_oldest, v_newest FROM live_event;
    SELECT CASE WHEN is_called THEN last_value ELSE 0 END INTO v_issued FROM live_event_id_seq;
    RETURN CASE
        WHEN p_after > v_issued THEN 'unknown_id'
        -- Retention deletes the oldest first. (A sequence gap right before
        -- the oldest event looks the same; a needless reload is harmless.)
        WHEN v_oldest IS NULL AND p_after < v_issued THEN 'expired'
        WHEN v_oldest > p_after + 1 THEN 'expired'
        WHEN v_newest - p_after > p_max THEN 'too_far_behind'
        ELSE 'ok' END;
END
$$;

-- A stream's caller, checked again: for each credential (kind 'token' or
-- 'session' and the secret's digest, as parley_api_authenticate takes
-- them), whether it is still good, and the instances it sees (a JSON array;
-- NULL: every instance). Streams re-check their callers with this every
-- half minute, so a revoked token or an ended session stops its stream and
-- a team change takes effect.
CREATE FUNCTION parley_live_scopes(p_kinds text[], p_hashes text[])
RETURNS TABLE (n integer, valid boolean, agent_id bigint, instances jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_actor jsonb;
BEGIN
    FOR i IN 1 .. coalesce(cardinality(p_kinds), 0) LOOP
        n := i;
        BEGIN
            v_actor := parley_api_authenticate(p_kinds[i], p_hashes[i], NULL, false);
            valid := true;
            agent_id := (v_actor ->> 'agent_id')::bigint;
            instances := to_jsonb(parley_api_instances(v_actor));
        EXCEPTION WHEN SQLSTATE 'PA401' THEN
            valid := false;
            agent_id := NULL;
            instances := '[]';
        END;
        RETURN NEXT;
    END LOOP;
END
$$;

-- ------------------------------------------------------------ producers

-- A message's event ('message.created', 'message.updated') with the message
-- as the API shows it, as it stands at the end of the caller's transaction
-- (call it after the change).
CREATE FUNCTION parley_live_message_event(p_kind text, p_message bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    m message;
BEGIN
    SELECT * INTO m FROM message WHERE id = p_message;
    IF FOUND THEN
        PERFORM parley_live_event(p_kind, m.channel_instance, m.conversation_id, NULL,
                                  parley_api_message_json(m));
    END IF;
END
$$;

-- A conversation's event ('conversation.created', 'conversation.updated',
-- 'conversation.assigned') with the conversation as the API shows it.
CREATE FUNCTION parley_live_conversation_event(p_kind text, p_conversation bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    c conversation;
BEGIN
    SELECT * INTO c FROM conversation WHERE id = p_conversation;
    IF FOUND THEN
        PERFORM parley_live_event(p_kind, c.channel_instance, c.id, NULL,
                                  parley_api_conversation_json(c));
    END IF;
END
$$;

-- After-ingest step: the batch's new conversations ('conversation.created'),
-- its new messages, the customers' and the brand's ('message.created'), and
-- the messages its edits, deletions and receipts changed ('message.updated'),
-- in that order, each in id order: one statement for the batch.
CREATE FUNCTION parley_live_ingested(b parley_ingested) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_new bigint[] := coalesce(b.messages, '{}') || coalesce(b.echoes, '{}');
BEGIN
    IF cardinality(b.conversations) = 0 AND cardinality(v_new) = 0
       AND coalesce(cardinality(b.updated), 0) = 0 THEN
        RETURN;
    END IF;
    INSERT INTO live_event_pending (kind, channel_instance, conversation_id, payload)
    SELECT e.kind, e.instance, e.conversation_id, e.payload
      FROM (SELECT 1 AS step, c.id AS key, 'conversation.created' AS kind, c.channel_instance AS instance,
                   c.id AS conversation_id, parley_api_conversation_json(c) AS payload
              FROM conversation c WHERE c.id = ANY (b.conversations)
            UNION ALL
            SELECT 2, m.id, 'message.created', m.channel_instance, m.conversation_id,
                   parley_api_message_json(m)
              FROM message m WHERE m.id = ANY (v_new)
            UNION ALL
            SELECT 3, m.id, 'message.updated', m.channel_instance, m.conversation_id,
                   parley_api_message_json(m)
              FROM message m
             WHERE m.id IN (SELECT DISTINCT u FROM unnest(b.updated) AS u)
               AND NOT (m.id = ANY (v_new))) AS e
     ORDER BY e.step, e.key;
    PERFORM pg_notify('parley_live_pending', '');
END
$$;

-- ------------------------------------------------------------ presence

-- POST /api/v1/conversations/{id}/presence {"state": "viewing" | "typing" |
-- "left"}: relayed to the other agents who see the conversation as a
-- 'presence' event. At most one a second per agent and conversation ('left'
-- always goes through once); the others are accepted and change nothing.
-- Not audited: it changes nothing but a hint, at human typing rates.
CREATE FUNCTION parley_api_presence(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    c        conversation;
    v_agent  agent;
    v_state  text;
    v_at     timestamptz;
BEGIN
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    PERFORM parley_api_only(p_req -> 'body', '{state}', 'body');
    IF p_actor ->> 'agent_id' IS NULL THEN
        PERFORM parley_api_error(422, 'no_agent', 'presence is an agent''s; this token acts for no agent');
    END IF;
    c := parley_api_conversation(p_actor, parley_api_id(p_req #>> '{path,id}', 'conversation'));
    v_state := parley_api_choice(parley_api_text(p_req -> 'body', 'state', 16, true),
                                 '{viewing,typing,left}', 'state');
    SELECT * INTO v_agent FROM agent WHERE id = (p_actor ->> 'agent_id')::bigint;
    INSERT INTO agent_presence AS p (agent_id, conversation_id, state, at)
    VALUES (v_agent.id, c.id, v_state, now())
    ON CONFLICT (agent_id, conversation_id) DO UPDATE
       SET state = excluded.state, at = excluded.at
     WHERE p.at <= excluded.at - interval '1 second'
        OR (excluded.state = 'left' AND p.state <> 'left')
    RETURNING p.at INTO v_at;
    IF v_at IS NOT NULL THEN
        PERFORM parley_live_event('presence', c.channel_instance, c.id, v_agent.id,
                                  jsonb_build_object('conversation_id', c.id,
                                                     'agent', jsonb_build_object('id', v_agent.id,
                                                                                 'name', v_agent.name),
                                                     'state', v_state, 'at', v_at));
    END IF;
    RETURN QUERY SELECT 204, NULL::jsonb;
END
$$;
