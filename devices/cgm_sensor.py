"""Simulated continuous glucose monitors (CGMs): who wears them, what their glucose does all
day, what the sensor makes of it, and the messages the phone sends. Pure and deterministic:
the same seed gives the same readings; each wearer's whole history is drawn at once, as arrays
(300 wearers x 90 days, 7.8 million readings, in seconds).

The trace, at the sensor's 5-minute interval, is a persona's level plus: a dawn rise before
waking; three meals a day, each a rise and fall (peak after 45-75 minutes, back within about
three hours); exercise dips on some afternoons; hypoglycaemia episodes for the personas prone
to them; slow drift and short-term wander (an AR(1) process). Sensor artefacts on top:
compression lows at night (lying on the sensor reads falsely low for 15-40 minutes), and the
reading range of 40-400 mg/dL. Figures: docs/domain.md#continuous-glucose-monitoring.

Sensors are worn in sessions of 10 or 14 days (by model), read nothing during warm-up, and
some fail early. Between sessions most wearers put the next sensor on at once; lapsing ones
take days. The phone relays each reading live, except when it is out of range: the
transmitter keeps up to BACKFILL_LIMIT of readings and the phone back-fills them in batches of
up to 1,000 when it is back. Each session is announced on the status topic (started, warm-up
over, ended or failed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

import numpy as np
import numpy.typing as npt
from scipy.signal import lfilter

from devices.wire.messages import MAX_RECORDS
from kernel.sequence import SEQ_MODULO

INTERVAL_MIN = 5
PER_DAY = 24 * 60 // INTERVAL_MIN
RANGE_MGDL = (40, 400)  # what the sensor reports; beyond it, LO / HI clipped to the ends
BACKFILL_LIMIT = timedelta(hours=8)  # a transmitter's memory while the phone is away
SENSOR_MODELS = ((14, timedelta(hours=1)), (10, timedelta(hours=2)))  # (days, warm-up)
MEALS = ((7.5, 0.7), (12.5, 1.0), (19.0, 1.0))  # (hour, spread in hours)


@dataclass(frozen=True)
class CgmPersona:
    name: str
    weight: float  # share of CGM wearers
    level_mgdl: float  # mean glucose between meals
    day_sd: float  # day-to-day drift of that level
    wander_sd: float  # short-term wander (stationary sd of the AR(1) part)
    meal_rise: float  # typical meal peak above the level, mg/dL
    dawn_rise: float
    exercise_rate: float  # afternoons with an exercise dip
    hypo_rate: float  # hypoglycaemia episodes per day
    phone_gap_rate: float  # spells per day with the phone out of range
    early_failure: float  # chance a session ends before its time
    replace_delay_days: float  # mean days without a sensor between sessions


CGM_PERSONAS: tuple[CgmPersona, ...] = (
    CgmPersona("cgm_tight", 0.15, 112, 5, 8, 35, 10, 0.4, 0.01, 0.2, 0.05, 0.0),
    CgmPersona("cgm_good", 0.25, 130, 8, 14, 55, 15, 0.3, 0.03, 0.3, 0.08, 0.1),
    CgmPersona("cgm_average", 0.25, 150, 12, 22, 75, 20, 0.2, 0.05, 0.4, 0.1, 0.3),
    CgmPersona("cgm_hypo_prone", 0.10, 125, 12, 28, 70, 10, 0.3, 0.6, 0.3, 0.1, 0.2),
    CgmPersona("cgm_high", 0.10, 205, 18, 25, 85, 25, 0.1, 0.02, 0.4, 0.12, 0.5),
    CgmPersona("cgm_erratic", 0.10, 165, 25, 40, 100, 20, 0.2, 0.35, 0.6, 0.15, 0.5),
    CgmPersona("cgm_lapsing", 0.05, 140, 10, 18, 60, 15, 0.3, 0.05, 0.5, 0.2, 4.0),
)


@dataclass(frozen=True)
class SensorSession:
    sensor_id: str
    started_at: datetime
    warmup_ends_at: datetime
    expected_end_at: datetime
    ended_at: datetime
    failed: bool


@dataclass
class Wear:
    """One wearer's simulated history: the readings the sensor took (measured_at as UTC
    nanoseconds, value in mg/dL, seq) with when the phone sends each, and the sessions."""

    measured_ns: npt.NDArray[np.int64]
    mgdl: npt.NDArray[np.int64]
    seq: npt.NDArray[np.int64]
    sent_ns: npt.NDArray[np.int64]
    sessions: list[SensorSession] = field(default_factory=list)


def _curve(t_min: npt.NDArray[np.float64], peak_min: npt.NDArray[np.float64]
           ) -> npt.NDArray[np.float64]:
    """A rise and fall: 0 before the meal, 1 at its peak, fading after (gamma-like)."""
    x = np.clip(t_min / peak_min, 0, None)
    out: npt.NDArray[np.float64] = x * np.exp(1 - x)
    return out


def trace(persona: CgmPersona, days: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """The wearer's true glucose, mg/dL, (days x PER_DAY) at local 00:00, 00:05, ..."""
    minutes = np.arange(PER_DAY, dtype=np.float64) * INTERVAL_MIN
    level = persona.level_mgdl + persona.day_sd * rng.standard_normal(days)
    g = np.repeat(level[:, None], PER_DAY, axis=1)
    # Dawn: cortisol and growth hormone raise glucose from about 03:00 to waking.
    g += persona.dawn_rise * np.exp(-0.5 * ((minutes - 330) / 75) ** 2)[None, :]
    for hour, spread in MEALS:
        at = (hour + spread * rng.standard_normal(days)) * 60
        peak = rng.uniform(45, 75, days)
        size = persona.meal_rise * rng.lognormal(0, 0.35, days)
        g += size[:, None] * _curve(minutes[None, :] - at[:, None], peak[:, None])
    exercise = rng.random(days) < persona.exercise_rate
    at = rng.uniform(15, 19, days) * 60
    g -= (exercise * rng.uniform(25, 55, days))[:, None] * np.exp(
        -0.5 * ((minutes[None, :] - at[:, None]) / 40) ** 2)
    episodes = rng.poisson(persona.hypo_rate, days)
    for d in np.flatnonzero(episodes):
        for _ in range(int(episodes[d])):
            start = rng.uniform(0, 24 * 60 - 90)
            depth = rng.uniform(42, 66)
            shape = np.exp(-0.5 * ((minutes - start - 30) / rng.uniform(10, 25)) ** 2)
            g[d] = g[d] * (1 - shape) + depth * shape
    # Short-term wander: AR(1) at 5 minutes with a 2-hour memory.
    phi = np.exp(-INTERVAL_MIN / 120)
    shocks = rng.standard_normal(days * PER_DAY) * persona.wander_sd * np.sqrt(1 - phi ** 2)
    g += lfilter([1.0], [1.0, -phi], shocks).reshape(days, PER_DAY)
    return np.asarray(g, dtype=np.float64)


