"""Helpers for Parley's end-to-end tests: the daemon as a child process,
plain HTTP, webhook signatures and throwaway PostgreSQL databases.

Python standard library plus psycopg2 only. The pytest fixtures that wrap
these live in conftest.py; everything here also works outside pytest.
"""

import hashlib
import hmac
import json
import os
import secrets
import socket
import subprocess
import time
import urllib.parse
from http.client import HTTPConnection
from signal import SIGHUP, SIGTERM, SIGUSR1, SIGUSR2

# What AddressSanitizer, LeakSanitizer and UBSan print when they find something.
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

READY_TIMEOUT = 20.0


class DaemonError(Exception):
    """parleyd is missing, did not become ready, or misbehaved."""


def free_port(host="127.0.0.1"):
    """A TCP port nobody listens on right now (bind port 0, close, reuse)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def sign(secret, body):
    """The webhook channel's signature header value: "sha256=<hex HMAC-SHA256>"."""
    if isinstance(secret, str):
        secret = secret.encode()
    if isinstance(body, str):
        body = body.encode()
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def parleyd_config(dsn, channels=(), **extra):
    """A daemon config on database `dsn`; Daemon.start fills in "listen" and
    "plugin_dir". `extra` adds or replaces top-level keys."""
    config = {"database": {"dsn": dsn}, "log": {"level": "info"},
              "channels": list(channels)}
    config.update(extra)
    return config


def webhook_config(name="site", secret="s3cret", **extra):
    """A channel instance for the webhook plugin; `extra` goes into its config."""
    config = {"secret": secret}
    config.update(extra)
    return {"name": name, "plugin": "webhook", "config": config}


