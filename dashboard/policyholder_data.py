"""What the policyholder page shows, assembled from the schema (no Streamlit here).

Today's status is provisional: the pricing evaluator run on today's readings, resumed from the
ledger's state yesterday, exactly as tonight's run will compute it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import psycopg

from kernel import days
from policies.claims import payout_on
from pricing import cgm_metrics, glycaemia, store
from pricing.evaluator import FIGURE_COLUMNS, UNMEASURED, Resume
from pricing.products import evaluate
from pricing.ruleset import Ruleset

HISTORY_DAYS = 90  # readings chart, estimated HbA1c and time in range
LEDGER_ROWS = 366
EXPLAINED_ROWS = 60  # ledger lines shown, each explained with its reading


@dataclass
class PolicySummary:
    policy_id: str
    holder_name: str
    timezone: str
    today: date
    base_sum_insured: float
    ruleset: Ruleset
    ledger: pd.DataFrame  # day, day_status, reading_seq, delta, bonus, sum_insured (+ explain)
    readings: pd.DataFrame  # measured_at (local), value_mmol, meal
    today_status: str | None  # provisional, None before any reading
    today_delta: float
    today_figures: dict[str, float] | None  # a CGM day so far: coverage, time in range (%)
    sum_insured: float  # now, with today's provisional change
    week_change: float
    bonus: float
    streak: int
    # HbA1c estimated from glucose, in %: a CGM wearer's GMI (Bergenstal 2018, over the
    # consensus window), else the ADAG estimate from fingerstick readings; `a1c_formula` names
    # which ("gmi" or "adag"), so the page says it.
    a1c_estimate: float | None
    a1c_formula: str
    time_in_range: float | None
    claim_today: float | None
    cgm: cgm_metrics.CgmWindow | None = None  # a policy priced by a CGM ruleset


def load_summary(conn: psycopg.Connection[Any], policy_id: str,
                 now: datetime | None = None, explained_rows: int = EXPLAINED_ROWS
                 ) -> PolicySummary:
    """The page's figures; the readings reach back far enough to explain the latest
    `explained_rows` ledger lines."""
    policies, bindings = store.load_policies(conn, [policy_id])
    if policies.empty:
        raise LookupError(f"no policy {policy_id}")
    p = policies.iloc[0]
    zone = ZoneInfo(str(p["timezone"]))
    today = days.today(str(zone), now)
    ruleset = store.in_force(conn, str(p["ruleset_name"]))
    ledger = _ledger(conn, policy_id, today)
    readings = _readings(conn, bindings, ledger, today, zone, explained_rows)
    base = float(p["base_sum_insured"])
    bonus = float(ledger["bonus"].iloc[-1]) if len(ledger) else 0.0
    today_status, today_delta, today_figures = _provisional_today(
        policies, bindings, readings, ledger, ruleset, today, bonus)
    week = ledger[ledger["day"] > today - timedelta(days=7)]
    cgm_figures: cgm_metrics.CgmWindow | None = None
    if ruleset.kind == "cgm":  # GMI and the consensus time in range of the last 14 days
        cgm_figures = cgm_metrics.window(readings, ruleset, zone, today)
        a1c_estimate, a1c_formula = cgm_figures.metrics.get("gmi"), "gmi"
        tir = None if "tir_70_180" not in cgm_figures.metrics else \
            cgm_figures.metrics["tir_70_180"] / 100
    else:
        recent = readings[readings["measured_at"] >= readings["measured_at"].max()
                          - timedelta(days=HISTORY_DAYS)] if len(readings) else readings
        figures = glycaemia.of_readings(recent, ruleset)
        a1c_estimate, a1c_formula = figures.est_a1c, "adag"
        tir = figures.time_in_range
    try:
        claim: float | None = payout_on(conn, policy_id, today)[1]
    except ValueError:
        claim = None
    local = readings.assign(measured_at=readings["measured_at"].dt.tz_convert(str(zone)))
    return PolicySummary(
        policy_id=policy_id, holder_name=str(p.get("holder_name", "")), timezone=str(zone),
        today=today, base_sum_insured=base, ruleset=ruleset, ledger=ledger,
        readings=local[["measured_at", "value_mmol", "meal", "seq"]],
        today_status=today_status, today_delta=today_delta, today_figures=today_figures,
        sum_insured=base + bonus + today_delta,
        week_change=float(week["delta"].sum()) + today_delta, bonus=bonus + today_delta,
        streak=in_target_streak(ledger), a1c_estimate=a1c_estimate,
        a1c_formula=a1c_formula, time_in_range=tir,
        claim_today=claim, cgm=cgm_figures)


def _ledger(conn: psycopg.Connection[Any], policy_id: str, today: date) -> pd.DataFrame:
    """The policy's current ledger over the last LEDGER_ROWS days."""
    rows = conn.execute(
        "select day, day_status, reading_seq, delta::float8, bonus::float8, sum_insured::float8,"
        " coverage::float8, time_in_range::float8, below::float8, very_high::float8"
        " from current_ledger where policy_id = %s and day > %s order by day",
        (policy_id, today - timedelta(days=LEDGER_ROWS))).fetchall()
    return pd.DataFrame(rows, columns=["day", "day_status", "reading_seq", "delta", "bonus",
                                       "sum_insured", *FIGURE_COLUMNS])


