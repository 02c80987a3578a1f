"""Continuous glucose monitoring (CGM) metrics of the International Consensus on Time in Range,
per device over a window. Pure: a frame of readings in, a frame of figures out (NumPy within
each device's readings).

Sources (docs/domain.md#continuous-glucose-monitoring):
- Battelino T et al. Clinical Targets for Continuous Glucose Monitoring Data Interpretation:
  Recommendations From the International Consensus on Time in Range. Diabetes Care
  2019;42:1593-1603. Ranges, their targets, and 14 days with at least 70% of possible readings.
- Bergenstal RM et al. Glucose Management Indicator (GMI). Diabetes Care 2018;41:2275-2280:
  GMI (%) = 3.31 + 0.02392 x mean glucose (mg/dL).

Definitions, each a function below or a column of `metrics`:
- readings: readings in the window; days: distinct local calendar days holding a reading.
- active_percent: distinct expected intervals holding a reading / intervals in the window x 100.
  The expected interval is the device's own: its shortest frequent gap between readings, in
  whole minutes, 1 to 15 (5 for a Dexcom, 15 for some Libre sensors).
- mean_mgdl; gmi; sd_mgdl: the sample standard deviation (n - 1); cv = sd / mean x 100.
- tir_70_180: share of readings with 70 <= v <= 180 mg/dL; tbr_below_70: v < 70; tbr_below_54:
  v < 54; tar_above_180: v > 180; tar_above_250: v > 250 (percent of readings).
- sufficient: the last 14 days of the window are at least 70% active (and the window is 14 days
  or longer).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import numpy as np
import pandas as pd

TIR_LOW_MGDL = 70.0  # level 1 hypoglycaemia below this
TIR_HIGH_MGDL = 180.0
LEVEL2_LOW_MGDL = 54.0  # level 2 hypoglycaemia below this
LEVEL2_HIGH_MGDL = 250.0
GMI_INTERCEPT = 3.31
GMI_SLOPE_PER_MGDL = 0.02392
SUFFICIENT_ACTIVE_PERCENT = 70.0
SUFFICIENCY_DAYS = 14
INTERVAL_MINUTES = (1, 15)  # a CGM's interval lies between these
DEFAULT_INTERVAL_MINUTES = 5

COLUMNS = ("device_id", "readings", "days", "active_percent", "mean_mgdl", "gmi", "sd_mgdl",
           "cv", "tir_70_180", "tbr_below_70", "tbr_below_54", "tar_above_180",
           "tar_above_250", "sufficient")


def gmi(mean_mgdl: float | np.ndarray) -> float | np.ndarray:  # type: ignore[type-arg]
    """Glucose Management Indicator (%), Bergenstal 2018."""
    return GMI_INTERCEPT + GMI_SLOPE_PER_MGDL * np.asarray(mean_mgdl, dtype=np.float64)


def interval_minutes(times: pd.Series) -> int:  # type: ignore[type-arg]
    """A device's expected interval: the shortest gap between its readings, in whole minutes,
    that makes up at least a tenth of its gaps (missed readings make longer gaps, never
    shorter ones; a stray double reading is too rare to count)."""
    gaps = np.diff(np.sort(times.to_numpy(dtype="datetime64[ns]").astype(np.int64)))
    minutes = np.rint(gaps / 60e9).astype(np.int64)
    low, high = INTERVAL_MINUTES
    minutes = minutes[(minutes >= low) & (minutes <= high)]
    if not len(minutes):
        return DEFAULT_INTERVAL_MINUTES
    values, counts = np.unique(minutes, return_counts=True)
    frequent = values[counts >= 0.1 * len(minutes)]
    return int(frequent.min() if len(frequent) else values[counts.argmax()])


def active_percent(times: pd.Series, start: pd.Timestamp, end: pd.Timestamp,  # type: ignore[type-arg]
                   interval: int) -> float:
    """Distinct `interval`-minute slots of [start, end) holding a reading, as a percentage."""
    step = interval * 60 * 10**9
    slots = int(np.ceil((end.value - start.value) / step))
    if slots <= 0:
        return 0.0
    ns = times.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    inside = ns[(ns >= start.value) & (ns < end.value)]
    return 100.0 * len(np.unique((inside - start.value) // step)) / slots


def metrics(readings: pd.DataFrame, first: date | None = None, last: date | None = None
            ) -> pd.DataFrame:
    """One row per device with the columns of COLUMNS.

    `readings`: device_id, measured_at (UTC), local_date (the reading's calendar day where it
    was taken), value_mgdl. The window is the days `first` to `last` inclusive (UTC midnights)
    when given, else each device's first to last reading."""
    rows = []
    for device_id, group in readings.groupby("device_id", sort=True, observed=True):
        start = (pd.Timestamp(datetime.combine(first, time()), tz="UTC") if first
                 else group["measured_at"].min())
        interval = interval_minutes(group["measured_at"])
        end = (pd.Timestamp(datetime.combine(last + timedelta(days=1), time()), tz="UTC")
               if last else group["measured_at"].max() + pd.Timedelta(minutes=interval))
        inside = group[(group["measured_at"] >= start) & (group["measured_at"] < end)]
        values = inside["value_mgdl"].to_numpy(dtype=np.float64)
        n = len(values)
        if n == 0:
            continue
        mean = float(values.mean())
        sd = float(values.std(ddof=1)) if n > 1 else 0.0
        tail_start = end - pd.Timedelta(days=SUFFICIENCY_DAYS)
        long_enough = end - start >= pd.Timedelta(days=SUFFICIENCY_DAYS)
        rows.append({
            "device_id": device_id, "readings": n,
            "days": int(inside["local_date"].nunique()),
            "active_percent": active_percent(inside["measured_at"], start, end, interval),
            "mean_mgdl": mean, "gmi": float(gmi(mean)), "sd_mgdl": sd,
            "cv": 100.0 * sd / mean,
            "tir_70_180": _share((values >= TIR_LOW_MGDL) & (values <= TIR_HIGH_MGDL)),
            "tbr_below_70": _share(values < TIR_LOW_MGDL),
            "tbr_below_54": _share(values < LEVEL2_LOW_MGDL),
            "tar_above_180": _share(values > TIR_HIGH_MGDL),
            "tar_above_250": _share(values > LEVEL2_HIGH_MGDL),
            "sufficient": bool(long_enough and active_percent(
                inside["measured_at"], tail_start, end, interval) >= SUFFICIENT_ACTIVE_PERCENT),
        })
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _share(mask: np.ndarray) -> float:  # type: ignore[type-arg]
    return 100.0 * float(mask.mean())
