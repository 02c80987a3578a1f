"""The CGM day summaries in the database (table cgm_days, glucover/migrations/0017): rules 1-2
of pricing/cgm_rules.py done in SQL, set-based, for the policy-days that new readings
touch, so that pricing CGM policies reads one row per policy-day instead of 288 readings.

`refresh` recomputes the touched days from the readings (idempotent: a re-run, a late or an
out-of-order reading gives the same rows as computing everything afresh); `load` returns the
rows as time_in_range.day_summaries would. tests/test_cgm_days.py holds the two to the same
frame, and the engine's ledger to the evaluator's on raw readings.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from typing import Any

import pandas as pd
import psycopg

from kernel.units import MGDL_PER_MMOL
from pricing import day_summaries
from pricing.cgm_rules import SUMMARY_COLUMNS
from pricing.day_summaries import DAY_READINGS, VALID_SQL, validity_params
from pricing.evaluator import validity_key
from pricing.ruleset import Ruleset

Conn = psycopg.Connection[Any]


def summary_key(rules: Ruleset) -> str:
    """The parameters a summary's counts depend on (validity, slots, band edges)."""
    parts = (validity_key(rules), rules.slot_minutes, rules.range_low_mgdl,
             rules.range_high_mgdl, rules.hypo_below_mgdl, rules.very_high_above_mgdl)
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


# Rules 1-2 for the touched days: the slot of a reading counts from the instant of local
# midnight; the value in mg/dL is as sent, or mmol/L x MGDL_PER_MMOL. Counted per slot first,
# then per day: the covered slots are the day's slot groups (a count(distinct) sorted every
# day's readings; two hash aggregates do not).
SUMMARY_SQL = f"""
insert into cgm_days (policy_id, day, summary_key, covered, readings, in_range, low, very_high)
select policy_id, day, %(key)s, count(*), sum(n), sum(in_range), sum(low), sum(very_high)
from (
    select t.policy_id, t.day,
           floor(date_part('epoch', r.measured_at - t.midnight) / %(slot_s)s) as slot,
           count(*) as n,
           count(*) filter (where v.mgdl >= %(range_low)s and v.mgdl <= %(range_high)s)
               as in_range,
           count(*) filter (where v.mgdl < %(hypo)s) as low,
           count(*) filter (where v.mgdl > %(very_high)s) as very_high
    {DAY_READINGS}
    cross join lateral (select case when r.unit = 'mg/dL' then g.value
                                    else g.value * %(mgdl_per_mmol)s end as mgdl) v
    {VALID_SQL}
    group by t.policy_id, t.day, slot
) slots
group by policy_id, day
"""


def refresh(conn: Conn, policy_ids: list[str], rules: Ruleset, since: datetime | None
            ) -> int:
    """Recompute the summaries of the policy-days readings ingested since `since` touch (all
    days when None); the rows written. In the caller's transaction."""
    key = summary_key(rules)
    return day_summaries.refresh(conn, "cgm_days", SUMMARY_SQL, policy_ids, since, key, {
        "slot_s": rules.slot_minutes * 60, "range_low": rules.range_low_mgdl,
        "range_high": rules.range_high_mgdl, "hypo": rules.hypo_below_mgdl,
        "very_high": rules.very_high_above_mgdl, "mgdl_per_mmol": MGDL_PER_MMOL,
        **validity_params(rules)})


def load(conn: Conn, policy_ids: list[str], rules: Ruleset, first: date | None = None
         ) -> pd.DataFrame:
    """The summaries (SUMMARY_COLUMNS) of these policies from `first` on, made under `rules`."""
    rows = conn.execute(
        "select policy_id, day, covered, readings, in_range, low, very_high from cgm_days "
        "where policy_id = any(%s) and summary_key = %s and (%s::date is null or day >= %s) "
        "order by policy_id, day", (policy_ids, summary_key(rules), first, first)).fetchall()
    frame = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    frame["day"] = pd.to_datetime(frame["day"])
    return frame
