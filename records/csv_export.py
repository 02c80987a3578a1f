"""A policy's readings and ledger as CSV (access and portability: PIPL Art 45, GDPR Art 15
and 20; docs/privacy.md). The readings are every one stored from the meters bound to the
policy while bound, valid or not, with the instant in UTC and the device's own offset; the
ledger is every row pricing wrote, superseded ones too, each naming its run."""

from __future__ import annotations

import argparse
import getpass
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg

from glucover.config import Settings
from glucover.db import connect
from glucover.errors import UserError
from privacy import access_log

TABLES = ("readings", "ledger")
READINGS_SQL = """
    select r.device_id, r.seq, r.measured_at, r.utc_offset_min, r.received_at,
           glucose_value(r.value_digits, r.value_exponent) as value, r.unit,
           glucose_mmol(r.value_digits, r.value_exponent, r.unit) as value_mmol, r.meal,
           r.sample, r.source, r.status
    from policy_devices pd join readings r on r.device_id = pd.device_id
         and r.measured_at >= pd.bound_from and (pd.bound_to is null or r.measured_at < pd.bound_to)
    where pd.policy_id = %s order by r.measured_at, r.device_id, r.seq"""
LEDGER_SQL = """
    select day, run_id, day_status, reading_seq, delta, bonus, sum_insured, ruleset_name,
           ruleset_version, coverage, time_in_range, below, very_high, review_id
    from sum_insured_ledger where policy_id = %s order by day, run_id"""


def table_csv(conn: psycopg.Connection[Any], policy_id: str, table: str) -> bytes:
    """The policy's `table` (readings or ledger) as CSV; UserError for an unknown policy."""
    if table not in TABLES:
        raise UserError(f"table must be one of {', '.join(TABLES)}")
    if conn.execute("select 1 from policies where policy_id = %s", (policy_id,)
                    ).fetchone() is None:
        raise UserError(f"no policy {policy_id}")
    with conn.cursor() as cur:
        cur.execute(READINGS_SQL if table == "readings" else LEDGER_SQL, (policy_id,))
        columns = [d.name for d in cur.description or []]
        frame = pd.DataFrame(cur.fetchall(), columns=columns)
    for column in ("measured_at", "received_at"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], utc=True).dt.strftime(
                "%Y-%m-%dT%H:%M:%S.%fZ")
    return frame.to_csv(index=False).encode()


def export_csv_cli(args: argparse.Namespace, settings: Settings) -> int:
    with connect(settings.require_database_url()) as conn:
        data = table_csv(conn, args.policy, args.table)
        access_log.record(conn, getpass.getuser(), "operator", args.policy,
                          f"{args.table}_csv", detail=args.out)
        conn.commit()
    Path(args.out).write_bytes(data)
    rows = data.count(b"\n") - 1
    print(f"wrote {args.out}: {args.table} of policy {args.policy}, {rows:,} rows")
    return 0
