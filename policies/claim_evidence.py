"""What a claims handler looks at beside a claim: the policy's ledger as it stood when the
claim was filed, the readings around the event, the policy's earlier claims. Read only."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd
import psycopg

from policies.claims import Claim

Conn = psycopg.Connection[Any]

LEDGER_DAYS = 30  # the ledger shown: the 30 days up to the basis day (the bonus-rise window)
READING_DAYS = 7  # readings shown: a week either side of the event


def ledger_as_filed(conn: Conn, claim: Claim, basis_run_id: int | None) -> pd.DataFrame:
    """The ledger's days up to the basis day as they stood at filing: for each day its latest
    row from a pricing run no later than the basis row's (rows written since are left out)."""
    rows = conn.execute(
        """select distinct on (day) day, day_status, delta::float8, bonus::float8,
                  sum_insured::float8, run_id
           from sum_insured_ledger
           where policy_id = %s and day between %s and %s
             and (%s::bigint is null or run_id <= %s)
           order by day desc, run_id desc""",
        (claim.policy_id, claim.basis_day - timedelta(days=LEDGER_DAYS - 1), claim.basis_day,
         basis_run_id, basis_run_id)).fetchall()
    return pd.DataFrame(rows, columns=["day", "day_status", "delta", "bonus", "sum_insured",
                                       "run_id"])


def basis_run(conn: Conn, claim_id: int) -> int | None:
    row = conn.execute("select basis_run_id from claims where claim_id = %s",
                       (claim_id,)).fetchone()
    return None if row is None or row[0] is None else int(str(row[0]))


def readings_around(conn: Conn, claim: Claim) -> pd.DataFrame:
    """The policy's readings measured within READING_DAYS of the event, local time."""
    rows = conn.execute(
        """select r.measured_at at time zone p.timezone,
                  glucose_mmol(r.value_digits, r.value_exponent, r.unit), r.meal, r.received_at
           from policy_devices pd
           join policies p using (policy_id)
           join readings r on r.device_id = pd.device_id
                and r.measured_at >= pd.bound_from
                and (pd.bound_to is null or r.measured_at < pd.bound_to)
           where pd.policy_id = %s
             and r.measured_at >= local_midnight(%s::date, p.timezone)
             and r.measured_at < local_midnight(%s::date, p.timezone)
           order by r.measured_at""",
        (claim.policy_id, claim.event_date - timedelta(days=READING_DAYS),
         claim.event_date + timedelta(days=READING_DAYS + 1))).fetchall()
    return pd.DataFrame(rows, columns=["measured_at", "value_mmol", "meal", "received_at"])
