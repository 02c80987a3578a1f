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
- the window: local calendar days (kernel/days.py) in the wearer's time zone, from the local
  midnight starting the first to the one ending the last; readings: readings in the window;
  days: distinct local calendar days holding a reading.
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

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from kernel import days, glucose
from kernel.units import MGDL_PER_MMOL, in_unit
from kernel.vocabulary import Unit
from pricing import cgm_rules, glycaemia
from pricing.ruleset import Ruleset

TIR_LOW_MGDL, TIR_HIGH_MGDL = glucose.TARGET_RANGE_MGDL  # kernel/glucose.py
LEVEL2_LOW_MGDL = glucose.HYPO_LEVEL2.mgdl
LEVEL2_HIGH_MGDL = glucose.HYPER_LEVEL2.mgdl
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


def metrics(readings: pd.DataFrame, first: date | None = None, last: date | None = None,
            zone: str = "UTC") -> pd.DataFrame:
    """One row per device with the columns of COLUMNS, unrounded.

    `readings`: device_id, measured_at (aware), value_mgdl. The window is the local days
    `first` to `last` inclusive in `zone` (an IANA name: the policy's) when given, else each
    device's first to last reading; `days` counts local days of `zone`."""
    rows = []
    for device_id, group in readings.groupby("device_id", sort=True, observed=True):
        interval = interval_minutes(group["measured_at"])
        start = days.midnight(first, zone) if first else group["measured_at"].min()
        end = (days.midnight(last + timedelta(days=1), zone) if last
               else group["measured_at"].max() + pd.Timedelta(minutes=interval))
        inside = group[(group["measured_at"] >= start) & (group["measured_at"] < end)]
        values = inside["value_mgdl"].to_numpy(dtype=np.float64)
        n = len(values)
        if n == 0:
            continue
        mean = float(values.mean())
        sd = float(values.std(ddof=1)) if n > 1 else 0.0
        if first and last:  # the last SUFFICIENCY_DAYS local days (23 or 25 hours on a change)
            tail_start = days.midnight(last - timedelta(days=SUFFICIENCY_DAYS - 1), zone)
            long_enough = (last - first).days + 1 >= SUFFICIENCY_DAYS
        else:
            tail_start = end - pd.Timedelta(days=SUFFICIENCY_DAYS)
            long_enough = end - start >= pd.Timedelta(days=SUFFICIENCY_DAYS)
        rows.append({
            "device_id": device_id, "readings": n,
            "days": int(days.local_dates(inside["measured_at"], zone).nunique()),
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


# The Ambulatory Glucose Profile (AGP): every reading of the window laid on one "modal day" and
# summarised per bin of the clock by its percentiles (Johnson ML et al., Diabetes Technol Ther
# 2019;21(S2):S217, the AGP report; the consensus asks for 14 days).
AGP_BIN_MINUTES = 15
AGP_PERCENTILES = (5, 25, 50, 75, 95)
AGP_DAYS = 14
# The consensus targets each metric is shown against: (column, "<" or ">", target, in %).
TARGETS = (("tir_70_180", ">", 70.0), ("tbr_below_70", "<", 4.0), ("tbr_below_54", "<", 1.0),
           ("tar_above_180", "<", 25.0), ("tar_above_250", "<", 5.0), ("cv", "<=", 36.0),
           ("active_percent", ">=", 70.0))


def agp(local_minute: np.ndarray, value: np.ndarray,  # type: ignore[type-arg]
        bin_minutes: int = AGP_BIN_MINUTES) -> pd.DataFrame:
    """Per `bin_minutes` bin of the local clock (minute 0 = midnight): the readings in it and
    the AGP_PERCENTILES of their values (linear interpolation between order statistics, as
    numpy's default); bins without readings are left out."""
    frame = pd.DataFrame({"bin": (np.asarray(local_minute) // bin_minutes) * bin_minutes,
                          "value": np.asarray(value, dtype=np.float64)})
    grouped = frame.groupby("bin", sort=True)["value"]
    out = pd.DataFrame({"readings": grouped.size()})
    for p in AGP_PERCENTILES:
        out[f"p{p}"] = grouped.quantile(p / 100)
    return out.reset_index().rename(columns={"bin": "minute"})


def band_shares(m: dict[str, Any]) -> list[float]:
    """The five consensus bands' shares (%) of a metrics row, very low (< 54) to very high
    (> 250); they sum to 100."""
    return [float(m["tbr_below_54"]), float(m["tbr_below_70"] - m["tbr_below_54"]),
            float(m["tir_70_180"]), float(m["tar_above_180"] - m["tar_above_250"]),
            float(m["tar_above_250"])]


def target_band(unit: str) -> tuple[float, float]:
    """The consensus target range, 70-180 mg/dL, in `unit`."""
    low: float = in_unit(TIR_LOW_MGDL, unit)
    high: float = in_unit(TIR_HIGH_MGDL, unit)
    return low, high


def format_value(mgdl: float, unit: str) -> str:
    """"9.0" (mmol/L, one decimal) or "162" (mg/dL, whole)."""
    return f"{mgdl / MGDL_PER_MMOL:.1f}" if unit == Unit.MMOL_L else f"{mgdl:.0f}"


def format_glucose(mgdl: float, unit: str) -> str:
    """"9.0 mmol/L" or "162 mg/dL"."""
    return f"{format_value(mgdl, unit)} {unit}"


def meets(column: str, value: float) -> bool | None:
    """Whether a metric meets its consensus target (None: the metric has none)."""
    for name, op, target in TARGETS:
        if name == column:
            return {"<": value < target, ">": value > target, "<=": value <= target,
                    ">=": value >= target}[op]
    return None


@dataclass
class CgmWindow:
    """A CGM wearer's last AGP_DAYS before `today` (the consensus window) and today so far:
    the consensus metrics (COLUMNS), the AGP, each day's readings, and today's trace. What the
    policyholder page and the AGP report show."""

    first: date
    last: date
    metrics: dict[str, Any]
    agp: pd.DataFrame  # minute, readings, p5 .. p95 (mg/dL)
    days: pd.DataFrame  # measured_at (local), mgdl: the window's readings
    today: pd.DataFrame  # measured_at (local), mgdl


def window(readings: pd.DataFrame, ruleset: Ruleset, zone: ZoneInfo, today: date
           ) -> CgmWindow:
    """The window's figures from the readings the ruleset counts."""
    valid = readings[glycaemia.valid_readings(readings, ruleset)]
    local = valid["measured_at"].dt.tz_convert(str(zone))
    mgdl = cgm_rules.value_mgdl(valid)
    first, last = today - timedelta(days=AGP_DAYS), today - timedelta(days=1)
    day = days.local_dates(valid["measured_at"], str(zone))
    inside = ((day >= first) & (day <= last)).to_numpy()
    frame = pd.DataFrame({"device_id": "cgm", "measured_at": valid["measured_at"],
                          "value_mgdl": mgdl})[inside]
    rows = metrics(frame, first, last, str(zone))
    minutes = (local.dt.hour * 60 + local.dt.minute).to_numpy()[inside]
    on_today = (day == today).to_numpy()
    return CgmWindow(
        first=first, last=last,
        metrics={str(k): v for k, v in rows.iloc[0].to_dict().items()} if len(rows) else {},
        agp=agp(minutes, mgdl[inside]),
        days=pd.DataFrame({"measured_at": local[inside], "mgdl": mgdl[inside]}),
        today=pd.DataFrame({"measured_at": local[on_today], "mgdl": mgdl[on_today]}))
