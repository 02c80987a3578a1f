"""Claims for the actuary's workbench: incurred claims, payouts and the loss ratio (claims /
earned premium) by product and month (docs/claims.md).

Incurred: approved claims (and paid ones) by the month of their event, at their payout.
Earned premium: each policy earns its yearly premium (its term's instalments a year, or for a
policy without terms the product's table at its age) pro rata for every day it is in force in
the month, until its cover ended (claimed, cancelled, lapsed, expired)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
import psycopg

from policies.premiums import due_dates
from policies.product import product_for
from policies.terms import Term, age_in

Conn = psycopg.Connection[Any]


def _yearly_premium(product_name: str, birth_year: int | None, start: date,
                    terms: list[Term]) -> float:
    product = product_for(product_name)
    if terms:
        last = terms[-1]
        return last.instalment * len(due_dates(last, product)) * 12 / product.term_months
    return product.yearly_premium(age_in(birth_year, start))


def earned_premium(conn: Conn, today: date | None = None) -> pd.DataFrame:
    """product, month (YYYY-MM), earned_premium: days in force in the month x yearly / 365."""
    today = today or datetime.now(UTC).date()
    rows = conn.execute(
        """select p.policy_id, p.ruleset_name, p.birth_year, p.start_date,
                  to_char(m, 'YYYY-MM'),
                  least(e.until, (m + interval '1 month')::date)
                      - greatest(p.start_date, m::date)
           from policies p join policy_state s using (policy_id)
           cross join lateral (select case when s.state in ('active', 'applied') then %(t)s
                                           else least(%(t)s, s.since) end as until) e
           cross join lateral generate_series(date_trunc('month', p.start_date),
                                              e.until - 1, interval '1 month') m
           where e.until > p.start_date""", {"t": today}).fetchall()
    frame = pd.DataFrame(rows, columns=["policy_id", "product", "birth_year", "start", "month",
                                        "days"])
    if frame.empty:
        return pd.DataFrame(columns=["product", "month", "earned_premium"])
    term_rows = conn.execute(
        "select policy_id, term_number, starts, ends, frequency, instalment::float8 "
        "from policy_terms order by policy_id, term_number").fetchall()
    by_policy: dict[str, list[Term]] = {}
    for r in term_rows:
        by_policy.setdefault(str(r[0]), []).append(Term(int(r[1]), r[2], r[3], r[4], r[5]))
    firsts = frame.drop_duplicates("policy_id")
    yearly = {pid: _yearly_premium(str(product), None if pd.isna(born) else int(born), start,
                                   by_policy.get(str(pid), []))
              for pid, product, born, start in zip(firsts["policy_id"], firsts["product"],
                                                   firsts["birth_year"], firsts["start"],
                                                   strict=True)}
    frame["earned_premium"] = frame["days"] * frame["policy_id"].map(yearly) / 365.0
    return frame.groupby(["product", "month"], as_index=False).agg(
        earned_premium=("earned_premium", "sum"))


def claims_by_month(conn: Conn, today: date | None = None) -> pd.DataFrame:
    """product, month, claims_filed, claims_approved, incurred, paid, earned_premium,
    loss_ratio (incurred / earned premium)."""
    rows = conn.execute(
        """select p.ruleset_name, c.event_date, s.status,
                  (select amount::float8 from claim_events e where e.claim_id = c.claim_id
                     and e.kind = 'approved' order by event_id desc limit 1),
                  (select amount::float8 from claim_events e where e.claim_id = c.claim_id
                     and e.kind = 'paid' order by event_id desc limit 1)
           from claims c join claim_status s using (claim_id)
           join policies p using (policy_id)""").fetchall()
    claims = pd.DataFrame(rows, columns=["product", "event_date", "status", "approved", "paid"])
    claims["month"] = pd.to_datetime(claims["event_date"]).dt.strftime("%Y-%m")
    claims["incurred"] = claims["approved"].fillna(claims["paid"])
    per = claims.groupby(["product", "month"], as_index=False).agg(
        claims_filed=("status", "size"),
        claims_approved=("incurred", "count"),
        incurred=("incurred", "sum"), paid=("paid", "sum"))
    out = earned_premium(conn, today).merge(per, on=["product", "month"], how="outer")
    for column in ("claims_filed", "claims_approved"):
        out[column] = out[column].fillna(0).astype(int)
    for column in ("incurred", "paid", "earned_premium"):
        out[column] = out[column].fillna(0.0).round(2)
    out["loss_ratio"] = (out["incurred"] / out["earned_premium"]).where(
        out["earned_premium"] > 0)
    return out.sort_values(["product", "month"]).reset_index(drop=True)
