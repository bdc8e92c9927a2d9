"""The email notifier end to end against a real SMTP server (aiosmtpd, from
Debian's python3-aiosmtpd) started on loopback by each test: notifier/deliver
jobs are enqueued directly, the job runner hands them to an "email" instance,
and the tests read what the server received: envelope, headers and body,
over plain SMTP, STARTTLS (self-signed certificate made with openssl req)
and TLS from the start, with AUTH PLAIN and LOGIN."""
import email
import email.policy
import email.utils
import json
import re
import ssl
import subprocess
import threading
import time
from signal import SIGHUP

import pytest

from parley_testlib import free_port, query, run_parleyd

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")
aiosmtpd_smtp = pytest.importorskip("aiosmtpd.smtp")

USER = "parley-mailer"
PASSWORD = "smtp-pass-8c1f4d2e"
FROM = "parley@notify.example.com"
JOBS = {"backoff_base_ms": 50, "backoff_max_ms": 200, "sweep_interval_ms": 100}

TITLE = "Nouvelle conversation avec Zo\u00eb \u2013 colis perdu"
TEXT = ("Bonjour,\nmon colis n'est jamais arriv\u00e9.\n.\n.leading dot\n"
        "x=1 and a long line " + "0123456789" * 12 + "\ntrailing space ")
URL = "https://parley.example/c/42"


class Handler:
    """Stores every DATA it receives (also the ones it then refuses) and
    answers from a script of replies for DATA; "250 OK" once it is used up."""

    def __init__(self, data_replies=(), rcpt_reply=None):
        self.data_replies = list(data_replies)
        self.rcpt_reply = rcpt_reply
        self.mails = []
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.mails.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                               "content": envelope.content, "tls": session.ssl is not None,
                               "auth": session.authenticated, "at": time.time()})
            return self.data_replies.pop(0) if self.data_replies else "250 OK"

    def received(self):
        with self.lock:
            return list(self.mails)


