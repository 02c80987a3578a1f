"""What-if back-tests: the stored or a synthetic portfolio replayed under a candidate ruleset
beside its baseline, with expected liability and hypoglycaemia exposure. Pure functions over
the evaluator's frames; I/O lives in the CLI and the dashboard.

Quantities (see docs/domain.md):
- estimated HbA1c and time in range: pricing/glycaemia.py
- annual payout probability: 1 - exp(-rate), rate = base rate x 1.59^(A1c - 7) (UKPDS 35)
- expected liability: sum over policies of payout probability x sum insured at period end
"""


from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

from actuary.synthetic import BASE_ANNUAL_CLAIM_RATE, HAZARD_RATIO_PER_A1C
from pricing import safety
from pricing.evaluator import (
    CHUNK_POLICIES,
    AssignedReadings,
    Ledger,
    assign_readings,
    policy_day_counts,
    validity_key,
)
from pricing.glycaemia import estimated_a1c, in_range
from pricing.products import evaluate
from pricing.ruleset import Ruleset

# Readings for a back-test: a frame holding them all, or a loader giving those of some meters
# (a back-test of a stored portfolio then holds one chunk's readings at a time).
ReadingsSource = pd.DataFrame | Callable[[list[str]], pd.DataFrame]


def final_day(ledger: Ledger) -> pd.DataFrame:
    """Each policy's last ledger row (rows come grouped by policy, days in order)."""
    codes = np.asarray(ledger.policy_id.codes)
    last = np.flatnonzero(np.r_[codes[1:] != codes[:-1], True]) if len(codes) else codes
    return pd.DataFrame({"policy_id": np.asarray(ledger.policy_id.categories)[codes[last]],
                         "bonus": ledger.bonus[last], "sum_insured": ledger.sum_insured[last]})


def payout_probability(a1c: np.ndarray) -> np.ndarray:  # type: ignore[type-arg]
    """Annual probability of a claim at this HbA1c (UKPDS hazard ratio per +1%)."""
    rate = BASE_ANNUAL_CLAIM_RATE * HAZARD_RATIO_PER_A1C ** (np.asarray(a1c) - 7.0)
    return 1.0 - np.exp(-rate)


def policy_glycaemia(policies: pd.DataFrame, bindings: pd.DataFrame, readings: pd.DataFrame,
                     ruleset: Ruleset, through: date,
                     assigned: AssignedReadings | None = None) -> pd.DataFrame:
    """Per policy: mean glucose of its valid readings, estimated HbA1c, time in range (all three
    as pricing/glycaemia.py defines them) and adherence (share of days with a qualifying
    reading)."""
    n_days = policy_day_counts(policies, through)
    if assigned is None:
        assigned, _ = assign_readings(policies, bindings, readings, ruleset, n_days)
    values = readings["value_mmol"].to_numpy()[assigned.row]
    n = len(policies)
    count = np.bincount(assigned.policy, minlength=n)
    total = np.bincount(assigned.policy, weights=values, minlength=n)
    in_range_count = np.bincount(assigned.policy, weights=in_range(values), minlength=n)
    meal_ok = np.asarray(readings["meal"].isin(ruleset.qualifying_meals))[assigned.row]
    width = max(int(n_days.max()) if n else 0, 1)
    grid = np.zeros(n * width, dtype=bool)
    grid[assigned.policy[meal_ok] * width + assigned.day_offset[meal_ok]] = True
    measured_days = grid.reshape(n, width).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        out = pd.DataFrame({
            "policy_id": policies["policy_id"].to_numpy(),
            "readings": count, "mean_mmol": mean,
            "est_a1c": estimated_a1c(mean),
            "time_in_range": in_range_count / count,
            "adherence": measured_days / np.maximum(n_days, 1),
        })
    return out


