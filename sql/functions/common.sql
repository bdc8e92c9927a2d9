-- common: building blocks every subsystem uses: the advisory lock keys of
-- ingest and merges, time and event helpers, the audit log.

-- Advisory locks of ingest and merges use the two-integer form with this
-- first half ('Prly'), a key space apart from single-bigint locks (the
-- migrator, periodic work).
CREATE FUNCTION parley_lock_space() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 1349676153 $$;

-- The second half: a hash of what is locked. kind 'a' = an author (instance,
-- user id), 'm' = a message (instance, message id), 'e' / 'p' = a verified
-- email / phone. A collision only serializes two unrelated batches.
CREATE FUNCTION parley_lock_key(kind text, a text, b text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT hashtext(kind || chr(31) || coalesce(a, '') || chr(31) || coalesce(b, ''))
$$;

-- Take the given keys in ascending order. Every caller sorts the same way,
-- so transactions wait for each other but never deadlock on these locks.
CREATE FUNCTION parley_lock_sorted(keys integer[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(parley_lock_space(), s.k)
       FROM (SELECT DISTINCT u.k FROM unnest(keys) AS u(k) WHERE u.k IS NOT NULL ORDER BY u.k) AS s;
END
$$;

-- Unix milliseconds (a JSON number) to a timestamp; NULL for anything else,
-- zero, or beyond year 5000, so a bad value cannot fail the batch.
CREATE FUNCTION parley_ms_time(ms jsonb) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(ms) = 'number' AND ms::numeric > 0 AND ms::numeric < 95617584000000
                THEN to_timestamp(ms::numeric / 1000) END
$$;

CREATE FUNCTION parley_is_brand(ev jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(ev -> 'from_brand' = 'true'::jsonb, false)
$$;

-- A message_created event carrying what processing needs. Anything else of
-- that type is stored and left unprocessed.
CREATE FUNCTION parley_created_ok(ev jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(ev ->> 'type' = 'message_created'
                    AND coalesce(ev ->> 'external_id', '') <> ''
                    AND ev ->> 'visibility' IN ('public', 'private')
                    AND (parley_is_brand(ev) OR coalesce(ev -> 'author' ->> 'external_id', '') <> ''),
                    false)
$$;

-- Delivery states only move forward: sent < failed < delivered < read. So
-- failed replaces nothing but sent, a late "sent" never hides a failure, and
-- a message seen as delivered or read was evidently not lost.
CREATE FUNCTION parley_delivery_rank(status text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE status WHEN 'sent' THEN 1 WHEN 'failed' THEN 2
                       WHEN 'delivered' THEN 3 WHEN 'read' THEN 4 END
$$;

-- The time a message counts from: the platform's, but never in the future
-- (a skewed platform clock must not push deadlines out).
CREATE FUNCTION parley_event_time(platform_time timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT least(coalesce(platform_time, now()), now())
$$;

-- The thread a customer's message belongs to: public, the root post (a
-- root post is its own root); private, the chat id, or NULL when the
-- platform has none (then any private conversation of the customer fits).
CREATE FUNCTION parley_thread_key(ev jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN ev ->> 'visibility' = 'public'
                THEN coalesce(nullif(ev ->> 'thread_id', ''), ev ->> 'external_id')
                ELSE nullif(ev ->> 'thread_id', '') END
$$;

-- An audit entry. The agent and token behind it: p_who ({"agent_id",
-- "token_id"}, as parley_api_authenticate describes the caller) when a core
-- operation is run for one, else the API call's own caller (parley.actor,
-- set for the transaction by parley_api_authenticate), so a core operation
-- the API calls (a reply, a merge) is attributed like the API's own changes.
CREATE FUNCTION parley_audit(p_actor text, p_action text, p_entity text, p_entity_id bigint,
                             p_details jsonb, p_who jsonb DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_id    bigint;
    v_actor jsonb := nullif(current_setting('parley.actor', true), '')::jsonb;
BEGIN
    INSERT INTO audit_log (actor, action, entity, entity_id, details, agent_id, token_id)
    VALUES (p_actor, p_action, p_entity, p_entity_id, p_details,
            (coalesce(p_who, v_actor) ->> 'agent_id')::bigint, (coalesce(p_who, v_actor) ->> 'token_id')::bigint)
    RETURNING id INTO v_id;
    RETURN v_id;
END
$$;
