"""The world the reply, canned-reply and macro API tests run in: the real
daemon with two webhook channels ("site" of team North, "shop" of team
South) whose replies go to a local callback server, agents of both teams
with API tokens made by parleyd --create-token, and customers writing
through the channel's signed webhook (never rows inserted by hand)."""
import json
import time

from api_client import ApiClient
from api_setup import add_agent, add_team, create_token
from parley_testlib import http, query, sign

SECRET = "replies-api-secret"
MOVE_TEXT = "We sent you a private message."


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


class World:
    def __init__(self, daemon, dsn, run_parleyd, callback, plugin_dir, jobs=True):
        self.dsn = dsn
        self.callback = callback
        self.cfg = {
            "database": {"dsn": dsn}, "plugin_dir": plugin_dir,
            "jobs": {"enabled": jobs, "sweep_interval_ms": 100, "backoff_base_ms": 20,
                     "backoff_max_ms": 50, "max_attempts": 2},
            "channels": [
                {"name": "site", "plugin": "webhook", "move_to_private_text": MOVE_TEXT,
                 "config": {"secret": SECRET, "callback_url": callback.url}},
                {"name": "shop", "plugin": "webhook",
                 "config": {"secret": SECRET, "callback_url": callback.url}}]}
        self.d = daemon.start(self.cfg)
        self.north = add_team(dsn, "North", ["site"])
        self.south = add_team(dsn, "South", ["shop"])
        self.ann_id = add_agent(dsn, "ann@example.com", "Ann Agent", teams=[self.north])
        self.bob_id = add_agent(dsn, "bob@example.com", "Bob Agent", teams=[self.north])
        self.nora_id = add_agent(dsn, "nora@example.com", "Nora Lead", role="supervisor",
                                 teams=[self.north])
        self.sam_id = add_agent(dsn, "sam@example.com", "Sam Lead", role="supervisor",
                                teams=[self.south])
        self.ann = self.client(run_parleyd, "agent", "ann@example.com")
        self.bob = self.client(run_parleyd, "agent", "bob@example.com")
        self.nora = self.client(run_parleyd, "supervisor", "nora@example.com")
        self.sam = self.client(run_parleyd, "supervisor", "sam@example.com")
        self.admin = self.client(run_parleyd, "admin", None)

    def client(self, run_parleyd, role, email):
        token = create_token(run_parleyd, self.cfg, role=role, agent=email, name=email or role)
        return ApiClient(self.d.url, token=token)

    # ------------------------------------------------------------ customers

    def customer_says(self, msg_id, text, author="cust-1", name="Carla Customer", channel="site",
                      **fields):
        """A customer message through the channel's signed webhook; returns
        (conversation id, message id)."""
        payload = {"id": msg_id, "author": {"id": author, "name": name}, "text": text}
        payload.update(fields)
        body = json.dumps(payload).encode()
        status, _, answer = http("POST", self.d.url + "/webhooks/" + channel, body,
                                 {"Content-Type": "application/json",
                                  "X-Parley-Signature": sign(SECRET, body)})
        assert status == 200, answer
        return query(self.dsn, "SELECT conversation_id, id FROM message "
                               "WHERE channel_instance = %s AND external_id = %s",
                     (channel, msg_id))[0]

    # ------------------------------------------------------------ looking

    def one(self, sql, params=None):
        return query(self.dsn, sql, params)[0][0]

    def count(self, sql, params=None):
        return query(self.dsn, "SELECT count(*) FROM " + sql, params)[0][0]

    def sends(self):
        """The replies the channel's callback received, parsed."""
        return [r.json() for r in self.callback.requests]

    def send_jobs(self):
        return self.count("job WHERE target_kind = 'channel'")

    def message(self, message_id):
        """The message as the API shows it."""
        return self.one("SELECT parley_api_message_json(m) FROM message m WHERE id = %s", (message_id,))

    def live_kinds(self, conversation_id):
        return [k for (k,) in query(self.dsn,
                                    "SELECT kind FROM (SELECT kind, seq AS o FROM live_event_pending "
                                    "WHERE conversation_id = %s UNION ALL SELECT kind, id FROM live_event "
                                    "WHERE conversation_id = %s) x ORDER BY kind",
                                    (conversation_id, conversation_id))]

    def state(self):
        """Everything a refused call must leave as it was."""
        return query(self.dsn,
                     "SELECT (SELECT count(*) FROM message), (SELECT count(*) FROM job), "
                     "(SELECT count(*) FROM conversation), (SELECT count(*) FROM conversation_event), "
                     "(SELECT count(*) FROM audit_log), "
                     # Live events of what a reply makes (background work such as a
                     # send's outcome or the assignment sweep may queue others meanwhile).
                     "(SELECT count(*) FROM live_event_pending WHERE kind = 'message.created') + "
                     "(SELECT count(*) FROM live_event WHERE kind = 'message.created'), "
                     "(SELECT string_agg(concat_ws('|', id, status, priority, category, tags::text, "
                     "assignee_id, team_id), ';' ORDER BY id) FROM conversation)")[0]
