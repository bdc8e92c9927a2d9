-- 001_foundation: what the foundation needs. schema_migrations itself is
-- created by the migrator before any migration runs.

-- Every inbound event a channel emitted, committed before the platform gets
-- its 2xx. A replay (same dedupe key on the same instance) is a no-op.
CREATE TABLE inbound_event (
    id                  bigserial PRIMARY KEY,
    channel_instance    text        NOT NULL,
    dedupe_key          text        NOT NULL,
    event_type          text        NOT NULL CHECK (event_type IN
                          ('message_created', 'message_edited', 'message_deleted', 'delivery_status')),
    external_id         text,
    author_external_id  text,
    event               jsonb       NOT NULL,  -- the normalized event as the core received it
    raw                 jsonb,                 -- the platform's JSON for this item (evidence)
    platform_time       timestamptz,
    received_at         timestamptz NOT NULL DEFAULT now(),
    processed_at        timestamptz,           -- set once turned into customer/conversation/message
    CONSTRAINT inbound_event_dedupe UNIQUE (channel_instance, dedupe_key)
);
CREATE INDEX inbound_event_unprocessed ON inbound_event (id) WHERE processed_at IS NULL;

-- Small durable per-instance state for plugins (polling cursors and the like).
CREATE TABLE plugin_state (
    instance    text        NOT NULL,
    key         text        NOT NULL,
    value       text        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance, key)
);
