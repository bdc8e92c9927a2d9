-- assignment: which team a conversation belongs to, the team queues, and
-- who answers a conversation.
--
-- A conversation that needs an agent (new, reopened, unassigned, returned
-- by an agent who went away) waits in its team's queue (queued_at set,
-- assignee_id NULL). The queue is served in due order (next_response_due_at,
-- then queued_at, then id): the head goes to an online agent of the team
-- with room under their capacity (open and pending conversations assigned
-- to them). Among those: the agent who already owns another open
-- conversation of the same customer, then one who speaks the
-- conversation's language, then the least loaded, then the one assigned
-- longest ago (round robin), then the lowest id.
--
-- Several parleyd may assign at once. A claim locks the conversation and
-- then the agent with FOR UPDATE SKIP LOCKED, and counts the agent's load
-- only after holding the agent's lock, so two transactions never both fill
-- an agent's last slot. Automatic work never waits for a lock (a locked
-- conversation or agent is someone else's claim in progress); an API call
-- waits for the one conversation and agent it names. Locks are taken
-- conversation first, agent second, the sweep job's row last.
--
-- Serving the queues happens in the after-ingest pipeline (for the batch's
-- conversations), in the API calls that move a conversation into a queue,
-- and in the periodic sweep job core/assignment/sweep (docs/JOBS.md), which
-- also returns the conversations of agents away or offline for longer than
-- the grace period and serves what freed capacity left waiting (an agent
-- came online, a conversation was resolved, a capacity raised).

-- The team of a conversation on channel instance p_instance with category
-- p_category: a team owning both the instance and the category, else the
-- team owning the instance; the lowest id among equals. NULL: no team owns
-- the instance.
CREATE FUNCTION parley_team_for(p_instance text, p_category text) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT tc.team_id FROM team_channel tc
     WHERE tc.channel_instance = p_instance
     ORDER BY EXISTS (SELECT 1 FROM team_category k
                       WHERE k.team_id = tc.team_id AND k.category = p_category) DESC,
              tc.team_id
     LIMIT 1
$$;

-- After-ingest step: the conversations the batch started get their team.
CREATE FUNCTION parley_conversation_team(b parley_ingested) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(cardinality(b.conversations), 0) = 0 OR NOT EXISTS (SELECT 1 FROM team_channel) THEN
        RETURN;
    END IF;
    UPDATE conversation c SET team_id = parley_team_for(c.channel_instance, c.category)
     WHERE c.id = ANY (b.conversations) AND c.team_id IS NULL
       AND EXISTS (SELECT 1 FROM team_channel tc WHERE tc.channel_instance = c.channel_instance);
END
$$;

-- ------------------------------------------------------------ agents

-- What counts against an agent's capacity: the open and pending
-- conversations assigned to them.
CREATE FUNCTION parley_agent_load(p_agent bigint) RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT count(*)::integer FROM conversation
     WHERE assignee_id = p_agent AND status IN ('open', 'pending')
$$;

-- The best agent for conversation c among a team's roster (parallel
-- arrays, one entry per online agent of the team; loads as last known):
-- an agent with room, preferring the customer's owner p_owner, then one
-- who speaks p_lang (a primary language subtag), then the least loaded,
-- then the one assigned longest ago, then the lowest id. Entries marked
-- p_out are left out. Returns the entry's index, or NULL.
CREATE FUNCTION parley_assignment_best(p_ids bigint[], p_capacity integer[], p_load integer[],
                                       p_last timestamptz[], p_langs text[], p_out boolean[],
                                       p_owner bigint, p_lang text)
RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT i FROM generate_subscripts(p_ids, 1) AS i
     WHERE p_load[i] < p_capacity[i] AND NOT p_out[i]
     ORDER BY p_ids[i] IS NOT DISTINCT FROM p_owner DESC,
              (p_lang <> '' AND position(',' || p_lang || ',' IN p_langs[i]) > 0) DESC,
              p_load[i], p_last[i] NULLS FIRST, p_ids[i]
     LIMIT 1
$$;

-- ------------------------------------------------------------ moves

-- Conversation p_conv (locked by the caller) goes to agent p_agent (locked
-- by the caller), in team p_team (NULL: its team stays). Writes the
-- timeline event and the live event; returns the conversation as it is now.
CREATE FUNCTION parley_assignment_give(p_conv bigint, p_agent bigint, p_team bigint, p_actor text)
RETURNS conversation
LANGUAGE plpgsql AS $$
DECLARE
    v_from bigint;
    v      conversation;
