"""The access log: every read of one person's health data by staff leaves a row (schema:
0052_access_log.sql; docs/privacy.md). The data protection officer (role `privacy`) reads,
filters and exports it; nobody changes it.

    access_log.record(conn, "dr_li", "clinician", policy_id, "policy_page", "care")
    access_log.entries(conn, policy_id=..., username=..., since=..., until=...)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
import psycopg

Conn = psycopg.Connection[Any]
WHAT = ("policy_page", "review", "fhir_export", "agp_export", "readings_csv", "ledger_csv",
        "alert")
PURPOSES = ("care", "underwriting", "review", "operations", "data_rights")
# Why each staff role opens one person's records.
PURPOSE_OF_ROLE = {"clinician": "care", "actuary": "underwriting", "reviewer": "review",
                   "operations": "operations", "operator": "data_rights",
                   "privacy": "data_rights"}
COLUMNS = ("access_id", "at", "username", "role", "policy_id", "subject", "what", "purpose",
           "detail")


def subject(conn: Conn, policy_id: str) -> str:
    """The policy's random subject key in the log (made the first time it is needed)."""
    conn.execute("insert into policy_subjects (policy_id) values (%s) on conflict do nothing",
                 (policy_id,))
    row = conn.execute("select subject from policy_subjects where policy_id = %s",
                       (policy_id,)).fetchone()
    assert row is not None
    return str(row[0])


def record(conn: Conn, username: str, role: str, policy_id: str, what: str,
           purpose: str | None = None, detail: str = "") -> None:
    """A read of `policy_id`'s data by `username` (in the caller's transaction)."""
    if what not in WHAT:
        raise ValueError(f"what must be one of {', '.join(WHAT)}")
    purpose = purpose or PURPOSE_OF_ROLE.get(role, "operations")
    conn.execute("insert into access_log (username, role, subject, what, purpose, detail) "
                 "values (%s, %s, %s, %s, %s, %s)",
                 (username, role, subject(conn, policy_id), what, purpose, detail))


def entries(conn: Conn, policy_id: str | None = None, username: str | None = None,
            since: datetime | None = None, until: datetime | None = None,
            limit: int = 10_000) -> pd.DataFrame:
    """The log, newest first, filtered by policy, staff member and time."""
    rows = conn.execute(
        f"select {', '.join(COLUMNS)} from access_log_named "
        "where (%(policy)s::text is null or policy_id = %(policy)s) "
        "and (%(user)s::text is null or username = %(user)s) "
        "and (%(since)s::timestamptz is null or at >= %(since)s) "
        "and (%(until)s::timestamptz is null or at < %(until)s) "
        "order by at desc, access_id desc limit %(limit)s",
        {"policy": policy_id, "user": username, "since": since, "until": until,
         "limit": limit}).fetchall()
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["subject"] = frame["subject"].astype(str)
    return frame
