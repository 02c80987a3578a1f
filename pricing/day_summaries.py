"""What the day summaries in the database (cgm_days, meter_days) share, written once: which
policy-days readings ingested since the last run touch, and rule 1's validity as SQL with the
values of the ruleset in force (pricing/evaluator.py exclusion_codes is the same test in
NumPy; tests hold the two to the same readings).

A reading belongs to the policy its device was bound to when it was measured, on the local
calendar day of the policy's time zone: `local_day()` and `local_midnight()`, the SQL twins of
kernel/days.py (glucover/migrations/0029_local_days.sql).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg

from pricing.ruleset import Ruleset

Conn = psycopg.Connection[Any]

# The policy-days readings ingested since `since` fall on, into a temporary table `arrived`:
# made once per pricing run (`note_arrivals`), it serves the run's resume points and every
# chunk's summaries, instead of a pass over the new readings per chunk and per step.
# The new readings are first grouped per device and UTC day with their first and last instant
# (a hash over a few hundred thousand groups, where placing each reading on its policy's
# local day sorted millions of rows); each group's local days are those from its first
# reading's to its last's. Where the zone's offset differs at the two (a clock change between
# them), the span widens by CLOCK_BACK each way: a clock set back over midnight puts readings
# of the next day before the last one, or of the day before after the first. A day between
# holding no new reading is summarised again for nothing, never missed.
_ARRIVED_SQL = """
create temporary table arrived on commit drop as
select distinct pd.policy_id, g.day::date as day
from (select device_id, min(measured_at) as first, max(measured_at) as last
      from readings where ingested_at >= %(since)s
      group by device_id, local_day(measured_at, 'UTC')) s
join policy_devices pd on pd.device_id = s.device_id and s.last >= pd.bound_from
     and (pd.bound_to is null or s.first < pd.bound_to)
join policies p on p.policy_id = pd.policy_id
cross join lateral (select greatest(s.first, pd.bound_from) as first,
                           least(s.last, pd.bound_to - interval '1 microsecond') as last) b
cross join lateral (select (b.first at time zone p.timezone) - (b.first at time zone 'UTC')
                           <> (b.last at time zone p.timezone) - (b.last at time zone 'UTC')
                           as changes) c
cross join lateral generate_series(
    local_day(case when c.changes then b.first - %(clock_back)s else b.first end, p.timezone),
    local_day(case when c.changes then b.last + %(clock_back)s else b.last end, p.timezone),
    interval '1 day') g(day)
"""

# The policies' device bindings with the policy's zone and start (`b`), into a temporary table
# `bound`: analysed, its size gives the planner true counts (joined in the statement, policies
# and bindings hid them behind estimates of one row, and the plan looked each reading's
# policy up again: seconds for a few thousand readings).
_BOUND_SQL = """
create temporary table bound on commit drop as
select pd.policy_id, pd.device_id, pd.bound_from, pd.bound_to, p.timezone, p.start_date
from policy_devices pd join policies p on p.policy_id = pd.policy_id
where pd.policy_id = any(%(ids)s)
"""

# The policy-days to summarise, into a temporary table `touched` with the instants of their
# local midnight and the next one's: those readings ingested since the last run fall on, and
# those of the summary table made under other parameters; or (a first run, a bulk load) every
# day of the policies from their start to their meters' last reading.
_TOUCHED_SQL = """
create temporary table touched on commit drop as
with days as (
    select d.policy_id, d.day, p.timezone
    from (select a.policy_id, a.day from arrived a where a.policy_id = any(%(ids)s)
          union
          select policy_id, day from {table} where policy_id = any(%(ids)s)
                                             and summary_key <> %(key)s) d
    join policies p using (policy_id)),
-- The midnights of each day in each zone, worked out once, not once per policy.
midnights as materialized (
    select day, timezone, local_midnight(day, timezone) as midnight,
           local_midnight(day + 1, timezone) as next_midnight
    from (select distinct day, timezone from days) z)
select d.policy_id, d.day, m.midnight, m.next_midnight,
       m.next_midnight - m.midnight = interval '24 hours' as plain
from days d join midnights m using (day, timezone)
"""
_EVERY_DAY_SQL = """
create temporary table touched on commit drop as
select policy_id, day, midnight, next_midnight,
       next_midnight - midnight = interval '24 hours' as plain
from (select policy_id, day, local_midnight(day, timezone) as midnight,
             local_midnight(day + 1, timezone) as next_midnight
from (select distinct b.policy_id, g.day::date as day, b.timezone
      from bound b
      cross join lateral (select min(measured_at) as first, max(measured_at) as last
                          from readings where device_id = b.device_id
                           and measured_at >= b.bound_from
                           and (b.bound_to is null or measured_at < b.bound_to)) e
      cross join lateral generate_series(
          greatest(b.start_date, local_day(e.first, b.timezone)),
          local_day(e.last, b.timezone), interval '1 day') g(day)) days) m
