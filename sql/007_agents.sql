-- 007_agents: the people who answer (agents, teams), how tools and browsers
-- prove who they are (API tokens, sessions), what agents keep ready (canned
-- replies, macros), and the live event log the API streams.
--
-- Credentials are stored only as SHA-256 digests of the random secret the
-- client holds (the secret itself is shown once); passwords only as scrypt
-- hashes in PHC format.

CREATE TABLE team (
    id         bigserial   PRIMARY KEY,
    name       text        NOT NULL CHECK (name ~ '^[^[:cntrl:]]{1,100}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX team_name ON team (lower(name));

-- What a team owns: channel instances (every conversation of them), and
-- optionally categories (a conversation of such a category on any of the
-- team's instances goes to that team first; see parley_conversation_team).
CREATE TABLE team_channel (
    team_id          bigint NOT NULL REFERENCES team (id) ON DELETE CASCADE,
    channel_instance text   NOT NULL,
    PRIMARY KEY (team_id, channel_instance)
);
CREATE INDEX team_channel_instance ON team_channel (channel_instance, team_id);
CREATE TABLE team_category (
    team_id  bigint NOT NULL REFERENCES team (id) ON DELETE CASCADE,
    category text   NOT NULL,
    PRIMARY KEY (team_id, category)
);

CREATE TABLE agent (
    id                      bigserial   PRIMARY KEY,
    email                   text        NOT NULL CHECK (email = lower(email) AND email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
    name                    text        NOT NULL CHECK (name ~ '^[^[:cntrl:]]{1,200}$'),
    role                    text        NOT NULL CHECK (role IN ('agent', 'supervisor', 'admin')),
    password_hash           text,       -- NULL: cannot log in with a password (tokens only)
    languages               text[]      NOT NULL DEFAULT '{}',
    capacity                integer     NOT NULL DEFAULT 10 CHECK (capacity BETWEEN 0 AND 1000),
    availability            text        NOT NULL DEFAULT 'offline'
                              CHECK (availability IN ('online', 'away', 'offline')),
    availability_changed_at timestamptz NOT NULL DEFAULT now(),
    last_assigned_at        timestamptz,  -- round-robin among equally loaded agents
    disabled_at             timestamptz,  -- a disabled agent cannot log in; kept for the audit trail
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX agent_email ON agent (email);

CREATE TABLE agent_team (
    agent_id bigint NOT NULL REFERENCES agent (id) ON DELETE CASCADE,
    team_id  bigint NOT NULL REFERENCES team (id) ON DELETE CASCADE,
    PRIMARY KEY (agent_id, team_id)
);
CREATE INDEX agent_team_team ON agent_team (team_id, agent_id);

-- A token acts with its own role, limited to team_ids when set (NULL: the
-- role's full reach). agent_id: the agent it acts for ("me"), if any.
CREATE TABLE api_token (
    id           bigserial   PRIMARY KEY,
    name         text        NOT NULL CHECK (name ~ '^[^[:cntrl:]]{1,100}$'),
    secret_hash  bytea       NOT NULL UNIQUE,   -- sha256 of the secret
    prefix       text        NOT NULL,          -- first characters, to recognise it in lists
    role         text        NOT NULL CHECK (role IN ('agent', 'supervisor', 'admin')),
    team_ids     bigint[],
    agent_id     bigint      REFERENCES agent (id),
    created_by   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    last_used_at timestamptz,
    revoked_at   timestamptz
);

CREATE TABLE agent_session (
    id           bigserial   PRIMARY KEY,
    secret_hash  bytea       NOT NULL UNIQUE,   -- sha256 of the cookie value
    csrf_hash    bytea       NOT NULL,          -- sha256 of the CSRF token
    agent_id     bigint      NOT NULL REFERENCES agent (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    ended_at     timestamptz,                   -- logout or revocation
    peer         text
);
CREATE INDEX agent_session_agent ON agent_session (agent_id) WHERE ended_at IS NULL;

-- Failed logins per key ('account:<email>' or 'address:<ip>') in fixed
-- windows; shared by every node, so throttling holds behind a load balancer.
CREATE TABLE login_failure (
    key          text        NOT NULL,
    window_start timestamptz NOT NULL,
    failures     integer     NOT NULL,
    PRIMARY KEY (key, window_start)
);

-- Who changed something: the agent or token behind an API call.
ALTER TABLE audit_log
    ADD COLUMN agent_id bigint,
    ADD COLUMN token_id bigint;
CREATE INDEX audit_log_agent ON audit_log (agent_id, id) WHERE agent_id IS NOT NULL;

-- Conversations get an owner and the agents' working fields. The unused
-- text columns of the first wave give way to real references.
ALTER TABLE conversation
    DROP COLUMN assignee,
    DROP COLUMN team,
    ADD COLUMN assignee_id      bigint,       -- agent
    ADD COLUMN team_id          bigint,       -- the team whose queue it is in
    ADD COLUMN assigned_at      timestamptz,
    ADD COLUMN queued_at        timestamptz,  -- waiting for an agent since (NULL: not waiting)
    ADD COLUMN tags             text[]      NOT NULL DEFAULT '{}',
    ADD COLUMN language         text,
    ADD COLUMN last_message_id  bigint,       -- newest message of any direction
    ADD COLUMN last_inbound_id  bigint,       -- newest customer message
    ADD COLUMN agent_read_id    bigint;       -- newest message an agent of the team has seen
CREATE INDEX conversation_assignee ON conversation (assignee_id, id)
    WHERE assignee_id IS NOT NULL AND status IN ('open', 'pending');
CREATE INDEX conversation_queue ON conversation (team_id, queued_at, id)
    WHERE queued_at IS NOT NULL;
CREATE INDEX conversation_instance_open ON conversation (channel_instance, next_response_due_at, id)
    WHERE status IN ('open', 'pending');

-- Who wrote a note or an outbound message from Parley.
ALTER TABLE message
    ADD COLUMN agent_id bigint;

-- Ready answers, global (team_id NULL) or a team's, per language.
CREATE TABLE canned_reply (
    id         bigserial   PRIMARY KEY,
    team_id    bigint      REFERENCES team (id) ON DELETE CASCADE,
    name       text        NOT NULL CHECK (name ~ '^[^[:cntrl:]]{1,100}$'),
    language   text        NOT NULL DEFAULT 'en',
    body       text        NOT NULL CHECK (length(body) BETWEEN 1 AND 10000),
    created_by text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX canned_reply_name ON canned_reply (coalesce(team_id, 0), lower(name), language);

-- A named list of actions applied to a conversation at once.
CREATE TABLE macro (
    id         bigserial   PRIMARY KEY,
    team_id    bigint      REFERENCES team (id) ON DELETE CASCADE,
    name       text        NOT NULL CHECK (name ~ '^[^[:cntrl:]]{1,100}$'),
    actions    jsonb       NOT NULL CHECK (jsonb_typeof(actions) = 'array'),
    created_by text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX macro_name ON macro (coalesce(team_id, 0), lower(name));

-- System events on a conversation's timeline (assigned, status changed,
-- moved to private, merged, ...), next to its messages.
CREATE TABLE conversation_event (
    id              bigserial   PRIMARY KEY,
    conversation_id bigint      NOT NULL,
    kind            text        NOT NULL,
    actor           text        NOT NULL,
    details         jsonb       NOT NULL DEFAULT '{}',
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX conversation_event_conversation ON conversation_event (conversation_id, id);

-- Live events for the API's event stream. Transactions write
-- live_event_pending; one sequencer at a time (parley_live_events_sequence,
-- under an advisory lock) moves pending rows into live_event with ids taken
-- in that one transaction, so ids become visible in increasing order and a
-- reader resuming after id N never skips a later-committed lower id.
CREATE TABLE live_event_pending (
    seq              bigserial   PRIMARY KEY,
    kind             text        NOT NULL,
    channel_instance text,        -- who may see it: the instance's teams (NULL: see agent_id)
    conversation_id  bigint,
    agent_id         bigint,      -- only this agent (and admins) when set with no instance
    payload          jsonb       NOT NULL,
    at               timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE live_event (
    id               bigint      PRIMARY KEY,
    kind             text        NOT NULL,
    channel_instance text,
    conversation_id  bigint,
    agent_id         bigint,
    payload          jsonb       NOT NULL,
    at               timestamptz NOT NULL
);
CREATE SEQUENCE live_event_id_seq;
