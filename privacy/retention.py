"""Retention of raw readings (PIPL Art 47, GDPR Art 5(1)(e); docs/privacy.md "Retention").
Readings older than the age an operator sets are dropped; the day summaries (meter_days,
cgm_days) and the ledger, which explain every decision, stay.

On TimescaleDB the age becomes the hypertable's retention policy, which its scheduler applies
chunk by chunk every day; on plain PostgreSQL `apply` deletes them now, and the operator runs
`glucover privacy retention` daily (cron, or the deployment's scheduler)."""

from __future__ import annotations

import re
from typing import Any

import psycopg

from glucover.db import active_backend
from glucover.errors import UserError

Conn = psycopg.Connection[Any]
# Younger readings may still change a price (late syncs) or feed the AGP report's 14 days.
MIN_AGE_DAYS = 30
_AGE = re.compile(r"^\s*(\d+)\s*(days?|weeks?|months?|years?)\s*$")
_DAYS_PER = {"day": 1, "week": 7, "month": 28, "year": 365}


def age(text: str) -> str:
    """A retention age as an SQL interval, at least MIN_AGE_DAYS; UserError otherwise."""
    match = _AGE.match(text)
    if not match:
        raise UserError(f"--older-than must look like '730 days', got {text!r}")
    n, unit = int(match[1]), match[2].rstrip("s")
    if n * _DAYS_PER[unit] < MIN_AGE_DAYS:
        raise UserError(f"--older-than must be at least {MIN_AGE_DAYS} days: younger readings "
                        "may still change a price")
    return f"{n} {unit}s"


def apply(conn: Conn, older_than: str) -> str:
    """Set (TimescaleDB) or carry out (PostgreSQL) the retention; says what it did."""
    interval = age(older_than)
    if active_backend(conn) == "timescaledb":
        conn.execute("select remove_retention_policy('readings', if_exists => true)")
        conn.execute("select add_retention_policy('readings', %s::interval)", (interval,))
        return f"TimescaleDB drops chunks of readings older than {interval} every day"
    deleted = conn.execute("delete from readings where measured_at < now() - %s::interval",
                           (interval,)).rowcount
    return f"deleted {deleted:,} readings measured more than {interval} ago"
