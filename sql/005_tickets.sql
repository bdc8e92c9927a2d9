-- 005_tickets: ticket systems (sinks). One ticket per case and sink
-- (ticket_link), the comments Parley knows on them, and what ticket systems
-- reported (ticket_event). The rules are in docs/DATA_MODEL.md, "Tickets".

CREATE TABLE ticket_link (
    id                 bigserial   PRIMARY KEY,
    case_id            bigint      NOT NULL,
    sink_instance      text        NOT NULL,
    external_ticket_id text,        -- NULL while the ticket is being opened
    state              text        NOT NULL
                         CHECK (state IN ('opening', 'open', 'pending', 'solved', 'closed', 'failed')),
    follow_up_of       text,        -- the closed ticket this one follows
    first_message_id   bigint,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    last_event_at      timestamptz
);

-- One live ticket per case and sink.
CREATE UNIQUE INDEX ticket_link_live ON ticket_link (case_id, sink_instance)
    WHERE state IN ('opening', 'open', 'pending', 'solved');

CREATE INDEX ticket_link_external ON ticket_link (sink_instance, external_ticket_id);

-- Comments on tickets that Parley knows: those it posted (to_ticket: a
-- customer's message appended) and those it acted on (from_ticket).
CREATE TABLE ticket_comment (
    sink_instance      text        NOT NULL,
    comment_id         text        NOT NULL,
    external_ticket_id text,
    message_id         bigint,
    direction          text        NOT NULL CHECK (direction IN ('to_ticket', 'from_ticket')),
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sink_instance, comment_id)
);

-- What ticket systems said, as received (a replay is a no-op), and what
-- came of it.
CREATE TABLE ticket_event (
    id                 bigserial   PRIMARY KEY,
    sink_instance      text        NOT NULL,
    dedupe_key         text        NOT NULL,
    event_type         text        NOT NULL CHECK (event_type IN ('comment', 'status')),
    external_ticket_id text        NOT NULL,
    event              jsonb       NOT NULL,
    raw                jsonb,
    received_at        timestamptz NOT NULL DEFAULT now(),
    result             text,
    CONSTRAINT ticket_event_dedupe UNIQUE (sink_instance, dedupe_key)
);
