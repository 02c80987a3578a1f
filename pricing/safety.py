"""Safety rules about rulesets themselves: a scheme that rewards low readings must not push
people into hypoglycaemia (docs/domain.md#safety). Pure."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from kernel import glucose
from kernel.units import MGDL_PER_MMOL
from pricing import cgm_metrics, glycaemia
from pricing.ruleset import Ruleset


def hypoglycaemia_risk(ruleset: Ruleset) -> str | None:
    """Why the ruleset rewards readings in the hypoglycaemic range, or None: its in-target band
    starts below level 1 hypoglycaemia (3.9 mmol/L, 70 mg/dL)."""
    if ruleset.kind == "cgm" and ruleset.range_low_mgdl < cgm_metrics.TIR_LOW_MGDL:
        return (f"cgm.range_low_mgdl is {ruleset.range_low_mgdl:g} mg/dL: readings below "
                f"{cgm_metrics.TIR_LOW_MGDL:g} mg/dL (level 1 hypoglycaemia) would count as "
                "in range")
    if ruleset.kind == "bgm" and ruleset.target_low < glycaemia.TIR_LOW_MMOL:
        return (f"bands.target_low is {ruleset.target_low:g} mmol/L: readings below "
                f"{glycaemia.TIR_LOW_MMOL:g} mmol/L (level 1 hypoglycaemia) would earn the "
                "in-target reward")
    return None


# Hypoglycaemia exposure: level 1 below 3.9 mmol/L (70 mg/dL), level 2 below 3.0 (54).
LEVELS_MMOL = (("below_3_9", glucose.HYPO_LEVEL1.mmol),
               ("below_3_0", glucose.HYPO_LEVEL2.mgdl / MGDL_PER_MMOL))
NAMES: tuple[str, ...] = tuple(name for name, _ in LEVELS_MMOL)


def days_below(values_mmol: npt.NDArray[np.float64], policy: npt.NDArray[np.int64],
               day_offset: npt.NDArray[np.int64], n_policies: int, level: float
               ) -> npt.NDArray[np.int64]:
    """Per policy (0..n_policies-1), how many of its days hold a valid reading below `level`,
    from the valid readings' values, policies and day offsets."""
    low = values_mmol < level
    width = int(day_offset.max()) + 1 if len(day_offset) else 1
    days = np.unique(policy[low] * width + day_offset[low])
    counts: npt.NDArray[np.int64] = np.bincount(days // width, minlength=n_policies)
    return counts


@dataclass
class Exposure:
    """Counts over a portfolio's history, summed chunk by chunk: policy-days, those with a
    valid reading below each level, valid readings and those below each level."""

    policy_days: int = 0
    days_below: dict[str, int] = field(default_factory=lambda: dict.fromkeys(NAMES, 0))
    readings: int = 0
    readings_below: dict[str, int] = field(default_factory=lambda: dict.fromkeys(NAMES, 0))

    def add(self, values_mmol: npt.NDArray[np.float64], policy: npt.NDArray[np.int64],
            day_offset: npt.NDArray[np.int64], n_days: npt.NDArray[np.int64]) -> None:
        """The valid readings of a chunk (their policy and day) and its policies' day counts."""
        self.policy_days += int(n_days.sum())
        self.readings += len(values_mmol)
        for name, level in LEVELS_MMOL:
            self.readings_below[name] += int((values_mmol < level).sum())
            self.days_below[name] += int(days_below(values_mmol, policy, day_offset, len(n_days),
                                                    level).sum())

    def merge(self, other: Exposure) -> None:
        """Add another part's counts (disjoint policies)."""
        self.policy_days += other.policy_days
        self.readings += other.readings
        for name in NAMES:
            self.days_below[name] += other.days_below[name]
            self.readings_below[name] += other.readings_below[name]

    def percentages(self) -> dict[str, float]:
        """Share of policy-days with a valid reading below each level, and (for CGMs, time
        below range) share of valid readings below it, in percent, unrounded (machines read
        them: `glucover actuary backtest --json`; a person's rounding is where they are shown)."""
        out = {}
        for name in NAMES:
            out[f"days_{name}_percent"] = 100 * self.days_below[name] / max(self.policy_days, 1)
            out[f"readings_{name}_percent"] = (100 * self.readings_below[name]
                                               / max(self.readings, 1))
        return out
