"""What ingest is doing, as operations watch it: readings stored per minute, the lag from
receiving a reading to storing it, how old readings are when stored, and what was refused.
The queries were tuned for 100,000 policies (`glucover bench dashboard --explain` shows the
plans of LAG_SQL)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import psycopg

# Receive -> stored over readings received live in the last five minutes (a replayed history's
# received_at is its gateway's sent_at, long ago: that is history age, not lag). A reading
# received in the window was stored in it too (stored after received): the ingested_at bound
# lets the index find them instead of a pass over every reading.
LAG_SQL = (
    "select extract(epoch from percentile_cont(0.5) within group (order by "
    "ingested_at - received_at))::float8 from readings "
    "where received_at > now() - interval '5 minutes' "
    "and ingested_at > now() - interval '5 minutes'")
PER_MINUTE_SQL = (
    "select date_bin(interval '1 minute', ingested_at, timestamptz '2000-01-01') as minute,"
    " count(*) as readings from readings where ingested_at > now() - interval '1 hour'"
    " group by 1 order by 1")
AGE_SQL = (
    "select extract(epoch from percentile_cont(0.5) within group (order by "
    "ingested_at - measured_at))::float8 from readings "
    "where ingested_at > now() - interval '5 minutes'")
SINCE_LAST_SQL = "select extract(epoch from now() - max(ingested_at))::float8 from readings"
REJECTS_BY_REASON_SQL = (
    "select reason, count(*) as messages, max(received_at) as latest "
    "from rejected_messages where received_at > now() - interval '1 day' "
    "group by reason order by messages desc")
REJECT_SAMPLES_SQL = (
    "select distinct on (reason) reason, received_at, topic, detail, "
    # escape: any bytes (invalid UTF-8 included) shown safely
    "encode(substring(payload from 1 for 200), 'escape') as payload_start "
    "from rejected_messages order by reason, received_at desc")


def _frame(conn: psycopg.Connection[Any], sql: str) -> pd.DataFrame:
    with conn.cursor() as cur:
        cur.execute(sql)  # type: ignore[arg-type]
        return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description or []])


def _seconds(conn: psycopg.Connection[Any], sql: str) -> float | None:
    row = conn.execute(sql).fetchone()  # type: ignore[arg-type]
    return None if row is None or row[0] is None else float(row[0])


def per_minute(conn: psycopg.Connection[Any]) -> pd.DataFrame:
    """Readings stored in each minute of the last hour: minute, readings."""
    return _frame(conn, PER_MINUTE_SQL)


def ingest_lag(conn: psycopg.Connection[Any]) -> float | None:
    """Receive -> stored (s), the median over readings received in the last five minutes;
    None when none was."""
    return _seconds(conn, LAG_SQL)


def reading_age(conn: psycopg.Connection[Any]) -> float | None:
    """Measured -> stored (s), the median over readings stored in the last five minutes
    (back-filled history is old when it arrives)."""
    return _seconds(conn, AGE_SQL)


def since_last_reading(conn: psycopg.Connection[Any]) -> float | None:
    """Seconds since the last reading was stored."""
    return _seconds(conn, SINCE_LAST_SQL)


def rejects_by_reason(conn: psycopg.Connection[Any]) -> pd.DataFrame:
    """Messages refused in the last day by reason: reason, messages, latest."""
    return _frame(conn, REJECTS_BY_REASON_SQL)


def reject_samples(conn: psycopg.Connection[Any]) -> pd.DataFrame:
    """The latest refused message of each reason: reason, received_at, topic, detail,
    payload_start (its first 200 bytes, escaped)."""
    return _frame(conn, REJECT_SAMPLES_SQL)
