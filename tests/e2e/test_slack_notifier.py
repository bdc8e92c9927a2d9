"""The slack notifier end to end: new conversations arrive through the webhook
channel, ingest.notify_new_conversation makes a deliver job for each, and the
job runner hands them to a slack instance whose webhook_url points at a local
server that answers the way Slack's incoming webhooks do."""
import json
import time

from fake_http import FakeHTTPServer
from parley_testlib import http, query, run_parleyd, sign

SECRET = "slack-test-secret"
# The path is the credential of a Slack incoming webhook.
TOKEN = "T0SLACKTEST/B0SLACKTEST/xoxWebhookToken4242"
INTERVAL_MS = 200


class SlackServer(FakeHTTPServer):
    """Records every request and answers from a script of (status, text,
    headers); once the script is used up it answers 200 "ok"."""

    def __init__(self, script=()):
        super().__init__(answer=(200, "ok"), script=script, base_path="/services/" + TOKEN)
        self.webhook_url = self.url

    def posts(self):
        return self.requests


def config(dsn, slack_url, **slack):
    opts = {"webhook_url": slack_url, "min_interval_ms": INTERVAL_MS}
    opts.update(slack)
    return {"database": {"dsn": dsn},
            "log": {"level": "info"},
            "ingest": {"notify_new_conversation": ["ops"]},
            "jobs": {"sweep_interval_ms": 200},
            "channels": [{"name": "site", "plugin": "webhook", "config": {"secret": SECRET}}],
            "notifiers": [{"name": "ops", "plugin": "slack", "config": opts}]}


def post(d, payload):
    body = json.dumps(payload).encode()
    status = http("POST", d.url + "/webhooks/site", body,
                  {"Content-Type": "application/json",
                   "X-Parley-Signature": sign(SECRET, body)})[0]
    assert status == 200


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def jobs(dsn):
    return query(dsn, "SELECT state, attempts, last_error FROM job ORDER BY id")


def test_notice_is_posted_as_documented(fresh_db, daemon):
    with SlackServer() as slack:
        d = daemon.start(config(fresh_db, slack.webhook_url, username="Parley"))
        post(d, {"id": "m1", "author": {"id": "ann", "name": "Ann"},
                 "text": "Parcel <!channel> lost & found?"})
        assert wait_for(lambda: jobs(fresh_db) and jobs(fresh_db)[0][0] == "done")
        [req] = slack.posts()
        assert req["path"] == "/services/" + TOKEN
        assert req["headers"]["Content-Type"] == "application/json"
        # Slack's control characters are escaped: the customer's text cannot ping anyone.
        assert json.loads(req["body"]) == {
            "text": "New private conversation with Ann on site\n"
                    "Parcel &lt;!channel&gt; lost &amp; found?",
            "username": "Parley"}
        metrics = http("GET", d.url + "/metrics")[2].decode()
        assert 'parley_plugin_slack_posts_total{instance="ops"} 1' in metrics
        assert 'parley_plugin_slack_delivered_total{instance="ops"} 1' in metrics
        d.stop()
        assert TOKEN not in d.log_text()
        assert "xoxWebhookToken" not in d.log_text()


def test_rate_limit_honours_retry_after(fresh_db, daemon):
    with SlackServer([(429, "rate_limited", {"Retry-After": "1"})]) as slack:
        d = daemon.start(config(fresh_db, slack.webhook_url))
        post(d, {"id": "m1", "author": {"id": "ann", "name": "Ann"}, "text": "hello"})
        assert wait_for(lambda: jobs(fresh_db) and jobs(fresh_db)[0][0] == "done")
        first, second = slack.posts()
        assert json.loads(first["body"]) == json.loads(second["body"])
        # Not before Retry-After (a little slack for clocks of different sources).
        assert second["at"] - first["at"] >= 0.9
        # A rate limit with Retry-After defers the job: no attempt used up.
        [(state, attempts, _)] = jobs(fresh_db)
        assert (state, attempts) == ("done", 1)
        assert query(fresh_db, "SELECT deferrals FROM job") == [(1,)]


def test_revoked_webhook_fails_the_job(fresh_db, daemon):
    with SlackServer([(404, "no_service", {})]) as slack:
        d = daemon.start(config(fresh_db, slack.webhook_url))
        post(d, {"id": "m1", "author": {"id": "ann"}, "text": "hello"})
        assert wait_for(lambda: jobs(fresh_db) and jobs(fresh_db)[0][0] == "dead")
        [(state, attempts, reason)] = jobs(fresh_db)
        assert attempts == 1
        assert reason == "Slack answered 404: no_service"
        assert len(slack.posts()) == 1
        d.stop()
        log = d.log_text()
        assert "Slack answered 404: no_service" in log
        assert TOKEN not in log and "xoxWebhookToken" not in log