class Authenticator:
    def __init__(self):
        self.mechanisms = []

    def __call__(self, server, session, envelope, mechanism, auth_data):
        self.mechanisms.append(mechanism)
        ok = (auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode())
        return aiosmtpd_smtp.AuthResult(success=ok, handled=False)


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (key, cert paths)."""
    d = tmp_path_factory.mktemp("smtp-tls")
    key, crt = d / "key.pem", d / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(crt)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return str(key), str(crt)


def tls_context(cert):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert[1], cert[0])
    return ctx


@pytest.fixture
def smtp_server():
    """smtp_server(handler, **aiosmtpd options) -> port; stopped after the test."""
    controllers = []

    def start(handler, **opts):
        port = free_port()
        c = aiosmtpd_controller.Controller(handler, hostname="127.0.0.1", port=port, **opts)
        c.start()
        controllers.append(c)
        return port

    yield start
    for c in controllers:
        c.stop()


def config(dsn, smtp_url, to=("ops@example.com",), **opts):
    cfg = {"smtp_url": smtp_url, "from": FROM, "to": to[0] if len(to) == 1 else list(to)}
    cfg.update(opts)
    return {"database": {"dsn": dsn}, "log": {"level": "info"}, "jobs": dict(JOBS),
            "channels": [], "notifiers": [{"name": "mail", "plugin": "email", "config": cfg}]}


def notice(**extra):
    n = {"kind": "conversation.created", "title": TITLE, "text": TEXT, "url": URL,
         "conversation": {"conversation_id": 42, "visibility": "private",
                          "case_number": "PC-10042"}}
    n.update(extra)
    return n


def enqueue(dsn, payload, key=None, max_attempts=None):
    return query(dsn, "SELECT parley_job_enqueue('notifier', 'mail', 'deliver', %s::jsonb, "
                      "%s, NULL, now(), %s)", (json.dumps(payload), key, max_attempts))[0][0]


def job(dsn, job_id):
    return query(dsn, "SELECT state, attempts, last_error FROM job WHERE id = %s", (job_id,))[0]


def wait_state(dsn, job_id, state, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and job(dsn, job_id)[0] != state:
        time.sleep(0.05)
    row = job(dsn, job_id)
    assert row[0] == state, row
    return row


def parse(content):
    return email.message_from_bytes(content, policy=email.policy.default)


def assert_wire_format(content):
    """CRLF lines only, none over 78 bytes, headers before one blank line."""
    assert b"\n" not in content.replace(b"\r\n", b"")
    assert b"\r" not in content.replace(b"\r\n", b"")
    lines = content.split(b"\r\n")
    assert max(len(line) for line in lines) <= 78
    assert b"" in lines


def check_delivered(mail, to=("ops@example.com",)):
    assert mail["from"] == FROM
    assert mail["to"] == list(to)
    content = mail["content"]
    assert_wire_format(content)
    m = parse(content)
    assert m["From"] == FROM
    assert [a.strip() for a in str(m["To"]).split(",")] == list(to)
    # RFC 2047: the raw header is ASCII, the decoded one is the title.
    raw_subject = re.search(rb"\r\nSubject: (.*?)\r\n(?! )", content, re.S).group(1)
    assert raw_subject.startswith(b"=?UTF-8?Q?")
    assert m["Subject"] == TITLE
    assert re.fullmatch(r"<parley\.[0-9a-f]{32}@notify\.example\.com>", m["Message-ID"])
    sent = email.utils.parsedate_to_datetime(m["Date"]).timestamp()
    assert abs(sent - mail["at"]) < 120
    assert m["Auto-Submitted"] == "auto-generated"
    assert m["X-Parley-Notice-Kind"] == "conversation.created"
    assert m.get_content_type() == "text/plain"
    assert m.get_content_charset() == "utf-8"
    assert m["Content-Transfer-Encoding"] == "quoted-printable"
    body = m.get_payload(decode=True).decode("utf-8")
    assert body == (TEXT + "\n\n" + URL + "\n").replace("\n", "\r\n")
    return m


def test_mail_is_delivered_as_documented(fresh_db, daemon, smtp_server):
    handler = Handler()
    port = smtp_server(handler)
    to = ("ops@example.com", "oncall@example.org")
    d = daemon.start(config(fresh_db, "smtp://127.0.0.1:%d" % port, to=to, starttls=False))
    job_id = enqueue(fresh_db, notice(), key="notice-42-created")
    assert wait_state(fresh_db, job_id, "done")[1] == 1
    [mail] = handler.received()
    assert not mail["tls"]
    check_delivered(mail, to)
    # Lines that begin with a dot arrive as written: nothing was taken for
    # the end of the data or lost to dot-stuffing.
    assert b"\r\n=2E\r\n=2Eleading dot\r\n" in mail["content"]
    d.stop()
    assert "starttls is false" in d.log_text()


def test_retry_keeps_the_message_id(fresh_db, daemon, smtp_server):
    handler = Handler(data_replies=["451 4.3.0 Try again later"])
    port = smtp_server(handler)
    daemon.start(config(fresh_db, "smtp://127.0.0.1:%d" % port, starttls=False))
    job_id = enqueue(fresh_db, notice(), key="notice-retry-1")
    other = enqueue(fresh_db, notice(), key="notice-retry-2")
    assert wait_state(fresh_db, job_id, "done")[1] == 2
    wait_state(fresh_db, other, "done")
    mails = handler.received()
    assert len(mails) == 3
    ids = [parse(m["content"])["Message-ID"] for m in mails]
    # The refused attempt and its retry carry one Message-ID; another
    # notice has its own.
    assert len(set(ids)) == 2
    assert sorted(ids.count(i) for i in set(ids)) == [1, 2]
    for m in mails:
        check_delivered(m)


def test_refused_recipient_fails_with_the_servers_answer(fresh_db, daemon, smtp_server):
    handler = Handler(rcpt_reply="550 5.1.1 No such user here")
    port = smtp_server(handler)
    daemon.start(config(fresh_db, "smtp://127.0.0.1:%d" % port, starttls=False))
    job_id = enqueue(fresh_db, notice())
    state, attempts, reason = wait_state(fresh_db, job_id, "dead")
    assert attempts == 1
    assert reason.startswith("SMTP server answered 550"), reason
    assert "No such user here" in reason, reason  # the server's own words
    assert handler.received() == []


def test_temporary_refusal_is_retried(fresh_db, daemon, smtp_server):
    handler = Handler(rcpt_reply="450 4.2.0 Mailbox busy")
    port = smtp_server(handler)
    daemon.start(config(fresh_db, "smtp://127.0.0.1:%d" % port, starttls=False))
    job_id = enqueue(fresh_db, notice(), max_attempts=3)
    state, attempts, reason = wait_state(fresh_db, job_id, "dead")
    assert attempts == 3
    assert reason.startswith("SMTP server answered 450"), reason


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_starttls_and_auth(fresh_db, daemon, smtp_server, cert, mechanism):
    handler, auth = Handler(), Authenticator()
    other = "LOGIN" if mechanism == "PLAIN" else "PLAIN"
    port = smtp_server(handler, tls_context=tls_context(cert), require_starttls=True,
                       auth_required=True, authenticator=auth, auth_exclude_mechanism=[other])
    d = daemon.start(config(fresh_db, "smtp://127.0.0.1:%d" % port, username=USER,
                            password=PASSWORD, tls_verify=False))
    job_id = enqueue(fresh_db, notice())
    wait_state(fresh_db, job_id, "done")
    [mail] = handler.received()
    assert mail["tls"] and mail["auth"]
    assert auth.mechanisms == [mechanism]
    check_delivered(mail)
    d.stop()
    log = d.log_text()
    assert PASSWORD not in log
    assert "tls_verify is false" in log


def test_implicit_tls(fresh_db, daemon, smtp_server, cert):
    handler = Handler()
    port = smtp_server(handler, ssl_context=tls_context(cert))
    daemon.start(config(fresh_db, "smtps://127.0.0.1:%d" % port, tls_verify=False))
    job_id = enqueue(fresh_db, notice())
    wait_state(fresh_db, job_id, "done")
    [mail] = handler.received()
    check_delivered(mail)


def test_wrong_password_fails(fresh_db, daemon, smtp_server, cert):
    handler = Handler()
    port = smtp_server(handler, tls_context=tls_context(cert), require_starttls=True,
                       auth_required=True, authenticator=Authenticator())
    d = daemon.start(config(fresh_db, "smtp://127.0.0.1:%d" % port, username=USER,
                            password="wrong-" + PASSWORD, tls_verify=False))
    job_id = enqueue(fresh_db, notice())
    state, attempts, reason = wait_state(fresh_db, job_id, "dead")
    assert attempts == 1
    assert reason.startswith("SMTP server answered 535"), reason
    assert PASSWORD not in reason
    assert handler.received() == []
    d.stop()
    assert PASSWORD not in d.log_text()


def test_certificate_is_verified_by_default(fresh_db, daemon, smtp_server, cert):
    handler = Handler()
    port = smtp_server(handler, tls_context=tls_context(cert), require_starttls=True)
    daemon.start(config(fresh_db, "smtp://127.0.0.1:%d" % port))
    job_id = enqueue(fresh_db, notice(), max_attempts=1)
    state, attempts, reason = wait_state(fresh_db, job_id, "dead")
    assert reason.startswith("SMTP failed: "), reason
    assert handler.received() == []


def test_starttls_is_required_by_default(fresh_db, daemon, smtp_server):
    handler = Handler()
    port = smtp_server(handler)   # offers no STARTTLS
    daemon.start(config(fresh_db, "smtp://127.0.0.1:%d" % port))
    job_id = enqueue(fresh_db, notice(), max_attempts=1)
    state, attempts, reason = wait_state(fresh_db, job_id, "dead")
    assert reason.startswith("SMTP failed: "), reason
    # Nothing went out in plain text.
    assert handler.received() == []


def test_config_is_checked_and_password_never_echoed(tmp_path, parleyd, plugin_dir, fresh_db):
    cfg = config(fresh_db, "smtp://user:" + PASSWORD + "@mail.example.com",
                 to=["ops@example.com", "Ann <ann@example.com>"], username=USER,
                 password=PASSWORD, starttls=False, timeout_ms=0)
    cfg["notifiers"][0]["config"]["from"] = "parley"
    cfg["plugin_dir"] = plugin_dir
    rc, out, err = run_parleyd(parleyd, ["--check-config"], config=cfg, workdir=tmp_path)
    assert rc == 2
    p = "notifiers[0].config."
    # The core checks the range before the plugin sees the settings.
    assert p + "timeout_ms: must be between 1 and 600000" in err
    assert PASSWORD not in out + err
    del cfg["notifiers"][0]["config"]["timeout_ms"]
    rc, out, err = run_parleyd(parleyd, ["--check-config"], config=cfg, workdir=tmp_path)
    assert rc == 2
    assert (p + "smtp_url: must be smtp://host[:port] or smtps://host[:port], "
            "without user info") in err
    assert p + "from: must be a plain address like parley@example.com" in err
    assert p + "to: every recipient must be a plain address like ops@example.com" in err
    assert PASSWORD not in out + err

    cfg = config(fresh_db, "smtp://mail.example.com:587", username=USER, password=PASSWORD,
                 starttls=False)
    cfg["plugin_dir"] = plugin_dir
    rc, out, err = run_parleyd(parleyd, ["--check-config"], config=cfg, workdir=tmp_path)
    assert rc == 2
    assert (p + "starttls: a password is never sent over plain text: use smtps:// or "
            "starttls true") in err
    assert PASSWORD not in out + err

    cfg = config(fresh_db, "smtps://mail.example.com", to=[], password=PASSWORD)
    cfg["plugin_dir"] = plugin_dir
    rc, out, err = run_parleyd(parleyd, ["--check-config"], config=cfg, workdir=tmp_path)
    assert rc == 2
    assert p + "to: must be an address or an array of 1 to 100 addresses" in err
    assert p + "password: username and password go together, both non-empty" in err
    assert PASSWORD not in out + err


def test_reload_changes_the_recipients_and_a_bad_one_keeps_them(fresh_db, daemon, smtp_server):
    """SIGHUP re-reads `to`: the next mail goes to the new recipients; a
    reload with a recipient that is not a plain address is refused and the
    running ones stay."""
    handler = Handler()
    port = smtp_server(handler)
    cfg = config(fresh_db, "smtp://127.0.0.1:%d" % port, starttls=False)
    d = daemon.start(cfg)
    wait_state(fresh_db, enqueue(fresh_db, notice(), key="reload-1"), "done")

    def reload_and_wait(marker):
        before = d.log_text().count(marker)
        d.signal(SIGHUP)
        deadline = time.monotonic() + 15
        while d.log_text().count(marker) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert d.log_text().count(marker) > before, d.log_text()[-2000:]

    new_to = ["ops@example.com", "oncall@example.org"]
    cfg["notifiers"][0]["config"]["to"] = new_to
    d.rewrite_config(cfg)
    reload_and_wait("mailing 2 recipients")
    wait_state(fresh_db, enqueue(fresh_db, notice(), key="reload-2"), "done")

    cfg["notifiers"][0]["config"]["to"] = ["Ops <ops@example.com>"]
    d.rewrite_config(cfg)
    reload_and_wait("reload failed, keeping the old configuration")
    assert ("notifiers[0].config.to: every recipient must be a plain address like "
            "ops@example.com") in d.log_text()
    wait_state(fresh_db, enqueue(fresh_db, notice(), key="reload-3"), "done")
    assert [m["to"] for m in handler.received()] == [["ops@example.com"], new_to, new_to]
