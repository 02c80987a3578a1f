"""Actuarial workbench: what-if back-tests, expected liability, the claim-frequency GLM and the
gaming report. Pure functions over the evaluator's frames; I/O lives in the CLI and dashboard.

Quantities (see docs/domain.md):
- estimated HbA1c and time in range: pricing/glycaemia.py
- annual payout probability: 1 - exp(-rate), rate = base rate x 1.59^(A1c - 7) (UKPDS 35)
- expected liability: sum over policies of payout probability x sum insured at period end
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import date

import numpy as np
import numpy.typing as npt
import pandas as pd

from kernel.sequence import SEQ_MODULO
from pricing import safety
from pricing.evaluator import (
    CHUNK_POLICIES,
    EXCLUSION_REASONS,
    AssignedReadings,
    Ledger,
    assign_readings,
    policy_day_counts,
    validity_key,
)
from pricing.glycaemia import estimated_a1c, in_range
from pricing.products import evaluate
from pricing.ruleset import RULESET_OF_KIND, Ruleset, builtin_or_default
from pricing.synthetic import BASE_ANNUAL_CLAIM_RATE, HAZARD_RATIO_PER_A1C, Portfolio

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
    this process, or on a worker of a cluster: pricing/partitioned.py)."""

    finals: pd.DataFrame  # policy_id, bonus, sum_insured on the last day (candidate)
    finals_baseline: pd.DataFrame
    glycaemia: pd.DataFrame  # policy_id, est_a1c, adherence, ...
    paths: pd.DataFrame  # the first policies' daily sums under both rulesets
    exposure: safety.Exposure
    exposure_baseline: safety.Exposure


def backtest_part(policies: pd.DataFrame, bindings: pd.DataFrame, readings: ReadingsSource,
                  candidate: Ruleset, baseline: Ruleset, through: date,
                  progress: Callable[[float], None] | None = None, keep_paths: int = 200,
                  chunk_policies: int = CHUNK_POLICIES) -> BacktestPart:
    """Replay the history of `policies` under `candidate` and `baseline` with the pricing
    evaluator, a chunk of `chunk_policies` policies at a time."""
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


# ---------------------------------------------------------------- GLM


@dataclass
class GlmResult:
    table: pd.DataFrame  # term, coef, std_err, ci_low, ci_high, rate_ratio, rr_low, rr_high, p
    n: int
    claims: int
    exposure_years: float
    deviance: float

    def rate_ratio(self, term: str) -> tuple[float, float, float]:
        row = self.table.set_index("term").loc[term]
        return (float(str(row["rate_ratio"])), float(str(row["rr_low"])),
                float(str(row["rr_high"])))


def claim_frequency_glm(frame: pd.DataFrame) -> GlmResult:
    """Poisson GLM, log link, log(exposure) offset: claims ~ est_a1c + adherence + age band.
    `frame` needs claims, exposure_years, est_a1c, adherence, age_band."""
    import statsmodels.api as sm

    data = frame.dropna(subset=["est_a1c", "adherence"]).copy()
    bands = pd.get_dummies(data["age_band"], prefix="age", drop_first=False, dtype=float)
    bands = bands.drop(columns=[c for c in ("age_50-64",) if c in bands])  # reference band
    exog = pd.concat([data[["est_a1c", "adherence"]].astype(float), bands], axis=1)
    exog = sm.add_constant(exog, has_constant="add")
    model = sm.GLM(data["claims"].astype(float), exog, family=sm.families.Poisson(),
                   exposure=data["exposure_years"].astype(float))
    fit = model.fit()
    ci = fit.conf_int(alpha=0.05)
    table = pd.DataFrame({
        "term": fit.params.index, "coef": fit.params.to_numpy(),
        "std_err": fit.bse.to_numpy(), "ci_low": ci[0].to_numpy(), "ci_high": ci[1].to_numpy(),
        "p_value": fit.pvalues.to_numpy(),
    })
    table["rate_ratio"] = np.exp(table["coef"])
    table["rr_low"] = np.exp(table["ci_low"])
    table["rr_high"] = np.exp(table["ci_high"])
    return GlmResult(table, len(data), int(data["claims"].sum()),
                     float(data["exposure_years"].sum()), float(fit.deviance))


def glm_on_synthetic(portfolio: Portfolio, ruleset: Ruleset, through: date) -> GlmResult:
    glyc = policy_glycaemia(portfolio.policies, portfolio.bindings, portfolio.readings, ruleset,
                            through)
    frame = portfolio.claims.merge(glyc, on="policy_id").merge(
        portfolio.policies[["policy_id", "age_band"]], on="policy_id")
    return claim_frequency_glm(frame)