def test_burst_is_paced_and_summarized(fresh_db, daemon):
    with SlackServer() as slack:
        d = daemon.start(config(fresh_db, slack.webhook_url))
        n = 40
        for i in range(n):
            post(d, {"id": "b%d" % i, "author": {"id": "cust%d" % i, "name": "C%d" % i},
                     "text": "help %d" % i})
        assert wait_for(lambda: len(jobs(fresh_db)) == n
                        and all(j[0] == "done" for j in jobs(fresh_db)), timeout=30)
        posts = slack.posts()
        assert len(posts) <= 12, len(posts)
        covered = 0
        summaries = 0
        for p in posts:
            text = json.loads(p["body"])["text"]
            first = text.split("\n")[0]
            if " new notices: " in first:
                summaries += 1
                count = int(first.split(" ")[0])
                assert count > 3
                assert "conversation.created on site" in first
                assert text.count("\n\u2022 ") == min(count, 5)
                if count > 5:
                    assert text.endswith("\u2026 and %d more" % (count - 5))
                assert len(p["body"]) < 4000
                covered += count
            else:
                assert first.startswith("New private conversation with C")
                covered += 1
        assert summaries >= 1
        # Every notice once: none lost, none posted twice.
        assert covered == n
        gaps = [b["at"] - a["at"] for a, b in zip(posts, posts[1:])]
        assert all(g >= INTERVAL_MS / 1000.0 * 0.75 for g in gaps), gaps


def test_a_burst_of_500_conversations_is_a_handful_of_paced_summaries(fresh_db, daemon):
    """500 new conversations at once, routed by a notices rule: Slack gets a
    few summaries, a second apart (Slack's pace), covering every one once."""
    with SlackServer() as slack:
        cfg = config(fresh_db, slack.webhook_url, min_interval_ms=1000)
        cfg["ingest"] = {}
        cfg["notices"] = [{"notifier": "ops", "kinds": ["conversation.created"]}]
        cfg["jobs"] = {"sweep_interval_ms": 200, "concurrency": 600}
        d = daemon.start(cfg)
        n = 500
        for start in range(0, n, 100):
            post(d, [{"id": "m%d" % i, "author": {"id": "c%d" % i, "name": "C%d" % i},
                      "text": "complaint %d" % i} for i in range(start, start + 100)])
        assert wait_for(lambda: query(fresh_db, "SELECT count(*) FILTER (WHERE state = 'done'), "
                                                "count(*) FROM job")[0] == (n, n), timeout=60)
        posts = slack.posts()
        assert len(posts) <= 10, len(posts)
        covered = 0
        for p in posts:
            first = json.loads(p["body"])["text"].split("\n")[0]
            covered += int(first.split(" ")[0]) if " new notices: " in first else 1
        assert covered == n
        gaps = [b["at"] - a["at"] for a, b in zip(posts, posts[1:])]
        assert all(g >= 0.75 for g in gaps), gaps


def test_webhook_url_is_checked_and_never_echoed(tmp_path, parleyd, plugin_dir, fresh_db):
    cfg = config(fresh_db, "ftp://example.com/services/" + TOKEN)
    cfg["plugin_dir"] = plugin_dir
    rc, out, err = run_parleyd(parleyd, ["--check-config"], config=cfg, workdir=tmp_path)
    assert rc == 2
    assert "notifiers[0].config.webhook_url: must be an http:// or https:// URL" in err
    assert TOKEN not in out + err


def test_stop_hands_waiting_notices_back(fresh_db, daemon):
    """At shutdown nothing new is posted: notices still waiting for their
    turn go back to the job table and are delivered by the next daemon."""
    with SlackServer() as slack:
        cfg = config(fresh_db, slack.webhook_url, min_interval_ms=60000)
        d = daemon.start(cfg)
        for i in range(3):
            post(d, {"id": "s%d" % i, "author": {"id": "cust%d" % i}, "text": "hi"})
        assert wait_for(lambda: len(slack.posts()) == 1
                        and sum(j[0] == "done" for j in jobs(fresh_db)) == 1)
        started = time.monotonic()
        d.stop()
        assert time.monotonic() - started < 10   # nothing held the daemon for the interval
        assert len(slack.posts()) == 1
        waiting = [j for j in jobs(fresh_db) if j[0] != "done"]
        assert [(j[0], j[2]) for j in waiting] == [("queued", "shutting down")] * 2

        cfg["notifiers"][0]["config"]["min_interval_ms"] = INTERVAL_MS
        daemon.start(cfg)
        assert wait_for(lambda: all(j[0] == "done" for j in jobs(fresh_db)))
        assert len(slack.posts()) == 3
