"""The alert rules, judged on readings. Pure: frames in, findings out (the database side is
care/store.py, the streaming evaluator care/stream.py). Rules and their clinical sources are in
docs/care.md; every threshold is a parameter of care/rules.py.

The input is one frame of readings already placed at their policy, one row per (policy,
reading), with columns:
  policy_id, kind ('bgm' | 'cgm'), device_id, seq, measured_at (UTC datetime64[ns]),
  value_mmol, status (GLS bits), valid (pricing rule 1 of the policy's ruleset),
  qualifying (valid and, for a meter, in a qualifying meal context), new (stored by the batch
  being judged; the rest is context).

A fingerstick reading is an episode by itself. A CGM episode is a run: consecutive valid
readings of one device on the same side of a threshold, no two further apart than
`max_gap_minutes`, lasting (first to last reading) at least the rule's minutes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
import pandas as pd

from care.rules import AlertRules
from kernel.vocabulary import Status


@dataclass(frozen=True)
class Finding:
    policy_id: str
    rule: str
    evidence: tuple[tuple[str, int, datetime], ...]  # the readings that show it
    detail: str
    key: str | None = None  # for findings without readings: what they were judged on

    @property
    def last_measured(self) -> datetime | None:
        return max((m for _, _, m in self.evidence), default=None)


BATTERY_LOW = 1 << Status.battery_low.value  # the meter's own battery-low annunciation

FRAME_COLUMNS = ("policy_id", "kind", "device_id", "seq", "measured_at", "value_mmol", "status",
                 "valid", "qualifying", "new")


def _evidence(rows: pd.DataFrame) -> tuple[tuple[str, int, datetime], ...]:
    return tuple((str(d), int(s), m.to_pydatetime()) for d, s, m in zip(
        rows["device_id"], rows["seq"], rows["measured_at"], strict=True))


def _episodes(rows: pd.DataFrame, inside: npt.NDArray[np.bool_], minutes: int,
              max_gap: timedelta) -> Iterator[pd.DataFrame]:
    """Runs of one policy's CGM readings (sorted by device and time) where `inside` holds,
    lasting at least `minutes`: each as its rows."""
    if not inside.any():
        return
    t = rows["measured_at"].to_numpy(dtype="datetime64[ns]")
    device = rows["device_id"].to_numpy()
    gap = np.ones(len(rows), dtype=bool)
    gap[1:] = (device[1:] != device[:-1]) | ((t[1:] - t[:-1]) > np.timedelta64(max_gap))
    breaks = gap | ~inside
    breaks[1:] |= ~inside[:-1]
    run = np.cumsum(breaks)
    for r in np.unique(run[inside]):
        where = (run == r) & inside
        times = t[where]
        if times[-1] - times[0] >= np.timedelta64(timedelta(minutes=minutes)):
            yield rows[where]


def _level_episodes(rows: pd.DataFrame, kind: str, inside: npt.NDArray[np.bool_], minutes: int,
                    rules: AlertRules) -> list[pd.DataFrame]:
    """Episodes of one policy's valid readings where `inside` holds: each reading for a meter,
    each long enough run for a CGM."""
    if kind == "cgm":
        return list(_episodes(rows, inside, minutes, timedelta(minutes=rules.max_gap_minutes)))
    return [rows[i:i + 1] for i in np.flatnonzero(inside)]


# (rule, policy_id, device_id, seq, measured_at): readings that are evidence of a resolved
# alert; the rule judges them no more (resolving an alert closes its episode).
Settled = set[tuple[str, str, str, int, datetime]]


def streaming_findings(frame: pd.DataFrame, rules: AlertRules, settled: Settled | None = None
                       ) -> list[Finding]:
    """What the readings show under the rules judged as readings arrive (hypo_level2,
    hypo_level1_repeated, hyper_severe, device_trouble's error and battery readings). Only
    findings that hold at least one new reading: the rest were judged when they came."""
    found: list[Finding] = []
    if frame.empty:
        return found
    frame = frame.sort_values(["policy_id", "device_id", "measured_at"], kind="stable")
    for (policy_id, kind), rows in frame.groupby(["policy_id", "kind"], sort=False,
                                                  observed=True):
        judge = _Unsettled(str(policy_id), settled or set())
        found += _policy_findings(str(policy_id), str(kind), rows, rules, judge)
    new = frame[frame["new"].to_numpy(dtype=bool)]
    fresh = set(zip(new["policy_id"].astype(str), _evidence(new), strict=True))
    return [f for f in found if any((f.policy_id, e) in fresh for e in f.evidence)]


@dataclass(frozen=True)
class _Unsettled:
    """One policy's rows a rule still judges."""

    policy_id: str
    settled: Settled

    def __call__(self, rows: pd.DataFrame, rule: str) -> pd.DataFrame:
        keys = {(d, s, m) for r, p, d, s, m in self.settled
                if r == rule and p == self.policy_id}
        if not keys:
            return rows
        keep = [(str(d), int(s), m.to_pydatetime()) not in keys for d, s, m in zip(
            rows["device_id"], rows["seq"], rows["measured_at"], strict=True)]
        return rows[np.asarray(keep, dtype=bool)]


def _policy_findings(policy_id: str, kind: str, rows: pd.DataFrame, rules: AlertRules,
                     unsettled: _Unsettled) -> list[Finding]:
    found = []
    all_valid = rows[rows["valid"].to_numpy(dtype=bool)]

    def valid_for(rule: str) -> tuple[pd.DataFrame, npt.NDArray[np.float64]]:
        valid = unsettled(all_valid, rule)
        return valid, valid["value_mmol"].to_numpy(dtype=np.float64)

    valid, v = valid_for("hypo_level2")
    lows = _level_episodes(valid, kind, v < rules.level2_below, rules.level2_minutes, rules)
    if lows:
        lowest = min(float(e["value_mmol"].min()) for e in lows)
        found.append(Finding(policy_id, "hypo_level2", _evidence(pd.concat(lows)),
                             f"{len(lows)} episode(s) below {rules.level2_below:g} mmol/L, "
                             f"lowest {lowest:.1f}"))

    valid, v = valid_for("hyper_severe")
    highs = (_level_episodes(valid, kind, v > rules.hyper_cgm_above, rules.hyper_minutes, rules)
             if kind == "cgm" else _level_episodes(valid, kind, v > rules.hyper_above, 0, rules))
    if highs:
        highest = max(float(e["value_mmol"].max()) for e in highs)
        above = rules.hyper_cgm_above if kind == "cgm" else rules.hyper_above
        found.append(Finding(policy_id, "hyper_severe", _evidence(pd.concat(highs)),
                             f"{len(highs)} episode(s) above {above:g} mmol/L, highest "
                             f"{highest:.1f}"))

    valid, v = valid_for("hypo_level1_repeated")
    episodes = _level_episodes(valid, kind, v < rules.level1_below, rules.level1_minutes, rules)
    repeated = _within(episodes, rules.level1_count, timedelta(days=rules.level1_days))
    if repeated:
        found.append(Finding(policy_id, "hypo_level1_repeated",
                             _evidence(pd.concat(repeated)),
                             f"{len(repeated)} episodes below {rules.level1_below:g} mmol/L "
                             f"within {rules.level1_days} days"))

    found += _device_trouble(policy_id, unsettled(rows, "device_trouble"), rules)
    return found


def _within(episodes: list[pd.DataFrame], count: int, window: timedelta) -> list[pd.DataFrame]:
    """The episodes that belong to some `count` of them starting within `window`."""
    if len(episodes) < count:
        return []
    episodes = sorted(episodes, key=lambda e: e["measured_at"].iloc[0])
    starts = [e["measured_at"].iloc[0] for e in episodes]
    keep: set[int] = set()
    for i in range(len(episodes) - count + 1):
        if starts[i + count - 1] - starts[i] < window:
            keep.update(range(i, i + count))
    return [episodes[i] for i in sorted(keep)]


def _device_trouble(policy_id: str, rows: pd.DataFrame, rules: AlertRules) -> list[Finding]:
    """Repeated error statuses within `error_hours`, and readings flagged battery_low. Every
    stored reading counts here, valid or not (an error status is what makes one invalid)."""
    status = rows["status"].to_numpy(dtype=np.int64)
    errors = rows[(status & rules.error_mask) != 0]
    battery = rows[(status & BATTERY_LOW) != 0]
    parts, notes = [], []
    clustered = _within([errors[i:i + 1] for i in range(len(errors))], rules.error_count,
                        timedelta(hours=rules.error_hours))
    if clustered:
        parts += clustered
        notes.append(f"{len(clustered)} readings with an error status within "
                     f"{rules.error_hours} h")
    if len(battery):
        parts.append(battery)
        notes.append("meter reports battery low")
    if not parts:
        return []
    evidence = pd.concat(parts).drop_duplicates(["device_id", "seq", "measured_at"])
    return [Finding(policy_id, "device_trouble", _evidence(evidence), "; ".join(notes))]


# ------------------------------------------------------------------ scheduled rules


def rising_findings(frame: pd.DataFrame, now: datetime, rules: AlertRules,
                    settled: Settled | None = None) -> list[Finding]:
    """Policies whose mean of qualifying readings over the last `rise_days` is up by
    `rise_mmol` or more against the `rise_days` before; evidence: the last window's readings."""
    found: list[Finding] = []
    window = pd.Timedelta(days=rules.rise_days)
    end = pd.Timestamp(now)
    if settled and len(frame):
        frame = pd.concat([_Unsettled(str(p), settled)(rows, "rising") for p, rows in
                           frame.groupby("policy_id", sort=False, observed=True)])
    q = frame[frame["qualifying"].to_numpy(dtype=bool) & (frame["measured_at"] < end)
              & (frame["measured_at"] >= end - 2 * window)]
    recent = (q["measured_at"] >= end - window).to_numpy()
    grouped = q["value_mmol"].groupby([q["policy_id"], recent], observed=True)
    means, counts = grouped.mean(), grouped.count()
    for policy_id in pd.unique(q["policy_id"]):
        n_before, n_after = (int(counts.get((policy_id, w), 0)) for w in (False, True))
        if min(n_before, n_after) < rules.rise_min_readings:
            continue
        before, after = float(means[(policy_id, False)]), float(means[(policy_id, True)])
        if after - before >= rules.rise_mmol - 1e-9:
            rows = q[(q["policy_id"] == policy_id).to_numpy() & recent]
            found.append(Finding(str(policy_id), "rising", _evidence(rows),
                                 f"mean {after:.1f} mmol/L over the last {rules.rise_days} days, "
                                 f"{before:.1f} the {rules.rise_days} before"))
    return found


@dataclass(frozen=True)
class InForce:
    """A policy in force, for the lapsed rule: when it started (UTC) and its last valid
    reading, if any."""

    policy_id: str
    started_at: datetime
    last_valid: datetime | None


def lapsed_findings(policies: list[InForce], now: datetime, rules: AlertRules) -> list[Finding]:
    """Policies without a valid reading for `lapsed_days` (counted from the policy's start when
    it never had one). The finding's key is the last valid reading's time: the same lapse is
    raised once, however often the schedule looks."""
    limit = timedelta(days=rules.lapsed_days)
    found = []
    for p in policies:
        since = p.last_valid or p.started_at
        if now - since >= limit:
            what = (f"no valid reading since {p.last_valid:%Y-%m-%d %H:%M} UTC"
                    if p.last_valid else "no valid reading since the policy started")
            found.append(Finding(p.policy_id, "lapsed", (), what, key=since.isoformat()))
    return found


@dataclass(frozen=True)
class MeterStatus:
    policy_id: str
    device_id: str
    battery_pct: int | None
    clock_offset_s: float | None
    sent_at: datetime


def status_findings(statuses: list[MeterStatus], rules: AlertRules) -> list[Finding]:
    """device_trouble from meters' status reports: battery below the threshold, clock drift
    beyond tolerance. Keyed by the report, so one report raises at most one alert."""
    found = []
    for s in statuses:
        notes = []
        if s.battery_pct is not None and s.battery_pct < rules.battery_below_percent:
            notes.append(f"{s.device_id} battery {s.battery_pct}%")
        if s.clock_offset_s is not None and abs(s.clock_offset_s) > rules.clock_drift_seconds:
            notes.append(f"{s.device_id} clock off by {s.clock_offset_s:+.0f} s")
        if notes:
            found.append(Finding(s.policy_id, "device_trouble", (), "; ".join(notes),
                                 key=f"status:{s.device_id}:{s.sent_at.isoformat()}"))
    return found


@dataclass(frozen=True)
class SensorErrors:
    """A sensor's error codes within the device_trouble window: the special values below
    glucose an uploader sent instead of readings (sensor_errors, docs/nightscout.md)."""

    policy_id: str
    device_id: str
    count: int
    last_at: datetime
    codes: tuple[int, ...]


def sensor_error_findings(found: list[SensorErrors], rules: AlertRules) -> list[Finding]:
    """device_trouble from sensors that sent `error_count` error codes within `error_hours`,
    as readings with an error status raise it. Keyed by the last code, so a run of them raises
    one alert however often the schedule looks."""
    return [Finding(e.policy_id, "device_trouble", (),
                    f"{e.device_id}: {e.count} sensor error codes within {rules.error_hours} h "
                    f"(codes {', '.join(map(str, e.codes))})",
                    key=f"sensor:{e.device_id}:{e.last_at.isoformat()}")
            for e in found if e.count >= rules.error_count]
