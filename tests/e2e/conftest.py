"""pytest fixtures for Parley's end-to-end tests (helpers: parley_testlib).

Environment (scripts/test.sh sets all of it):
  PARLEY_BUILD_DIR   build tree with parleyd, plugin-dir/ and tests/plugins/
                     (default: build/ in the source tree)
  PARLEY_SRCDIR      source tree (default: two levels above this file)
  PARLEY_TEST_DSN    PostgreSQL superuser DSN; tests that need it skip without it
  PARLEY_TEST_PG_STOP, PARLEY_TEST_PG_START
                     shell commands that stop and start that server
"""

import os
import subprocess

import pytest

import fake_http as fake_http_module
import parley_testlib as lib


# Paths are plain str so they go straight into JSON configs and argv.

@pytest.fixture(scope="session")
def src_dir():
    env = os.environ.get("PARLEY_SRCDIR")
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.abspath(env) if env else os.path.dirname(os.path.dirname(here))


@pytest.fixture(scope="session")
def build_dir(src_dir):
    env = os.environ.get("PARLEY_BUILD_DIR")
    return os.path.abspath(env) if env else os.path.join(src_dir, "build")


@pytest.fixture(scope="session")
def parleyd(build_dir):
    """Path of the daemon under test; fails the test clearly when not built."""
    path = os.path.join(build_dir, "parleyd")
    problem = None
    try:
        lib.check_parleyd(path)
    except lib.DaemonError as e:
        problem = str(e)
    if problem:
        pytest.fail(problem, pytrace=False)
    return path


@pytest.fixture(scope="session")
def plugin_dir(build_dir):
    """The build's folder of shipped plugins (webhook.so, ...)."""
    return os.path.join(build_dir, "plugin-dir")


@pytest.fixture(scope="session")
def test_plugin_dir(build_dir):
    """The broken and probing plugins of tests/plugins, built by 'make check'."""
    return os.path.join(build_dir, "tests", "plugins", ".libs")


@pytest.fixture(scope="session")
def pg():
    """Base DSN of the test PostgreSQL server (superuser)."""
    dsn = os.environ.get("PARLEY_TEST_DSN")
    if not dsn:
        pytest.skip("PARLEY_TEST_DSN is not set")
    return dsn


@pytest.fixture
def db_factory(pg):
    """Makes more empty databases for one test; all dropped afterwards."""
    factory = lib.DatabaseFactory(pg)
    yield factory
    factory.drop_all()


@pytest.fixture
def fresh_db(db_factory):
    """DSN of a new, empty database of this test's own (dropped afterwards)."""
    return db_factory.create()


@pytest.fixture
def query():
    """query(dsn, sql, params=None) -> list of row tuples."""
    return lib.query


@pytest.fixture
def pg_server():
    """stop() and start() the test PostgreSQL server, e.g. to test outages.
    It is started again after the test whatever happens."""
    stop_cmd = os.environ.get("PARLEY_TEST_PG_STOP")
    start_cmd = os.environ.get("PARLEY_TEST_PG_START")
    if not stop_cmd or not start_cmd:
        pytest.skip("PARLEY_TEST_PG_STOP / PARLEY_TEST_PG_START are not set")

    class Server:
        stopped = False

        def stop(self):
            subprocess.run(stop_cmd, shell=True, check=True, stdout=subprocess.DEVNULL)
            self.stopped = True

        def start(self):
            subprocess.run(start_cmd, shell=True, check=True, stdout=subprocess.DEVNULL)
            self.stopped = False

    server = Server()
    yield server
    if server.stopped:
        server.start()


@pytest.fixture
def daemon(parleyd, plugin_dir, tmp_path):
    """Factory: daemon.start(config, expect_ready=True, env=None, args=()) -> Daemon
    (wait=False is the same as expect_ready=False).

    On teardown every daemon still running gets SIGTERM; the test fails when
    one did not exit 0 after SIGTERM, died on its own, or has a sanitizer
    report in its log."""
    factory = lib.DaemonFactory(parleyd, tmp_path, plugin_dir)
    yield factory
    problems = factory.finish()
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def run_parleyd(parleyd, tmp_path):
    """run_parleyd(args, config=None, env=None, timeout=30) -> (code, stdout, stderr).
    Fails the test when the run printed a sanitizer report."""
    def run(args, config=None, env=None, timeout=30):
        code, out, err = lib.run_parleyd(parleyd, args, config=config, workdir=tmp_path,
                                         env=env, timeout=timeout)
        report = lib.sanitizer_report(err)
        if report:
            pytest.fail("parleyd %s: sanitizer report:\n%s"
                        % (" ".join(str(a) for a in args), report),
                        pytrace=False)
        return code, out, err
    return run


@pytest.fixture
def fake_http():
    """Factory: fake_http(answer=None, script=(), base_path="", http11=False)
    -> fake_http.FakeHTTPServer, a local stand-in for a platform's API;
    every server made is closed after the test."""
    with fake_http_module.servers() as make:
        yield make
