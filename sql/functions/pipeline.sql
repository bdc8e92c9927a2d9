-- pipeline: what follows the storing of an ingest batch.
--
-- parley_ingest_batch calls parley_after_ingest once per batch, in the
-- batch's transaction, after the batch's messages, conversations and cases
-- are stored (and the edits and receipts that waited for them applied).
-- Each step receives what the batch stored (parley_ingested: the
-- customers' new messages, the conversations they started, the batch's
-- opts, the brand's new messages (echoes), the messages edits, deletions
-- and receipts changed) and runs in the order listed. A step returns at
-- once when it has nothing to do (no route, no rule), so steps cost nothing
-- unconfigured.
--
-- Adding a step is adding one function parley_<step>(b parley_ingested)
-- RETURNS void in its subsystem's file and one line below.
-- docs/DATA_MODEL.md, "After ingest", lists the steps.
CREATE FUNCTION parley_after_ingest(b parley_ingested) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM parley_route_to_sinks(b);                -- tickets.sql
    PERFORM parley_notice_conversations_created(b);  -- notices.sql
    PERFORM parley_notice_messages_received(b);      -- notices.sql
    PERFORM parley_conversation_team(b);             -- assignment.sql
    PERFORM parley_assign_conversations(b);          -- assignment.sql
    PERFORM parley_live_ingested(b);                 -- live_events.sql
END
$$;