def _compression_lows(g: npt.NDArray[np.float64], rng: np.random.Generator) -> None:
    """Lying on the sensor at night reads falsely low for a while (in place)."""
    days = g.shape[0]
    nights = np.flatnonzero(rng.random(days) < 0.12)
    for d in nights:
        start = int(rng.integers(12, 72))  # 01:00 - 06:00
        length = int(rng.integers(3, 9))
        g[d, start:start + length] -= rng.uniform(40, 80)


class SessionPlan:
    """A wearer's sensor sessions, one after the other, forever: model length, warm-up, early
    failures and the time each wearer takes to put the next sensor on. Its own random stream,
    so the sessions do not depend on how much of the trace is drawn."""

    def __init__(self, sensor_prefix: str, first: datetime, persona: CgmPersona,
                 rng: np.random.Generator) -> None:
        self.prefix, self.persona, self.rng = sensor_prefix, persona, rng
        self.days, self.warmup = SENSOR_MODELS[int(rng.integers(0, len(SENSOR_MODELS)))]
        self.next_at = first + timedelta(minutes=float(rng.uniform(0, 600)))
        self.made: list[SensorSession] = []

    def until(self, end: datetime) -> list[SensorSession]:
        """Every session that starts before `end` (made once, then remembered)."""
        rng, persona = self.rng, self.persona
        while self.next_at < end:
            at = self.next_at
            expected = at + timedelta(days=self.days)
            failed = bool(rng.random() < persona.early_failure)
            ended = at + timedelta(days=float(rng.uniform(0.5, self.days))) if failed \
                else expected
            self.made.append(SensorSession(f"{self.prefix}-S{len(self.made) + 1:03d}", at,
                                           at + self.warmup, expected, ended, failed))
            delay = rng.exponential(persona.replace_delay_days) \
                if persona.replace_delay_days else 0.0
            self.next_at = ended + timedelta(minutes=float(rng.uniform(5, 60)),
                                             days=float(delay))
        return self.made