BEGIN
    SELECT assignee_id INTO v_from FROM conversation WHERE id = p_conv;
    UPDATE conversation
       SET assignee_id = p_agent, team_id = coalesce(p_team, team_id), assigned_at = now(),
           queued_at = NULL, updated_at = now()
     WHERE id = p_conv
    RETURNING * INTO v;
    -- clock_timestamp: one transaction may assign several times, and the
    -- round robin must tell those apart.
    UPDATE agent SET last_assigned_at = clock_timestamp() WHERE id = p_agent;
    INSERT INTO conversation_event (conversation_id, kind, actor, details)
    VALUES (p_conv, 'assigned', p_actor,
            jsonb_build_object('from', v_from, 'to', p_agent, 'team_id', v.team_id));
    PERFORM parley_live_event('conversation.assigned', v.channel_instance, v.id, p_agent,
                              parley_api_conversation_json(v));
    RETURN v;
END
$$;

-- Conversation p_conv (locked by the caller) loses its agent and joins the
-- queue of team p_team (NULL: its own team; when that is NULL too, the
-- team its instance and category give). p_kind: the timeline event,
-- 'unassigned' or 'transferred'; p_details are added to it. A conversation
-- that is not open or pending only loses its agent.
CREATE FUNCTION parley_assignment_release(p_conv bigint, p_kind text, p_actor text, p_team bigint,
                                          p_details jsonb)
RETURNS conversation
LANGUAGE plpgsql AS $$
DECLARE
    v_old conversation;
    v     conversation;
BEGIN
    SELECT * INTO v_old FROM conversation WHERE id = p_conv;
    UPDATE conversation
       SET assignee_id = NULL, assigned_at = NULL,
           team_id = coalesce(p_team, team_id, parley_team_for(channel_instance, category)),
           queued_at = CASE WHEN status IN ('open', 'pending') THEN now() END,
           updated_at = now()
     WHERE id = p_conv
    RETURNING * INTO v;
    INSERT INTO conversation_event (conversation_id, kind, actor, details)
    VALUES (p_conv, p_kind, p_actor,
            jsonb_build_object('from', v_old.assignee_id, 'to', NULL::bigint,
                               'from_team_id', v_old.team_id, 'team_id', v.team_id)
            || coalesce(p_details, '{}'));
    PERFORM parley_live_event('conversation.assigned', v.channel_instance, v.id, NULL,
                              parley_api_conversation_json(v));
    RETURN v;
END
$$;

-- ------------------------------------------------------------ queues

-- Serve team p_team's queue: in due order, each conversation to the best
-- agent with room (parley_assignment_best), until the queue is empty,
-- nobody has room, or p_max conversations were assigned. Returns how many
-- were. Conversations and agents other transactions hold are skipped, never
-- waited for; when skipping an agent left nobody, the sweep is asked to run
-- (that claim may leave room once it commits).
--
-- The team's online agents and their loads are read once (the roster). An
-- agent's load is counted again once we hold their lock (every assigner
-- locks the agent first, so from then on the count is exact and only our
-- own assignments change it). The queue is walked once: asking for its head
-- again after each assignment would step over every entry this transaction
-- has taken out of it so far.
CREATE FUNCTION parley_assignment_drain(p_team bigint, p_max integer, p_actor text DEFAULT 'system')
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    c          conversation;
    v_ids      bigint[];
    v_capacity integer[];
    v_load     integer[];
    v_last     timestamptz[];
    v_langs    text[];
    v_out      boolean[];
    v_held     boolean[];
    v_owner    bigint;
    v_lang     text;
    v_contended boolean := false;
    v_cap      integer;
    v_count    integer;
    i          integer;
    n          integer := 0;
