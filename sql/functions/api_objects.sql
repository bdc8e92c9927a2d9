-- api_objects: how the API shows its objects. One function per object, used
-- by every operation and by the live events, so a conversation or a message
-- looks the same in a list, a timeline and the event stream
-- (docs/api/openapi.yaml: Conversation, Message).

CREATE FUNCTION parley_api_conversation_json(c conversation) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', c.id,
        'customer', (SELECT jsonb_build_object('id', cu.id, 'display_name', cu.display_name)
                       FROM customer cu WHERE cu.id = c.customer_id),
        'case', (SELECT jsonb_build_object('id', sc.id, 'number', sc.case_number)
                   FROM support_case sc WHERE sc.id = c.case_id),
        'channel_kind', c.channel_kind,
        'channel_instance', c.channel_instance,
        'visibility', c.visibility,
        'status', c.status,
        'priority', c.priority,
        'category', c.category,
        'tags', to_jsonb(c.tags),
        'language', c.language,
        'assignee_id', c.assignee_id,
        'team_id', c.team_id,
        'queued_at', c.queued_at,
        'created_at', c.created_at,
        'updated_at', c.updated_at,
        'last_inbound_at', c.last_inbound_at,
        'last_outbound_at', c.last_outbound_at,
        'first_response_at', c.first_response_at,
        'resolved_at', c.resolved_at,
        'due_at', c.next_response_due_at,
        'origin_conversation_id', c.origin_conversation_id,
        'delivery_error', c.delivery_error,
        'last_message_id', (SELECT max(m.id) FROM message m WHERE m.conversation_id = c.id))
$$;

-- A message as agents see it: the text to show (the newest edit), the
-- original when it was edited, the deletion (the text is kept as evidence),
-- who wrote it (a customer's identity, or an agent for notes and replies
-- written in Parley), and where its delivery stands.
CREATE FUNCTION parley_api_message_json(m message) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', m.id,
        'conversation_id', m.conversation_id,
        'direction', m.direction,
        'visibility', m.visibility,
        'text', coalesce(m.edited_text, m.text),
        'original_text', CASE WHEN m.edited_text IS NOT NULL THEN m.text END,
        'edited_at', m.edited_at,
        'deleted_at', m.deleted_at,
        'author', CASE
            WHEN m.author_identity_id IS NOT NULL THEN
                (SELECT jsonb_build_object('kind', 'customer', 'identity_id', i.id, 'customer_id', i.customer_id,
                                           'handle', i.handle, 'display_name', i.display_name)
                   FROM identity i WHERE i.id = m.author_identity_id)
            WHEN m.agent_id IS NOT NULL THEN
                (SELECT jsonb_build_object('kind', 'agent', 'agent_id', a.id, 'name', a.name)
                   FROM agent a WHERE a.id = m.agent_id)
            ELSE jsonb_build_object('kind', 'brand') END,
        'in_reply_to_id', m.in_reply_to_id,
        'external_id', m.external_id,
        'platform_time', m.platform_time,
        'created_at', m.created_at,
        'delivery_status', m.delivery_status,
        'delivery_detail', m.delivery_detail)
$$;
