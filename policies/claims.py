"""Claims: a severe complication pays the sum insured at the end of the day before the event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import psycopg

from glucover.errors import UserError


@dataclass(frozen=True)
class Claim:
    claim_id: int
    policy_id: str
    event_date: date
    basis_day: date
    payout: float


def payout_on(conn: psycopg.Connection[tuple[object, ...]], policy_id: str, event_date: date
              ) -> tuple[date, float]:
    """(basis day, payout) for an event on `event_date`, without recording anything."""
    policy = conn.execute("select start_date, base_sum_insured::float8 from policies "
                          "where policy_id = %s", (policy_id,)).fetchone()
    if policy is None:
        raise UserError(f"no policy {policy_id!r}")
    start, base = policy[0], float(str(policy[1]))
    assert isinstance(start, date)
    if event_date < start:
        raise UserError(f"policy {policy_id} starts on {start}; an event on {event_date} is "
                        "not covered")
    basis = event_date - timedelta(days=1)
    if basis < start:
        return basis, base  # the first day: nothing earned or lost yet
    row = conn.execute("select sum_insured::float8 from current_ledger where policy_id = %s "
                       "and day = %s", (policy_id, basis)).fetchone()
    if row is None:
        raise UserError(f"the ledger of {policy_id} does not reach {basis} yet: run "
                        f"`glucover price run --through {basis}` first")
    return basis, float(str(row[0]))


def file_claim(database_url: str, policy_id: str, event_date: date, reason: str) -> Claim:
    if not reason.strip():
        raise UserError("--reason must say what happened")
    with psycopg.connect(database_url) as conn:
        basis, payout = payout_on(conn, policy_id, event_date)
        row = conn.execute(
            "insert into claims (policy_id, event_date, reason, basis_day, payout) values "
            "(%s, %s, %s, %s, %s) returning claim_id",
            (policy_id, event_date, reason.strip(), basis, payout)).fetchone()
        conn.commit()
    assert row is not None
    return Claim(int(str(row[0])), policy_id, event_date, basis, payout)
