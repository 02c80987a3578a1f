"""Signed-in sessions that survive a reload: a signed, expiring token in an HttpOnly, SameSite
cookie, backed by a row in dashboard_sessions that signing out deletes (revocation).

The token is `session_id.expires.signature`: the signature (HMAC-SHA256 with a key derived from
the deployment secret) means a token cannot be made up or have its expiry changed; the row means
a token stops working the moment its session is closed, wherever the cookie still is. The
cookie is set and cleared by two small HTTP routes beside the app (dashboard/server.py), since a
Streamlit script talks over a websocket and cannot send Set-Cookie itself.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from dashboard.auth import User

COOKIE = "glucover_session"
SESSION_TTL = timedelta(days=14)
OPEN_PATH = "/glucover/session/open"
CLOSE_PATH = "/glucover/session/close"


def signing_key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"dashboard-session", hashlib.sha256).digest()


def _signature(key: bytes, session_id: str, expires: int) -> str:
    return hmac.new(key, f"{session_id}.{expires}".encode(), hashlib.sha256).hexdigest()


def token_for(key: bytes, session_id: str, expires_at: datetime) -> str:
    expires = int(expires_at.timestamp())
    return f"{session_id}.{expires}.{_signature(key, session_id, expires)}"


def verify(key: bytes, token: str | None, now: datetime) -> str | None:
    """The session id of a token that is ours and not expired; None for anything else."""
    valid = _valid(key, token, now)
    return None if valid is None else valid[0]


def seconds_left(key: bytes, token: str | None, now: datetime) -> int | None:
    """How long a token that is ours has to live (a cookie's Max-Age); None when it is not."""
    valid = _valid(key, token, now)
    return None if valid is None else valid[1] - int(now.timestamp())


def _valid(key: bytes, token: str | None, now: datetime) -> tuple[str, int] | None:
    """(session id, expiry in epoch seconds) of a token that is ours and not expired."""
    if not token or token.count(".") != 2:
        return None
    session_id, expires_text, signature = token.split(".")
    if not expires_text.isdigit():
        return None
    if not hmac.compare_digest(signature, _signature(key, session_id, int(expires_text))):
        return None
    if int(expires_text) <= now.timestamp():
        return None
    return session_id, int(expires_text)


def open_session(conn: psycopg.Connection[Any], key: bytes, user: User,
                 now: datetime | None = None) -> tuple[str, datetime]:
    """A new session for `user`: its token and when it expires."""
    expires_at = (now or datetime.now(UTC)) + SESSION_TTL
    session_id = secrets.token_urlsafe(24).replace(".", "_")
    conn.execute("insert into dashboard_sessions (session_id, username, expires_at) "
                 "values (%s, %s, %s)", (session_id, user.username, expires_at))
    return token_for(key, session_id, expires_at), expires_at


def resume(conn: psycopg.Connection[Any], key: bytes, token: str | None,
           now: datetime | None = None) -> User | None:
    """The user of a valid, unexpired, not revoked session token; None otherwise."""
    now = now or datetime.now(UTC)
    session_id = verify(key, token, now)
    if session_id is None:
        return None
    row = conn.execute(
        "update dashboard_sessions s set last_seen = now() from dashboard_users u "
        "where s.session_id = %s and s.expires_at > %s and u.username = s.username "
        "returning u.username, u.role, u.policy_id, u.care_lead", (session_id, now)).fetchone()
    if row is None:
        return None
    return User(str(row[0]), str(row[1]), None if row[2] is None else str(row[2]), bool(row[3]))


def close_session(conn: psycopg.Connection[Any], key: bytes, token: str | None) -> None:
    """Revoke the session: its token stops working everywhere at once."""
    session_id = verify(key, token, datetime.now(UTC))
    if session_id is not None:
        conn.execute("delete from dashboard_sessions where session_id = %s", (session_id,))
