"""Input frames for the evaluator, from CSV files. Bad files get an error naming line and column.

policies.csv: policy_id, device_id, start_date, base_sum_insured, timezone
readings.csv: device_id, seq, measured_at, received_at, value, unit, meal, sample, source, status
(status: GLS names joined by ';', may be empty). Repeats of (device_id, seq, measured_at) keep
the first, as the database's unique key does.
cgm.csv (`glucover cgm metrics`): device_id, measured_at, value, unit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import available_timezones

import numpy as np
import pandas as pd

from glucover.errors import UserError
from kernel.sequence import SEQ_MODULO
from kernel.units import MGDL_PER_MMOL
from kernel.vocabulary import Meal, Sample, Source, Status, Unit

CGM_CSV_COLUMNS = ("device_id", "measured_at", "value", "unit")
POLICY_CSV_COLUMNS = ("policy_id", "device_id", "start_date", "base_sum_insured", "timezone")
READING_CSV_COLUMNS = ("device_id", "seq", "measured_at", "received_at", "value", "unit", "meal",
                       "sample", "source", "status")
_OFFSET = r"(?:Z|[+-]\d{2}:?\d{2})$"


class InputError(UserError):
    """A CSV file is wrong; the message names the file, line and column."""


def _read(path: Path | str, columns: tuple[str, ...]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"{path}: not a readable CSV file: {exc}") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; expected "
                         f"{', '.join(columns)}")
    return frame


def _fail(path: Path | str, frame: pd.DataFrame, bad: Any, column: str, why: str) -> None:
    mask = np.asarray(bad, dtype=bool)
    if mask.any():
        i = int(np.flatnonzero(mask)[0])
        value = frame[column].iloc[i]
        more = int(mask.sum()) - 1
        raise InputError(f"{path}: line {i + 2}, column {column}: {value!r} {why}"
                         + (f" ({more} more such rows)" if more else ""))


def _choice(path: Path | str, frame: pd.DataFrame, column: str, allowed: set[str]) -> None:
    _fail(path, frame, ~frame[column].isin(allowed), column,
          f"is not one of {', '.join(sorted(allowed))}")


def _timestamp(path: Path | str, frame: pd.DataFrame, column: str) -> pd.Series:  # type: ignore[type-arg]
    text = frame[column].str.strip()
    _fail(path, frame, ~text.str.contains(_OFFSET, regex=True), column,
          "needs an ISO-8601 time with a UTC offset, e.g. 2026-03-01T07:30:00+08:00")
    parsed = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
    _fail(path, frame, parsed.isna(), column, "is not an ISO-8601 time")
    return parsed


def read_policies(path: Path | str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(policies, bindings): each policy's device is bound for all time."""
    frame = _read(path, POLICY_CSV_COLUMNS)
    _fail(path, frame, frame["policy_id"].str.strip() == "", "policy_id", "is empty")
    _fail(path, frame, frame["policy_id"].duplicated(), "policy_id", "appears twice")
    start = pd.to_datetime(frame["start_date"], format="%Y-%m-%d", errors="coerce")
    _fail(path, frame, start.isna(), "start_date", "is not a date like 2026-01-31")
    base = pd.to_numeric(frame["base_sum_insured"], errors="coerce")
    _fail(path, frame, ~(base > 0), "base_sum_insured", "is not a positive number")
    _choice(path, frame, "timezone", available_timezones())
    policies = pd.DataFrame({"policy_id": frame["policy_id"], "start_date": start,
                             "base_sum_insured": base.astype(float),
                             "timezone": frame["timezone"]})
    bindings = pd.DataFrame({"policy_id": frame["policy_id"], "device_id": frame["device_id"],
                             "bound_from": pd.NaT, "bound_to": pd.NaT})
    return policies, bindings


def _as_mgdl(value: pd.Series, unit: pd.Series) -> np.ndarray:  # type: ignore[type-arg]
    """A file's values in mg/dL: as written, or mmol/L x 18.0156 (what the CGM rules compare)."""
    mgdl: np.ndarray = np.where(unit == Unit.MMOL_L.value, value * MGDL_PER_MMOL,  # type: ignore[type-arg]
                                value).astype(float)
    return mgdl


def read_readings(path: Path | str) -> pd.DataFrame:
    frame = _read(path, READING_CSV_COLUMNS)
    seq = pd.to_numeric(frame["seq"], errors="coerce")
    _fail(path, frame, ~((seq >= 0) & (seq < SEQ_MODULO) & (seq == seq.round())), "seq",
          f"is not a whole number 0..{SEQ_MODULO - 1}")
    measured = _timestamp(path, frame, "measured_at")
    received = _timestamp(path, frame, "received_at")
    value = pd.to_numeric(frame["value"], errors="coerce")
    _fail(path, frame, ~np.isfinite(value.to_numpy(dtype=float)) | (value <= 0), "value",
          "is not a positive number")
    _choice(path, frame, "unit", {u.value for u in Unit})
    _choice(path, frame, "meal", {m.value for m in Meal})
    _choice(path, frame, "sample", {s.value for s in Sample})
    _choice(path, frame, "source", {s.value for s in Source})
    bits = np.zeros(len(frame), dtype=np.int64)
    names = frame["status"].str.split(";")
    for i, parts in enumerate(names):  # small per-row work at the file boundary only
        for name in parts:
            name = name.strip()
            if not name:
                continue
            if name not in Status.__members__:
                raise InputError(f"{path}: line {i + 2}, column status: {name!r} is not a GLS "
                                 f"status name ({', '.join(Status.__members__)})")
            bits[i] |= 1 << Status[name].value
    mg_dl = frame["unit"] == Unit.MG_DL.value
    mmol = np.where(mg_dl, value / MGDL_PER_MMOL, value)
    mgdl = _as_mgdl(value, frame["unit"])
    readings = pd.DataFrame({
        "device_id": frame["device_id"], "seq": seq.astype(np.int64),
        "measured_at": measured, "received_at": received, "value_mmol": mmol.astype(float),
        # as sent, or mmol/L x 18.0156: what the CGM rules compare (pricing/cgm_rules.py)
        "value_mgdl": mgdl,
        "meal": frame["meal"], "sample": frame["sample"], "source": frame["source"],
        "status": bits,
    })
    first = ~readings.duplicated(["device_id", "seq", "measured_at"], keep="first")
    return readings[first].reset_index(drop=True)


def read_cgm_readings(path: Path | str) -> pd.DataFrame:
    """device_id, measured_at (UTC), value_mgdl; repeats of (device_id, measured_at) keep the
    first."""
    frame = _read(path, CGM_CSV_COLUMNS)
    _fail(path, frame, frame["device_id"].str.strip() == "", "device_id", "is empty")
    measured = _timestamp(path, frame, "measured_at")
    value = pd.to_numeric(frame["value"], errors="coerce")
    _fail(path, frame, ~np.isfinite(value.to_numpy(dtype=float)) | (value <= 0), "value",
          "is not a positive number")
    _choice(path, frame, "unit", {u.value for u in Unit})
    mgdl = _as_mgdl(value, frame["unit"])
    readings = pd.DataFrame({"device_id": frame["device_id"], "measured_at": measured,
                             "value_mgdl": mgdl})
    first = ~readings.duplicated(["device_id", "measured_at"], keep="first")
    return readings[first].reset_index(drop=True)