def wear(persona: CgmPersona, begin: datetime, end: datetime, local_start: time,
         worn: list[SensorSession], rng: np.random.Generator, first_seq: int = 0) -> Wear:
    """A wearer's readings from `begin` to `end` (UTC; `local_start` the local time of
    `begin`): what the sensor read (the trace plus its artefacts, whole mg/dL) while a session
    was past warm-up, and when the phone sends each one (live, or back-filled after a spell out
    of range)."""
    step_ns = INTERVAL_MIN * 60 * 10**9
    n = int((end - begin).total_seconds() // (INTERVAL_MIN * 60))
    days = -(-n // PER_DAY) + 1
    g = trace(persona, days, rng)
    _compression_lows(g, rng)
    # The trace laid on absolute time from the local time `begin` is; across a clock change
    # its pattern runs an hour off the clock, as people's days do for a while.
    offset = (local_start.hour * 60 + local_start.minute) // INTERVAL_MIN
    flat = g.reshape(-1)[offset:offset + n]
    grid_ns = ns(begin) + np.arange(n, dtype=np.int64) * step_ns
    active = np.zeros(n, dtype=bool)
    for s in worn:
        active |= (grid_ns >= ns(s.warmup_ends_at)) & (grid_ns < ns(s.ended_at))
    # A sensor reads at a fixed phase of its interval (its clock started with the session), so
    # its readings are exactly INTERVAL_MIN apart; the phase is drawn once per stretch.
    measured = grid_ns[active] + int(rng.integers(0, INTERVAL_MIN * 60)) * 10**9
    mgdl = np.clip(np.rint(flat[active]), *RANGE_MGDL).astype(np.int64)
    seq = (first_seq + np.arange(len(measured))) % SEQ_MODULO
    return Wear(measured, mgdl, seq, _sent(measured, persona, rng),
                [s for s in worn if s.started_at < end and s.ended_at > begin])


def _sent(measured: npt.NDArray[np.int64], persona: CgmPersona, rng: np.random.Generator
          ) -> npt.NDArray[np.int64]:
    """When the phone sends each reading: a few seconds after it, or, for the readings of a
    spell out of range (30 minutes to 10 hours), when the phone is back; readings older than
    BACKFILL_LIMIT by then are lost (-1)."""
    sent = measured + rng.integers(2, 15, len(measured)) * 10**9
    if not len(measured):
        return sent
    span_days = (measured[-1] - measured[0]) / 86_400e9
    spells = rng.poisson(persona.phone_gap_rate * max(span_days, 0))
    limit = int(BACKFILL_LIMIT.total_seconds() * 1e9)
    for _ in range(int(spells)):
        away = int(rng.integers(measured[0], measured[-1] + 1))
        back = away + int(rng.lognormal(np.log(90), 0.9) * 60e9)
        inside = (measured >= away) & (measured < back)
        sent[inside] = np.where(back - measured[inside] <= limit, back, -1)
    return sent


def ns(moment: datetime) -> int:
    return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000


def batches(w: Wear) -> list[tuple[int, npt.NDArray[np.int64]]]:
    """(sent_ns, indices of the readings) per message: each live reading alone, a back-fill
    in batches of up to MAX_RECORDS, in sending order."""
    keep = np.flatnonzero(w.sent_ns >= 0)
    order = keep[np.lexsort((w.measured_ns[keep], w.sent_ns[keep]))]
    out: list[tuple[int, npt.NDArray[np.int64]]] = []
    if not len(order):
        return out
    sent = w.sent_ns[order]
    cuts = np.flatnonzero(np.diff(sent)) + 1
    for group in np.split(order, cuts):
        for i in range(0, len(group), MAX_RECORDS):
            out.append((int(w.sent_ns[group[0]]), group[i:i + MAX_RECORDS]))
    return out
