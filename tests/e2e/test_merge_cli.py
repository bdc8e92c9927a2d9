"""Operators merge two customers from the command line, and undo it: the real
daemon ingests, parleyd --merge-customer / --unmerge change the records, and
the audit log says who did what."""
import json

from parley_testlib import http, query, sign

SECRET = "merge-secret"


def post(d, payload):
    body = json.dumps(payload).encode()
    return http("POST", d.url + "/webhooks/site", body,
                {"Content-Type": "application/json", "X-Parley-Signature": sign(SECRET, body)})


def customer_of(dsn, external_id):
    return query(dsn, "SELECT customer_id FROM identity WHERE external_id = %s", (external_id,))[0][0]


def test_merge_and_unmerge_from_the_command_line(fresh_db, daemon, plugin_dir, run_parleyd):
    cfg = {"database": {"dsn": fresh_db}, "plugin_dir": plugin_dir, "jobs": {"enabled": False},
           "channels": [{"name": "site", "plugin": "webhook", "config": {"secret": SECRET}}]}
    d = daemon.start(cfg)
    assert post(d, {"id": "a1", "author": {"id": "ann-web"}, "text": "hi"})[0] == 200
    assert post(d, {"id": "b1", "author": {"id": "ann-app"}, "text": "hello again"})[0] == 200
    ann_web, ann_app = customer_of(fresh_db, "ann-web"), customer_of(fresh_db, "ann-app")
    assert ann_web != ann_app

    code, out, err = run_parleyd(["--merge-customer", ann_app, "--into", ann_web,
                                  "--actor", "agent:kim"], config=cfg)
    assert code == 0, err
    audit = int(out.split("--unmerge ")[1].split(")")[0])
    assert customer_of(fresh_db, "ann-app") == ann_web
    assert query(fresh_db, "SELECT merged_into FROM customer WHERE id = %s", (ann_app,))[0][0] == ann_web
    # One timeline: both conversations now belong to the target.
    assert query(fresh_db, "SELECT count(*) FROM conversation WHERE customer_id = %s",
                 (ann_web,))[0][0] == 2
    assert query(fresh_db, "SELECT actor, action, agent_id, token_id FROM audit_log WHERE id = %s",
                 (audit,)) == [("agent:kim", "customer.merge", None, None)]
    # The moved conversation's timeline says so.
    moved = query(fresh_db, "SELECT id FROM conversation WHERE identity_id = "
                            "(SELECT id FROM identity WHERE external_id = 'ann-app')")[0][0]
    assert query(fresh_db, "SELECT conversation_id, kind, actor, details FROM conversation_event") == \
        [(moved, "merged", "agent:kim", {"source": ann_app, "target": ann_web, "audit_id": audit})]

    # Refusals name the reason and change nothing.
    code, _, err = run_parleyd(["--merge-customer", ann_web, "--into", ann_web], config=cfg)
    assert code == 1 and "merge:" in err
    code, _, err = run_parleyd(["--merge-customer", "x1", "--into", ann_web], config=cfg)
    assert code == 1 and "positive whole numbers" in err
    code, _, err = run_parleyd(["--merge-customer", ann_app], config=cfg)
    assert code == 2 and "--into" in err

    code, out, err = run_parleyd(["--unmerge", str(audit), "--actor", "agent:kim"], config=cfg)
    assert code == 0, err
    assert customer_of(fresh_db, "ann-app") == ann_app
    assert query(fresh_db, "SELECT merged_into FROM customer WHERE id = %s", (ann_app,))[0][0] is None
    assert query(fresh_db, "SELECT count(*) FROM conversation WHERE customer_id = %s",
                 (ann_web,))[0][0] == 1
    undo = query(fresh_db, "SELECT id, action FROM audit_log ORDER BY id DESC LIMIT 1")[0]
    assert undo[1] == "customer.unmerge"
    assert query(fresh_db, "SELECT conversation_id, kind, details FROM conversation_event "
                           "WHERE kind = 'unmerged'") == \
        [(moved, "unmerged", {"source": ann_app, "target": ann_web, "merge_audit_id": audit,
                              "audit_id": undo[0]})]
    # Undoing twice is refused.
    code, _, err = run_parleyd(["--unmerge", str(audit)], config=cfg)
    assert code == 1 and "unmerge:" in err
