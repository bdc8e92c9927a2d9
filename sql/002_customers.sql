-- 002_customers: customers, their accounts on each channel, their contacts,
-- and the audit log.

-- Foreign keys. The tables ingest writes for every new customer and
-- message (identity, support_case, conversation, message) have none: a key
-- check is a trigger that runs a query and locks the parent row for every
-- inserted row, costing about as much as the insert. Ingest sets these
-- links from rows it has just created or holds under lock, and Parley never
-- deletes customers, identities, cases or conversations (a merged customer
-- keeps its row). The tables written rarely keep their keys.

-- One person, whatever channels they use. A customer merged into another
-- keeps its row (merged_into points at the survivor) so a merge can be undone.
CREATE TABLE customer (
    id           bigserial   PRIMARY KEY,
    display_name text,
    tags         text[]      NOT NULL DEFAULT '{}',
    attributes   jsonb       NOT NULL DEFAULT '{}',
    merged_into  bigint      REFERENCES customer (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (merged_into IS NULL OR merged_into <> id)
);
CREATE INDEX customer_merged_into ON customer (merged_into) WHERE merged_into IS NOT NULL;

-- One account of a customer on one channel instance. Platform user ids are
-- text: they do not fit a double. profile holds what the platform tells about
-- the account, follower count included; it is information only and never
-- feeds priority or queue order.
CREATE TABLE identity (
    id               bigserial   PRIMARY KEY,
    customer_id      bigint      NOT NULL,   -- the customer (no foreign key: see below)
    channel_kind     text        NOT NULL,   -- the plugin, e.g. webhook
    channel_instance text        NOT NULL,   -- the configured instance name
    external_id      text        NOT NULL,
    handle           text,
    display_name     text,
    profile          jsonb       NOT NULL DEFAULT '{}',
    first_seen_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT identity_external UNIQUE (channel_instance, external_id)
) WITH (fillfactor = 80);  -- room for HOT updates of last_seen_at on every message
CREATE INDEX identity_customer ON identity (customer_id);

-- Emails (stored lowercased) and phone numbers (as given, E.164) of a
-- customer. Only verified ones take part in automatic merging.
CREATE TABLE customer_contact (
    id                 bigserial   PRIMARY KEY,
    customer_id        bigint      NOT NULL REFERENCES customer (id),
    kind               text        NOT NULL CHECK (kind IN ('email', 'phone')),
    value              text        NOT NULL,
    verified           boolean     NOT NULL DEFAULT false,
    source_instance    text,       -- the channel instance that told us
    source_identity_id bigint      REFERENCES identity (id),
    created_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT customer_contact_unique UNIQUE (customer_id, kind, value)
);
CREATE INDEX customer_contact_verified ON customer_contact (kind, value) WHERE verified;
-- A mentioned e-mail address finds its customer (verified or not).
CREATE INDEX customer_contact_value ON customer_contact (kind, value);

-- Who or what changed what, and when.
CREATE TABLE audit_log (
    id        bigserial   PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text        NOT NULL,
    action    text        NOT NULL,
    entity    text        NOT NULL,
    entity_id bigint,
    details   jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_entity ON audit_log (entity, entity_id, id);
