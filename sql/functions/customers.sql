-- customers: a new author's identity and customer (auto-linked by a verified
-- email or phone), merging two customers and undoing it.

-- A new identity: attached to the existing customer that has the same
-- verified phone or email (when the options allow it), else to a new
-- customer; the identity's email and phone become that customer's contacts.
-- The caller holds the author's lock and the locks of these verified keys.
CREATE FUNCTION parley_new_identity(it parley_ingest_item, o parley_ingest_options,
                                    OUT identity_id bigint, OUT customer_id bigint,
                                    OUT new_customer boolean)
LANGUAGE plpgsql AS $$
DECLARE
    a          jsonb := it.ev -> 'author';
    v_at       timestamptz := parley_event_time(it.platform_time);
    v_email    text := lower(nullif(a ->> 'email', ''));
    v_phone    text := nullif(a ->> 'phone', '');
    v_email_ok boolean := v_email IS NOT NULL AND coalesce(a -> 'email_verified' = 'true'::jsonb, false);
    v_phone_ok boolean := v_phone IS NOT NULL AND coalesce(a -> 'phone_verified' = 'true'::jsonb, false);
    v_profile  jsonb := CASE WHEN jsonb_typeof(a -> 'profile') = 'object' THEN a -> 'profile' ELSE '{}' END;
    v_contact  customer_contact%ROWTYPE;
BEGIN
    IF (o.merge_verified_email AND v_email_ok) OR (o.merge_verified_phone AND v_phone_ok) THEN
        SELECT cc.* INTO v_contact
          FROM customer_contact cc
          JOIN customer c ON c.id = cc.customer_id AND c.merged_into IS NULL
         WHERE cc.verified
           AND ((o.merge_verified_phone AND v_phone_ok AND cc.kind = 'phone' AND cc.value = v_phone)
             OR (o.merge_verified_email AND v_email_ok AND cc.kind = 'email' AND cc.value = v_email))
         ORDER BY cc.kind = 'phone' DESC, cc.customer_id
         LIMIT 1;
    END IF;

    new_customer := v_contact.id IS NULL;
    IF new_customer THEN
        WITH c AS (
            INSERT INTO customer (display_name)
            VALUES (coalesce(nullif(a ->> 'display_name', ''), nullif(a ->> 'handle', ''), it.author))
            RETURNING id
        )
        INSERT INTO identity (customer_id, channel_kind, channel_instance, external_id, handle,
                              display_name, profile, first_seen_at, last_seen_at)
        SELECT c.id, coalesce(it.channel, ''), it.instance, it.author, nullif(a ->> 'handle', ''),
               nullif(a ->> 'display_name', ''), v_profile, v_at, v_at
          FROM c
        RETURNING id, identity.customer_id INTO identity_id, customer_id;
    ELSE
        customer_id := v_contact.customer_id;
        INSERT INTO identity (customer_id, channel_kind, channel_instance, external_id, handle,
                              display_name, profile, first_seen_at, last_seen_at)
        VALUES (v_contact.customer_id, coalesce(it.channel, ''), it.instance, it.author,
                nullif(a ->> 'handle', ''), nullif(a ->> 'display_name', ''), v_profile, v_at, v_at)
        RETURNING id INTO identity_id;
        PERFORM parley_audit('ingest', 'customer.auto_link', 'identity', identity_id,
                             jsonb_build_object('identity_id', identity_id,
                                                'customer_id', v_contact.customer_id,
                                                'contact_id', v_contact.id,
                                                'kind', v_contact.kind,
                                                'value', v_contact.value,
                                                'inbound_event_id', it.inbound_id));
    END IF;

    IF v_email IS NOT NULL OR v_phone IS NOT NULL THEN
        INSERT INTO customer_contact (customer_id, kind, value, verified, source_instance, source_identity_id)
        SELECT parley_new_identity.customer_id, x.kind, x.value, x.verified, it.instance,
               parley_new_identity.identity_id
          FROM (VALUES ('email', v_email, v_email_ok), ('phone', v_phone, v_phone_ok)) AS x(kind, value, verified)
         WHERE x.value IS NOT NULL
        ON CONFLICT ON CONSTRAINT customer_contact_unique DO UPDATE SET verified = true
         WHERE EXCLUDED.verified AND NOT customer_contact.verified;
    END IF;
END
$$;

