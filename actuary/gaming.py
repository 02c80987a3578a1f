"""The gaming and safety report: what gaming personas obtain with and without the ruleset's
exclusions, exclusions by reason, clock inversions, and the policies rewarded while often
hypoglycaemic. Each policy is priced by its own product's ruleset."""


from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import date

import numpy as np
import numpy.typing as npt
import pandas as pd

from actuary.backtest import final_day
from kernel.sequence import SEQ_MODULO
from pricing import safety
from pricing.evaluator import (
    EXCLUSION_REASONS,
    AssignedReadings,
    assign_readings,
    policy_day_counts,
)
from pricing.products import evaluate
from pricing.ruleset import RULESET_OF_KIND, Ruleset, builtin_or_default


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
# A policy whose exclusions cost it more bonus than this (RMB) is flagged for review (and a
# segment, when also 5 times the typical segment's).
FLAG_GAP = 300.0
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
                  ruleset: Ruleset | None, through: date, flag_gap: float = FLAG_GAP,
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
