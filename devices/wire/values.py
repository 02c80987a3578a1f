"""A glucose value as `readings` stores it: the decimal number the meter sent, as integer
digits and a power of ten, value = digits x 10^exponent (the Bluetooth SFLOAT's own form,
docs/domain.md#units), not as a binary double.

A double of a one-decimal mmol/L value (5.6) has no short binary form, so TimescaleDB's
compression of doubles (Gorilla, XOR of neighbours) kept ~5.5 bytes of each; the digits of a
meter's consecutive readings differ by a little and compress by delta of deltas to under one
byte (docs/architecture.md, "Storage of a reading's value"). Exact both ways:
`value_of(*stored_decimal(v, unit)) == v` for every finite v, in Python and in SQL
(glucose_value(), 0024_readings_decimal_value.sql).
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import numpy.typing as npt

from kernel.units import MGDL_PER_MMOL, UNIT_DECIMALS

_SCALE = {unit: 10 ** decimals for unit, decimals in UNIT_DECIMALS.items()}


def stored_decimal(value: float, unit: str) -> tuple[int, int]:
    """(digits, exponent) of the shortest decimal that reads back as `value` (Python's repr,
    PostgreSQL's float8 output), with at least the unit's decimals."""
    scale = _SCALE[unit]
    digits = round(value * scale)
    if digits / scale == value:  # the usual case: no more decimals than the unit's
        return digits, -UNIT_DECIMALS[unit]
    exact = Decimal(repr(value))
    exponent = min(int(exact.as_tuple().exponent), -UNIT_DECIMALS[unit])
    return int(exact.scaleb(-exponent)), exponent


def value_of(digits: int, exponent: int) -> float:
    """The double a stored decimal stands for (correctly rounded, as float() of its text)."""
    return digits / 10 ** -exponent if exponent <= 0 else float(digits * 10 ** exponent)


def in_mmol(value: float, unit: str) -> float:
    """A value in `unit` in mmol/L, unrounded: as sent, or mg/dL / 18.0156."""
    return value / MGDL_PER_MMOL if unit == "mg/dL" else value


def mmol_of(digits: int, exponent: int, unit: str) -> float:
    """A stored decimal in mmol/L, unrounded."""
    return in_mmol(value_of(digits, exponent), unit)


def stored_decimals(values: npt.NDArray[np.float64], unit: str
                    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int16]]:
    """stored_decimal of many values of one unit at once (bulk loads), for values a reading
    can hold (ingest refuses the rest)."""
    scale = _SCALE[unit]
    rounded = np.rint(values * scale)  # half to even, as round()
    digits = rounded.astype(np.int64)
    exponent = np.full(len(values), -UNIT_DECIMALS[unit], dtype=np.int16)
    for i in np.flatnonzero(rounded / scale != values):
        digits[i], exponent[i] = stored_decimal(float(values[i]), unit)
    return digits, exponent
