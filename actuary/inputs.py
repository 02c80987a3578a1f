"""The actuary's CSV files, read with errors naming file, line and column (as
pricing/inputs.py does for the evaluator's): credibility.csv (group, period, weight, value) and
lift.csv (policy_id, exposure, actual, predicted[, predicted_b])."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from actuary import credibility, lift
from pricing.inputs import InputError, _fail, _read


def _number(path: Path | str, frame: pd.DataFrame, column: str, why: str,
            ok: str = "finite") -> pd.Series:  # type: ignore[type-arg]
    """The column as floats; the first row that is not a number, or breaks `ok` (finite,
    positive, non_negative), fails with `why`."""
    value = pd.to_numeric(frame[column].str.strip(), errors="coerce").astype(float)
    bad = ~np.isfinite(value.to_numpy())
    if ok == "positive":
        bad |= ~(value.to_numpy() > 0)
    elif ok == "non_negative":
        bad |= ~(value.to_numpy() >= 0)
    _fail(path, frame, bad, column, why)
    return value


def _non_empty(path: Path | str, frame: pd.DataFrame, column: str) -> None:
    _fail(path, frame, frame[column].str.strip() == "", column, "is empty")


def _some_rows(path: Path | str, frame: pd.DataFrame) -> None:
    if frame.empty:
        raise InputError(f"{path}: no rows after the header")


def read_credibility(path: Path | str) -> pd.DataFrame:
    """group, period (labels), weight > 0, value: one row per group and period."""
    frame = _read(path, credibility.INPUT_COLUMNS)
    _some_rows(path, frame)
    _non_empty(path, frame, "group")
    _non_empty(path, frame, "period")
    _fail(path, frame, frame.duplicated(["group", "period"]), "period",
          "appears twice for its group")
    weight = _number(path, frame, "weight", "is not a number > 0", ok="positive")
    value = _number(path, frame, "value", "is not a number")
    return pd.DataFrame({"group": frame["group"], "period": frame["period"],
                         "weight": weight, "value": value})


def read_lift(path: Path | str) -> pd.DataFrame:
    """policy_id (unique), exposure > 0, actual >= 0, predicted > 0 and optionally
    predicted_b > 0."""
    frame = _read(path, lift.INPUT_COLUMNS)
    _some_rows(path, frame)
    _non_empty(path, frame, "policy_id")
    _fail(path, frame, frame["policy_id"].duplicated(), "policy_id", "appears twice")
    out = pd.DataFrame({"policy_id": frame["policy_id"],
                        "exposure": _number(path, frame, "exposure", "is not a number > 0",
                                            ok="positive"),
                        "actual": _number(path, frame, "actual", "is not a number >= 0",
                                          ok="non_negative"),
                        "predicted": _number(path, frame, "predicted", "is not a number > 0",
                                             ok="positive")})
    if lift.SECOND_MODEL in frame:
        out[lift.SECOND_MODEL] = _number(path, frame, lift.SECOND_MODEL,
                                         "is not a number > 0", ok="positive")
    if not out["actual"].sum() > 0:
        raise InputError(f"{path}: column actual sums to 0: a Gini index needs some claims")
    return out
