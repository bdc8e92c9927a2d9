-- api_conversation_set: changing a conversation's working fields (status,
-- priority, category, tags, language): parley_conversation_set, shared by
-- PATCH /api/v1/conversations/{id} and macros, with its audit entry,
-- timeline events and live event.

-- ------------------------------------------------------------ changes

-- Tags as a body gives them: an array of 1..50 strings of 1..50 characters
-- (trimmed, no control characters), each once, in the order given; or 422.
CREATE FUNCTION parley_api_tags(p_value jsonb, p_field text) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_out text[] := '{}';
    v_el  jsonb;
    v_tag text;
BEGIN
    IF p_value IS NULL OR jsonb_typeof(p_value) <> 'array' THEN
        PERFORM parley_api_error(422, 'invalid_field', p_field || ': an array of strings');
    END IF;
    IF jsonb_array_length(p_value) > 50 THEN
        PERFORM parley_api_error(422, 'invalid_field', p_field || ': at most 50 tags');
    END IF;
    FOR v_el IN SELECT e FROM jsonb_array_elements(p_value) AS t(e) LOOP
        v_tag := btrim(v_el #>> '{}');
        IF jsonb_typeof(v_el) <> 'string' OR length(v_tag) NOT BETWEEN 1 AND 50 OR v_tag ~ '[[:cntrl:]]' THEN
            PERFORM parley_api_error(422, 'invalid_field',
                                     p_field || ': each tag a string of 1 to 50 characters, no control characters');
        END IF;
        IF NOT v_tag = ANY (v_out) THEN
            v_out := v_out || v_tag;
        END IF;
    END LOOP;
    RETURN v_out;
END
$$;

-- Change a conversation's working fields: p_changes holds any of status
-- (open, pending, resolved, closed), priority (low, normal, high, urgent),
-- category (text or null), tags (the new list) or add_tags / remove_tags,
-- language (a tag such as "en", or null). Shared by PATCH
-- /api/v1/conversations/{id} and macros.
--
-- 404 when p_actor does not see the conversation, 400 for an unknown
-- field, 422 for a bad value (nothing changes then). Resolving or closing
-- sets resolved_at; reopening clears it. Each field that really changes gets
-- a conversation_event (status_changed, priority_changed, category_changed,
-- tags_changed, language_changed) by the actor; if anything changed, one
-- audit entry (conversation.update, before and after of those fields) and a
-- live event conversation.updated. Returns the conversation as it is now.
CREATE FUNCTION parley_conversation_set(p_actor jsonb, p_conversation bigint, p_changes jsonb)
RETURNS conversation
LANGUAGE plpgsql AS $$
DECLARE
    v_old    conversation;
    v_new    conversation;
    v_label  text := parley_api_actor_label(p_actor);
    v_before jsonb := '{}';
    v_after  jsonb := '{}';
    v_add    text[];
    v_remove text[];
BEGIN
    PERFORM parley_api_conversation(p_actor, p_conversation);
    PERFORM parley_api_only(p_changes, ARRAY['status', 'priority', 'category', 'tags', 'add_tags',
                                             'remove_tags', 'language'], 'body');
    IF p_changes IS NULL OR jsonb_typeof(p_changes) <> 'object' OR p_changes = '{}'::jsonb THEN
        PERFORM parley_api_error(422, 'invalid_field',
                                 'nothing to change: give status, priority, category, tags, add_tags, '
                                 'remove_tags or language');
    END IF;
    IF p_changes ? 'tags' AND (p_changes ? 'add_tags' OR p_changes ? 'remove_tags') THEN
        PERFORM parley_api_error(422, 'invalid_field', 'tags: replaces the list; not together with add_tags '
                                                       'or remove_tags');
    END IF;
    SELECT * INTO v_old FROM conversation WHERE id = p_conversation FOR UPDATE;
    v_new := v_old;

    IF p_changes ? 'status' THEN
        v_new.status := parley_api_choice(parley_api_text(p_changes, 'status', 20, true),
                                          ARRAY['open', 'pending', 'resolved', 'closed'], 'status');
    END IF;
    IF p_changes ? 'priority' THEN
        v_new.priority := parley_api_choice(parley_api_text(p_changes, 'priority', 20, true),
                                            ARRAY['low', 'normal', 'high', 'urgent'], 'priority');
    END IF;
    IF p_changes ? 'category' THEN
        v_new.category := btrim(parley_api_text(p_changes, 'category', 100));
        IF v_new.category = '' OR v_new.category ~ '[[:cntrl:]]' THEN
            PERFORM parley_api_error(422, 'invalid_field', 'category: 1 to 100 characters, no control '
                                                           'characters, or null');
        END IF;
    END IF;
    IF p_changes ? 'language' THEN
        v_new.language := lower(parley_api_text(p_changes, 'language', 35));
        IF v_new.language IS NOT NULL AND NOT parley_language_ok(v_new.language) THEN
            PERFORM parley_api_error(422, 'invalid_field', 'language: a language tag such as en or pt-br, or null');
        END IF;
    END IF;
    IF p_changes ? 'tags' THEN
        v_new.tags := parley_api_tags(p_changes -> 'tags', 'tags');
    END IF;
    IF p_changes ? 'remove_tags' THEN
        v_remove := parley_api_tags(p_changes -> 'remove_tags', 'remove_tags');
        v_new.tags := coalesce((SELECT array_agg(t ORDER BY n) FROM unnest(v_new.tags) WITH ORDINALITY AS u(t, n)
                                 WHERE NOT t = ANY (v_remove)), '{}');
    END IF;
    IF p_changes ? 'add_tags' THEN
        v_add := parley_api_tags(p_changes -> 'add_tags', 'add_tags');
        v_new.tags := v_new.tags || coalesce((SELECT array_agg(t ORDER BY n) FROM unnest(v_add) WITH ORDINALITY AS u(t, n)
                                               WHERE NOT t = ANY (v_new.tags)), '{}');
        IF cardinality(v_new.tags) > 50 THEN
            PERFORM parley_api_error(422, 'invalid_field', 'add_tags: a conversation has at most 50 tags');
        END IF;
    END IF;

    IF v_new.status IS DISTINCT FROM v_old.status THEN
        v_new.resolved_at := CASE WHEN v_new.status IN ('open', 'pending') THEN NULL
                                  WHEN v_old.status IN ('resolved', 'closed') THEN coalesce(v_old.resolved_at, now())
                                  ELSE now() END;
        INSERT INTO conversation_event (conversation_id, kind, actor, details)
        VALUES (v_old.id, 'status_changed', v_label, jsonb_build_object('from', v_old.status, 'to', v_new.status));
        v_before := v_before || jsonb_build_object('status', v_old.status, 'resolved_at', v_old.resolved_at);
        v_after := v_after || jsonb_build_object('status', v_new.status, 'resolved_at', v_new.resolved_at);
    END IF;
    IF v_new.priority IS DISTINCT FROM v_old.priority THEN
        INSERT INTO conversation_event (conversation_id, kind, actor, details)
        VALUES (v_old.id, 'priority_changed', v_label, jsonb_build_object('from', v_old.priority, 'to', v_new.priority));
        v_before := v_before || jsonb_build_object('priority', v_old.priority);
        v_after := v_after || jsonb_build_object('priority', v_new.priority);
    END IF;
    IF v_new.category IS DISTINCT FROM v_old.category THEN
        INSERT INTO conversation_event (conversation_id, kind, actor, details)
        VALUES (v_old.id, 'category_changed', v_label, jsonb_build_object('from', v_old.category, 'to', v_new.category));
        v_before := v_before || jsonb_build_object('category', v_old.category);
        v_after := v_after || jsonb_build_object('category', v_new.category);
    END IF;
    IF v_new.tags IS DISTINCT FROM v_old.tags THEN
        INSERT INTO conversation_event (conversation_id, kind, actor, details)
        VALUES (v_old.id, 'tags_changed', v_label, jsonb_build_object(
                    'added', to_jsonb(ARRAY(SELECT t FROM unnest(v_new.tags) AS t WHERE NOT t = ANY (v_old.tags))),
                    'removed', to_jsonb(ARRAY(SELECT t FROM unnest(v_old.tags) AS t WHERE NOT t = ANY (v_new.tags))),
                    'tags', to_jsonb(v_new.tags)));
        v_before := v_before || jsonb_build_object('tags', to_jsonb(v_old.tags));
        v_after := v_after || jsonb_build_object('tags', to_jsonb(v_new.tags));
    END IF;
    IF v_new.language IS DISTINCT FROM v_old.language THEN
        INSERT INTO conversation_event (conversation_id, kind, actor, details)
        VALUES (v_old.id, 'language_changed', v_label, jsonb_build_object('from', v_old.language, 'to', v_new.language));
        v_before := v_before || jsonb_build_object('language', v_old.language);
        v_after := v_after || jsonb_build_object('language', v_new.language);
    END IF;
    IF v_after = '{}'::jsonb THEN
        RETURN v_old;  -- the conversation already is as asked
    END IF;

    UPDATE conversation
       SET status = v_new.status, priority = v_new.priority, category = v_new.category, tags = v_new.tags,
           language = v_new.language, resolved_at = v_new.resolved_at, updated_at = now()
     WHERE id = v_old.id
    RETURNING * INTO v_new;
    PERFORM parley_api_audit(p_actor, 'conversation.update', 'conversation', v_new.id, v_before, v_after);
    PERFORM parley_live_event('conversation.updated', v_new.channel_instance, v_new.id, NULL,
                              parley_api_conversation_json(v_new));
    RETURN v_new;
END
$$;

-- PATCH /api/v1/conversations/{id}: parley_conversation_set with the body.
CREATE FUNCTION parley_api_conversation_patch(p_actor jsonb, p_req jsonb)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v conversation;
BEGIN
    v := parley_conversation_set(p_actor, parley_api_id(p_req -> 'path' ->> 'id', 'conversation'), p_req -> 'body');
    PERFORM parley_api_only(p_req -> 'query', '{}', 'query');
    RETURN QUERY SELECT 200, parley_api_conversation_json(v);
END
$$;
