"""Throttling sign-in: a name, or a client address, that failed too often in the last minutes
is refused without its password being checked, until the oldest of those failures is out of the
window. Counting by the name as typed (lower-cased) treats unknown names like known ones, and
the address limit stops one client trying many names. Rows live in sign_in_failures (0040),
pruned as failures are added."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

WINDOW = timedelta(minutes=15)
MAX_PER_NAME = 5  # failed sign-ins for one name within WINDOW
MAX_PER_ADDRESS = 20  # failed sign-ins from one address within WINDOW, whatever the names
KEEP = timedelta(days=1)


@dataclass(frozen=True)
class Refusal:
    seconds: float  # until the next attempt is checked

    @property
    def minutes(self) -> int:
        return max(1, math.ceil(self.seconds / 60))


def _oldest_of_last(conn: psycopg.Connection[Any], column: str, value: str, limit: int,
                    now: datetime) -> datetime | None:
    """When the `limit`-th most recent failure in the window happened; None when fewer."""
    assert column in ("username", "address")
    row = conn.execute(
        f"select failed_at from sign_in_failures where {column} = %s and failed_at > %s "
        "order by failed_at desc offset %s limit 1", (value, now - WINDOW, limit - 1)).fetchone()
    return None if row is None else row[0]


def refused(conn: psycopg.Connection[Any], username: str, address: str, now: datetime
            ) -> Refusal | None:
    """A refusal when the name or the address is over its limit, with how long it lasts."""
    waits = [oldest + WINDOW - now for oldest in (
        _oldest_of_last(conn, "username", username.strip().lower(), MAX_PER_NAME, now),
        _oldest_of_last(conn, "address", address, MAX_PER_ADDRESS, now)) if oldest is not None]
    return Refusal(max(waits).total_seconds()) if waits else None


def record_failure(conn: psycopg.Connection[Any], username: str, address: str, now: datetime
                   ) -> None:
    conn.execute("delete from sign_in_failures where failed_at < %s", (now - KEEP,))
    conn.execute("insert into sign_in_failures (username, address, failed_at) values "
                 "(%s, %s, %s)", (username.strip().lower(), address, now))


def record_success(conn: psycopg.Connection[Any], username: str) -> None:
    """A right password clears the name's failures (not the address's)."""
    conn.execute("delete from sign_in_failures where username = %s",
                 (username.strip().lower(),))
