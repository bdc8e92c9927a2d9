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
    assert "plugin ABI 1.4" in out


def test_list_plugins_shows_kind_name_version_and_abi(run_parleyd, plugin_dir):
    code, out, err = run_parleyd(["--list-plugins", "--plugin-dir", plugin_dir])
    assert code == 0, err
    line = [l for l in out.splitlines() if l.startswith("webhook.so")][0]
    assert "  channel  webhook  " in line and line.endswith("abi 1.4")


def test_list_plugins_verbose_prints_the_settings_table(run_parleyd, plugin_dir):
    code, out, err = run_parleyd(["--list-plugins", "-v", "--plugin-dir", plugin_dir])
    assert code == 0, err
    assert "    config.secret (string, required, secret, not empty, reloadable): " in out
    assert ("    config.callback_timeout_ms (integer, default 10000, range 1..600000, reloadable): "
            in out)
    assert "    config.tls_verify (boolean, default true, reloadable): " in out


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


DOC_BEGIN = "<!-- BEGIN parleyd --help-config --format=markdown -->\n"
DOC_END = "<!-- END parleyd --help-config --format=markdown -->\n"


def test_config_reference_in_docs_is_the_one_parleyd_prints(run_parleyd, src_dir):
    """docs/CONFIG.md holds the settings table the daemon reads with, verbatim."""
    code, out, err = run_parleyd(["--help-config", "--format=markdown"])
    assert code == 0, err
    with open(os.path.join(src_dir, "docs", "CONFIG.md"), encoding="utf-8") as f:
        doc = f.read()
    assert doc.count(DOC_BEGIN) == 1 and doc.count(DOC_END) == 1
    marked = doc[doc.index(DOC_BEGIN) + len(DOC_BEGIN):doc.index(DOC_END)]
    assert marked == out, ("docs/CONFIG.md differs from `parleyd --help-config --format=markdown`; "
                           "paste its output between the markers")


def test_help_config_prints_every_setting_with_default_range_and_reload(run_parleyd):
    code, out, err = run_parleyd(["--help-config"])
    assert code == 0, err
    entry = out.split("limits.max_body_bytes (integer)\n", 1)[1].split("\n\n", 1)[0]
    assert "default: `4194304` (4 MiB)" in entry
    assert "range: ≥ 1024" in entry
    assert "on SIGHUP: yes" in entry
    assert "database.dsn (string)\n  default: — (**required**)\n  on SIGHUP: restart" in out
    for key in ("listen", "public_url", "plugin_dir", "database.pool_size", "log.level",
                "ingest.case_prefix", "jobs.concurrency", "jobs.notify_delivery_failed"):
        assert "\n%s (" % key in "\n" + out, key


@pytest.mark.parametrize("args", [["--help-config", "--format=html"], ["--format=markdown"]])
def test_help_config_format_is_checked(run_parleyd, args):
    code, out, err = run_parleyd(args)
    assert code == 2
    assert "--format text|markdown goes with --help-config" in err


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


@pytest.mark.parametrize("args, needle", [
    (["--migrate", "--check-config", "-c", "x.json"], "--migrate and --check-config are two commands; give one"),
    (["--reply", "3", "--unmerge", "4", "-c", "x.json"], "--reply and --unmerge are two commands; give one"),
    (["--reply", "3", "-c", "x.json"], "--text goes with --reply"),
    (["--merge-customer", "3", "-c", "x.json"], "--into goes with --merge-customer"),
    (["--into", "3", "-c", "x.json"], "--into goes with --merge-customer"),
    (["--migrate", "--text", "hi", "-c", "x.json"], "--text goes with --reply or --move-to-private"),
    (["--reply", "3", "--text", "hi", "--public-text", "p", "-c", "x.json"],
     "--public-text goes with --move-to-private"),
    (["--move-to-private", "3", "--text", "hi", "--visibility", "public", "-c", "x.json"],
     "--visibility goes with --reply"),
    (["--check-config", "--plugin-dir", "/tmp", "-c", "x.json"], "--plugin-dir goes with --list-plugins"),
    (["--migrate"], "no configuration given (-c FILE)"),
    (["-c", "x.json", "extra"], "unexpected argument: extra"),
])
def test_command_line_misuse_is_named_and_exits_2_before_reading_the_config(run_parleyd, args, needle):
    # x.json does not exist: each refusal comes before the file is read.
    code, out, err = run_parleyd(args)
    assert code == 2
    assert needle in err
    assert "cannot open" not in err
