"""The example sink is what an integrator copies: it must build out of tree
against an installed Parley using nothing but pkg-config, export exactly one
symbol, and load in the real daemon.

Runs `make install DESTDIR=...` on the build tree, so the install is staged in
a temporary directory and the system is not touched.
"""
import glob
import json
import os
import re
import shutil
import subprocess

import pytest

from parley_testlib import http, query


def run(argv, env=None, timeout=600):
    """Run a command; return (code, combined output)."""
    proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)
    return proc.returncode, proc.stdout


def tree_snapshot(root):
    """Every file below root with its size and mtime, to prove nothing changed."""
    snap = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            st = os.stat(path)
            snap[os.path.relpath(path, root)] = (st.st_size, st.st_mtime_ns)
    return snap


def example_version(src_dir):
    """The version the example declares in its source."""
    with open(os.path.join(src_dir, "plugins", "examples", "example_sink", "example_sink.c")) as f:
        m = re.search(r'#define EXAMPLE_VERSION "([^"]+)"', f.read())
    assert m, "EXAMPLE_VERSION not found in example_sink.c"
    return m.group(1)


@pytest.fixture(scope="module")
def staged_install(build_dir, tmp_path_factory):
    """`make install` into a DESTDIR; returns (destdir, env for pkg-config)."""
    for tool in ("make", "pkg-config", "nm", "cc"):
        if shutil.which(tool) is None:
            pytest.skip("%s is not installed" % tool)
    if not os.path.isfile(os.path.join(build_dir, "Makefile")):
        pytest.fail("no Makefile in %s: configure the build first" % build_dir, pytrace=False)
    dest = str(tmp_path_factory.mktemp("destdir"))
    code, out = run(["make", "-C", build_dir, "install", "DESTDIR=" + dest])
    assert code == 0, "make install failed:\n" + out[-4000:]

    pcs = glob.glob(os.path.join(dest, "**", "pkgconfig", "parley.pc"), recursive=True)
    assert len(pcs) == 1, "expected one installed parley.pc, found %r" % pcs
    env = dict(os.environ)
    # parley.pc says prefix=<configured prefix>; the sysroot makes pkg-config
    # point into the staged copy instead.
    env["PKG_CONFIG_PATH"] = os.path.dirname(pcs[0])
    env["PKG_CONFIG_SYSROOT_DIR"] = dest
    return dest, env


@pytest.fixture(scope="module")
def built_example(src_dir, staged_install, tmp_path_factory):
    """The example folder copied out of the source tree and built there with
    its own Makefile; returns the path of example_sink.so."""
    dest, env = staged_install
    source = os.path.join(src_dir, "plugins", "examples", "example_sink")
    before = tree_snapshot(source)

    work = os.path.join(str(tmp_path_factory.mktemp("example")), "example_sink")
    shutil.copytree(source, work)
    # A stale .so copied from the source tree must not pass for a fresh build.
    stale = os.path.join(work, "example_sink.so")
    if os.path.exists(stale):
        os.unlink(stale)
    code, out = run(["make", "-C", work], env=env, timeout=120)
    assert code == 0, "building the example failed:\n" + out

    assert tree_snapshot(source) == before, "building the example changed the source tree"
    so = os.path.join(work, "example_sink.so")
    assert os.path.isfile(so)
    return so


def test_pkg_config_points_into_the_staged_install(staged_install):
    dest, env = staged_install
    code, out = run(["pkg-config", "--cflags", "parley"], env=env)
    assert code == 0, out
    include_dirs = [flag[2:] for flag in out.split() if flag.startswith("-I")]
    assert include_dirs, "pkg-config --cflags parley gave no include directory: %r" % out
    assert any(d.startswith(dest) and os.path.isfile(os.path.join(d, "parley", "parley.h"))
               for d in include_dirs), out


def test_example_exports_only_the_entry_function(built_example):
    code, out = run(["nm", "-D", "--defined-only", built_example])
    assert code == 0, out
    functions = []
    for line in out.splitlines():
        fields = line.split()
        # "<address> <type> <name>"; T/t text, W/w weak, i indirect functions.
        if len(fields) == 3 and fields[1] in ("T", "t", "W", "w", "i"):
            functions.append(fields[2])
    assert functions == ["parley_plugin_entry"], out


def test_daemon_lists_the_example_as_a_sink(built_example, src_dir, run_parleyd, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    shutil.copy(built_example, str(plugins / "example_sink.so"))

    code, out, err = run_parleyd(["--list-plugins", "--plugin-dir", str(plugins)])
    assert code == 0, err
    lines = [l for l in out.splitlines() if l.startswith("example_sink.so")]
    assert len(lines) == 1, out
    # "<file>  <kind>  <name>  <version>  abi <major>.<minor>"
    fields = lines[0].split("  ")
    assert fields[:4] == ["example_sink.so", "sink", "example_sink", example_version(src_dir)], out
    assert re.fullmatch(r"abi 1\.\d+", fields[4]), out


def test_daemon_shows_the_example_config_keys(built_example, run_parleyd, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    shutil.copy(built_example, str(plugins / "example_sink.so"))

    code, out, err = run_parleyd(["--list-plugins", "-v", "--plugin-dir", str(plugins)])
    assert code == 0, err
    assert "config.url (url, required, reloadable): base URL of the ticket API" in out
    assert "config.token (string, required, secret, range 1..4096 bytes, printable, reloadable)" in out


def test_the_example_takes_ticket_events_with_its_token(built_example, daemon, fresh_db, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    shutil.copy(built_example, str(plugins / "example_sink.so"))
    d = daemon.start({"database": {"dsn": fresh_db}, "plugin_dir": str(plugins),
                      "sinks": [{"name": "helpdesk", "plugin": "example_sink",
                                 "config": {"url": "http://127.0.0.1:9/api", "token": "tok-123"}}]})
    url = d.url + "/sinks/helpdesk/events"
    event = json.dumps({"id": "e1", "ticket": "T-9", "type": "comment", "comment_id": "c1",
                        "public": True, "author": "Kim", "text": "On its way"}).encode()
    good = {"Content-Type": "application/json", "Authorization": "Bearer tok-123"}
    assert http("POST", url, event, {"Content-Type": "application/json"})[0] == 401
    assert http("POST", url, event, dict(good, Authorization="Bearer tok-12"))[0] == 401
    assert http("POST", url, b"{", good)[0] == 400
    assert http("POST", url, json.dumps({"id": "e2", "ticket": "T-9", "type": "comment"}).encode(),
                good)[0] == 400
    assert query(fresh_db, "SELECT count(*) FROM ticket_event") == [(0,)]
    assert http("POST", url, event, good)[0] == 200
    assert http("POST", url, event, good)[0] == 200          # a replay changes nothing
    assert query(fresh_db, "SELECT dedupe_key, event_type, external_ticket_id, event ->> 'text' "
                           "FROM ticket_event") == [("event:e1", "comment", "T-9", "On its way")]
