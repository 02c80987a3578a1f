"""Glucose units: the mg/dL factor and the decimals a meter shows in each unit.

Facts and sources: docs/domain.md#units.
"""

from __future__ import annotations

from typing import Any

from kernel.vocabulary import Unit

# 1 mmol/L = 18.0156 mg/dL (glucose molar mass 180.156 g/mol). SQL reads it from here too
# (glucover/db.py fills {mgdl_per_mmol} in the migrations).
MGDL_PER_MMOL = 18.0156

# The decimals a meter shows in each unit: readings keep at least these in their stored
# decimal, so one meter's values share an exponent (devices/wire/values.py).
UNIT_DECIMALS: dict[str, int] = {Unit.MMOL_L: 1, Unit.MG_DL: 0}


def in_unit(mgdl: Any, unit: str) -> Any:
    """A value (or array) in mg/dL, in `unit` for display: mg/dL as it is, or mmol/L."""
    return mgdl / MGDL_PER_MMOL if unit == Unit.MMOL_L else mgdl
