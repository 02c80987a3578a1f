"""Premiums: what each term asks (the product's table by age band, monthly or yearly), what was
paid, and the lapse of a policy that leaves an instalment unpaid past the grace period
(docs/policies.md). Payments cover a term's instalments in order; a lapsed policy's ledger stops
moving (pricing/store.py cover_ends)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import psycopg

from glucover.errors import UserError
from policies import states
from policies.product import Product
from policies.terms import Term, add_months, expire_due, terms

Conn = psycopg.Connection[Any]


def due_dates(term: Term, product: Product) -> list[date]:
    """The days a term's instalments fall due: its first day (yearly) or the same day of each
    month (monthly)."""
    if term.frequency == "yearly":
        return [term.start]
    return [d for k in range(product.term_months) if (d := add_months(term.start, k)) <= term.end]


def instalments_covered(paid: float, instalment: float, count: int) -> int:
    """How many instalments `paid` covers, in order (a cent's rounding forgiven)."""
    if instalment <= 0:
        return count
    return min(count, int((paid + 0.005) // instalment))


@dataclass(frozen=True)
class Account:
    policy_id: str
    term: Term
    due: list[date]
    paid: float
    covered: int  # instalments paid for
    next_due: date | None  # the first unpaid instalment's day
    lapses_on: date | None  # the day the policy lapses if it stays unpaid

    def as_dict(self) -> dict[str, Any]:
        return {"policy_id": self.policy_id, "term_number": self.term.number,
                "frequency": self.term.frequency, "instalment": self.term.instalment,
                "instalments": len(self.due), "paid": round(self.paid, 2),
                "instalments_paid": self.covered,
                "next_due": None if self.next_due is None else self.next_due.isoformat(),
                "lapses_on": None if self.lapses_on is None else self.lapses_on.isoformat()}


def account(conn: Conn, policy_id: str, on: date) -> Account:
    """The premium account of the term in force on `on` (else the last term)."""
    found, product, _ = terms(conn, policy_id)
    if not found[0].administered:
        raise UserError(f"policy {policy_id} has no terms (provisioned before enrolment): no "
                        "premiums are due on it")
    term = next((t for t in found if t.start <= on <= t.end), found[-1])
    row = conn.execute("select coalesce(sum(amount), 0)::float8 from premium_payments where "
                       "policy_id = %s and term_number = %s", (policy_id, term.number)
                       ).fetchone()
    assert row is not None
    due = due_dates(term, product)
    paid = float(row[0])
    covered = instalments_covered(paid, term.instalment, len(due))
    next_due = due[covered] if covered < len(due) else None
    lapses = None if next_due is None else next_due + timedelta(days=product.grace_days + 1)
    return Account(policy_id, term, due, paid, covered, next_due, lapses)


def record(conn: Conn, policy_id: str, amount: float, paid_on: date, by: str,
           reference: str = "") -> Account:
    """A payment towards the term in force on `paid_on`."""
    if amount <= 0:
        raise UserError("--amount must be more than 0")
    state = states.state_of(conn, policy_id)
    if state.state in ("claimed", "cancelled"):
        raise UserError(f"policy {policy_id} is {state.state}: no premium is due")
    before = account(conn, policy_id, paid_on)
    conn.execute("insert into premium_payments (policy_id, term_number, amount, paid_on, "
                 "reference, recorded_by) values (%s, %s, %s, %s, %s, %s)",
                 (policy_id, before.term.number, round(amount, 2), paid_on, reference, by))
    return account(conn, policy_id, paid_on)


def sweep(conn: Conn, as_of: date, actor: str) -> dict[str, list[str]]:
    """Lapse every active policy with an instalment unpaid past the grace period on `as_of`
    (from the day after the grace period), and expire those whose last term ended unrenewed."""
    lapsed = []
    for (policy_id,) in conn.execute(
            "select distinct t.policy_id from policy_terms t join policy_state s "
            "using (policy_id) where s.state = 'active' order by 1").fetchall():
        acc = account(conn, str(policy_id), as_of)
        if acc.lapses_on is not None and acc.lapses_on <= as_of:
            states.record(conn, str(policy_id), "lapsed", acc.lapses_on, actor,
                          reason=f"instalment due {acc.next_due} unpaid")
            lapsed.append(str(policy_id))
    return {"lapsed": lapsed, "expired": expire_due(conn, as_of, actor)}


def premium_table(product: Product) -> list[dict[str, Any]]:
    bands = [(0, product.band_2_from - 1), (product.band_2_from, product.band_3_from - 1),
             (product.band_3_from, None)]
    return [{"product": product.name, "age_from": low, "age_to": high,
             "yearly": product.premium(low, "yearly"),
             "monthly": product.premium(low, "monthly")} for low, high in bands]
