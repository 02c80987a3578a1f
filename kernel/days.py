"""The policy-day: a calendar day in the policy's IANA time zone, from one local midnight to
the next (23 or 25 hours on the day the clocks change). Every figure of glucover that is "per
day" (the ledger, the daily summaries, the consensus metrics, the AGP, the FHIR summary, the
dashboard's portfolio figures) uses these functions; SQL uses their twins `local_day(instant,
zone)` and `local_midnight(day, zone)` (glucover/migrations/0029_local_days.sql), held to the
same answers by tests/test_days.py, DST changes and half-hour zones included.

A midnight that does not happen (the clocks jump forward at 00:00) is the day's first instant,
the jump; one that happens twice (they go back to 00:00) is its first occurrence.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

NS_PER_DAY = 86_400 * 10**9


def midnight(day: date, zone: str) -> pd.Timestamp:
    """The UTC instant at which `day` starts in `zone`."""
    local = pd.Timestamp(datetime(day.year, day.month, day.day)).tz_localize(
        zone, ambiguous=True, nonexistent="shift_forward")
    return local.tz_convert("UTC")


def local_day(instant: datetime, zone: str) -> date:
    """The local calendar day of an aware instant in `zone`."""
    return pd.Timestamp(instant).tz_convert(zone).date()


def today(zone: str, now: datetime | None = None) -> date:
    """Today in `zone` (at `now`, default the clock's now)."""
    return local_day(now or datetime.now(UTC), zone)


def local_dates(instants: pd.Series, zone: str) -> pd.Series:  # type: ignore[type-arg]
    """The local calendar day (datetime.date) of each aware instant of a column."""
    dates: pd.Series = instants.dt.tz_convert(zone).dt.date  # type: ignore[type-arg]
    return dates


def day_numbers(utc_ns: npt.NDArray[np.int64], zone: str) -> npt.NDArray[np.int64]:
    """The local day of each instant (UTC nanoseconds) in `zone`, as days since 1970-01-01."""
    utc = pd.DatetimeIndex(np.asarray(utc_ns).astype("datetime64[ns]"), tz="UTC")
    days: npt.NDArray[np.int64] = utc.tz_convert(zone).tz_localize(None).asi8 // NS_PER_DAY
    return days


def day_numbers_by_zone(utc_ns: npt.NDArray[np.int64], zone_code: npt.NDArray[np.int64],
                        zones: Any) -> npt.NDArray[np.int64]:
    """`day_numbers` of each instant in its own zone (`zones[zone_code[i]]`); the zones are
    few, the instants many."""
    out = np.empty(len(utc_ns), dtype=np.int64)
    if len(zones) == 1:
        out[:] = day_numbers(utc_ns, str(zones[0]))
        return out
    order = np.argsort(zone_code, kind="stable")
    bounds = np.searchsorted(zone_code[order], np.arange(len(zones) + 1))
    for z in range(len(zones)):
        where = order[bounds[z]:bounds[z + 1]]
        out[where] = day_numbers(utc_ns[where], str(zones[z]))
    return out


def day_number(day: date | str | np.datetime64) -> int:
    """A calendar day as days since 1970-01-01."""
    return int(pd.Timestamp(day).to_datetime64().astype("datetime64[D]").astype(np.int64))


def date_numbers(dates: Any) -> npt.NDArray[np.int64]:
    """`day_number` of each calendar day of a column or array."""
    numbers: npt.NDArray[np.int64] = pd.to_datetime(dates).to_numpy(
        dtype="datetime64[D]").astype(np.int64)
    return numbers


def midnights(zones: Any, first_day: int, n_days: int) -> npt.NDArray[np.int64]:
    """(zones x n_days + 1) UTC nanoseconds of each zone's local midnights, day numbers from
    `first_day` on: the table the CGM day slots are cut from."""
    days = pd.to_datetime(np.arange(first_day, first_day + n_days + 1), unit="D")
    out = np.empty((len(zones), n_days + 1), dtype=np.int64)
    for z, zone in enumerate(zones):
        local = days.tz_localize(str(zone), ambiguous=np.ones(len(days), dtype=bool),
                                 nonexistent="shift_forward")
        out[z] = local.tz_convert("UTC").tz_localize(None).as_unit("ns").asi8
    return out

