-- assignment_api: the agent API's assignment operations (core/api.c,
-- "assignment"): assign (an agent takes a conversation, or a supervisor
-- gives it), unassign (back to the team's queue) and transfer (to another
-- team's queue). Each writes the audit log, the conversation's timeline
-- event and the live event conversation.assigned (assignment.sql). The
-- rules of an assignment and a transfer are parley_conversation_assign and
-- parley_conversation_transfer, which macros use too.

-- The conversation a path names, visible to the caller (else 404), locked
-- for the rest of the call. The request may carry only p_body_fields.
CREATE FUNCTION parley_api_assignment_target(p_actor jsonb, p_req jsonb, p_body_fields text[])
RETURNS conversation
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    c    conversation;
BEGIN
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    PERFORM parley_api_only(p_req -> 'body', p_body_fields, 'body');
    v_id := parley_api_id(p_req #>> '{path,id}', 'conversation');
    PERFORM parley_api_conversation(p_actor, v_id);
    SELECT * INTO c FROM conversation WHERE id = v_id FOR UPDATE;
    RETURN c;
END
$$;

CREATE FUNCTION parley_api_assignment_state(c conversation) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('assignee_id', c.assignee_id, 'team_id', c.team_id, 'queued_at', c.queued_at)
$$;

-- ------------------------------------------------------------ the moves
-- The rules of a manual assignment and of a transfer, shared by the
-- operations below and macros (api_macros.sql). Who may ask for them (the
-- caller's role, whose conversation it is) is the caller's to check; the
-- caller also serves the queues afterwards (parley_assignment_drain, then
-- parley_assignment_kick, which locks the sweep job's row and so comes
-- last in the transaction).

-- Conversation p_conv goes to agent p_agent, by p_actor. 404 when p_actor
-- does not see it; 409 not_open unless it is open or pending; 422 unless
-- the agent is enabled and in a team that owns the conversation's channel
-- instance. The conversation moves to that team when it is not in one of
-- the agent's (the conversation's own team when the agent is in it, else
-- their lowest such team). Writes the timeline event 'assigned', the live
-- event and the audit entry conversation.assign; giving it to the agent it
-- has changes nothing. Capacity is the automatic assignment's rule: a
-- person assigning decides for themselves.
CREATE FUNCTION parley_conversation_assign(p_actor jsonb, p_conv bigint, p_agent bigint)
RETURNS conversation
LANGUAGE plpgsql AS $$
DECLARE
    c      conversation;
    v      conversation;
    v_team bigint;
BEGIN
    PERFORM parley_api_conversation(p_actor, p_conv);
    SELECT * INTO c FROM conversation WHERE id = p_conv FOR UPDATE;
    IF c.status NOT IN ('open', 'pending') THEN
        PERFORM parley_api_error(409, 'not_open', 'the conversation is ' || c.status);
    END IF;
    IF c.assignee_id = p_agent THEN
        RETURN c;
    END IF;
    PERFORM 1 FROM agent a WHERE a.id = p_agent AND a.disabled_at IS NULL FOR UPDATE;
    IF FOUND THEN
        SELECT tm.team_id INTO v_team
          FROM agent_team tm JOIN team_channel tc ON tc.team_id = tm.team_id
         WHERE tm.agent_id = p_agent AND tc.channel_instance = c.channel_instance
         ORDER BY tm.team_id IS DISTINCT FROM c.team_id, tm.team_id
         LIMIT 1;
    END IF;
    IF v_team IS NULL THEN
        PERFORM parley_api_error(422, 'invalid_field',
                                 'agent_id: no agent of a team that owns this conversation''s channel');
    END IF;
    v := parley_assignment_give(c.id, p_agent, v_team, parley_api_actor_label(p_actor));
    PERFORM parley_api_audit(p_actor, 'conversation.assign', 'conversation', c.id,
                             parley_api_assignment_state(c), parley_api_assignment_state(v));
    RETURN v;
END
$$;

-- Conversation p_conv leaves its agent and joins team p_team's queue, by
-- p_actor. 404 when p_actor does not see it; 409 not_open unless it is
-- open or pending; 422 unless p_team owns the conversation's channel
-- instance, or when the conversation is in that team already (unassigning
-- returns it to the queue). Writes the timeline event 'transferred', the
-- live event and the audit entry conversation.transfer.
CREATE FUNCTION parley_conversation_transfer(p_actor jsonb, p_conv bigint, p_team bigint)
RETURNS conversation
LANGUAGE plpgsql AS $$
DECLARE
    c conversation;
    v conversation;
BEGIN
    PERFORM parley_api_conversation(p_actor, p_conv);
    SELECT * INTO c FROM conversation WHERE id = p_conv FOR UPDATE;
    IF c.status NOT IN ('open', 'pending') THEN
        PERFORM parley_api_error(409, 'not_open', 'the conversation is ' || c.status);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM team_channel tc
                    WHERE tc.team_id = p_team AND tc.channel_instance = c.channel_instance) THEN
        PERFORM parley_api_error(422, 'invalid_field',
                                 'team_id: no team that owns this conversation''s channel');
    END IF;
    IF p_team = c.team_id THEN
        PERFORM parley_api_error(422, 'invalid_field',
                                 'team_id: the conversation is in that team already (unassign returns it to the queue)');
    END IF;
    v := parley_assignment_release(c.id, 'transferred', parley_api_actor_label(p_actor), p_team, NULL);
    PERFORM parley_api_audit(p_actor, 'conversation.transfer', 'conversation', c.id,
                             parley_api_assignment_state(c), parley_api_assignment_state(v));
    RETURN v;
END
$$;

-- ------------------------------------------------------------ operations

-- POST /api/v1/conversations/{id}/assign {"agent_id"}: the conversation
-- goes to that agent (parley_conversation_assign). An agent may assign only
-- themselves ("take"), and only a conversation nobody else has;
-- supervisors and admins assign anyone.
CREATE FUNCTION parley_api_conversation_assign(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    c       conversation;
    v       conversation;
    v_agent bigint;
BEGIN
    c := parley_api_assignment_target(p_actor, p_req, ARRAY['agent_id']);
    v_agent := parley_api_body_id(p_req -> 'body', 'agent_id');
    IF v_agent IS DISTINCT FROM (p_actor ->> 'agent_id')::bigint THEN
        PERFORM parley_api_require_role(p_actor, 'supervisor');
    END IF;
    IF c.assignee_id IS NOT NULL AND c.assignee_id <> v_agent AND p_actor ->> 'role' = 'agent'
       AND c.status IN ('open', 'pending') THEN
        PERFORM parley_api_error(409, 'already_assigned',
                                 'another agent has the conversation; a supervisor can reassign it');
    END IF;
    v := parley_conversation_assign(p_actor, c.id, v_agent);
    IF c.assignee_id IS NOT NULL AND c.assignee_id <> v_agent THEN
        PERFORM parley_assignment_kick();   -- the previous agent has room now
    END IF;
    RETURN QUERY SELECT 200, parley_api_conversation_json(v);
END
$$;

-- POST /api/v1/conversations/{id}/unassign: the conversation leaves its
-- agent and joins its team's queue (served by the next sweep). An agent may
-- unassign only themselves; supervisors and admins anyone. Unassigning a
-- conversation nobody has changes nothing.
CREATE FUNCTION parley_api_conversation_unassign(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    c conversation;
    v conversation;
BEGIN
    c := parley_api_assignment_target(p_actor, p_req, '{}');
    IF c.assignee_id IS NULL THEN
        RETURN QUERY SELECT 200, parley_api_conversation_json(c);
        RETURN;
    END IF;
    IF c.assignee_id IS DISTINCT FROM (p_actor ->> 'agent_id')::bigint THEN
        PERFORM parley_api_require_role(p_actor, 'supervisor');
    END IF;
    v := parley_assignment_release(c.id, 'unassigned', parley_api_actor_label(p_actor), NULL, NULL);
    PERFORM parley_api_audit(p_actor, 'conversation.unassign', 'conversation', c.id,
                             parley_api_assignment_state(c), parley_api_assignment_state(v));
    PERFORM parley_assignment_kick();
    RETURN QUERY SELECT 200, parley_api_conversation_json(v);
END
$$;

-- POST /api/v1/conversations/{id}/transfer {"team_id"}: the conversation
-- goes to another team's queue (parley_conversation_transfer), which is
-- served at once. An agent may transfer a conversation that is theirs or
-- nobody's; supervisors and admins any.
CREATE FUNCTION parley_api_conversation_transfer(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    c      conversation;
    v      conversation;
    v_team bigint;
BEGIN
    c := parley_api_assignment_target(p_actor, p_req, ARRAY['team_id']);
    v_team := parley_api_body_id(p_req -> 'body', 'team_id');
    IF c.assignee_id IS NOT NULL AND c.assignee_id IS DISTINCT FROM (p_actor ->> 'agent_id')::bigint THEN
        PERFORM parley_api_require_role(p_actor, 'supervisor');
    END IF;
    PERFORM parley_conversation_transfer(p_actor, c.id, v_team);
    PERFORM parley_assignment_drain(v_team, 10, 'system');
    IF c.assignee_id IS NOT NULL THEN
        PERFORM parley_assignment_kick();   -- the previous agent has room now
    END IF;
    SELECT * INTO v FROM conversation WHERE id = c.id;
    RETURN QUERY SELECT 200, parley_api_conversation_json(v);
END
$$;
