"""What the day summaries in the database (cgm_days, meter_days) share, written once: which
policy-days readings ingested since the last run touch, and rule 1's validity as SQL with the
values of the ruleset in force (pricing/evaluator.py exclusion_codes is the same test in
NumPy; tests hold the two to the same readings).

A reading belongs to the policy its device was bound to when it was measured, on the local
calendar day of the policy's time zone: `local_day()` and `local_midnight()`, the SQL twins of
kernel/days.py (glucover/migrations/0029_local_days.sql).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

import psycopg

from pricing.ruleset import Ruleset

Conn = psycopg.Connection[Any]

# Policy-days with a reading ingested since `since`, and those of the summary table made under
# other parameters, into a temporary table `touched`.
_TOUCHED_SQL = """
create temporary table touched on commit drop as
select distinct pd.policy_id, local_day(r.measured_at, p.timezone) as day
from readings r
join policy_devices pd on pd.device_id = r.device_id and r.measured_at >= pd.bound_from
     and (pd.bound_to is null or r.measured_at < pd.bound_to)
join policies p on p.policy_id = pd.policy_id
where pd.policy_id = any(%(ids)s)
  and r.ingested_at >= %(since)s
union
select policy_id, day from {table} where policy_id = any(%(ids)s) and summary_key <> %(key)s
"""

# The readings of the touched policy-days (`t`), in one pass over the policies' readings (`r`,
# measured since %(since_day)s, a bound below the earliest touched day): each reading placed at
# the policy its device was bound to then (`pd`, `p`) and on its local day (`d`), kept when
# that policy-day is touched; the instant of the day's local midnight (`m`) and the reading's
# values (`g`). (Looking the readings up per touched day instead read every reading of a device
# once per day: minutes for a year of a few thousand meters.)
# When every day of the policies is recomputed (a first run, a bulk load) the join with
# `touched` is left out: it would keep every row anyway, at the cost of a join as large as the
# readings.
_DAY_READINGS_SQL = """
from readings r
join policy_devices pd on pd.device_id = r.device_id and pd.policy_id = any(%(ids)s)
     and r.measured_at >= pd.bound_from and (pd.bound_to is null or r.measured_at < pd.bound_to)
join policies p on p.policy_id = pd.policy_id
cross join lateral (select local_day(r.measured_at, p.timezone) as day) d
{days}
cross join lateral (select local_midnight(t.day, p.timezone) as midnight) m
cross join lateral (select glucose_value(r.value_digits, r.value_exponent) as value,
                           glucose_mmol(r.value_digits, r.value_exponent, r.unit) as mmol) g
"""
_TOUCHED_DAYS = "join touched t on t.policy_id = pd.policy_id and t.day = d.day"
_EVERY_DAY = "cross join lateral (select pd.policy_id, d.day) t"


# A summary statement names the readings of its days `{day_readings}`.
DAY_READINGS = "{day_readings}"

# Rule 1 (pricing/evaluator.py): the reading counts under the ruleset's validity, on or after
# the policy's start.
VALID_SQL = """
where t.day >= p.start_date
  and r.measured_at >= %(since_day)s
  and r.sample <> all(%(excluded_samples)s)
  and r.source = any(%(sources)s)
  and r.status & %(status_mask)s = 0
  and g.mmol >= %(min_mmol)s and g.mmol <= %(max_mmol)s
  and r.measured_at - r.received_at <= make_interval(secs => %(future_s)s)
  and r.received_at - r.measured_at <= make_interval(secs => %(late_s)s)
"""


def validity_params(rules: Ruleset) -> dict[str, Any]:
    """VALID_SQL's parameters: the values of `rules`."""
    return {"excluded_samples": list(rules.excluded_samples),
            "sources": list(rules.allowed_sources), "status_mask": rules.excluded_status_mask,
            "min_mmol": rules.min_mmol, "max_mmol": rules.max_mmol,
            "future_s": rules.future_tolerance_seconds, "late_s": rules.late_tolerance_seconds}


# Days around a local day that hold all of its instants in UTC, whatever the zone (UTC-12 to
# UTC+14).
ZONE_MARGIN = timedelta(days=2)


def refresh(conn: Conn, table: str, summary_sql: str, policy_ids: list[str],
            since: datetime | None, key: str, params: dict[str, Any]) -> int:
    """Recompute `table`'s summaries of the policies' days that readings ingested since `since`
    touch, and those made under another key (every day of the policies when `since` is None),
    with `summary_sql` (an insert naming DAY_READINGS and VALID_SQL; `params` are its own);
    the rows written. In the caller's transaction."""
    if since is None:
        conn.execute(f"delete from {table} where policy_id = any(%s)", (policy_ids,))
        days, since_day = _EVERY_DAY, datetime.min.replace(tzinfo=UTC)
    else:
        conn.execute(_TOUCHED_SQL.format(table=table),
                     {"ids": policy_ids, "since": since, "key": key})
        conn.execute(f"delete from {table} s using touched t "
                     "where s.policy_id = t.policy_id and s.day = t.day")
        row = conn.execute("select min(day) from touched").fetchone()
        if row is None or row[0] is None:
            conn.execute("drop table touched")
            return 0
        conn.execute("analyze touched")  # its size decides the join's plan
        days, since_day = _TOUCHED_DAYS, datetime.combine(row[0], time(), UTC) - ZONE_MARGIN
    statement = summary_sql.replace(DAY_READINGS, _DAY_READINGS_SQL.format(days=days))
    cur = conn.execute(statement, {**params, "ids": policy_ids, "since_day": since_day,
                                   "key": key})
    if since is not None:
        conn.execute("drop table touched")
    return cur.rowcount
