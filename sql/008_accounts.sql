-- 008_accounts: what managing accounts through the API needs beyond 007.
--
-- A browser session ends after api.session_max_hours at the latest
-- (agent_session.expires_at), and earlier when it is left unused for its
-- idle_timeout: the node that logs an agent in writes its own setting into
-- the session, so every node judges the session alike.
ALTER TABLE agent_session
    ADD COLUMN idle_timeout interval;     -- NULL: no idle limit

-- When the agent's password last changed (NULL: never set through Parley).
ALTER TABLE agent
    ADD COLUMN password_changed_at timestamptz;

-- The audit list filtered by entity alone, newest first (entity with
-- entity_id uses audit_log_entity, by agent audit_log_agent).
CREATE INDEX audit_log_entity_newest ON audit_log (entity, id);

-- The login throttle drops windows that have ended.
CREATE INDEX login_failure_window ON login_failure (window_start);
