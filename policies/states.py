"""A policy's states as an append-only history (policy_events, 0055_claims_process.sql): applied,
active, lapsed (premium unpaid past the grace period), claimed (paid; ends the cover),
cancelled, expired. The state is the latest event's; a policy with none is active from its
start. Which transitions are allowed is written once, here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import psycopg

from glucover.errors import UserError

Conn = psycopg.Connection[Any]

STATES = ("applied", "active", "lapsed", "claimed", "cancelled", "expired")
# States from which nothing moves the ledger or pays a claim again.
ENDED = ("claimed", "cancelled")
# Allowed transitions: from -> to.
TRANSITIONS = {
    "applied": ("active", "cancelled"),
    "active": ("lapsed", "claimed", "cancelled", "expired", "active"),  # active -> active: renewed
    "lapsed": ("active", "cancelled", "expired"),
    "expired": ("active",),  # renewed after the term ended
    "claimed": (),
    "cancelled": (),
}


@dataclass(frozen=True)
class PolicyState:
    policy_id: str
    state: str
    since: date


def state_of(conn: Conn, policy_id: str) -> PolicyState:
    row = conn.execute("select state, since from policy_state where policy_id = %s",
                       (policy_id,)).fetchone()
    if row is None:
        raise UserError(f"no policy {policy_id!r}")
    return PolicyState(policy_id, str(row[0]), row[1])


def record(conn: Conn, policy_id: str, state: str, effective: date, actor: str,
           reason: str = "", claim_id: int | None = None) -> None:
    """Append the transition to `state` from `effective`, or refuse one the rules forbid."""
    assert state in STATES
    now = state_of(conn, policy_id)
    if state not in TRANSITIONS[now.state]:
        raise UserError(f"policy {policy_id} is {now.state} since {now.since}: it cannot "
                        f"become {state}")
    conn.execute("insert into policy_events (policy_id, state, effective, actor, reason, "
                 "claim_id) values (%s, %s, %s, %s, %s, %s)",
                 (policy_id, state, effective, actor, reason, claim_id))


def reinstated_lapse(conn: Conn, policy_id: str, day: date) -> tuple[date, date] | None:
    """(first lapsed day, reinstatement day) of the lapse a reinstatement ended that `day`
    falls in (policy_lapses, 0059), else None: its days are not covered and the ledger holds
    none of them."""
    row = conn.execute("select lapsed_from, reinstated_on from policy_lapses where policy_id = "
                       "%s and lapsed_from <= %s and reinstated_on > %s",
                       (policy_id, day, day)).fetchone()
    return None if row is None else (row[0], row[1])


def history(conn: Conn, policy_id: str) -> list[dict[str, Any]]:
    rows = conn.execute("select state, effective, at, actor, reason, claim_id from "
                        "policy_events where policy_id = %s order by event_id",
                        (policy_id,)).fetchall()
    return [{"state": r[0], "effective": r[1].isoformat(), "at": r[2].isoformat(),
             "actor": r[3], "reason": r[4], "claim_id": r[5]} for r in rows]
