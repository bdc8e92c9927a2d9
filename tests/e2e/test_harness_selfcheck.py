"""The end-to-end fixtures themselves work: databases, signatures, ports,
HTTP, and the daemon wrapper (driven here by a stand-in daemon script)."""

import json
import os
import signal
import socket
import sys
import textwrap

import pytest

import parley_testlib as lib
from fake_http import Answer


# ------------------------------------------------------------- databases

def user_tables(dsn):
    return lib.query(dsn, "SELECT tablename FROM pg_tables "
                          "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")


def test_fresh_db_is_a_new_empty_database(pg, fresh_db):
    assert lib.query(fresh_db, "SELECT current_database()")[0][0].startswith("t_")
    assert lib.query(fresh_db, "SELECT current_database()") != lib.query(
        pg, "SELECT current_database()")
    assert user_tables(fresh_db) == []


def test_databases_are_isolated_and_dropped(pg):
    factory = lib.DatabaseFactory(pg)
    try:
        a, b = factory.create(), factory.create()
        lib.query(a, "CREATE TABLE only_in_a (x int)")
        lib.query(a, "INSERT INTO only_in_a VALUES (%s)", (7,))
        assert lib.query(a, "SELECT x FROM only_in_a") == [(7,)]
        assert user_tables(b) == []
        names = list(factory.created)
        # A client still connected must not keep a database alive.
        held = lib._psycopg2().connect(a)
        factory.drop_all()
        held.close()
        left = lib.query(pg, "SELECT datname FROM pg_database WHERE datname = ANY(%s)",
                         (names,))
        assert left == []
    finally:
        factory.drop_all()


# ------------------------------------------------------------- signatures