"""

# The readings of the touched policy-days (`t`): each found by its device bound to the policy
# then (`b`) and its time between the day's local midnight and the next one's (the index on
# (device_id, measured_at), 0030_readings_device_time.sql), kept when its local day is that
# day (a clock going back over midnight repeats up to CLOCK_BACK of the day after the next
# midnight); the reading's values (`g`). A day's slots count from `t.midnight`. On a `plain`
# day (24 hours long: no clock change on it) every instant between the two midnights is on
# it, and only the readings after the next midnight need their local day worked out (a fifth
# of the statement's CPU when every reading's was).
# The readings are looked up in a subquery per day (`offset 0` keeps the planner from merging
# it: misled by the validity filters into expecting one reading, it then scanned `touched` once
# per reading). Every day of the policies (a first run): one pass over each device's readings,
# each placed on its day by a hash join with `touched`.
_FROM_TOUCHED_DAYS = """
from touched t
join bound b on b.policy_id = t.policy_id
cross join lateral (
    select * from readings r0
    where r0.device_id = b.device_id
      and r0.measured_at >= t.midnight and r0.measured_at < t.next_midnight + %(clock_back)s
      and r0.measured_at >= b.bound_from and (b.bound_to is null or r0.measured_at < b.bound_to)
      and ((t.plain and r0.measured_at < t.next_midnight)
           or local_day(r0.measured_at, b.timezone) = t.day)
    offset 0) r
"""
_FROM_EVERY_DAY = """
from bound b
cross join lateral (
    select * from readings r0
    where r0.device_id = b.device_id
      and r0.measured_at >= b.bound_from and (b.bound_to is null or r0.measured_at < b.bound_to)
    offset 0) r
join touched t on t.policy_id = b.policy_id and t.day = local_day(r.measured_at, b.timezone)
"""
_DAY_READINGS_SQL = """
{source}
cross join lateral (select glucose_value(r.value_digits, r.value_exponent) as value,
                           glucose_mmol(r.value_digits, r.value_exponent, r.unit) as mmol) g
"""
SUMMARY_WORK_MEM = "320MB"
# The most a zone's clocks have been set back at once (Antarctica/Troll: two hours).
CLOCK_BACK = timedelta(hours=2)


# A summary statement names the readings of its days `{day_readings}`.
DAY_READINGS = "{day_readings}"

# Rule 1 (pricing/evaluator.py): the reading counts under the ruleset's validity, on or after
# the policy's start.
VALID_SQL = """
where t.day >= b.start_date
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


def note_arrivals(conn: Conn, since: datetime | None) -> bool:
    """Make the temporary table `arrived` (the policy-days readings ingested since `since`
    fall on; none when `since` is None) unless this transaction has it; whether it was made.
    In the caller's transaction: dropped at commit."""
    if conn.execute("select to_regclass('pg_temp.arrived')").fetchone() != (None,):
        return False
    if since is None:
        conn.execute("create temporary table arrived (policy_id text, day date) on commit drop")
    else:
        conn.execute(_ARRIVED_SQL, {"since": since, "clock_back": CLOCK_BACK})
    conn.execute("analyze arrived")
    return True


def refresh(conn: Conn, table: str, summary_sql: str, policy_ids: list[str],
            since: datetime | None, key: str, params: dict[str, Any]) -> int:
    """Recompute `table`'s summaries of the policies' days that readings ingested since `since`
    touch (note_arrivals), and those made under another key (every day of the policies when
    `since` is None), with `summary_sql` (an insert naming DAY_READINGS and VALID_SQL; `params`
    are its own); the rows written. In the caller's transaction."""
    # Compiling these statements (JIT) took from 0.1 s to 4 s and saved less; their sorts and
    # hashes of a chunk's readings fit in SUMMARY_WORK_MEM instead of spilling to disk.
    conn.execute("set local jit = off")
    conn.execute(f"set local work_mem = '{SUMMARY_WORK_MEM}'")
    conn.execute(_BOUND_SQL, {"ids": policy_ids})
    conn.execute("analyze bound")
    made = False
    source = _FROM_TOUCHED_DAYS
    if since is None:
        conn.execute(f"delete from {table} where policy_id = any(%s)", (policy_ids,))
        conn.execute(_EVERY_DAY_SQL)
        source = _FROM_EVERY_DAY
    else:
        made = note_arrivals(conn, since)
        conn.execute(_TOUCHED_SQL.format(table=table), {"ids": policy_ids, "key": key})
        conn.execute(f"delete from {table} s using touched t "
                     "where s.policy_id = t.policy_id and s.day = t.day")
    conn.execute("analyze touched")  # its size decides the join's plan
    statement = summary_sql.replace(DAY_READINGS, _DAY_READINGS_SQL.format(source=source))
    cur = conn.execute(statement, {**params, "ids": policy_ids, "clock_back": CLOCK_BACK,
                                   "key": key})
    conn.execute("drop table touched, bound")
    if made:
        conn.execute("drop table arrived")
    return cur.rowcount