@dataclass
class BacktestResult:
    ruleset: Ruleset
    baseline: Ruleset
    through: date
    per_policy: pd.DataFrame  # policy_id, segment, final sums under both, liability
    paths: pd.DataFrame  # policy_id, day, sum_insured (candidate), sum_insured_baseline
    by_segment: pd.DataFrame = field(default_factory=pd.DataFrame)
    # Hypoglycaemia in the history each ruleset counts (pricing/safety.py), so an actuary sees
    # whether a candidate rewards a history with more of it than the baseline does.
    exposure: safety.Exposure = field(default_factory=safety.Exposure)
    exposure_baseline: safety.Exposure = field(default_factory=safety.Exposure)

    def summary(self) -> dict[str, float]:
        p = self.per_policy
        return {
            "policies": len(p),
            "total_sum_insured": float(p["sum_insured"].sum()),
            "total_sum_insured_baseline": float(p["sum_insured_baseline"].sum()),
            "expected_liability": float(p["expected_liability"].sum()),
            "expected_liability_baseline": float(p["expected_liability_baseline"].sum()),
            "change_vs_baseline": float(p["sum_insured"].sum() - p["sum_insured_baseline"].sum()),
            "mean_sum_insured": float(p["sum_insured"].mean()) if len(p) else 0.0,
            **{f"hypo_{k}": v for k, v in self.exposure.percentages().items()},
            **{f"hypo_{k}_baseline": v
               for k, v in self.exposure_baseline.percentages().items()},
        }

    def distribution(self, bins: int = 20) -> pd.DataFrame:
        counts, edges = np.histogram(self.per_policy["bonus"], bins=bins)
        return pd.DataFrame({"bonus_from": edges[:-1], "bonus_to": edges[1:],
                             "policies": counts})


@dataclass
class BacktestPart:
    """A back-test of some of the policies: what `combine` needs from each part. Parts of
    disjoint policies combine to the back-test of all of them, so a part may run anywhere (in
    this process, or on a worker of a cluster: actuary/partitioned.py)."""

    finals: pd.DataFrame  # policy_id, bonus, sum_insured on the last day (candidate)
    finals_baseline: pd.DataFrame
    glycaemia: pd.DataFrame  # policy_id, est_a1c, adherence, ...
    paths: pd.DataFrame  # the first policies' daily sums under both rulesets
    exposure: safety.Exposure
    exposure_baseline: safety.Exposure


def backtest_part(policies: pd.DataFrame, bindings: pd.DataFrame, readings: ReadingsSource,
                  candidate: Ruleset, baseline: Ruleset, through: date,
                  progress: Callable[[float], None] | None = None, keep_paths: int = 200,
                  chunk_policies: int = CHUNK_POLICIES,
                  ledgers: Callable[[pd.DataFrame, Ledger, Ledger], None] | None = None
                  ) -> BacktestPart:
    """Replay the history of `policies` under `candidate` and `baseline` with the pricing
    evaluator, a chunk of `chunk_policies` policies at a time. `ledgers`, when given, sees
    each chunk's policies and its two ledgers (candidate, baseline) as they are made (the
    validation pack reads other days of them: actuary/validation.py)."""
    glycaemia: list[pd.DataFrame] = []
    finals: list[pd.DataFrame] = []
    finals_base: list[pd.DataFrame] = []
    path_frame = pd.DataFrame(columns=["policy_id", "day", "sum_insured",
                                       "sum_insured_baseline"])
    n = len(policies)
    exposure, exposure_base = safety.Exposure(), safety.Exposure()
    for start in range(0, max(n, 1), chunk_policies):
        chunk = policies.iloc[start:start + chunk_policies].reset_index(drop=True)
        b = bindings[bindings["policy_id"].isin(set(chunk["policy_id"]))]
        if callable(readings):
            r = readings(sorted(set(b["device_id"])))
        else:
            r = readings[readings["device_id"].isin(set(b["device_id"]))]
        # Rule 1 once per chunk when both rulesets accept the same readings.
        n_days = policy_day_counts(chunk, through)
        assigned, _ = assign_readings(chunk, b, r, candidate, n_days)
        same = validity_key(candidate) == validity_key(baseline)
        assigned_base = assigned if same else assign_readings(chunk, b, r, baseline, n_days)[0]
        cand_ledger = evaluate(chunk, b, r, candidate, through, assigned=assigned)
        base_ledger = evaluate(chunk, b, r, baseline, through, assigned=assigned_base)
        if ledgers is not None:
            ledgers(chunk, cand_ledger, base_ledger)
        values = r["value_mmol"].to_numpy(dtype=np.float64)
        exposure.add(values[assigned.row], assigned.policy, assigned.day_offset, n_days)
        exposure_base.add(values[assigned_base.row], assigned_base.policy,
                          assigned_base.day_offset, n_days)
        glycaemia.append(policy_glycaemia(chunk, b, r, candidate, through, assigned))
        finals.append(final_day(cand_ledger))
        finals_base.append(final_day(base_ledger))
        if start == 0 and keep_paths:
            # Both ledgers list the same policy-days in the same order; categories are the
            # chunk's policies in order, so the first `keep_paths` have the smallest codes.
            mask = np.asarray(cand_ledger.policy_id.codes) < keep_paths
            path_frame = pd.DataFrame({
                "policy_id": np.asarray(cand_ledger.policy_id)[mask],
                "day": cand_ledger.day[mask], "sum_insured": cand_ledger.sum_insured[mask],
                "sum_insured_baseline": base_ledger.sum_insured[mask]})
        if progress:
            progress(min((start + chunk_policies) / max(n, 1), 1.0))
    empty = pd.DataFrame(columns=["policy_id", "bonus", "sum_insured"])
    return BacktestPart(pd.concat(finals) if finals else empty,
                        pd.concat(finals_base) if finals_base else empty,
                        pd.concat(glycaemia), path_frame, exposure, exposure_base)


