"""A policy's terms and their renewal (docs/policies.md).

A policy under administration has terms (policy_terms, 0056): the first from its start, each
renewal another from the day after the last ended, lasting the product's term (default a
year). The pricing engine stops a policy's ledger at its last term's end: without a renewal the
cover ends there. Renewal writes the next term with the bonus it opens with (the product's
renewal rule: carried, reset or partly carried) and the new term's opening row in the ledger,
and, when the product says so, adjusts the premium by the last term's status. Policies the
simulator provisioned before enrolment existed have no terms: one implied first term, open
ended, no premiums.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from glucover.errors import UserError
from policies import states
from policies.product import FREQUENCIES, Product, product_for

Conn = psycopg.Connection[Any]


@dataclass(frozen=True)
class Term:
    number: int
    start: date
    end: date  # the last day covered
    frequency: str = "yearly"
    instalment: float = 0.0
    adjustment: float = 0.0  # the premium adjustment in force, a fraction
    opening_bonus: float = 0.0
    administered: bool = True  # False: implied for a policy without terms


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


def term_end(start: date, product: Product) -> date:
    return add_months(start, product.term_months) - timedelta(days=1)


def age_in(birth_year: int | None, day: date) -> int:
    """Age in the year of `day` (the premium table's and eligibility's age)."""
    return day.year - (birth_year if birth_year is not None else day.year)


def opening_bonus(closing: float, product: Product) -> float:
    """The bonus a renewed term opens with: the closing bonus carried whole (`carried`), none
    (`reset`), or carried_share of a positive one (`partly_carried`; a negative bonus is
    carried whole, so a renewal never wipes out a penalty)."""
    if product.bonus_at_renewal == "reset":
        return 0.0
    if product.bonus_at_renewal == "partly_carried" and closing > 0:
        return round(closing * product.carried_share, 2)
    return closing


def next_adjustment(previous: float, in_target_share: float | None, product: Product) -> float:
    """The premium adjustment in force after a renewal: the previous one plus this term's,
    linear in the share of measured days in target (adjustment_best at 1, adjustment_worst at
    0), the total within +- adjustment_cap. Unchanged when the product has it off or nothing
    was measured."""
    if product.premium_adjustment != "on" or in_target_share is None:
        return previous
    step = product.adjustment_worst + (product.adjustment_best - product.adjustment_worst) * (
        in_target_share)
    cap = product.adjustment_cap
    return round(min(cap, max(-cap, previous + step)), 4)


def terms(conn: Conn, policy_id: str) -> tuple[list[Term], Product, tuple[Any, ...]]:
    """The policy's terms (one implied, not administered, when it has none), its product and
    (start_date, birth_year, base_sum_insured)."""
    row = conn.execute("select start_date, ruleset_name, birth_year, base_sum_insured::float8 "
                       "from policies where policy_id = %s", (policy_id,)).fetchone()
    if row is None:
        raise UserError(f"no policy {policy_id!r}")
    product = product_for(str(row[1]))
    rows = conn.execute(
        "select term_number, starts, ends, frequency, instalment::float8, adjustment::float8, "
        "opening_bonus::float8 from policy_terms where policy_id = %s order by term_number",
        (policy_id,)).fetchall()
    found = [Term(int(r[0]), r[1], r[2], str(r[3]), float(r[4]), float(r[5]), float(r[6]))
             for r in rows]
    if not found:
        found = [Term(1, row[0], term_end(row[0], product), administered=False)]
    return found, product, (row[0], row[2], row[3])


def product_for_policy(conn: Conn, policy_id: str) -> Product:
    return terms(conn, policy_id)[1]


def open_first_term(conn: Conn, policy_id: str, frequency: str, actor: str,
                    product: Product | None = None) -> Term:
    """Put a policy under administration: its first term from its start, with the premium of
    its age band and frequency (under its product, or `product`)."""
    if frequency not in FREQUENCIES:
        raise UserError(f"frequency must be one of {', '.join(FREQUENCIES)}")
    found, own, (start, birth_year, _) = terms(conn, policy_id)
    product = product or own
    if found[0].administered:
        raise UserError(f"policy {policy_id} has terms already")
    term = Term(1, start, term_end(start, product), frequency,
                product.premium(age_in(birth_year, start), frequency))
    _insert(conn, policy_id, term, actor)
    return term


def renew(conn: Conn, policy_id: str, actor: str, frequency: str | None = None,
          product: Product | None = None) -> Term:
    """The next term, its opening bonus by the product's rule, and its opening ledger row.
    The ledger must reach the last term's end (the closing bonus is its last day's)."""
    found, own, (_, birth_year, base) = terms(conn, policy_id)
    product = product or own
    last = found[-1]
    if not last.administered:
        raise UserError(f"policy {policy_id} has no terms (provisioned before enrolment): "
                        "nothing to renew")
    state = states.state_of(conn, policy_id)
    if state.state not in ("active", "expired"):
        raise UserError(f"policy {policy_id} is {state.state} since {state.since}: only an "
                        "active or expired policy is renewed")
    closing = conn.execute(
        "select bonus::float8, ruleset_name, ruleset_version from current_ledger "
        "where policy_id = %s and day = %s", (policy_id, last.end)).fetchone()
    if closing is None:
        raise UserError(f"the ledger of {policy_id} does not reach the term's end {last.end} "
                        f"yet: run `glucover price run --through {last.end}` first")
    start = last.end + timedelta(days=1)
    frequency = frequency or last.frequency
    if frequency not in FREQUENCIES:
        raise UserError(f"frequency must be one of {', '.join(FREQUENCIES)}")
    adjustment = next_adjustment(last.adjustment, _in_target_share(conn, policy_id, last),
                                 product)
    premium = product.premium(age_in(birth_year, start), frequency)
    term = Term(last.number + 1, start, term_end(start, product), frequency,
                round(premium * (1 + adjustment), 2), adjustment,
                opening_bonus(float(closing[0]), product))
    _insert(conn, policy_id, term, actor)
    states.record(conn, policy_id, "active", start, actor, reason=f"renewed: term "
                  f"{term.number}")
    _opening_row(conn, policy_id, term, float(closing[0]), float(base), str(closing[1]),
                 int(closing[2]))
    return term


def _in_target_share(conn: Conn, policy_id: str, term: Term) -> float | None:
    row = conn.execute(
        "select count(*) filter (where day_status = 'in_target'), count(*) filter (where "
        "day_status <> 'missed') from current_ledger where policy_id = %s and day between %s "
        "and %s", (policy_id, term.start, term.end)).fetchone()
    assert row is not None
    return None if not row[1] else int(row[0]) / int(row[1])


def _insert(conn: Conn, policy_id: str, term: Term, actor: str) -> None:
    conn.execute("insert into policy_terms (policy_id, term_number, starts, ends, frequency, "
                 "instalment, adjustment, opening_bonus, actor) values (%s, %s, %s, %s, %s, "
                 "%s, %s, %s, %s)", (policy_id, term.number, term.start, term.end,
                                     term.frequency, term.instalment, term.adjustment,
                                     term.opening_bonus, actor))


def _opening_row(conn: Conn, policy_id: str, term: Term, closing: float, base: float,
                 ruleset_name: str, ruleset_version: int) -> None:
    """The new term's first day in the ledger, as it opens: no reading yet, the opening
    bonus. The pricing engine re-rates that day from the opening bonus when its readings come
    (pricing/engine.py)."""
    row = conn.execute("insert into pricing_runs (through, finished_at, policies, rows_added) "
                       "values (%s, now(), 1, 1) returning run_id", (term.start,)).fetchone()
    assert row is not None
    conn.execute(
        "insert into sum_insured_ledger (policy_id, day, run_id, day_status, delta, bonus, "
        "sum_insured, ruleset_name, ruleset_version) values (%s, %s, %s, 'missed', %s, %s, %s, "
        "%s, %s)", (policy_id, term.start, row[0], round(term.opening_bonus - closing, 2),
                    term.opening_bonus, round(base + term.opening_bonus, 2), ruleset_name,
                    ruleset_version))


def expire_due(conn: Conn, as_of: date, actor: str) -> list[str]:
    """Active policies whose last term ended before `as_of` without a renewal: expired from
    the day after it ended."""
    rows = conn.execute(
        "select t.policy_id, max(t.ends) from policy_terms t join policy_state s "
        "using (policy_id) where s.state = 'active' group by t.policy_id "
        "having max(t.ends) < %s order by 1", (as_of,)).fetchall()
    for policy_id, ends in rows:
        states.record(conn, str(policy_id), "expired", ends + timedelta(days=1), actor,
                      reason="term ended without renewal")
    return [str(r[0]) for r in rows]


def policy_summary(conn: Conn, policy_id: str, today: date | None = None) -> dict[str, Any]:
    found, product, (start, _, _) = terms(conn, policy_id)
    state = states.state_of(conn, policy_id)
    today = today or datetime.now(UTC).date()
    term = next((t for t in found if t.start <= today <= t.end), found[-1])
    return {"policy_id": policy_id, "product": product.name, "state": state.state,
            "state_since": state.since.isoformat(), "start_date": start.isoformat(),
            "term_number": term.number, "term_start": term.start.isoformat(),
            "term_end": term.end.isoformat(), "administered": term.administered,
            "frequency": term.frequency if term.administered else None,
            "instalment": term.instalment if term.administered else None,
            "premium_adjustment": term.adjustment,
            "opening_bonus": term.opening_bonus,
            "waiting_period_ends": (start + timedelta(days=product.waiting_period_days)
                                    ).isoformat(),
            "terms": [{"term_number": t.number, "term_start": t.start.isoformat(),
                       "term_end": t.end.isoformat()} for t in found],
            "history": states.history(conn, policy_id)}
