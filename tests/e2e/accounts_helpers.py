"""Helpers for the accounts and sessions tests: agents who can log in (with
cheap password hashes, so a suite of logins stays fast), logging in through
the real POST /api/v1/session, and the SHA-256 digests the database keeps."""
import base64
import hashlib
import os

from api_client import ApiClient
from api_setup import add_agent
from parley_testlib import query

PASSWORD = "correct horse battery"


def cheap_hash(password):
    """A PHC scrypt string at the lowest cost parleyd accepts (ln=10): the
    daemon verifies it like any other, in a few milliseconds instead of the
    ~0.2 s of the cost it hashes new passwords with."""
    salt = os.urandom(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=1 << 10, r=8, p=1, dklen=32)

    def b64(b):
        return base64.b64encode(b).decode().rstrip("=")
    return "$scrypt$ln=10,r=8,p=1$%s$%s" % (b64(salt), b64(key))


def add_login(dsn, email, name=None, password=PASSWORD, role="agent", teams=()):
    """An agent who logs in with email and password; returns its id."""
    agent_id = add_agent(dsn, email, name or email.split("@")[0].title(), role=role, teams=teams)
    query(dsn, "UPDATE agent SET password_hash = %s WHERE id = %s", (cheap_hash(password), agent_id))
    return agent_id


def login(url, email, password=PASSWORD, expect=201):
    """POST /api/v1/session as a browser would: (client holding the cookie and
    the CSRF token, status, headers, body)."""
    browser = ApiClient(url)
    status, headers, body = browser.post("/api/v1/session", json={"email": email, "password": password})
    assert status == expect, body
    if status == 201:
        browser.csrf_token = body["csrf_token"]
    return browser, status, headers, body


def sha256_hex(text):
    return hashlib.sha256(text.encode()).hexdigest()


def audit_actions(dsn, entity=None):
    """[(action, entity, entity_id, details)] in order."""
    sql = "SELECT action, entity, entity_id, details FROM audit_log"
    params = ()
    if entity is not None:
        sql += " WHERE entity = %s"
        params = (entity,)
    return query(dsn, sql + " ORDER BY id", params)
