"""parleyd's command line: version, plugin listing, config validation,
migrations and the loader's refusals, each seen from outside the process."""
import json
import os
import re

import pytest

from parley_testlib import query


def write_config(tmp_path, cfg):
    path = tmp_path / "parley.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def base_config(dsn, plugin_dir, **extra):
    cfg = {"database": {"dsn": dsn}, "plugin_dir": plugin_dir}
    cfg.update(extra)
    return cfg


def test_version_names_the_plugin_abi(run_parleyd):
    code, out, err = run_parleyd(["--version"])
    assert code == 0
    assert out.startswith("parleyd ")
    assert "plugin ABI 1.2" in out


def test_list_plugins_shows_kind_name_version_and_abi(run_parleyd, plugin_dir):
    code, out, err = run_parleyd(["--list-plugins", "--plugin-dir", plugin_dir])
    assert code == 0, err
    line = [l for l in out.splitlines() if l.startswith("webhook.so")][0]
    assert "  channel  webhook  " in line and line.endswith("abi 1.2")


def test_check_config_accepts_a_valid_config(run_parleyd, tmp_path, plugin_dir):
    cfg = base_config("host=127.0.0.1 dbname=unused", plugin_dir,
                      channels=[{"name": "site", "plugin": "webhook", "config": {"secret": "x"}}])
    code, out, err = run_parleyd(["--check-config", "-c", write_config(tmp_path, cfg)])
    assert code == 0, err
    assert "configuration OK" in out


@pytest.mark.parametrize("mutate, needle", [
    (lambda c: c.update(lsiten="x"), "parley.json: lsiten: unknown key"),
    (lambda c: c["limits"].update(max_body_bytes="big"), "parley.json: limits.max_body_bytes: expected an integer"),
    (lambda c: c["channels"].append({"name": "site", "plugin": "webhook", "config": {"secret": "y"}}),
     "duplicate instance name"),
    (lambda c: c["channels"][0].update(name="a b"), "channels[0].name"),
    (lambda c: c["channels"][0]["config"].pop("secret"), "channels[0].config.secret: required key missing"),
    (lambda c: c["channels"][0]["config"].update(scret="z"), "channels[0].config.scret: unknown key"),
    (lambda c: c["channels"][0].update(plugin="nosuch"), "channels[0].plugin: plugin \"nosuch\" not found"),
    (lambda c: c["channels"][0]["config"].update(secret="$env:PARLEY_TEST_UNSET_VAR"), "PARLEY_TEST_UNSET_VAR"),
    (lambda c: c["channels"][0]["config"].update(callback_url="ftp://x"), "channels[0].config.callback_url"),
])
def test_config_errors_name_file_path_and_reason_and_exit_2(run_parleyd, tmp_path, plugin_dir, mutate, needle):
    cfg = base_config("host=127.0.0.1 dbname=unused", plugin_dir, limits={},
                      channels=[{"name": "site", "plugin": "webhook", "config": {"secret": "x"}}])
    mutate(cfg)
    code, out, err = run_parleyd(["--check-config", "-c", write_config(tmp_path, cfg)])
    assert code == 2
    assert needle in err


def test_config_errors_never_show_secrets(run_parleyd, tmp_path, plugin_dir):
    secret_file = tmp_path / "secret"
    secret_file.write_text("TOPSECRET-4711\n")
    cfg = base_config("host=127.0.0.1 password=TOPSECRET-4711", plugin_dir,
                      channels=[{"name": "site", "plugin": "webhook",
                                 "config": {"secret": "$file:secret", "tls_verify": "TOPSECRET-4711"}}])
    code, out, err = run_parleyd(["--check-config", "-c", write_config(tmp_path, cfg)])
    assert code == 2
    assert "channels[0].config.tls_verify" in err
    assert "TOPSECRET" not in out + err


