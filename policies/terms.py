"""A policy's terms: each lasts the product's term (default a year) from the day after the last
ended; the first starts on the policy's start date. Claims are covered after the waiting period
counted from the first term's start (policies/product.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import psycopg

from glucover.errors import UserError
from policies import states
from policies.product import Product, product_for

Conn = psycopg.Connection[Any]


@dataclass(frozen=True)
class Term:
    number: int
    start: date
    end: date  # the last day covered


def add_months(day: date, months: int) -> date:
    """The same day `months` later (the month's last day when it has no such day)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    for d in (day.day, 30, 29, 28):
        try:
            return date(year, month, d)
        except ValueError:
            continue
    raise AssertionError("every month has a 28th")


def term_after(previous_end: date, number: int, product: Product) -> Term:
    start = previous_end + timedelta(days=1)
    return Term(number, start, add_months(start, product.term_months) - timedelta(days=1))


def first_term(start: date, product: Product) -> Term:
    return Term(1, start, add_months(start, product.term_months) - timedelta(days=1))


def current_term(conn: Conn, policy_id: str) -> tuple[Term, Product]:
    row = conn.execute("select start_date, ruleset_name from policies where policy_id = %s",
                       (policy_id,)).fetchone()
    if row is None:
        raise UserError(f"no policy {policy_id!r}")
    product = product_for(str(row[1]))
    return first_term(row[0], product), product


def policy_summary(conn: Conn, policy_id: str) -> dict[str, Any]:
    term, product = current_term(conn, policy_id)
    state = states.state_of(conn, policy_id)
    row = conn.execute("select start_date from policies where policy_id = %s",
                       (policy_id,)).fetchone()
    assert row is not None
    covered_from = row[0] + timedelta(days=product.waiting_period_days)
    return {"policy_id": policy_id, "product": product.name, "state": state.state,
            "state_since": state.since.isoformat(), "start_date": row[0].isoformat(),
            "term_number": term.number, "term_start": term.start.isoformat(),
            "term_end": term.end.isoformat(), "waiting_period_ends": covered_from.isoformat(),
            "history": states.history(conn, policy_id)}