BEGIN
    SELECT array_agg(a.id ORDER BY a.id), array_agg(a.capacity ORDER BY a.id),
           array_agg(ld.n ORDER BY a.id), array_agg(a.last_assigned_at ORDER BY a.id),
           array_agg(',' || (SELECT coalesce(string_agg(split_part(lower(l), '-', 1), ','), '')
                               FROM unnest(a.languages) AS l) || ',' ORDER BY a.id),
           array_agg(false ORDER BY a.id), array_agg(false ORDER BY a.id)
      INTO v_ids, v_capacity, v_load, v_last, v_langs, v_out, v_held
      FROM agent_team tm
      JOIN agent a ON a.id = tm.agent_id
     CROSS JOIN LATERAL (SELECT count(*)::integer AS n FROM conversation o
                          WHERE o.assignee_id = a.id AND o.status IN ('open', 'pending')) AS ld
     WHERE tm.team_id = p_team AND a.availability = 'online' AND a.disabled_at IS NULL;
    IF v_ids IS NULL OR p_max <= 0 THEN
        RETURN 0;
    END IF;

    <<queue>>
    FOR c IN
        SELECT * FROM conversation
         WHERE team_id = p_team AND queued_at IS NOT NULL AND assignee_id IS NULL
         ORDER BY next_response_due_at, queued_at, id
         LIMIT p_max
           FOR UPDATE SKIP LOCKED
    LOOP
        IF c.status NOT IN ('open', 'pending') THEN
            -- Resolved or closed while it waited: it leaves the queue.
            UPDATE conversation SET queued_at = NULL WHERE id = c.id;
            CONTINUE;
        END IF;
        -- The customer's owner: the agent of their newest other open or
        -- pending conversation. Languages match on their primary subtag
        -- ("pt" speaks "pt-BR").
        SELECT o.assignee_id INTO v_owner FROM conversation o
         WHERE o.customer_id = c.customer_id AND o.id <> c.id AND o.assignee_id IS NOT NULL
           AND o.status IN ('open', 'pending')
         ORDER BY o.id DESC LIMIT 1;
        v_lang := coalesce(split_part(lower(c.language), '-', 1), '');
        LOOP
            i := parley_assignment_best(v_ids, v_capacity, v_load, v_last, v_langs, v_out, v_owner, v_lang);
            IF i IS NULL THEN
                IF v_contended THEN
                    PERFORM parley_assignment_kick();
                END IF;
                EXIT queue;
            END IF;
            EXIT WHEN v_held[i];
            PERFORM 1 FROM agent a
             WHERE a.id = v_ids[i] AND a.availability = 'online' AND a.disabled_at IS NULL
               FOR UPDATE SKIP LOCKED;
            IF NOT FOUND THEN
                v_out[i] := true;          -- another claim holds them (or they just left)
                v_contended := true;
                CONTINUE;
            END IF;
            v_held[i] := true;
            -- Counted after the lock: this statement sees every assignment
            -- to them that committed before we got it.
            SELECT a.capacity, parley_agent_load(a.id) INTO v_cap, v_count FROM agent a WHERE a.id = v_ids[i];
            v_capacity[i] := v_cap;
            v_load[i] := v_count;
            EXIT WHEN v_count < v_cap;
        END LOOP;
        PERFORM parley_assignment_give(c.id, v_ids[i], NULL, p_actor);
        v_load[i] := v_load[i] + 1;
        v_last[i] := clock_timestamp();
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- After-ingest step: the batch's conversations that need an agent join
-- their team's queue, and each team's queue is served for as many
-- conversations as joined it. Needing an agent: started by the batch, or
-- open or pending with a new customer message and nobody assigned (a
-- resolved conversation the customer reopened, one whose agent let go). A
-- reopened conversation whose agent is still assigned stays theirs (the
-- sweep returns it if they are away).
CREATE FUNCTION parley_assign_conversations(b parley_ingested) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t record;
BEGIN
    IF coalesce(cardinality(b.messages), 0) = 0 AND coalesce(cardinality(b.conversations), 0) = 0 THEN
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM team_channel) THEN
        RETURN;
    END IF;
    FOR t IN
        WITH need AS (
            SELECT unnest(b.conversations) AS id
            UNION
            SELECT m.conversation_id FROM message m
             WHERE m.id = ANY (b.messages) AND m.conversation_id IS NOT NULL
        ), joined AS (
            UPDATE conversation c
               SET queued_at = now(),
                   team_id = coalesce(c.team_id, parley_team_for(c.channel_instance, c.category))
              FROM need
             WHERE c.id = need.id AND c.assignee_id IS NULL AND c.queued_at IS NULL
               AND c.status IN ('open', 'pending')
            RETURNING c.team_id
        )
        SELECT team_id, count(*)::integer AS n FROM joined
         WHERE team_id IS NOT NULL GROUP BY team_id ORDER BY team_id
    LOOP
        PERFORM parley_assignment_drain(t.team_id, t.n);
    END LOOP;
END
$$;

-- ------------------------------------------------------------ the sweep