# ---------------------------------------------------------------- gaming


def permissive(ruleset: Ruleset) -> Ruleset:
    """The same ruleset with every anti-gaming exclusion switched off."""
    return replace(ruleset, name=ruleset.name + "-permissive", excluded_samples=(),
                   allowed_sources=("meter", "manual"), excluded_status=(),
                   future_tolerance_seconds=10**9, late_tolerance_seconds=10**9)


@dataclass
class GamingReport:
    by_segment: pd.DataFrame  # segment, mean bonus with and without exclusions, gap, flagged
    exclusions: pd.DataFrame  # segment, reason, readings
    clock_inversions: pd.DataFrame  # device_id, inversions (seq up, time back)
    flagged_policies: pd.DataFrame  # policy_id, segment, bonus, bonus_without_exclusions, gap
    # Safety: segment, policies, mean bonus, % of policy-days with a valid reading below 3.9
    # and below 3.0 mmol/L, flagged; and the policies rewarded while often hypoglycaemic.
    safety: pd.DataFrame
    hypo_rewarded: pd.DataFrame  # policy_id, segment, bonus, days_below_3_9_percent, ...


# A segment the ruleset rewards (mean bonus above 0) while its policy-days with a reading below
# 3.9 mmol/L reach this share (and three times the typical segment's) is flagged: it is being
# paid into hypoglycaemia. A policy that earned a bonus with this share of its days
# hypoglycaemic is listed for the care team.
SAFETY_FLAG_PERCENT = 5.0
HYPO_REWARDED_PERCENT = 10.0


def product_rulesets(names: Iterable[str], candidate: Ruleset | None,
                     published: Callable[[str], Ruleset]) -> dict[str, Ruleset]:
    """The ruleset each product (the ruleset_name its policies carry) is priced by in a report:
    its published one, except the product the candidate is a draft of, which the candidate
    replaces: the product of the candidate's name, else (a draft saved under a new name) the
    shipped product of its kind, as a back-test compares it (RULESET_OF_KIND)."""
    products = set(names)
    replaced = None
    if candidate is not None:
        replaced = (candidate.name if candidate.name in products
                    else RULESET_OF_KIND[candidate.kind])
    return {name: candidate if candidate is not None and name == replaced else published(name)
            for name in sorted(products)}


def _by_product(policies: pd.DataFrame, candidate: Ruleset | None,
                published: Callable[[str], Ruleset]) -> list[tuple[Ruleset, pd.DataFrame]]:
    """The policies in groups of one product, each with the ruleset it is priced by. Policies
    naming no product (a synthetic portfolio) are all priced by the candidate (else default)."""
    if "ruleset_name" not in policies or policies.empty:
        return [(candidate or published(RULESET_OF_KIND["bgm"]), policies)]
    names = policies["ruleset_name"].astype(str)
    by_name = product_rulesets(names.unique(), candidate, published)
    return [(rules, policies[(names == name).to_numpy()].reset_index(drop=True))
            for name, rules in by_name.items()]


