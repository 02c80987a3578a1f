"""Glycaemic control, defined once: which readings count, the time-in-range band and the
estimated HbA1c. The policyholder page, the actuaries' workbench and the database's daily
summary (`meter_days`, pricing/meter_days.py, over local days) all use these
definitions; a test (tests/test_glycaemia.py) holds the three to the same figures for the same
policy.

Formulas and sources: docs/domain.md ("Glycaemic figures").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from kernel import glucose
from kernel.units import MGDL_PER_MMOL
from pricing.evaluator import exclusion_codes
from pricing.ruleset import Ruleset

# Time in range for fingerstick readings, mmol/L, both ends inclusive (kernel/glucose.py).
TIR_LOW_MMOL, TIR_HIGH_MMOL = glucose.FINGERSTICK_RANGE_MMOL

# ADAG (Nathan et al., Diabetes Care 2008): eAG mg/dL = 28.7 x A1c - 46.7.
ADAG_SLOPE = 28.7
ADAG_INTERCEPT = 46.7

FloatArray = npt.NDArray[np.float64]


def valid_readings(readings: pd.DataFrame, ruleset: Ruleset) -> npt.NDArray[np.bool_]:
    """Which readings count: the ruleset's validity (sample, source, status bits, the meter's
    range, the clock), the same test the pricing evaluator applies (its rule 1)."""
    return np.asarray(exclusion_codes(readings, ruleset) == 0, dtype=bool)


def in_range(value_mmol: FloatArray) -> npt.NDArray[np.bool_]:
    """TIR_LOW_MMOL <= v <= TIR_HIGH_MMOL."""
    values = np.asarray(value_mmol, dtype=np.float64)
    return (values >= TIR_LOW_MMOL) & (values <= TIR_HIGH_MMOL)


def estimated_a1c(mean_mmol: FloatArray | float) -> FloatArray:
    """Estimated HbA1c (%) from mean glucose by ADAG: (mean mg/dL + 46.7) / 28.7."""
    return (np.asarray(mean_mmol, dtype=np.float64) * MGDL_PER_MMOL + ADAG_INTERCEPT) \
        / ADAG_SLOPE


@dataclass(frozen=True)
class Glycaemia:
    """The figures of one set of valid readings; None where there are no readings."""

    readings: int
    mean_mmol: float | None
    est_a1c: float | None
    time_in_range: float | None  # share of readings, 0..1


def summarise(value_mmol: FloatArray) -> Glycaemia:
    values = np.asarray(value_mmol, dtype=np.float64)
    if not len(values):
        return Glycaemia(0, None, None, None)
    mean = float(values.mean())
    return Glycaemia(len(values), mean, float(estimated_a1c(mean)),
                     float(in_range(values).mean()))


def of_readings(readings: pd.DataFrame, ruleset: Ruleset) -> Glycaemia:
    """The figures of the readings that count under `ruleset`."""
    if readings.empty:
        return summarise(np.empty(0))
    mask = valid_readings(readings, ruleset)
    return summarise(readings["value_mmol"].to_numpy(dtype=np.float64)[mask])