-- Lock the authors and verified contacts of these identities / contacts the
-- way ingest does, so a merge and a batch about the same people serialize.
CREATE FUNCTION parley_lock_customer_keys(p_customer bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM parley_lock_sorted(ARRAY(
        SELECT parley_lock_key('a', i.channel_instance, i.external_id)
          FROM identity i WHERE i.customer_id = p_customer
        UNION ALL
        SELECT parley_lock_key(CASE cc.kind WHEN 'email' THEN 'e' ELSE 'p' END, cc.value, NULL)
          FROM customer_contact cc WHERE cc.customer_id = p_customer AND cc.verified));
END
$$;

-- Move everything of customer `source` to `target`: identities,
-- conversations, cases and contacts (a contact the target already has stays
-- with the source; if only the source's copy was verified, the target's
-- becomes verified). The source stays as a row with merged_into = target.
-- Returns the id of the 'customer.merge' audit entry, whose details list
-- exactly what moved, for parley_unmerge. Every moved conversation gets a
-- 'merged' event on its timeline. who: the API caller behind `actor`, if any
-- (see parley_audit). A refusal (itself, already merged, into a merged
-- customer) is SQLSTATE PM001, so callers can tell it from a failure.
CREATE FUNCTION parley_merge_customers(source bigint, target bigint, actor text, who jsonb DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_audit  bigint;
    v_source customer%ROWTYPE;
    v_target customer%ROWTYPE;
    v_identities bigint[];
    v_conversations bigint[];
    v_cases bigint[];
    v_contacts bigint[];
    v_verified bigint[];
BEGIN
    IF source IS NULL OR target IS NULL THEN
        RAISE EXCEPTION 'parley_merge_customers: source and target are required';
    END IF;
    IF source = target THEN
        RAISE EXCEPTION USING ERRCODE = 'PM001',
            MESSAGE = format('cannot merge customer %s into itself', source);
    END IF;

    -- Ingest's locks first (sorted), then the two rows in id order.
    PERFORM parley_lock_customer_keys(source);
    PERFORM 1 FROM customer WHERE id IN (source, target) ORDER BY id FOR UPDATE;
    SELECT * INTO v_source FROM customer WHERE id = source;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'customer % does not exist', source;
    END IF;
    SELECT * INTO v_target FROM customer WHERE id = target;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'customer % does not exist', target;
    END IF;
    IF v_source.merged_into IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PM001',
            MESSAGE = format('customer %s is already merged into customer %s', source, v_source.merged_into);
    END IF;
    IF v_target.merged_into IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PM001',
            MESSAGE = format('cannot merge into customer %s: it is merged into customer %s',
                             target, v_target.merged_into);
    END IF;

    WITH m AS (UPDATE identity SET customer_id = target WHERE customer_id = source RETURNING id)
    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO v_identities FROM m;
    WITH m AS (UPDATE conversation SET customer_id = target, updated_at = now()
                WHERE customer_id = source RETURNING id)
    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO v_conversations FROM m;
    WITH m AS (UPDATE support_case SET customer_id = target, updated_at = now()
                WHERE customer_id = source RETURNING id)
    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO v_cases FROM m;
    WITH m AS (UPDATE customer_contact t SET verified = true
                 FROM customer_contact s
                WHERE s.customer_id = source AND s.verified
                  AND t.customer_id = target AND t.kind = s.kind AND t.value = s.value
                  AND NOT t.verified
                RETURNING t.id)
    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO v_verified FROM m;
    WITH m AS (UPDATE customer_contact s SET customer_id = target
                WHERE s.customer_id = source
                  AND NOT EXISTS (SELECT 1 FROM customer_contact t
                                   WHERE t.customer_id = target AND t.kind = s.kind AND t.value = s.value)
                RETURNING id)
    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO v_contacts FROM m;

    UPDATE customer SET merged_into = target, updated_at = now() WHERE id = source;
    UPDATE customer SET updated_at = now() WHERE id = target;

    v_audit := parley_audit(actor, 'customer.merge', 'customer', source,
                            jsonb_build_object('source', source, 'target', target,
                                               'identities', to_jsonb(v_identities),
                                               'conversations', to_jsonb(v_conversations),
                                               'cases', to_jsonb(v_cases),
                                               'contacts', to_jsonb(v_contacts),
                                               'contacts_verified', to_jsonb(v_verified)),
                            who);
    INSERT INTO conversation_event (conversation_id, kind, actor, details)
    SELECT c, 'merged', actor, jsonb_build_object('source', source, 'target', target, 'audit_id', v_audit)
      FROM unnest(v_conversations) AS c;
    RETURN v_audit;
END
$$;

-- Undo the merge recorded in audit entry `audit_id`: what it moved goes back
-- to the source (as far as it is still with the target), together with the
-- conversations the moved identities started since, and the source is a
-- customer of its own again. Returns the 'customer.unmerge' audit id.
-- Refused (SQLSTATE PM001) when the merge was already undone, or the target
-- has since been merged itself (undo that first). Every conversation moved
-- back gets an 'unmerged' event; who as for parley_merge_customers.
CREATE FUNCTION parley_unmerge(audit_id bigint, actor text, who jsonb DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_audit  bigint;
    v_merge  audit_log%ROWTYPE;
    v_source bigint;
    v_target bigint;
    v_row    customer%ROWTYPE;
    v_done   bigint;
    v_identities bigint[];
    v_conversations bigint[];
    v_cases bigint[];
    v_contacts bigint[];
    v_verified bigint[];
BEGIN
    SELECT * INTO v_merge FROM audit_log WHERE id = audit_id;
    IF NOT FOUND OR v_merge.action <> 'customer.merge' THEN
        RAISE EXCEPTION USING ERRCODE = 'PM001',
            MESSAGE = format('audit entry %s is not a customer merge', audit_id);
    END IF;
    v_source := (v_merge.details ->> 'source')::bigint;
    v_target := (v_merge.details ->> 'target')::bigint;

    PERFORM parley_lock_customer_keys(v_target);
    PERFORM 1 FROM customer WHERE id IN (v_source, v_target) ORDER BY id FOR UPDATE;

    SELECT a.id INTO v_done FROM audit_log a
     WHERE a.entity = 'customer' AND a.entity_id = v_source AND a.action = 'customer.unmerge'
       AND a.details ->> 'merge_audit_id' = audit_id::text
     LIMIT 1;
    IF v_done IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PM001',
            MESSAGE = format('merge %s was already undone (audit entry %s)', audit_id, v_done);
    END IF;
    SELECT * INTO v_row FROM customer WHERE id = v_source;
    IF v_row.merged_into IS DISTINCT FROM v_target THEN
        RAISE EXCEPTION USING ERRCODE = 'PM001',
            MESSAGE = format('customer %s is not merged into customer %s', v_source, v_target);
    END IF;
    SELECT * INTO v_row FROM customer WHERE id = v_target;
    IF v_row.merged_into IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PM001',
            MESSAGE = format('customer %s has since been merged into customer %s; undo that merge first',
                             v_target, v_row.merged_into);
    END IF;

    WITH m AS (UPDATE identity SET customer_id = v_source
                WHERE customer_id = v_target
                  AND id IN (SELECT jsonb_array_elements_text(v_merge.details -> 'identities')::bigint)
                RETURNING id)
    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO v_identities FROM m;
    WITH m AS (UPDATE conversation SET customer_id = v_source, updated_at = now()
                WHERE customer_id = v_target
                  AND (id IN (SELECT jsonb_array_elements_text(v_merge.details -> 'conversations')::bigint)
                       OR identity_id = ANY (v_identities))
                RETURNING id)
    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO v_conversations FROM m;
    WITH m AS (UPDATE support_case SET customer_id = v_source, updated_at = now()
                WHERE customer_id = v_target
                  AND id IN (SELECT jsonb_array_elements_text(v_merge.details -> 'cases')::bigint)
                RETURNING id)
    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO v_cases FROM m;
    WITH m AS (UPDATE customer_contact SET customer_id = v_source
                WHERE customer_id = v_target
                  AND id IN (SELECT jsonb_array_elements_text(v_merge.details -> 'contacts')::bigint)
                RETURNING id)
    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO v_contacts FROM m;
    WITH m AS (UPDATE customer_contact SET verified = false
                WHERE customer_id = v_target
                  AND id IN (SELECT jsonb_array_elements_text(v_merge.details -> 'contacts_verified')::bigint)
                RETURNING id)
    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO v_verified FROM m;

    UPDATE customer SET merged_into = NULL, updated_at = now() WHERE id = v_source;
    UPDATE customer SET updated_at = now() WHERE id = v_target;

    v_audit := parley_audit(actor, 'customer.unmerge', 'customer', v_source,
                            jsonb_build_object('merge_audit_id', audit_id,
                                               'source', v_source, 'target', v_target,
                                               'identities', to_jsonb(v_identities),
                                               'conversations', to_jsonb(v_conversations),
                                               'cases', to_jsonb(v_cases),
                                               'contacts', to_jsonb(v_contacts),
                                               'contacts_unverified', to_jsonb(v_verified)),
                            who);
    INSERT INTO conversation_event (conversation_id, kind, actor, details)
    SELECT c, 'unmerged', actor,
           jsonb_build_object('source', v_source, 'target', v_target, 'merge_audit_id', audit_id,
                              'audit_id', v_audit)
      FROM unnest(v_conversations) AS c;
    RETURN v_audit;
END
$$;
