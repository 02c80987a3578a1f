"""The CGM day summaries in the database (table cgm_days, glucover/migrations/0017): rules 1-2
of pricing/time_in_range.py done in SQL, set-based, for the policy-days that new readings
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

from devices.wire.vocabulary import MGDL_PER_MMOL
from pricing.evaluator import validity_key
from pricing.ruleset import Ruleset
from pricing.time_in_range import SUMMARY_COLUMNS

Conn = psycopg.Connection[Any]


def summary_key(rules: Ruleset) -> str:
    """The parameters a summary's counts depend on (validity, slots, band edges)."""
    parts = (validity_key(rules), rules.slot_minutes, rules.range_low_mgdl,
             rules.range_high_mgdl, rules.hypo_below_mgdl, rules.very_high_above_mgdl)
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


# Policy-days with a reading ingested since `since` (all of them when null), and those made
# under other parameters. A reading belongs to the policy its device was bound to then, on the
# local calendar day of the policy's time zone.
TOUCHED_SQL = """
create temporary table cgm_touched on commit drop as
select distinct pd.policy_id, (r.measured_at at time zone p.timezone)::date as day
from readings r
join policy_devices pd on pd.device_id = r.device_id and r.measured_at >= pd.bound_from
     and (pd.bound_to is null or r.measured_at < pd.bound_to)
join policies p on p.policy_id = pd.policy_id
where pd.policy_id = any(%(ids)s)
  and (%(since)s::timestamptz is null or r.ingested_at >= %(since)s)
union
select policy_id, day from cgm_days where policy_id = any(%(ids)s) and summary_key <> %(key)s
"""

# Rules 1-2 for the touched days: the slot of a reading counts from the instant of local
# midnight; the value in mg/dL is as sent, or mmol/L x 18.0156.
SUMMARY_SQL = """
insert into cgm_days (policy_id, day, summary_key, covered, readings, in_range, low, very_high)
select t.policy_id, t.day, %(key)s,
       count(distinct floor(extract(epoch from r.measured_at - m.midnight) / %(slot_s)s)),
       count(*),
       count(*) filter (where v.mgdl >= %(range_low)s and v.mgdl <= %(range_high)s),
       count(*) filter (where v.mgdl < %(hypo)s),
       count(*) filter (where v.mgdl > %(very_high)s)
from cgm_touched t
join policies p on p.policy_id = t.policy_id
cross join lateral (select t.day::timestamp at time zone p.timezone as midnight,
                           (t.day + 1)::timestamp at time zone p.timezone as next) m
join policy_devices pd on pd.policy_id = t.policy_id
join readings r on r.device_id = pd.device_id
     and r.measured_at >= m.midnight and r.measured_at < m.next
     and r.measured_at >= pd.bound_from and (pd.bound_to is null or r.measured_at < pd.bound_to)
cross join lateral (select glucose_value(r.value_digits, r.value_exponent) as value,
                           glucose_mmol(r.value_digits, r.value_exponent, r.unit) as mmol) g
cross join lateral (select case when r.unit = 'mg/dL' then g.value
                                else g.value * %(mgdl_per_mmol)s end as mgdl) v
where t.day >= p.start_date
  and r.sample <> all(%(excluded_samples)s)
  and r.source = any(%(sources)s)
  and r.status & %(status_mask)s = 0
  and g.mmol >= %(min_mmol)s and g.mmol <= %(max_mmol)s
  and r.measured_at - r.received_at <= make_interval(secs => %(future_s)s)
  and r.received_at - r.measured_at <= make_interval(secs => %(late_s)s)
group by t.policy_id, t.day
"""


def refresh(conn: Conn, policy_ids: list[str], rules: Ruleset, since: datetime | None
            ) -> int:
    """Recompute the summaries of the policy-days readings ingested since `since` touch (all
    days when None); the rows written. In the caller's transaction."""
    key = summary_key(rules)
    conn.execute(TOUCHED_SQL, {"ids": policy_ids, "since": since, "key": key})
    conn.execute("delete from cgm_days c using cgm_touched t "
                 "where c.policy_id = t.policy_id and c.day = t.day")
    cur = conn.execute(SUMMARY_SQL, {
        "key": key, "slot_s": rules.slot_minutes * 60, "range_low": rules.range_low_mgdl,
        "range_high": rules.range_high_mgdl, "hypo": rules.hypo_below_mgdl,
        "very_high": rules.very_high_above_mgdl, "mgdl_per_mmol": MGDL_PER_MMOL,
        "excluded_samples": list(rules.excluded_samples),
        "sources": list(rules.allowed_sources), "status_mask": rules.excluded_status_mask,
        "min_mmol": rules.min_mmol, "max_mmol": rules.max_mmol,
        "future_s": rules.future_tolerance_seconds, "late_s": rules.late_tolerance_seconds})
    conn.execute("drop table cgm_touched")
    return cur.rowcount


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
