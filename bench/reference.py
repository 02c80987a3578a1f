"""A straightforward per-policy, per-reading Python implementation of the same rules.

It exists to check the vectorised evaluator (tests assert equal ledgers on random portfolios)
and as the baseline `glucover bench pricing` compares against. Written from the rule text in
pricing/evaluator.py, deliberately sharing none of its code paths.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from kernel.vocabulary import Status
from pricing.ruleset import Ruleset


def _utc(value: Any) -> datetime | None:
    if value is None or pd.isna(value):
        return None
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()


Bindings = dict[str, list[tuple[str, datetime | None, datetime | None]]]


def _by_device_and_policy(readings: pd.DataFrame, bindings: pd.DataFrame
                          ) -> tuple[dict[str, list[dict[str, Any]]], Bindings]:
    by_device: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in readings.to_dict("records"):
        by_device[str(r["device_id"])].append({str(k): v for k, v in r.items()})
    binds: Bindings = defaultdict(list)
    for b in bindings.to_dict("records"):
        binds[str(b["policy_id"])].append(
            (str(b["device_id"]), _utc(b["bound_from"]), _utc(b["bound_to"])))
    return by_device, binds


def _valid(policy: dict[Any, Any], binds: Bindings, by_device: dict[str, list[dict[str, Any]]],
           ruleset: Ruleset) -> Iterator[tuple[date, datetime, dict[str, Any]]]:
    """Rule 1, one reading at a time: (local day, measured_at, reading) of each reading that
    counts for the policy."""
    excluded_bits = {Status[name].value for name in ruleset.excluded_status}
    zone = ZoneInfo(str(policy["timezone"]))
    start = pd.Timestamp(policy["start_date"]).date()
    for device_id, bound_from, bound_to in binds[str(policy["policy_id"])]:
        for reading in by_device.get(device_id, []):
            measured = _utc(reading["measured_at"])
            received = _utc(reading["received_at"])
            assert measured is not None and received is not None
            if bound_from is not None and measured < bound_from:
                continue
            if bound_to is not None and measured >= bound_to:
                continue
            if reading["sample"] in ruleset.excluded_samples:
                continue
            if reading["source"] not in ruleset.allowed_sources:
                continue
            if any(int(reading["status"]) >> bit & 1 for bit in excluded_bits):
                continue
            if not ruleset.min_mmol <= reading["value_mmol"] <= ruleset.max_mmol:
                continue
            if measured - received > timedelta(seconds=ruleset.future_tolerance_seconds):
                continue
            if received - measured > timedelta(seconds=ruleset.late_tolerance_seconds):
                continue
            day = measured.astimezone(zone).date()
            if day >= start:
                yield day, measured, reading


def evaluate_loop(policies: pd.DataFrame, bindings: pd.DataFrame, readings: pd.DataFrame,
                  ruleset: Ruleset, through: date) -> pd.DataFrame:
    by_device, binds = _by_device_and_policy(readings, bindings)
    rows = []
    for p in policies.to_dict("records"):
        start = pd.Timestamp(p["start_date"]).date()
        best: dict[date, tuple[datetime, int, float]] = {}
        for day, measured, reading in _valid(p, binds, by_device, ruleset):
            if reading["meal"] not in ruleset.qualifying_meals:
                continue
            key = (measured, int(reading["seq"]), float(reading["value_mmol"]))
            if day not in best or key[:2] < best[day][:2]:
                best[day] = key

        bonus = 0.0
        measured_days = 0
        day = start
        index = 0
        while day <= through:
            chosen = best.get(day)
            if chosen is None:
                status, step, seq = "missed", ruleset.delta_missed, None
            elif ruleset.target_low <= chosen[2] <= ruleset.target_high:
                status, step, seq = "in_target", ruleset.delta_in_target, chosen[1]
            elif chosen[2] > ruleset.high_above:
                status, step, seq = "high", ruleset.delta_high, chosen[1]
            else:
                status, step, seq = "out_of_target", ruleset.delta_out_of_target, chosen[1]
            before = bonus
            bonus = min(max(bonus + step, ruleset.bonus_min), ruleset.bonus_max)
            if chosen is not None:
                measured_days += 1
            if index % ruleset.block_days == ruleset.block_days - 1:
                if measured_days < ruleset.min_measured_days:
                    bonus = min(max(bonus + ruleset.adherence_penalty, ruleset.bonus_min),
                                ruleset.bonus_max)
                measured_days = 0
            rows.append({
                "policy_id": str(p["policy_id"]), "day": day, "day_status": status,
                "reading_seq": seq, "delta": bonus - before, "bonus": bonus,
                "sum_insured": float(p["base_sum_insured"]) + bonus,
            })
            day += timedelta(days=1)
            index += 1
    return pd.DataFrame(rows, columns=["policy_id", "day", "day_status", "reading_seq", "delta",
                                       "bonus", "sum_insured"])



def _midnight(day: date, zone: ZoneInfo) -> datetime:
    """The instant a local day begins (a nonexistent midnight: the day's first instant)."""
    return datetime.combine(day, time(), zone).astimezone(UTC)


def evaluate_cgm_loop(policies: pd.DataFrame, bindings: pd.DataFrame, readings: pd.DataFrame,
                      ruleset: Ruleset, through: date) -> pd.DataFrame:
    """The CGM rules of pricing/cgm_rules.py, one policy, day and reading at a time.
    `readings` carries value_mgdl."""
    slot = timedelta(minutes=ruleset.slot_minutes)
    by_device, binds = _by_device_and_policy(readings, bindings)
    rows = []
    for p in policies.to_dict("records"):
        zone = ZoneInfo(str(p["timezone"]))
        start = pd.Timestamp(p["start_date"]).date()
        days: dict[date, list[tuple[datetime, float]]] = defaultdict(list)
        for day, measured, reading in _valid(p, binds, by_device, ruleset):
            days[day].append((measured, float(reading["value_mgdl"])))

        bonus = 0.0
        worn_days = 0
        day = start
        index = 0
        while day <= through:
            begin, end = _midnight(day, zone), _midnight(day + timedelta(days=1), zone)
            slots = -(-(end - begin) // slot)
            todays = days.get(day, [])
            covered = len({(m - begin) // slot for m, _ in todays})
            n = len(todays)
            r_in = sum(1 for _, v in todays
                       if ruleset.range_low_mgdl <= v <= ruleset.range_high_mgdl)
            r_low = sum(1 for _, v in todays if v < ruleset.hypo_below_mgdl)
            r_vh = sum(1 for _, v in todays if v > ruleset.very_high_above_mgdl)
            if 100 * covered < ruleset.min_coverage_percent * slots:
                status, step = "insufficient", ruleset.delta_missed
            elif 100 * r_low >= ruleset.hypo_max_percent * n:
                status, step = "hypo_risk", ruleset.delta_hypo_risk
            elif 100 * r_in >= ruleset.in_range_min_percent * n:
                status, step = "in_target", ruleset.delta_in_target
            elif 100 * r_vh >= ruleset.very_high_min_percent * n:
                status, step = "high", ruleset.delta_high
            else:
                status, step = "out_of_target", ruleset.delta_out_of_target
            before = bonus
            bonus = min(max(bonus + step, ruleset.bonus_min), ruleset.bonus_max)
            if status != "insufficient":
                worn_days += 1
            if index % ruleset.block_days == ruleset.block_days - 1:
                if worn_days < ruleset.min_measured_days:
                    bonus = min(max(bonus + ruleset.adherence_penalty, ruleset.bonus_min),
                                ruleset.bonus_max)
                worn_days = 0
            rows.append({
                "policy_id": str(p["policy_id"]), "day": day, "day_status": status,
                "reading_seq": None, "delta": bonus - before, "bonus": bonus,
                "sum_insured": float(p["base_sum_insured"]) + bonus,
                "coverage": 100 * covered / slots,
                "time_in_range": 100 * r_in / n if n else float("nan"),
                "below": 100 * r_low / n if n else float("nan"),
                "very_high": 100 * r_vh / n if n else float("nan"),
            })
            day += timedelta(days=1)
            index += 1
    return pd.DataFrame(rows, columns=["policy_id", "day", "day_status", "reading_seq", "delta",
                                       "bonus", "sum_insured", "coverage", "time_in_range",
                                       "below", "very_high"])