def http(method, url, body=None, headers=None, timeout=10):
    """One HTTP request on a fresh connection.

    body: bytes, str (UTF-8) or a dict/list (sent as JSON). Returns
    (status, headers with lowercased names, body bytes); 4xx and 5xx are
    answers, not exceptions. Connection errors and timeouts do raise.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http":
        raise ValueError("only http:// URLs: %r" % url)
    headers = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        body = body.encode()
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    conn = HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def raw_socket(host, port, timeout=10):
    """A connected TCP socket, for partial, slow or malformed requests."""
    return socket.create_connection((host, port), timeout=timeout)


def sanitizer_report(text):
    """The first sanitizer finding in `text` (with some context), or None."""
    for marker in SANITIZER_MARKERS:
        i = text.find(marker)
        if i >= 0:
            start = text.rfind("\n", 0, max(0, i - 200)) + 1
            return text[start:i + 2000]
    return None


def tail(text, lines=40):
    return "\n".join(text.splitlines()[-lines:])


def check_parleyd(path):
    """Raise DaemonError with a useful message when the binary is missing."""
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise DaemonError(
            "parleyd not found at %s: build first (scripts/build.sh) and set "
            "PARLEY_BUILD_DIR to the build tree" % path)


# ---------------------------------------------------------------- PostgreSQL

def _psycopg2():
    import psycopg2  # imported late so the rest works without it
    return psycopg2


def dsn_with_db(dsn, dbname):
    """The same connection string pointing at another database."""
    from psycopg2.extensions import make_dsn
    return make_dsn(dsn, dbname=dbname)


def query(dsn, sql, params=None):
    """Run one statement in autocommit mode; rows as a list of tuples
    ([] for statements that return none)."""
    conn = _psycopg2().connect(dsn)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description is not None else []
    finally:
        conn.close()


class DatabaseFactory:
    """Creates empty databases t_<random> on a server and drops them again."""

    def __init__(self, base_dsn):
        self.base_dsn = base_dsn
        self.created = []

    def create(self):
        """A new empty database; returns its DSN."""
        name = "t_" + secrets.token_hex(6)
        # The name is ours (hex), so building the statement from it is safe;
        # CREATE DATABASE cannot take it as a parameter.
        query(self.base_dsn, 'CREATE DATABASE "%s"' % name)
        self.created.append(name)
        return dsn_with_db(self.base_dsn, name)

    def drop_all(self):
        """Drop every database this factory made, even with clients still on it."""
        errors = []
        while self.created:
            name = self.created.pop()
            try:
                query(self.base_dsn, 'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
            except Exception as e:  # keep dropping the others
                errors.append("%s: %s" % (name, e))
        if errors:
            raise RuntimeError("could not drop test databases: " + "; ".join(errors))


# ------------------------------------------------------------------- daemon

class Daemon:
    """One parleyd process with its config file and log in `workdir`.

    start() writes the config, picks a free port for "listen" unless the
    config has one, and waits for GET /healthz to answer 200.
    """

    _seq = 0

    def __init__(self, parleyd, workdir, plugin_dir=None):
        self.parleyd = str(parleyd)
        self.workdir = str(workdir)
        self.plugin_dir = str(plugin_dir) if plugin_dir else None
        Daemon._seq += 1
        self.name = "parleyd-%d" % Daemon._seq
        self.config_path = os.path.join(self.workdir, self.name + ".json")
        self.log_path = os.path.join(self.workdir, self.name + ".log")
        self.proc = None
        self.config = None
        self.host = "127.0.0.1"
        self.port = None
        self.returncode = None
        # Exit code after a SIGTERM stop, checked on teardown (0 expected).
        self.sigterm_exit = None
        # False while the process is only expected to exit when told to: a
        # ready daemon that dies on its own is a crash.
        self.exit_expected = True

    @property
    def url(self):
        host = self.host
        if ":" in host:
            host = "[%s]" % host
        return "http://%s:%d" % (host, self.port)

    def write_config(self, config):
        """Write `config` (a dict; paths may be pathlib objects) to this
        daemon's file. "listen" is kept from the previous config, else a free
        port; "plugin_dir" defaults to the factory's."""
        config = json.loads(json.dumps(config, default=str))  # a deep copy we may change
        if "listen" not in config:
            if self.config and "listen" in self.config:
                config["listen"] = self.config["listen"]
            else:
                config["listen"] = "127.0.0.1:%d" % free_port()
        if self.plugin_dir and "plugin_dir" not in config:
            config["plugin_dir"] = self.plugin_dir
        host, _, port = config["listen"].rpartition(":")
        self.host = host.strip("[]") or "127.0.0.1"
        if self.host in ("0.0.0.0", "::", "localhost"):
            self.host = "127.0.0.1"
        self.port = int(port)
        self.config = config
        self.rewrite_text(json.dumps(config, indent=2))
        return self.config_path

    def rewrite_config(self, config):
        """Replace the config file (e.g. before SIGHUP); same port unless given."""
        return self.write_config(config)

    def rewrite_text(self, text):
        """Replace the config file with raw text, e.g. something invalid."""
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)  # the daemon never sees half a file

    def start(self, config, expect_ready=True, env=None, args=(), wait=None):
        """Spawn `parleyd -c FILE ARGS...` with `env` added to the environment.
        With expect_ready (alias: wait), wait for /healthz (raises DaemonError
        with the log tail when the process exits first or the wait times out).
        Without, call wait_ready() or wait() later."""
        if wait is not None:
            expect_ready = wait
        check_parleyd(self.parleyd)
        if self.running():
            raise DaemonError("%s is already running" % self.name)
        self.write_config(config)
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.returncode = None
        self.sigterm_exit = None
        self.exit_expected = True  # until /healthz says it is up
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.parleyd, "-c", self.config_path] + [str(a) for a in args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env=full_env, cwd=self.workdir)
        if expect_ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=READY_TIMEOUT):
        """Wait until GET /healthz answers 200; from then on the daemon is
        expected to keep running until told to stop."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                self.returncode = rc
                self.exit_expected = True  # reported by the exception below
                raise DaemonError("%s exited with code %d before it was ready; log:\n%s"
                                  % (self.name, rc, tail(self.log_text())))
            try:
                status, _, _ = http("GET", self.url + "/healthz", timeout=2)
                if status == 200:
                    self.exit_expected = False
                    self._wait_pool(min(deadline, time.monotonic() + 2))
                    return
                last = "HTTP %d" % status
            except OSError as e:
                last = str(e)
            time.sleep(0.05)
        raise DaemonError("%s not ready after %.0f s (/healthz: %s); log:\n%s"
                          % (self.name, timeout, last, tail(self.log_text())))

    wait_healthy = wait_ready

    def _wait_pool(self, deadline):
        """Give the database pool's first connection a moment: /readyz says
        "no connection to PostgreSQL" until it is up. A daemon started with
        PostgreSQL down costs its test this short wait, no more."""
        while time.monotonic() < deadline:
            try:
                status, _, body = http("GET", self.url + "/readyz", timeout=2)
            except OSError:
                return
            if status == 200 or b"no connection to PostgreSQL" not in body:
                return
            time.sleep(0.02)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def pid(self):
        return self.proc.pid if self.proc else None

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def signal(self, sig):
        if not self.running():
            raise DaemonError("%s is not running" % self.name)
        if sig not in (SIGHUP, SIGUSR1, SIGUSR2):
            self.exit_expected = True
        self.proc.send_signal(sig)

    def wait(self, timeout=20):
        """Wait for the process to exit on its own; its exit code."""
        self.exit_expected = True
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DaemonError("%s still running after %s s" % (self.name, timeout))
        return self.returncode

    def stop(self, sig=SIGTERM, timeout=20):
        """Send `sig` and wait; the exit code (negative: killed by a signal).
        A process that ignores it for `timeout` seconds is killed and
        DaemonError raised."""
        if self.proc is None:
            return None
        self.exit_expected = True
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.returncode = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.returncode = self.proc.wait()
                if sig == SIGTERM:
                    self.sigterm_exit = self.returncode
                raise DaemonError("%s did not exit within %s s of signal %d; killed; log:\n%s"
                                  % (self.name, timeout, sig, tail(self.log_text())))
            if sig == SIGTERM:
                self.sigterm_exit = self.returncode
        else:
            self.returncode = self.proc.returncode
        return self.returncode

    def problems(self):
        """What teardown holds against this daemon: a sanitizer report in its
        log, an exit code other than 0 after SIGTERM, or an exit nobody asked
        for. [] when clean."""
        found = []
        if self.proc is not None and not self.exit_expected and self.proc.poll() is not None:
            found.append("%s exited on its own with code %d; log:\n%s"
                         % (self.name, self.proc.returncode, tail(self.log_text())))
        report = sanitizer_report(self.log_text())
        if report:
            found.append("%s: sanitizer report in its log:\n%s" % (self.name, report))
        if self.sigterm_exit not in (None, 0):
            found.append("%s: exit code %d after SIGTERM (expected 0); log:\n%s"
                         % (self.name, self.sigterm_exit, tail(self.log_text())))
        return found


class DaemonFactory:
    """Starts daemons for one test and checks them all at the end."""

    def __init__(self, parleyd, workdir, plugin_dir=None):
        self.parleyd = parleyd
        self.workdir = workdir
        self.plugin_dir = plugin_dir
        self.daemons = []

    def new(self):
        d = Daemon(self.parleyd, self.workdir, self.plugin_dir)
        self.daemons.append(d)
        return d

    def start(self, config, expect_ready=True, env=None, args=(), wait=None):
        return self.new().start(config, expect_ready=expect_ready, env=env, args=args,
                                wait=wait)

    __call__ = start

    def finish(self):
        """Stop what still runs (SIGTERM) and collect every problem."""
        found = []
        for d in self.daemons:
            if d.running():
                try:
                    d.stop(SIGTERM)
                except DaemonError as e:
                    found.append(str(e))
            found.extend(d.problems())
        return found


def run_parleyd(parleyd, args, config=None, workdir=None, env=None, timeout=30):
    """Run parleyd once (e.g. --check-config, --version): (exit code, stdout,
    stderr). With `config` (a dict), it is written to a file in `workdir` and
    "-c FILE" goes before `args`."""
    check_parleyd(parleyd)
    argv = [str(parleyd)]
    if config is not None:
        if workdir is None:
            raise ValueError("run_parleyd: config needs a workdir")
        path = os.path.join(str(workdir), "oneshot-%s.json" % secrets.token_hex(4))
        with open(path, "w") as f:
            json.dump(config, f, indent=2, default=str)
        argv += ["-c", path]
    argv += [str(a) for a in args]
    full_env = dict(os.environ)
    full_env.update(env or {})
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                       env=full_env, timeout=timeout, cwd=workdir)
    return (p.returncode, p.stdout.decode("utf-8", "replace"),
            p.stderr.decode("utf-8", "replace"))
