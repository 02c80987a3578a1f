"""The portfolio's figures as the actuary's workbench shows them: policies, sums insured and
the bonus on the last priced day, claims, time in range of the meters and of the CGMs. The
queries live here, beside the ledger and summaries pricing writes; the page
(dashboard/views/actuary.py) only calls these functions.

The queries were tuned for 100,000 policies x 365 days (`glucover bench dashboard --explain`
prints their plans; README "The heaviest dashboard queries")."""

from __future__ import annotations

from typing import Any

import psycopg

Conn = psycopg.Connection[Any]

TIR_WINDOW_DAYS = 30

# The portfolio on the last priced day (the nightly run prices every policy through yesterday):
# one day's rows by the ledger's day index (0021), not every policy-day. The heaviest queries
# of the workbench are named, so `glucover bench dashboard --explain` shows their plans.
KPI_SQL = (
    "select count(*) as policies, coalesce(sum(sum_insured), 0)::float8 as total, "
    "coalesce(avg(bonus), 0)::float8 as mean_bonus, "
    "coalesce(avg((day_status = 'in_target')::int), 0)::float8 as in_target_share "
    "from current_ledger where day = (select max(day) from sum_insured_ledger)")
# The window ends at the last priced day (the ledger's day index; a max over the daily summary
# itself would read all of it: on TimescaleDB every bucket of the continuous aggregate), and
# travels as a bound value, so the planner sees a month of days and takes the day index.
LAST_PRICED_SQL = "select max(day) from sum_insured_ledger"
TIR_SQL = (
    "select sum(in_range_readings)::float8 / nullif(sum(readings), 0) "
    "from meter_days where day > %s::date - make_interval(days => %s)")
CLAIMS_SQL = "select count(*) from claims"
POLICIES_SQL = "select count(*) from policies"
CGM_SQL = (
    "select count(distinct policy_id)::int as policies, "
    "sum(in_range)::float8 / nullif(sum(readings), 0) as time_in_range, "
    "sum(low)::float8 / nullif(sum(readings), 0) as below_54 "
    "from cgm_days where day > (select max(day) from cgm_days) - %s")
# Coverage on the days worn from the ledger's CGM rows of the same days (their figures are
# set; a partial index by day finds them), the latest run's row of each policy-day.
CGM_COVERAGE_SQL = (
    "select avg(coverage)::float8 / 100 from (select distinct on (policy_id, day) coverage "
    "from sum_insured_ledger where coverage is not null and time_in_range is not null "
    "and day > (select max(day) from cgm_days) - %s "
    "order by policy_id, day, run_id desc) latest")


def _one(conn: Conn, sql: str, params: tuple[Any, ...] | None = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    return None if row is None else row[0]


def kpis(conn: Conn) -> dict[str, Any]:
    """Policies priced on the last priced day, their total sum insured, mean bonus and share
    in target; claims and policies on record; the meters' time in range."""
    cur = conn.execute(KPI_SQL)
    names = [d.name for d in cur.description or []]
    row = cur.fetchone()
    first = dict(zip(names, row, strict=True)) if row else {}
    return {**first, "claims": _one(conn, CLAIMS_SQL), "all_policies": _one(conn, POLICIES_SQL),
            "time_in_range": time_in_range(conn)}


def time_in_range(conn: Conn) -> float | None:
    """Share of the portfolio's valid readings in range over the TIR_WINDOW_DAYS days up to
    the last priced day (and any after it), from the daily summary (meter_days: validity
    and band as pricing/glycaemia.py). None before the summary has data (plain PostgreSQL:
    before the first pricing run)."""
    try:
        with conn.transaction():  # a savepoint: the connection stays usable after the error
            last = _one(conn, LAST_PRICED_SQL)
            if last is None:
                return None
            value = _one(conn, TIR_SQL, (last, TIR_WINDOW_DAYS))
    except psycopg.errors.ObjectNotInPrerequisiteState:  # never refreshed
        return None
    return None if value is None else float(value)


def cgm_portfolio(conn: Conn) -> dict[str, float] | None:
    """The CGM policies over the last TIR_WINDOW_DAYS of their day summaries (cgm_days, made
    under cgm-default's bands): how many, time in range, time below 54 mg/dL (shares of valid
    readings), and the sensor's coverage of the days it was worn, as the ledger has it (rule 2:
    covered slots of the day's own slots). None without CGM policies."""
    cur = conn.execute(CGM_SQL, (TIR_WINDOW_DAYS,))
    names = [d.name for d in cur.description or []]
    row = dict(zip(names, cur.fetchone() or (), strict=True))
    coverage = _one(conn, CGM_COVERAGE_SQL, (TIR_WINDOW_DAYS,))
    if not row.get("policies"):
        return None
    return {**{k: float(v or 0.0) for k, v in row.items()}, "coverage": float(coverage or 0.0)}