def backtest(policies: pd.DataFrame, bindings: pd.DataFrame, readings: ReadingsSource,
             candidate: Ruleset, baseline: Ruleset, through: date,
             progress: Callable[[float], None] | None = None, keep_paths: int = 200,
             chunk_policies: int = CHUNK_POLICIES) -> BacktestResult:
    """Replay the history under `candidate` and `baseline`, in this process."""
    part = backtest_part(policies, bindings, readings, candidate, baseline, through, progress,
                         keep_paths, chunk_policies)
    return combine([part], policies, candidate, baseline, through)


def combine(parts: list[BacktestPart], policies: pd.DataFrame, candidate: Ruleset,
            baseline: Ruleset, through: date) -> BacktestResult:
    """The back-test of all the parts' policies (disjoint), as if run at once: per-policy
    figures, liabilities, segments and exposures. Paths are the first part's."""
    cand = pd.concat([p.finals for p in parts])
    base = pd.concat([p.finals_baseline for p in parts])
    exposure, exposure_base = safety.Exposure(), safety.Exposure()
    for p in parts:
        exposure.merge(p.exposure)
        exposure_base.merge(p.exposure_baseline)
    per = cand.merge(
        base.rename(columns={"bonus": "bonus_baseline", "sum_insured": "sum_insured_baseline"}),
        on="policy_id")
    per["policy_id"] = per["policy_id"].astype(str)
    glyc = pd.concat([p.glycaemia for p in parts])
    glyc["policy_id"] = glyc["policy_id"].astype(str)
    per = per.merge(glyc[["policy_id", "est_a1c", "adherence"]], on="policy_id", how="left")
    segment = policies.set_index("policy_id")["segment"] if "segment" in policies else None
    per["segment"] = per["policy_id"].map(segment) if segment is not None else "all"
    prob = payout_probability(per["est_a1c"].fillna(7.0).to_numpy())
    per["payout_probability"] = prob
    per["expected_liability"] = prob * per["sum_insured"]
    per["expected_liability_baseline"] = prob * per["sum_insured_baseline"]
    by_segment = per.groupby("segment").agg(
        policies=("policy_id", "count"), mean_sum_insured=("sum_insured", "mean"),
        mean_sum_insured_baseline=("sum_insured_baseline", "mean"),
        expected_liability=("expected_liability", "sum"),
        expected_liability_baseline=("expected_liability_baseline", "sum"),
        mean_est_a1c=("est_a1c", "mean"), mean_adherence=("adherence", "mean"),
    ).reset_index()
    by_segment["change_vs_baseline"] = (by_segment["mean_sum_insured"]
                                        - by_segment["mean_sum_insured_baseline"])
    return BacktestResult(candidate, baseline, through, per, parts[0].paths, by_segment,
                          exposure, exposure_base)
