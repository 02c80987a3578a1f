"""Session tokens: signed, expiring, revocable (dashboard/sessions.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from dashboard import sessions
from dashboard.auth import User, create_user

KEY = sessions.signing_key("test-secret")
NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


def test_a_token_is_ours_and_unexpired_or_nothing() -> None:
    token = sessions.token_for(KEY, "abc", NOW + timedelta(hours=1))
    assert sessions.verify(KEY, token, NOW) == "abc"
    assert sessions.seconds_left(KEY, token, NOW) == 3600
    session_id, expires, signature = token.split(".")
    later = int(expires) + 86_400
    for forged in (f"{session_id}.{later}.{signature}",  # expiry extended
                   f"other.{expires}.{signature}",  # another session
                   f"{session_id}.{expires}.{'0' * 64}", "abc", "", "a.b.c.d"):
        assert sessions.verify(KEY, forged, NOW) is None
    assert sessions.verify(sessions.signing_key("another secret"), token, NOW) is None
    assert sessions.verify(KEY, token, NOW + timedelta(hours=2)) is None  # expired
    assert sessions.seconds_left(KEY, token, NOW + timedelta(hours=2)) is None


def test_a_session_resumes_until_revoked_or_expired(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        create_user(conn, "carol", "pw", "actuary", rounds=4)
        carol = User("carol", "actuary", None)
        token, expires_at = sessions.open_session(conn, KEY, carol, NOW)
        assert expires_at == NOW + sessions.SESSION_TTL
        assert sessions.resume(conn, KEY, token, NOW + timedelta(days=1)) == carol
        assert sessions.resume(conn, KEY, token, expires_at + timedelta(seconds=1)) is None
        other, _ = sessions.open_session(conn, KEY, carol, datetime.now(UTC))
        sessions.close_session(conn, KEY, other)
        assert sessions.resume(conn, KEY, other) is None  # revoked: the row is gone
        assert sessions.resume(conn, KEY, token, NOW) == carol  # the other session lives on
