"""Which meters need attention: silent ones, low batteries, clocks that drift. Operations
read these (the dashboard's operations page); the queries were tuned for 100,000 policies
(`glucover bench dashboard --explain` shows the plan of SILENT_SQL)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import psycopg

OFFLINE_AFTER_HOURS = 48
LOW_BATTERY_PCT = 20
CLOCK_DRIFT_S = 120
SILENT_SHOWN = 500  # silent meters listed (the count is of all)

# The meters' last readings within twice the silence, found through ingested_at likewise: one
# index range, not every meter's history; the longest silent first, with the count of all.
SILENT_SQL = (
    "select d.device_id, s.state, s.sent_at as last_status, r.last_reading, "
    "count(*) over () as silent from devices d "
    "left join device_status s using (device_id) "
    "left join (select device_id, max(received_at) as last_reading from readings "
    "           where ingested_at > now() - make_interval(hours => %(h)s * 2) "
    "           and received_at > now() - make_interval(hours => %(h)s * 2) "
    "           group by device_id) r using (device_id) "
    "where d.revoked_at is null "
    "and coalesce(r.last_reading, s.sent_at, d.created_at) < now() - "
    "make_interval(hours => %(h)s) order by coalesce(r.last_reading, s.sent_at, "
    "d.created_at) limit %(shown)s")
SILENT_PARAMS = {"h": OFFLINE_AFTER_HOURS, "shown": SILENT_SHOWN}
LOW_BATTERY_SQL = ("select device_id, battery_pct, sent_at from device_status "
                   "where battery_pct < %s order by battery_pct")
CLOCK_DRIFT_SQL = ("select device_id, clock_offset_s, sent_at from device_status "
                   "where abs(clock_offset_s) > %s order by abs(clock_offset_s) desc")


def _frame(conn: psycopg.Connection[Any], sql: str, params: Any) -> pd.DataFrame:
    with conn.cursor() as cur:
        cur.execute(sql, params)  # type: ignore[arg-type]
        return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description or []])


def silent_meters(conn: psycopg.Connection[Any]) -> pd.DataFrame:
    """Meters (not revoked) silent for more than OFFLINE_AFTER_HOURS, the longest silent
    first, at most SILENT_SHOWN: device_id, state, last_status, last_reading, silent (the
    count of all)."""
    return _frame(conn, SILENT_SQL, SILENT_PARAMS)


def low_batteries(conn: psycopg.Connection[Any]) -> pd.DataFrame:
    """Meters whose last status had the battery below LOW_BATTERY_PCT, lowest first."""
    return _frame(conn, LOW_BATTERY_SQL, (LOW_BATTERY_PCT,))


def drifting_clocks(conn: psycopg.Connection[Any]) -> pd.DataFrame:
    """Meters whose clock is off by more than CLOCK_DRIFT_S, the furthest first."""
    return _frame(conn, CLOCK_DRIFT_SQL, (CLOCK_DRIFT_S,))
