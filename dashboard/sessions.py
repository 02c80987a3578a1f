"""Signed-in sessions that survive a reload: a signed, expiring token in an HttpOnly, SameSite
cookie, backed by a row in dashboard_sessions that signing out deletes (revocation).

The token is `session_id.expires.signature`: the signature (HMAC-SHA256 with a key derived from
the deployment secret) means a token cannot be made up or have its expiry changed; the row means
a token stops working the moment its session is closed, wherever the cookie still is. The
cookie is set and cleared by two small HTTP routes beside the app (dashboard/server.py), since a
Streamlit script talks over a websocket and cannot send Set-Cookie itself.

The token never reaches the page: after signing in, the page posts a grant (the session id with
a short expiry, signed for that purpose alone) that the server exchanges, once, for the cookie.
Both routes take only same-origin JSON carrying the session's CSRF token in a header (a page
on another site can send none of these), so no other site can sign a user in as someone else
or out.
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
CSRF_HEADER = "X-Glucover-CSRF"
GRANT_TTL = timedelta(seconds=120)  # the page posts its grant at once; a spent one is refused


def signing_key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"dashboard-session", hashlib.sha256).digest()


def _signature(key: bytes, session_id: str, expires: int, purpose: str = "") -> str:
    return hmac.new(key, f"{purpose}{session_id}.{expires}".encode(), hashlib.sha256).hexdigest()


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


def grant_for(key: bytes, session_id: str, now: datetime) -> str:
    """What the page posts to have the session's cookie set: good for GRANT_TTL, once."""
    expires = int((now + GRANT_TTL).timestamp())
    return f"{session_id}.{expires}.{_signature(key, session_id, expires, 'grant:')}"


def granted(key: bytes, grant: str | None, now: datetime) -> str | None:
    """The session id of a grant that is ours and not expired."""
    valid = _valid(key, grant, now, "grant:")
    return None if valid is None else valid[0]


def csrf_token(key: bytes, session_id: str) -> str:
    """The session's CSRF token: the page sends it in CSRF_HEADER with each cookie request."""
    return hmac.new(key, f"csrf:{session_id}".encode(), hashlib.sha256).hexdigest()


def csrf_ok(key: bytes, session_id: str, sent: str | None) -> bool:
    return sent is not None and hmac.compare_digest(
        sent.encode("utf-8", "replace"), csrf_token(key, session_id).encode())


def _valid(key: bytes, token: str | None, now: datetime, purpose: str = ""
           ) -> tuple[str, int] | None:
    """(session id, expiry in epoch seconds) of a token that is ours and not expired. Anything
    else, odd characters included, is simply not one."""
    if not token or token.count(".") != 2 or not token.isascii():
        return None
    session_id, expires_text, signature = token.split(".")
    if not expires_text.isdigit() or len(expires_text) > 12:
        return None
    expected = _signature(key, session_id, int(expires_text), purpose)
    if not hmac.compare_digest(signature.encode(), expected.encode()):
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


def issue_cookie(conn: psycopg.Connection[Any], key: bytes, session_id: str,
                 now: datetime | None = None) -> tuple[str, int] | None:
    """Spend the session's grant: its token and seconds to live, the first time only, while
    the session is open; None after."""
    now = now or datetime.now(UTC)
    row = conn.execute(
        "update dashboard_sessions set cookie_issued_at = %s where session_id = %s "
        "and cookie_issued_at is null and expires_at > %s returning expires_at",
        (now, session_id, now)).fetchone()
    if row is None:
        return None
    expires_at: datetime = row[0]
    return token_for(key, session_id, expires_at), int(expires_at.timestamp() - now.timestamp())


def is_open(conn: psycopg.Connection[Any], key: bytes, token: str | None) -> bool:
    """Whether the session is still open (not signed out anywhere, not expired)."""
    session_id = verify(key, token, datetime.now(UTC))
    return session_id is not None and conn.execute(
        "select 1 from dashboard_sessions where session_id = %s and expires_at > now()",
        (session_id,)).fetchone() is not None


def close_session(conn: psycopg.Connection[Any], key: bytes, token: str | None) -> None:
    """Revoke the session: its token stops working everywhere at once."""
    session_id = verify(key, token, datetime.now(UTC))
    if session_id is not None:
        conn.execute("delete from dashboard_sessions where session_id = %s", (session_id,))