-- The one sweep job (core/assignment/sweep) runs again when its last run
-- ended at least p_interval_ms ago (or it died, or was discarded). Every
-- node's timer calls this; the unique idempotency key makes it one job for
-- the cluster, so the sweep never runs twice at once. Without teams there
-- is nothing to sweep, and no job.
CREATE FUNCTION parley_assignment_schedule(p_interval_ms integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM team_channel) AND NOT EXISTS (SELECT 1 FROM agent_team) THEN
        RETURN;
    END IF;
    INSERT INTO job (target_kind, target_instance, operation, payload, idempotency_key, max_attempts)
    VALUES ('core', 'assignment', 'sweep', '{}', 'core:assignment:sweep', 3)
    ON CONFLICT ON CONSTRAINT job_idempotency_key DO UPDATE
       SET state = 'queued', run_at = now(), attempts = 0, deferrals = 0, finished_at = NULL,
           lease_until = NULL, claim_token = NULL, updated_at = now()
     WHERE job.state IN ('done', 'dead', 'discarded')
       AND job.finished_at <= now() - make_interval(secs => p_interval_ms / 1000.0)
    RETURNING id INTO v_id;
    IF v_id IS NOT NULL THEN
        PERFORM parley_jobs_wake();
    END IF;
END
$$;

-- Run the sweep as soon as possible (capacity was freed, or work is left):
-- unless it is queued or running already. Call it last in a transaction
-- (it locks the sweep job's row).
CREATE FUNCTION parley_assignment_kick() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE job SET state = 'queued', run_at = now(), attempts = 0, deferrals = 0, finished_at = NULL,
                   lease_until = NULL, claim_token = NULL, updated_at = now()
     WHERE idempotency_key = 'core:assignment:sweep' AND state IN ('done', 'dead', 'discarded');
    IF FOUND THEN
        PERFORM parley_jobs_wake();
    END IF;
END
$$;

-- The sweep (the job core/assignment/sweep runs it):
--   1. the open and pending conversations of agents away or offline for
--      longer than p_grace_s (assigned to them before they went), and of
--      disabled agents, return to their team's queue;
--   2. queued conversations without a team get one (a team may own their
--      instance by now);
--   3. every team's queue is served (queued conversations that were
--      resolved or closed meanwhile leave it on the way).
-- At most p_max conversations are moved in each of 1 and 3, so one
-- transaction stays short. Returns {"returned": n, "assigned": n, "more":
-- a limit was reached (the job runs the sweep again at once)}.
CREATE FUNCTION parley_assignment_sweep(p_grace_s integer, p_max integer DEFAULT 500)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    r          record;
    v_returned integer := 0;
    v_assigned integer := 0;
BEGIN
    FOR r IN
        SELECT c.id, c.assignee_id FROM conversation c JOIN agent a ON a.id = c.assignee_id
         WHERE c.status IN ('open', 'pending')
           AND (a.disabled_at IS NOT NULL
                OR (a.availability <> 'online'
                    AND a.availability_changed_at <= now() - make_interval(secs => p_grace_s)
                    AND (c.assigned_at IS NULL OR c.assigned_at <= a.availability_changed_at)))
         ORDER BY c.id
         LIMIT p_max
           FOR UPDATE OF c SKIP LOCKED
    LOOP
        PERFORM parley_assignment_release(r.id, 'unassigned', 'system', NULL,
                                          jsonb_build_object('reason', 'agent_unavailable'));
        v_returned := v_returned + 1;
    END LOOP;

    UPDATE conversation c SET team_id = parley_team_for(c.channel_instance, c.category)
     WHERE c.id IN (SELECT q.id FROM conversation q
                     WHERE q.team_id IS NULL AND q.queued_at IS NOT NULL AND q.assignee_id IS NULL
                       AND EXISTS (SELECT 1 FROM team_channel tc WHERE tc.channel_instance = q.channel_instance)
                     LIMIT p_max FOR UPDATE SKIP LOCKED);

    FOR r IN SELECT t.id FROM team t ORDER BY t.id LOOP
        EXIT WHEN v_assigned >= p_max;
        v_assigned := v_assigned + parley_assignment_drain(r.id, p_max - v_assigned);
    END LOOP;
    RETURN jsonb_build_object('returned', v_returned, 'assigned', v_assigned,
                              'more', v_returned >= p_max OR v_assigned >= p_max);
END
$$;
