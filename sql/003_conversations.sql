-- 003_conversations: cases, conversations, messages and what points into
-- them (references found in messages, revisions of messages).

-- A case groups the conversations about one matter across channels. "case"
-- is a reserved word, hence support_case. Numbers are the configured prefix
-- followed by the sequence, e.g. PC-10000.
CREATE SEQUENCE case_number_seq START WITH 10000;
CREATE TABLE support_case (
    id          bigserial   PRIMARY KEY,
    case_number text        NOT NULL UNIQUE,
    customer_id bigint,     -- the customer it was opened for
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- Customers type case numbers in any letter case.
CREATE INDEX support_case_number_upper ON support_case (upper(case_number));
CREATE INDEX support_case_customer ON support_case (customer_id);

-- A thread with one customer on one channel instance: a public post and its
-- replies (thread_key = the root post's id) or a private chat.
CREATE TABLE conversation (
    id                    bigserial   PRIMARY KEY,
    customer_id           bigint      NOT NULL,
    identity_id           bigint,     -- who started it
    case_id               bigint,
    channel_kind          text        NOT NULL,
    channel_instance      text        NOT NULL,
    visibility            text        NOT NULL CHECK (visibility IN ('public', 'private')),
    thread_key            text,
    status                text        NOT NULL DEFAULT 'open'
                            CHECK (status IN ('open', 'pending', 'resolved', 'closed')),
    priority              text        NOT NULL DEFAULT 'normal'
                            CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    category              text,
    assignee              text,
    team                  text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    last_inbound_at       timestamptz,
    last_outbound_at      timestamptz,
    first_response_at     timestamptz,
    resolved_at           timestamptz,
    first_response_due_at timestamptz,
    next_response_due_at  timestamptz,
    resolution_due_at     timestamptz,
    -- The public conversation a private one was opened from ("move to
    -- private"; same case).
    origin_conversation_id bigint,
    -- Why the latest reply did not go out (cleared by the next one that
    -- does), for the agents.
    delivery_error        text,
    delivery_error_at     timestamptz
) WITH (fillfactor = 80);  -- last_inbound_at changes on every message: keep it HOT
-- The agents' queue: open work by due time, or by age.
CREATE INDEX conversation_open_by_due ON conversation (next_response_due_at, id)
    WHERE status IN ('open', 'pending');
CREATE INDEX conversation_open_by_age ON conversation (created_at, id)
    WHERE status IN ('open', 'pending');
-- A customer's timeline (newest first), and threading: a customer's
-- conversation on an instance and thread.
CREATE INDEX conversation_customer ON conversation (customer_id, id);
CREATE INDEX conversation_customer_thread ON conversation (customer_id, channel_instance, thread_key, id);
-- Echoes find their conversation by thread alone. Without id on purpose: the
-- planner must not prefer walking a busy thread backwards over the exact
-- customer index above.
CREATE INDEX conversation_thread ON conversation (channel_instance, thread_key);
CREATE INDEX conversation_case ON conversation (case_id);
CREATE INDEX conversation_origin ON conversation (origin_conversation_id)
    WHERE origin_conversation_id IS NOT NULL;


-- Order numbers, emails, phone numbers and case numbers seen in messages
-- (and the customer's own emails), used to link later contacts to the case.
-- Values are normalized: emails lowercased, case and order numbers uppercased.
CREATE TABLE case_reference (
    id         bigserial   PRIMARY KEY,
    case_id    bigint      NOT NULL REFERENCES support_case (id),
    kind       text        NOT NULL CHECK (kind IN ('case_number', 'order_number', 'email', 'phone')),
    value      text        NOT NULL,
    message_id bigint,     -- the message it was found in; NULL for the customer's own contacts
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT case_reference_unique UNIQUE (case_id, kind, value)
);
CREATE INDEX case_reference_lookup ON case_reference (kind, value, case_id);

-- Inbound, outbound and internal notes. text is the ORIGINAL text and is
-- never updated: edits are rows in message_revision, and edited_text is a
-- copy of the newest edit (by platform time) so readers need no join. The
-- text to show is coalesce(edited_text, text).
--
-- No foreign keys (see above); inbound_event_id also stays a plain link so
-- raw events can be archived on their own.
CREATE TABLE message (
    id                      bigserial   PRIMARY KEY,
    conversation_id         bigint,     -- NULL: not known yet (an echo)
    channel_instance        text        NOT NULL,
    direction               text        NOT NULL CHECK (direction IN ('inbound', 'outbound', 'note')),
    external_id             text,       -- the platform's id; NULL until an outbound message is sent
    author_identity_id      bigint,     -- NULL for the brand and notes
    text                    text,
    edited_text             text,
    visibility              text        NOT NULL DEFAULT 'private'
                              CHECK (visibility IN ('public', 'private')),
    in_reply_to_external_id text,
    in_reply_to_id          bigint,
    platform_time           timestamptz,
    received_at             timestamptz DEFAULT now(),
    delivery_status         text        CHECK (delivery_status IN ('sent', 'delivered', 'read', 'failed')),
    delivery_detail         text,
    edited_at               timestamptz,
    deleted_at              timestamptz,
    deleted_by              text,
    inbound_event_id        bigint,
    created_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT message_external UNIQUE (channel_instance, external_id)
);
CREATE INDEX message_conversation ON message (conversation_id, id);

-- Every edit (with its new text) and the deletion of a message, as evidence.
CREATE TABLE message_revision (
    id               bigserial   PRIMARY KEY,
    message_id       bigint      NOT NULL REFERENCES message (id),
    kind             text        NOT NULL CHECK (kind IN ('edit', 'delete')),
    text             text,       -- edit: the new text; delete: NULL
    at               timestamptz NOT NULL,  -- platform time, else when we received it
    by               text,       -- who did it, when the platform says
    inbound_event_id bigint,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX message_revision_message ON message_revision (message_id, id);
