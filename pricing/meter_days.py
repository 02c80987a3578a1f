"""The fingerstick day summaries in the database (table meter_days, glucover/migrations/0029):
per policy and local calendar day, the valid readings under the ruleset in force (rule 1 of
pricing/evaluator.py), those taken before a meal, their mean, least and greatest value and
those in the fingerstick time-in-range band (kernel/glucose.py). The workbench's portfolio time
in range and the daily summary (policy_daily_summary) read them; pricing/glycaemia.py gives
the same figures from raw readings (tests/test_glycaemia.py).

Kept like cgm_days (pricing/cgm_days.py): each pricing run recomputes the policy-days that
readings ingested since its last run touch, and those made under other parameters.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import psycopg

from kernel import glucose
from kernel.vocabulary import Meal
from pricing import day_summaries
from pricing.day_summaries import DAY_READINGS, VALID_SQL, validity_params
from pricing.evaluator import validity_key
from pricing.ruleset import Ruleset

Conn = psycopg.Connection[Any]

PRE_MEAL = (Meal.FASTING.value, Meal.PREPRANDIAL.value)

SUMMARY_SQL = f"""
insert into meter_days (policy_id, day, summary_key, readings, pre_meal_readings, mean_mmol,
                        min_mmol, max_mmol, in_range_readings)
select t.policy_id, t.day, %(key)s, count(*),
       count(*) filter (where r.meal = any(%(pre_meal)s)),
       avg(g.mmol), min(g.mmol), max(g.mmol),
       count(*) filter (where g.mmol >= %(tir_low)s and g.mmol <= %(tir_high)s)
{DAY_READINGS}
{VALID_SQL}
group by t.policy_id, t.day
"""


def summary_key(rules: Ruleset) -> str:
    """The parameters a summary depends on: the ruleset's validity (the band is the
    kernel's)."""
    parts = (validity_key(rules), glucose.FINGERSTICK_RANGE_MMOL, PRE_MEAL)
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def refresh(conn: Conn, policy_ids: list[str], rules: Ruleset, since: datetime | None) -> int:
    """Recompute the summaries of the policy-days readings ingested since `since` touch (all
    days when None); the rows written. In the caller's transaction."""
    key = summary_key(rules)
    low, high = glucose.FINGERSTICK_RANGE_MMOL
    return day_summaries.refresh(conn, "meter_days", SUMMARY_SQL, policy_ids, since, key, {
        "pre_meal": list(PRE_MEAL), "tir_low": low, "tir_high": high,
        **validity_params(rules)})