def gaming_report(policies: pd.DataFrame, bindings: pd.DataFrame, readings: pd.DataFrame,
                  ruleset: Ruleset | None, through: date, flag_gap: float = 300.0,
                  published: Callable[[str], Ruleset] = builtin_or_default) -> GamingReport:
    """What each segment obtains and would obtain without its ruleset's exclusions; which
    readings were excluded and why; meters whose clock went back while seq went up.

    Each policy is priced by its own product's ruleset (its ruleset_name: a CGM wearer by the
    CGM rules, as the nightly run and a back-test price it): `published(name)` gives it, and
    `ruleset`, a candidate, replaces only its own product's (product_rulesets)."""
    finals: list[pd.DataFrame] = []
    shares: list[pd.DataFrame] = []
    excluded: list[pd.DataFrame] = []
    segment = policies.set_index("policy_id")["segment"]
    device_segment = bindings.assign(segment=bindings["policy_id"].map(segment)).drop_duplicates(
        "device_id").set_index("device_id")["segment"]
    for rules, group in _by_product(policies, ruleset, published):
        b = bindings[bindings["policy_id"].isin(set(group["policy_id"]))]
        r = readings[readings["device_id"].isin(set(b["device_id"]))]
        last = final_day(evaluate(group, b, r, rules, through))
        loose = final_day(evaluate(group, b, r, permissive(rules), through))
        finals.append(last[["policy_id", "bonus"]].merge(
            loose[["policy_id", "bonus"]], on="policy_id",
            suffixes=("", "_without_exclusions")))
        n_days = policy_day_counts(group, through)
        assigned, codes = assign_readings(group, b, r, rules, n_days)
        shares.append(_hypo_shares(group, r, assigned, n_days))
        excluded.append(pd.DataFrame({
            "segment": r["device_id"].astype(str).map(device_segment).to_numpy(),
            "reason": np.array(EXCLUSION_REASONS)[codes]}))
    per = pd.concat(finals, ignore_index=True)
    per["policy_id"] = per["policy_id"].astype(str)
    per["segment"] = per["policy_id"].map(segment)
    by_segment = per.groupby("segment").agg(
        policies=("policy_id", "count"), mean_bonus=("bonus", "mean"),
        mean_bonus_without_exclusions=("bonus_without_exclusions", "mean")).reset_index()
    by_segment["gap"] = by_segment["mean_bonus_without_exclusions"] - by_segment["mean_bonus"]
    # Everyone loses a little to late syncs and strip errors; a segment is flagged when its
    # exclusions are worth far more than the portfolio's typical segment's.
    typical = float(by_segment["gap"].median()) if len(by_segment) else 0.0
    by_segment["flagged"] = by_segment["gap"] > max(flag_gap, 5 * typical)
    per["gap"] = per["bonus_without_exclusions"] - per["bonus"]

    safety_by_segment, hypo_rewarded = _safety(pd.concat(shares, ignore_index=True), per)
    excl = pd.concat(excluded, ignore_index=True)
    exclusions = (excl[excl["reason"] != "ok"].groupby(["segment", "reason"]).size()
                  .rename("readings").reset_index())

    ordered = readings.assign(device=readings["device_id"].astype(str)).sort_values(
        ["device", "received_at", "seq"])
    back = (ordered["device"] == ordered["device"].shift()) & (
        ordered["measured_at"] < ordered["measured_at"].shift() - pd.Timedelta(hours=6)) & (
        (ordered["seq"] - ordered["seq"].shift()) % SEQ_MODULO == 1)
    inversions = ordered[back].groupby("device").size().rename("inversions").reset_index()
    inversions = inversions.rename(columns={"device": "device_id"})
    flagged = per[per["gap"] > max(flag_gap, 5 * typical)].sort_values("gap", ascending=False)
    return GamingReport(by_segment, exclusions, inversions, flagged.reset_index(drop=True),
                        safety_by_segment, hypo_rewarded)


def _hypo_shares(policies: pd.DataFrame, readings: pd.DataFrame, assigned: AssignedReadings,
                 n_days: npt.NDArray[np.int64]) -> pd.DataFrame:
    """Per policy: the share of its days with a valid reading below each hypoglycaemia level."""
    values = readings["value_mmol"].to_numpy(dtype=np.float64)[assigned.row]
    shares = pd.DataFrame({"policy_id": policies["policy_id"].astype(str).to_numpy()})
    for name, level in safety.LEVELS_MMOL:
        below = safety.days_below(values, assigned.policy, assigned.day_offset, len(policies),
                                  level)
        shares[f"days_{name}_percent"] = 100 * below / np.maximum(n_days, 1)
    return shares


def _safety(shares: pd.DataFrame, per: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hypoglycaemia by segment and the policies a ruleset rewards while they go low: what
    finds over-treaters chasing the reward (docs/domain.md#safety)."""
    both = per[["policy_id", "segment", "bonus"]].merge(shares, on="policy_id")
    columns = [f"days_{name}_percent" for name in safety.NAMES]
    by_segment = both.groupby("segment").agg(
        policies=("policy_id", "count"), mean_bonus=("bonus", "mean"),
        **{c: (c, "mean") for c in columns}).reset_index()
    level1 = by_segment[columns[0]]
    typical = float(level1.median()) if len(by_segment) else 0.0
    by_segment["flagged"] = (level1 >= max(SAFETY_FLAG_PERCENT, 3 * typical)) & (
        by_segment["mean_bonus"] > 0)
    rewarded = both[(both["bonus"] > 0) & (both[columns[0]] >= HYPO_REWARDED_PERCENT)]
    return (by_segment.round(2),
            rewarded.sort_values(columns[0], ascending=False).round(2).reset_index(drop=True))