def _readings(conn: psycopg.Connection[Any], bindings: pd.DataFrame, ledger: pd.DataFrame,
              today: date, zone: ZoneInfo, explained_rows: int) -> pd.DataFrame:
    """Readings for the chart and for every ledger line shown (which may be older)."""
    first_day = today - timedelta(days=HISTORY_DAYS)
    if len(ledger):
        first_day = min(first_day, ledger["day"].iloc[-min(explained_rows, len(ledger))])
    since = datetime.combine(first_day - timedelta(days=1), datetime.min.time(), zone)
    return store.load_readings(conn, sorted(set(bindings["device_id"])), since=since)


def _provisional_today(policies: pd.DataFrame, bindings: pd.DataFrame, readings: pd.DataFrame,
                       ledger: pd.DataFrame, ruleset: Ruleset, today: date, bonus: float
                       ) -> tuple[str | None, float, dict[str, float] | None]:
    """Today's status and change, provisionally: the evaluator resumed from yesterday's ledger
    state, as tonight's run will compute it; and, for a CGM, the day's figures so far. (None,
    0) before any reading today, or when the ledger does not reach yesterday yet."""
    start = policies["start_date"].iloc[0].date()
    if today < start or (len(ledger) and ledger["day"].iloc[-1] >= today):
        return None, 0.0, None
    yesterday_ok = not ledger.empty and ledger["day"].iloc[-1] == today - timedelta(days=1)
    if not (yesterday_ok or today == start):
        return None, 0.0, None
    offset = (today - start).days
    block_start = start + timedelta(days=offset // ruleset.block_days * ruleset.block_days)
    measured = int(((ledger["day"] >= block_start) &
                    ~ledger["day_status"].isin(UNMEASURED)).sum()) if len(ledger) else 0
    resume = Resume(np.array([offset]), np.array([bonus]), np.array([measured]))
    row = evaluate(policies, bindings, readings, ruleset, today, resume).to_frame()
    figures = ({name: float(row[name].iloc[-1]) for name in FIGURE_COLUMNS}
               if len(row) and "coverage" in row else None)
    if not len(row) or str(row["day_status"].iloc[-1]) in UNMEASURED:
        return None, 0.0, figures
    return str(row["day_status"].iloc[-1]), float(row["delta"].iloc[-1]), figures


def in_target_streak(ledger: pd.DataFrame) -> int:
    """Days in target in a row, up to the ledger's last day."""
    streak = 0
    for status in reversed(list(ledger["day_status"])):
        if status != "in_target":
            break
        streak += 1
    return streak
