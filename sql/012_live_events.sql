-- 012_live_events: what the live event stream needs beyond 007.
--
-- The after-ingest pipeline learns which messages a batch changed, not only
-- which ones customers wrote: the brand's own messages seen on the platform
-- (echoes) and the messages an edit, a deletion or a receipt changed, so
-- the live events step (parley_live_ingested) announces them together.
ALTER TYPE parley_ingested
    ADD ATTRIBUTE echoes  bigint[],   -- the brand's new messages (echoes), in id order
    ADD ATTRIBUTE updated bigint[];   -- existing messages edits, deletions or receipts changed

-- Who is looking at or typing in a conversation: the last presence an agent
-- announced there. It rate-limits announcements (one a second per agent and
-- conversation) and goes with the live events' retention.
CREATE TABLE agent_presence (
    agent_id        bigint      NOT NULL,
    conversation_id bigint      NOT NULL,
    state           text        NOT NULL CHECK (state IN ('viewing', 'typing', 'left')),
    at              timestamptz NOT NULL,
    PRIMARY KEY (agent_id, conversation_id)
);
CREATE INDEX agent_presence_at ON agent_presence (at);