# The versions of sql/NNN_*.sql, which parleyd embeds.
EMBEDDED_MIGRATIONS = sorted(int(f[:3]) for f in os.listdir(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sql"))
    if re.match(r"^[0-9]{3}_.*\.sql$", f))


def test_migrate_applies_once_then_nothing(run_parleyd, tmp_path, plugin_dir, fresh_db):
    path = write_config(tmp_path, base_config(fresh_db, plugin_dir))
    code, out, err = run_parleyd(["--migrate", "-c", path])
    assert code == 0, err
    n = len(EMBEDDED_MIGRATIONS)
    assert "applied %d migration(s); schema version %d" % (n, EMBEDDED_MIGRATIONS[-1]) in out
    code, out, err = run_parleyd(["--migrate", "-c", path])
    assert code == 0, err
    assert "applied 0 migration" in out
    assert query(fresh_db, "SELECT version FROM schema_migrations ORDER BY version") == \
        [(v,) for v in EMBEDDED_MIGRATIONS]


def test_newer_schema_is_refused(run_parleyd, tmp_path, plugin_dir, fresh_db):
    path = write_config(tmp_path, base_config(fresh_db, plugin_dir))
    assert run_parleyd(["--migrate", "-c", path])[0] == 0
    query(fresh_db, "INSERT INTO schema_migrations (version, name) VALUES (9999, 'from_the_future')")
    code, out, err = run_parleyd(["--migrate", "-c", path])
    assert code == 1
    assert "9999" in err and "newer" in err
    # The daemon itself refuses to run against it too.
    code, out, err = run_parleyd(["-c", path])
    assert code == 1
    assert "newer" in err


def test_a_database_of_the_earlier_migrations_is_refused(run_parleyd, tmp_path, plugin_dir, fresh_db):
    # A development database from before the schema was folded: it cannot be
    # upgraded, and both --migrate and the daemon say what to do instead.
    query(fresh_db, "CREATE TABLE schema_migrations (version int PRIMARY KEY, name text NOT NULL, "
                    "applied_at timestamptz NOT NULL DEFAULT now())")
    query(fresh_db, "INSERT INTO schema_migrations (version, name) VALUES (1, '001_foundation'), "
                    "(2, '002_customer_model'), (7, '007_ingest_batch')")
    path = write_config(tmp_path, base_config(fresh_db, plugin_dir))
    for args in (["--migrate", "-c", path], ["-c", path]):
        code, out, err = run_parleyd(args)
        assert code == 1
        assert "001_foundation" in err and "cannot be upgraded" in err
        assert "create a new, empty database" in err and "parleyd --migrate" in err
    assert query(fresh_db, "SELECT count(*) FROM pg_class WHERE relname = 'inbound_event'") == [(0,)]


def test_concurrent_starts_apply_each_migration_once(fresh_db, daemon, plugin_dir):
    cfg = base_config(fresh_db, plugin_dir)
    a = daemon.start(dict(cfg), wait=False)
    b = daemon.start(dict(cfg), wait=False)
    a.wait_healthy()
    b.wait_healthy()
    assert query(fresh_db, "SELECT version, count(*) FROM schema_migrations GROUP BY version "
                           "ORDER BY version") == [(v, 1) for v in EMBEDDED_MIGRATIONS]


@pytest.mark.parametrize("plugin, section, needle", [
    ("wrong_major", "channels", "built for plugin ABI 99."),
    ("core_symbol", "notifiers", "undefined symbol: log_msg"),
    ("no_entry", "channels", "no entry symbol"),
    ("small_descriptor", "channels", "descriptor is 16 bytes"),
    ("wrong_kind", "sinks", "is a notifier plugin, configured as a sink"),
    ("missing_op", "sinks", "missing mandatory operation sink.append_message"),
    ("create_fails", "channels", "channels[0].config.token: is not accepted by this test plugin"),
])
def test_daemon_refuses_to_start_with_a_broken_plugin(run_parleyd, tmp_path, test_plugin_dir, fresh_db,
                                                      plugin, section, needle):
    cfg = base_config(fresh_db, test_plugin_dir)
    cfg[section] = [{"name": "broken", "plugin": plugin}]
    code, out, err = run_parleyd(["-c", write_config(tmp_path, cfg)])
    assert code == 2, err
    assert needle in err
    assert plugin + ".so" in err
