-- 001_ingest: what arrives, as it arrived, and the small state around it.
--
-- Numbered migrations hold the schema only (tables, indexes, types); the
-- functions are in sql/functions/ (docs/DATA_MODEL.md). schema_migrations
-- itself is created by the migrator before any migration runs.

-- Every inbound event a channel emitted, committed before the platform gets
-- its 2xx. A replay (same dedupe key on the same instance) is a no-op.
-- Ingest stores what it cannot interpret (say, an event type a newer plugin
-- emits) and leaves it unprocessed instead of failing the whole batch, so the
-- type is not limited to the ones it understands.
CREATE TABLE inbound_event (
    id                  bigserial PRIMARY KEY,
    channel_instance    text        NOT NULL,
    dedupe_key          text        NOT NULL,
    event_type          text        NOT NULL CHECK (event_type <> ''),
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
-- Events waiting for their message (an edit, deletion or receipt that came
-- first). Message-created events are stored already processed, so this stays
-- small.
CREATE INDEX inbound_event_pending ON inbound_event (channel_instance, external_id)
    WHERE processed_at IS NULL;

-- Small durable per-instance state for plugins (polling cursors and the like).
CREATE TABLE plugin_state (
    instance    text        NOT NULL,
    key         text        NOT NULL,
    value       text        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance, key)
);

-- Settings parleyd writes for the SQL side: 'routing' (written from the
-- configuration at start and on SIGHUP) says which conversations go to which
-- sink instance and which notice kinds to which notifier instance.
CREATE TABLE parley_settings (
    key        text        PRIMARY KEY,
    value      jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The ingest batch's options, as parley_ingest_options(opts) reads them.
CREATE TYPE parley_ingest_options AS (
    reopen_window        interval,
    merge_verified_email boolean,
    merge_verified_phone boolean,
    case_prefix          text,
    case_pattern         text,   -- NULL: do not look for case numbers
    order_pattern        text,   -- NULL: do not look for order numbers
    email_pattern        text,   -- NULL: do not look for emails
    quick_filter         text    -- what any reference needs, when known: a cheap first test
);


-- One stored (not replayed) item of a batch, in batch order.
CREATE TYPE parley_ingest_item AS (
    inbound_id    bigint,
    instance      text,
    channel       text,
    event_type    text,
    external_id   text,
    author        text,     -- the author's external id
    ev            jsonb,
    platform_time timestamptz,
    ready         boolean,  -- a well-formed message_created (stored as processed)
    brand         boolean   -- written by the brand's own account (an echo)
);


-- What a batch stored, handed to every step of the after-ingest pipeline
-- (parley_after_ingest, sql/functions/pipeline.sql).
CREATE TYPE parley_ingested AS (
    messages      bigint[],  -- the customers' new messages, in id order
    conversations bigint[],  -- the conversations they started, in id order (echoes start none)
    opts          jsonb      -- the batch's opts
);
