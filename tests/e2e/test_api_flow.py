"""An agent's day in one test, through the real daemon, PostgreSQL, the meta
channel and a local server that answers like Meta's Graph API: a Messenger
message arrives → it is in the list and in the live stream of an agent of
the right team (and not of another team's agent) → it is assigned to that
agent → the agent replies → the Graph API receives the send → Messenger's
delivery receipt arrives as a live event → the agent resolves it. A second
agent answering from a stale view is refused with the new messages."""
import json
import time

from api_client import ApiClient
from api_setup import add_agent, add_team, create_token
from parley_testlib import query
from test_meta_channel import FakeGraph, config, dm, now_ms, page, post, wait_for, PAGE


class Seen:
    """A stream and every event read from it so far, so a test can ask for an
    event that arrived while it waited for another (the order of events of
    one commit is the pipeline's, not the story's)."""

    def __init__(self, stream):
        self.stream, self.events, self.used = stream, [], set()

    def next_of(self, kinds, conversation_id, timeout=10.0):
        """The first unused event of one of `kinds` about the conversation."""
        deadline = time.monotonic() + timeout
        i = 0
        while True:
            while i < len(self.events):
                ev = self.events[i]
                data = ev.data if isinstance(ev.data, dict) else {}
                about = data.get("id") if ev.event.startswith("conversation.") and \
                    ev.event != "conversation.read" else data.get("conversation_id")
                if i not in self.used and ev.event in kinds and about == conversation_id:
                    self.used.add(i)
                    return ev
                i += 1
            left = deadline - time.monotonic()
            assert left > 0, "no %s for conversation %s within %.0f s; seen %s" % (
                kinds, conversation_id, timeout, [e.event for e in self.events])
            self.events.append(self.stream.next_event(timeout=left))


def test_a_messenger_message_from_arrival_to_resolved(fresh_db, daemon, run_parleyd):
    with FakeGraph() as graph:
        cfg = config(fresh_db, graph.url)
        cfg["assignment"] = {"sweep_interval_ms": 200}
        d = daemon.start(cfg)
        north = add_team(fresh_db, "North", ["meta"])
        south = add_team(fresh_db, "South", ["elsewhere"])
        add_agent(fresh_db, "ann@example.com", "Ann", "agent", [north], capacity=5)
        add_agent(fresh_db, "sam@example.com", "Sam", "supervisor", [north])
        add_agent(fresh_db, "sue@example.com", "Sue", "agent", [south])
        ann = ApiClient(d.url, token=create_token(run_parleyd, cfg, "agent", "ann@example.com", name="ann"))
        sam = ApiClient(d.url, token=create_token(run_parleyd, cfg, "supervisor", "sam@example.com", name="sam"))
        sue = ApiClient(d.url, token=create_token(run_parleyd, cfg, "agent", "sue@example.com", name="sue"))
        ann_id = ann.get("/api/v1/me")[2]["agent"]["id"]
        assert ann.put("/api/v1/me/availability", json={"availability": "online"})[0] == 200

        with ann.events(timeout=10) as ann_stream, sue.events(timeout=10) as sue_stream:
            assert ann_stream.next_event(timeout=10).event == "ready"
            assert sue_stream.next_event(timeout=10).event == "ready"
            seen_by_ann = Seen(ann_stream)

            # A customer writes on Messenger.
            assert post(d, page(dm("m_1", "My order never arrived")))[0] == 200
            [(conv,)] = query(fresh_db, "SELECT id FROM conversation")
            ev = seen_by_ann.next_of(("message.created",), conv)
            assert ev.data["text"] == "My order never arrived" and ev.data["direction"] == "inbound"
            status, _, listing = ann.get("/api/v1/conversations", params={"sort": "due"})
            assert status == 200 and [c["id"] for c in listing["items"]] == [conv]
            # Another team's agent sees neither the event nor the conversation.
            assert sue.get("/api/v1/conversations")[2]["items"] == []
            assert sue.get("/api/v1/conversations/%d" % conv)[0] == 404

            # It is assigned to the online agent of the owning team.
            assert wait_for(lambda: ann.get("/api/v1/conversations/%d" % conv)[2]["conversation"]
                            ["assignee_id"] == ann_id)
            seen_by_ann.next_of(("conversation.assigned",), conv)

            # Ann replies from what she saw; the Graph API receives the send.
            seen = ann.get("/api/v1/conversations/%d" % conv)[2]["conversation"]["last_message_id"]
            status, _, body = ann.post("/api/v1/conversations/%d/replies" % conv,
                                       json={"text": "Sorry! It ships today.", "last_seen_message_id": seen})
            assert status == 202, body
            reply_id = body["message"]["id"]
            assert wait_for(lambda: len(graph.posts()) == 1)
            sent = json.loads(graph.posts()[0]["body"])
            assert sent["recipient"] == {"id": "9"} and sent["message"]["text"] == "Sorry! It ships today."
            assert wait_for(lambda: query(fresh_db, "SELECT external_id FROM message WHERE id = %s",
                                          (reply_id,))[0][0] is not None)
            [(ext,)] = query(fresh_db, "SELECT external_id FROM message WHERE id = %s", (reply_id,))

            # Messenger's delivery receipt arrives live.
            receipt = {"sender": {"id": "9"}, "recipient": {"id": PAGE}, "timestamp": now_ms(),
                       "delivery": {"mids": [ext], "watermark": now_ms()}}
            assert post(d, page(receipt))[0] == 200
            while True:
                ev = seen_by_ann.next_of(("message.updated",), conv)
                if ev.data["id"] == reply_id and ev.data["delivery_status"] == "delivered":
                    break

            # Sam answers from a view older than Ann's reply: refused, with what he missed.
            status, _, body = sam.post("/api/v1/conversations/%d/replies" % conv,
                                       json={"text": "Hi!", "last_seen_message_id": seen})
            assert status == 409 and body["error"] == "collision"
            assert [m["id"] for m in body["new_messages"]] == [reply_id]
            assert len(graph.posts()) == 1

            # Ann resolves it.
            status, _, body = ann.patch("/api/v1/conversations/%d" % conv, json={"status": "resolved"})
            assert status == 200 and body["status"] == "resolved"
            assert seen_by_ann.next_of(("conversation.updated",), conv).data["status"] == "resolved"

            # Nothing of it reached the other team's stream.
            try:
                while True:
                    ev = sue_stream.next_event(timeout=0.5)
                    assert ev.data.get("conversation_id") != conv and ev.data.get("id") != conv, ev
            except TimeoutError:
                pass