def test_sign_matches_rfc4231_case_2():
    # RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?"
    assert lib.sign("Jefe", b"what do ya want for nothing?") == (
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")


def test_sign_takes_str_and_bytes_alike():
    assert lib.sign(b"k", "body") == lib.sign("k", b"body")


def test_webhook_config_puts_extra_keys_in_the_plugin_config():
    inst = lib.webhook_config("shop", "pw", max_items=3)
    assert inst == {"name": "shop", "plugin": "webhook",
                    "config": {"secret": "pw", "max_items": 3}}


# ------------------------------------------------------------------ ports

def test_free_port_can_be_bound():
    port = lib.free_port()
    assert 0 < port < 65536
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


# ------------------------------------------------------------------- http

@pytest.fixture
def local_server(fake_http):
    """Answers 404 with the request's body, and its Content-Type in X-Echo-Type."""
    server = fake_http(answer=lambda req: Answer(404, req.body, {
        "X-Echo-Type": req.headers.get("Content-Type", "")}))
    return server.url


def test_http_returns_error_statuses_and_lowercases_headers(local_server):
    status, headers, body = lib.http("POST", local_server + "/x", body={"a": 1})
    assert status == 404
    assert headers["x-echo-type"] == "application/json"
    assert body == b'{"a": 1}'


def test_raw_socket_sends_partial_requests(local_server):
    port = int(local_server.rsplit(":", 1)[1])
    with lib.raw_socket("127.0.0.1", port) as s:
        s.sendall(b"POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\n")
        s.sendall(b"hi")
        assert s.recv(100).startswith(b"HTTP/1.0 404")


# ----------------------------------------------------------------- daemon

# A stand-in for parleyd that speaks just enough of its command line and
# /healthz for the wrapper to be tested before (and apart from) the daemon.
# It is a script of its own, not a fake_http server: the wrapper runs it as a
# separate process, as it runs parleyd.
FAKE_DAEMON = textwrap.dedent("""\
    import http.server, json, signal, sys
    cfg = json.load(open(sys.argv[sys.argv.index("-c") + 1]))
    mode = cfg.get("fake", "ok")
    if mode == "exit":
        sys.stderr.write("config error: something is wrong\\n")
        sys.exit(2)
    if mode == "asan":
        sys.stderr.write("==1==ERROR: AddressSanitizer: heap-use-after-free\\n")
    host, _, port = cfg["listen"].rpartition(":")
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/healthz" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()
        def log_message(self, *a):
            pass
    server = http.server.HTTPServer((host, int(port)), H)
    code = 3 if mode == "bad-exit" else 0
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(code))
    sys.stderr.write("ready on %s plugin_dir=%s\\n" % (cfg["listen"], cfg.get("plugin_dir")))
    sys.stderr.flush()
    server.serve_forever()
""")


@pytest.fixture
def fake_parleyd(tmp_path):
    path = tmp_path / "fake-parleyd"
    path.write_text("#!%s\n%s" % (sys.executable, FAKE_DAEMON))
    path.chmod(0o755)
    return path


@pytest.fixture
def fake_factory(fake_parleyd, tmp_path):
    """A DaemonFactory on the stand-in; whatever a failed test leaves running
    is killed (the tests call finish() themselves to look at its verdict)."""
    factory = lib.DaemonFactory(fake_parleyd, tmp_path, "/plugins")
    yield factory
    for d in factory.daemons:
        if d.running():
            d.proc.kill()
            d.proc.wait()


def test_daemon_starts_waits_for_healthz_and_stops_cleanly(fake_factory):
    factory = fake_factory
    d = factory.start({"fake": "ok"})
    assert d.running()
    status, _, _ = lib.http("GET", d.url + "/healthz")
    assert status == 200
    assert d.url == "http://127.0.0.1:%d" % d.port
    assert "plugin_dir=/plugins" in d.log_text()
    assert d.stop() == 0
    assert factory.finish() == []


def test_daemon_config_takes_paths_and_rewrites_keep_the_port(fake_factory, tmp_path):
    factory = fake_factory
    d = factory.start({"fake": "ok", "plugin_dir": tmp_path}, wait=False)
    d.wait_healthy()
    assert "plugin_dir=%s" % tmp_path in d.log_text()
    first = d.config["listen"]
    d.rewrite_config({"fake": "ok", "log": {"level": "debug"}})
    with open(d.config_path) as f:
        assert json.load(f) == {"fake": "ok", "log": {"level": "debug"}, "listen": first,
                                "plugin_dir": "/plugins"}
    d.rewrite_text("{ not json")
    with open(d.config_path) as f:
        assert f.read() == "{ not json"
    assert factory.finish() == []


def test_daemon_that_exits_early_raises_with_its_log(fake_factory):
    factory = fake_factory
    with pytest.raises(lib.DaemonError, match="config error: something is wrong"):
        factory.start({"fake": "exit"})
    d = factory.start({"fake": "exit"}, expect_ready=False)
    assert d.wait() == 2
    assert factory.finish() == []


def test_teardown_reports_sanitizer_output(fake_factory):
    factory = fake_factory
    factory.start({"fake": "asan"})
    problems = factory.finish()
    assert len(problems) == 1 and "AddressSanitizer" in problems[0]


def test_teardown_reports_bad_exit_code_after_sigterm(fake_factory):
    factory = fake_factory
    factory.start({"fake": "bad-exit"})
    problems = factory.finish()
    assert len(problems) == 1 and "exit code 3 after SIGTERM" in problems[0]


def test_teardown_reports_a_daemon_that_died_on_its_own(fake_factory):
    factory = fake_factory
    d = factory.start({"fake": "ok"})
    os.kill(d.pid(), signal.SIGKILL)
    d.proc.wait()
    problems = factory.finish()
    assert len(problems) == 1 and "exited on its own" in problems[0]


def test_missing_parleyd_is_a_clear_error(tmp_path):
    with pytest.raises(lib.DaemonError, match="parleyd not found at .*scripts/build.sh"):
        lib.Daemon(tmp_path / "parleyd", tmp_path).start({})
