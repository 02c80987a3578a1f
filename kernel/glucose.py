"""The clinical thresholds every stage uses, each written once: the hypoglycaemia and
hyperglycaemia levels of the International Consensus on Time in Range, the CGM target range and
its bands, the fingerstick time-in-range band, and which meter statuses are errors.

Sources and reasoning: docs/domain.md#clinical-thresholds (Battelino T et al., Diabetes Care
2019;42:1593-1603; ADA Standards of Care, section 6). The consensus states each level in both
units; the mmol/L figure is the one it states (70 mg/dL is 3.9 mmol/L), not mg/dL / 18.0156.
"""

from __future__ import annotations

from dataclasses import dataclass

from kernel.vocabulary import Status, Unit, status_bits


@dataclass(frozen=True)
class Level:
    """A glucose level as the consensus states it in each unit."""

    mgdl: float
    mmol: float

    def in_unit(self, unit: str) -> float:
        return self.mmol if unit == Unit.MMOL_L else self.mgdl


HYPO_LEVEL1 = Level(70.0, 3.9)  # below: level 1 hypoglycaemia; the target range's floor
HYPO_LEVEL2 = Level(54.0, 3.0)  # below: level 2 (clinically significant) hypoglycaemia
HYPER_LEVEL1 = Level(180.0, 10.0)  # above: level 1 hyperglycaemia; the target range's ceiling
HYPER_LEVEL2 = Level(250.0, 13.9)  # above: level 2 hyperglycaemia

# The CGM target range, mg/dL, both ends inclusive (time in range 70-180 mg/dL), and the five
# consensus bands it cuts the readings into, very low to very high: (name, low, high) with
# low <= v < high in mg/dL except the target band, which holds both its ends.
TARGET_RANGE_MGDL = (HYPO_LEVEL1.mgdl, HYPER_LEVEL1.mgdl)
BANDS = ("very_low", "low", "in_range", "high", "very_high")

# Time in range for fingerstick readings, mmol/L, both ends inclusive: from level 1
# hypoglycaemia (3.9) to the non-fasting target ceiling (10.0), compared with a reading's
# unrounded value in mmol/L.
FINGERSTICK_RANGE_MMOL = (HYPO_LEVEL1.mmol, HYPER_LEVEL1.mmol)

# The meter statuses that make a reading an error: every GLS status bit but battery_low
# (a low battery does not change the result). The default of every ruleset and alert rule.
ERROR_STATUSES: tuple[str, ...] = tuple(s.name for s in Status if s is not Status.battery_low)
ERROR_STATUS_MASK = status_bits(ERROR_STATUSES)
