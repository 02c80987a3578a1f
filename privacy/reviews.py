"""Human review of an automated decision (PIPL Art 24, GDPR Art 22; schema:
0051_decision_reviews.sql; docs/privacy.md).

A policyholder asks for a person to review one day's change of their sum insured, saying
why in their own words (`request`). A reviewer (an underwriter) sees the queue (`queue`),
decides (`decide`): upheld, or corrected with a reason and an adjustment of that day's change.
A correction is a new ledger row naming the review, written at once; the nightly run then
applies it (pricing/evaluator.py rule 8) to the days after. Every step is audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import pandas as pd
import psycopg

from glucover.errors import UserError

Conn = psycopg.Connection[Any]
OUTCOMES = ("upheld", "corrected")
REVIEW_COLUMNS = ("review_id", "policy_id", "day", "view", "requested_by", "requested_at",
                  "ruleset_name", "ruleset_version", "day_status", "delta", "status",
                  "decided_by", "decided_at", "reason", "adjustment")


class ReviewError(UserError):
    """A request or decision that cannot be made; `code` names its text (review_refused_*)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def request(conn: Conn, policy_id: str, day: date, view: str, username: str) -> int:
    """Ask for a review of the policy's `day` as the ledger has it now; returns its id."""
    if not view.strip():
        raise ReviewError("empty_view", "say in your words why the day should be reviewed")
    row = conn.execute("select ruleset_name, ruleset_version, day_status, delta from "
                       "current_ledger where policy_id = %s and day = %s",
                       (policy_id, day)).fetchone()
    if row is None:
        raise ReviewError("no_day", f"{policy_id} has no priced day {day}")
    if conn.execute("select 1 from decision_reviews where policy_id = %s and day = %s and "
                    "status = 'open'", (policy_id, day)).fetchone():
        raise ReviewError("already_open", f"a review of {day} is already waiting")
    found = conn.execute(
        "insert into decision_reviews (policy_id, day, view, requested_by, ruleset_name, "
        "ruleset_version, day_status, delta) values (%s, %s, %s, %s, %s, %s, %s, %s) "
        "returning review_id", (policy_id, day, view.strip(), username, *row)).fetchone()
    assert found is not None
    review_id = int(str(found[0]))
    _audit(conn, username, review_id, "request", view.strip())
    return review_id


def _audit(conn: Conn, username: str, review_id: int, action: str, detail: str) -> None:
    conn.execute("insert into review_audit (username, review_id, action, detail) values "
                 "(%s, %s, %s, %s)", (username, review_id, action, detail))


def decide(conn: Conn, review_id: int, reviewer: str, outcome: str, reason: str,
           adjustment: float | None = None) -> None:
    """Uphold or correct a waiting review, with a reason. A correction adds `adjustment`
    (RMB, not 0) to the day's change: a new ledger row naming the review."""
    if outcome not in OUTCOMES:
        raise ReviewError("bad_outcome", f"outcome must be one of {', '.join(OUTCOMES)}")
    if not reason.strip():
        raise ReviewError("empty_reason", "give the reason for the decision")
    if outcome == "corrected" and not adjustment:
        raise ReviewError("no_adjustment", "a correction changes the day by some amount")
    row = conn.execute("select policy_id, day, status from decision_reviews where "
                       "review_id = %s for update", (review_id,)).fetchone()
    if row is None:
        raise ReviewError("unknown", f"no review {review_id}")
    if row[2] != "open":
        raise ReviewError("decided", f"review {review_id} is decided already")
    amount = Decimal(str(adjustment)) if outcome == "corrected" else None
    conn.execute("update decision_reviews set status = %s, decided_by = %s, decided_at = "
                 "clock_timestamp(), reason = %s, adjustment = %s where review_id = %s",
                 (outcome, reviewer, reason.strip(), amount, review_id))
    _audit(conn, reviewer, review_id, "uphold" if outcome == "upheld" else "correct",
           reason.strip() + ("" if amount is None else f" ({amount:+})"))
    if amount is not None:
        _correction_row(conn, review_id)


def _correction_row(conn: Conn, review_id: int) -> None:
    """The corrected day's ledger row, written by the database function correct_ledger
    (0051_decision_reviews.sql) with its owner's rights: the dashboard writes no other."""
    conn.execute("select correct_ledger(%s)", (review_id,))


def corrections(conn: Conn, policy_ids: list[str]) -> pd.DataFrame:
    """The reviewers' corrections of these policies: policy_id, day, amount, review_id."""
    rows = conn.execute("select policy_id, day, adjustment::float8, review_id from "
                        "decision_reviews where status = 'corrected' and policy_id = any(%s)",
                        (policy_ids,)).fetchall()
    frame = pd.DataFrame(rows, columns=["policy_id", "day", "amount", "review_id"])
    frame["day"] = pd.to_datetime(frame["day"])
    return frame


def queue(conn: Conn, open_only: bool = True) -> pd.DataFrame:
    """Reviews, waiting ones first, oldest first."""
    rows = conn.execute(f"select {', '.join(REVIEW_COLUMNS)} from decision_reviews "
                        "where not %s or status = 'open' order by status <> 'open', "
                        "requested_at", (open_only,)).fetchall()
    return pd.DataFrame(rows, columns=list(REVIEW_COLUMNS))


def of_policy(conn: Conn, policy_id: str) -> pd.DataFrame:
    """A policy's reviews, newest first (what its holder sees)."""
    rows = conn.execute(f"select {', '.join(REVIEW_COLUMNS)} from decision_reviews "
                        "where policy_id = %s order by requested_at desc", (policy_id,)
                        ).fetchall()
    return pd.DataFrame(rows, columns=list(REVIEW_COLUMNS))


@dataclass(frozen=True)
class Review:
    """One review as the reviewer sees it."""

    row: dict[str, Any]
    audit: pd.DataFrame  # at, username, action, detail


def review(conn: Conn, review_id: int) -> Review:
    rows = conn.execute(f"select {', '.join(REVIEW_COLUMNS)} from decision_reviews "
                        "where review_id = %s", (review_id,)).fetchall()
    if not rows:
        raise ReviewError("unknown", f"no review {review_id}")
    audit = conn.execute("select at, username, action, detail from review_audit where "
                         "review_id = %s order by at", (review_id,)).fetchall()
    return Review(dict(zip(REVIEW_COLUMNS, rows[0], strict=True)),
                  pd.DataFrame(audit, columns=["at", "username", "action", "detail"]))
