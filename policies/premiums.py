"""Premiums: what each term asks (the product's table by age band, monthly or yearly), what was
paid, and the lapse of a policy that leaves an instalment unpaid past the grace period
(docs/policies.md). Payments cover a term's instalments in order; a lapsed policy's ledger stops
moving (pricing/store.py cover_ends) until a payment that clears the arrears within the
product's reinstatement window reinstates it (`record`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import psycopg

from glucover.errors import UserError
from policies import states
from policies.product import Product
from policies.terms import Term, add_months, expire_due, product_for_policy, terms

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
    state: str = "active"
    arrears: float = 0.0  # unpaid instalments due on or before the account's day
    reinstatable_until: date | None = None  # lapsed: the last day a payment reinstates it

    def as_dict(self) -> dict[str, Any]:
        return {"policy_id": self.policy_id, "term_number": self.term.number,
                "frequency": self.term.frequency, "instalment": self.term.instalment,
                "instalments": len(self.due), "paid": round(self.paid, 2),
                "instalments_paid": self.covered,
                "next_due": None if self.next_due is None else self.next_due.isoformat(),
                "lapses_on": None if self.lapses_on is None else self.lapses_on.isoformat(),
                "state": self.state, "arrears": self.arrears,
                "reinstatable_until": None if self.reinstatable_until is None
                else self.reinstatable_until.isoformat()}


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
    state = states.state_of(conn, policy_id)
    owed = sum(1 for d in due if d <= on) * term.instalment
    return Account(policy_id, term, due, paid, covered, next_due, lapses, state.state,
                   round(max(0.0, owed - paid), 2),
                   reinstatement_closes(state.since, product) if state.state == "lapsed"
                   else None)


def record(conn: Conn, policy_id: str, amount: float, paid_on: date, by: str,
           reference: str = "") -> tuple[Account, date | None]:
    """A payment towards the term in force on `paid_on`, and the day the policy is reinstated
    from when it was lapsed and the payment clears its arrears (None otherwise). A payment
    to a lapsed policy past its reinstatement window, or its term, is refused."""
    if amount <= 0:
        raise UserError("--amount must be more than 0")
    state = states.state_of(conn, policy_id)
    if state.state in ("claimed", "cancelled"):
        raise UserError(f"policy {policy_id} is {state.state}: no premium is due")
    before = account(conn, policy_id, paid_on)
    if state.state == "lapsed":
        _may_reinstate(conn, before, state.since, paid_on)
    conn.execute("insert into premium_payments (policy_id, term_number, amount, paid_on, "
                 "reference, recorded_by) values (%s, %s, %s, %s, %s, %s)",
                 (policy_id, before.term.number, round(amount, 2), paid_on, reference, by))
    after = account(conn, policy_id, paid_on)
    if state.state != "lapsed" or not cleared(after, paid_on):
        return after, None
    # In force again from the day after the arrears are paid (as Taiwan's Insurance Act Art.
    # 116 has it: docs/policies.md), never before the lapse began.
    reinstated = max(state.since, paid_on + timedelta(days=1))
    states.record(conn, policy_id, "active", reinstated, by,
                  reason=f"reinstated: arrears paid on {paid_on}")
    return account(conn, policy_id, paid_on), reinstated


def cleared(acc: Account, on: date) -> bool:
    """Whether every instalment due on or before `on` is paid: no arrears."""
    return acc.next_due is None or acc.next_due > on


def reinstatement_closes(lapsed_from: date, product: Product) -> date | None:
    """The last day a payment can reinstate a policy lapsed from `lapsed_from` (None: the
    product never reinstates)."""
    days = product.reinstatement_days
    return lapsed_from + timedelta(days=days - 1) if days > 0 else None


def _may_reinstate(conn: Conn, acc: Account, lapsed_from: date, paid_on: date) -> None:
    """Refuse a payment to a lapsed policy that could no longer reinstate it."""
    product = product_for_policy(conn, acc.policy_id)
    closes = acc.reinstatable_until
    if closes is None:
        raise UserError(f"policy {acc.policy_id} lapsed on {lapsed_from} and product "
                        f"{product.name} does not reinstate (premiums.reinstatement_days = 0)")
    if paid_on > closes:
        raise UserError(f"policy {acc.policy_id} lapsed on {lapsed_from}; its reinstatement "
                        f"window ({product.reinstatement_days} days, "
                        f"premiums.reinstatement_days) closed on {closes}")
    if paid_on >= acc.term.end:
        raise UserError(f"policy {acc.policy_id} lapsed on {lapsed_from} and its term ends on "
                        f"{acc.term.end}: a lapsed policy is not reinstated at its term's end")


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
    """`glucover premiums table`: each age band's yearly and monthly premium."""
    return [{"product": product.name, "age_from": first, "age_to": last,
             "yearly": product.premium(first, "yearly"),
             "monthly": product.premium(first, "monthly")}
            for first, last, _ in product.bands()]
