"""The simulated fleet: a portfolio of policyholders with one meter each, and the messages their
meters publish. Pure and deterministic: the same seed and start give the same messages, always.

A meter stores each record with a uint16 sequence number that wraps, stamps it with its own
(skewed, drifting) clock in the policyholder's timezone, and syncs through a phone gateway:
right after measuring when online, or as one batch after an offline spell. Gateways sometimes
send a message twice. Strips fail, batteries run low, gamers do what gamers do.

A share of policyholders (`cgm_share`) wear a continuous glucose monitor instead
(devices/cgm_sensor.py): their phones send a reading every five minutes, back-fill after
spells out of range, and report each sensor session on the status topic.

Most meters speak wire format v1 themselves; a share (`gateway_share`) are Bluetooth meters
whose phone relays their Glucose Service records verbatim (a GatewayMessage): those meters send
in their display unit's SI form (kg/L or mol/L), sometimes without a meal context, and the
gateway reads the meter's clock at each send so ingest corrects it.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from devices import cgm_sensor
from devices.cgm_sensor import CGM_PERSONAS, CgmPersona
from devices.personas import PERSONAS, Persona
from devices.wire import gls
from devices.wire.messages import (
    DeviceStatus,
    GatewayMessage,
    GlsEntry,
    ReadingsMessage,
    Record,
    SensorReport,
)
from kernel.sequence import SEQ_MODULO
from kernel.units import MGDL_PER_MMOL
from kernel.vocabulary import DeviceKind, Meal, Sample, Source, Unit, status_bits

# Where the demo portfolio lives, and in what unit its meters display.
TIMEZONES = (("Asia/Shanghai", 0.70, Unit.MMOL_L), ("Asia/Hong_Kong", 0.10, Unit.MMOL_L),
             ("Europe/London", 0.08, Unit.MMOL_L), ("America/New_York", 0.07, Unit.MG_DL),
             ("Australia/Sydney", 0.05, Unit.MMOL_L))
BASE_SUMS = (10_000.0, 20_000.0, 50_000.0)
FIRMWARE = ("1.4.2", "1.5.0", "2.0.1")

OFFLINE_START_RATE = 0.02  # chance per day that a meter goes offline (phone away, no app)
OFFLINE_DAYS = (1, 12)  # spell length range
DUPLICATE_SEND_RATE = 0.02  # gateway retries a message it already sent
DUPLICATE_AFTER = timedelta(seconds=30)  # ... this long after the first copy
STRIP_ERROR_RATE = 0.02
BATTERY_DRAIN_PER_DAY = (0.2, 0.6)
LOW_BATTERY_PCT = 15
TREND_DAYS = 365  # personas move from their start to their end values over a year
DEFAULT_GATEWAY_SHARE = 0.1  # `glucover simulate` and the demo: meters relayed by a gateway
DEFAULT_CGM_SHARE = 0.1  # ... and policyholders wearing a CGM
CGM_CHUNK_DAYS = 7  # a CGM's history is drawn a week at a time
GATEWAY_CONTEXT_MISSING_RATE = 0.2  # records a Bluetooth meter relays without a meal context
GATEWAY_TIME_OFFSET_RATE = 0.3  # Bluetooth meters whose user set the time by the offset field


class Link(StrEnum):
    """How a meter's records reach the broker."""

    WIRE_V1 = "wire_v1"  # the meter (or its app) sends v1 records
    GLS_GATEWAY = "gls_gateway"  # a phone relays the Bluetooth Glucose Service records verbatim


@dataclass(frozen=True)
class Policyholder:
    policy_id: str
    device_id: str
    holder_name: str
    birth_year: int
    persona: Persona
    timezone: str
    unit: Unit
    base_sum_insured: float
    start_date: date
    index: int
    link: Link = Link.WIRE_V1
    cgm: CgmPersona | None = None  # a CGM wearer's glucose and habits; None: a fingerstick meter

    @property
    def kind(self) -> DeviceKind:
        return DeviceKind.CGM if self.cgm is not None else DeviceKind.BGM

    @property
    def segment(self) -> str:
        return self.cgm.name if self.cgm is not None else self.persona.name


@dataclass(order=True)
class Outgoing:
    """One message at the (simulated) moment it is sent, and the sequence numbers of the
    records it carries (none for a status message)."""

    at: datetime
    order: int
    topic: str = field(compare=False)
    payload: bytes = field(compare=False)
    retain: bool = field(compare=False, default=False)
    seqs: tuple[int, ...] = field(compare=False, default=())


def _kept(payload: bytes) -> bytes:
    """A payload to hold until it is acknowledged, in bytes of its own size: orjson hands back
    a bytes object with its whole 4 KiB buffer behind a 250-byte message (measured with
    tracemalloc), sixteen times the memory a meter's session holds."""
    return bytes(memoryview(payload))


def _rng(seed: int, *parts: object) -> np.random.Generator:
    digest = hashlib.sha256(repr((seed, *parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def portfolio(n: int, seed: int, start: date, gateway_share: float = 0.0,
              cgm_share: float = 0.0) -> list[Policyholder]:
    """`n` policyholders; `cgm_share` of them wear a CGM, and `gateway_share` of the honest
    meter users (gamers' tricks such as typed-in values have no Bluetooth form) have Bluetooth
    meters relayed by a gateway. Each share is drawn from its own stream, so the rest of the
    portfolio does not depend on it."""
    rng = _rng(seed, "portfolio")
    on_gateway = _rng(seed, "gateway").random(n) < gateway_share
    cgm_rng = _rng(seed, "cgm")
    wears = cgm_rng.random(n) < cgm_share
    cgm_weights = np.array([p.weight for p in CGM_PERSONAS])
    cgm_personas = cgm_rng.choice(len(CGM_PERSONAS), size=n, p=cgm_weights / cgm_weights.sum())
    weights = np.array([p.weight for p in PERSONAS])
    personas = rng.choice(len(PERSONAS), size=n, p=weights / weights.sum())
    zone_weights = np.array([z[1] for z in TIMEZONES])
    zones = rng.choice(len(TIMEZONES), size=n, p=zone_weights / zone_weights.sum())
    people = []
    for i in range(n):
        zone, _, unit = TIMEZONES[int(zones[i])]
        people.append(Policyholder(
            policy_id=f"POL-{seed:03d}-{i + 1:06d}",
            device_id=f"{'CG' if wears[i] else 'GM'}-{seed:03d}-{i + 1:06d}",
            holder_name=f"Policyholder {i + 1}",
            birth_year=int(rng.integers(1945, 2000)),
            persona=PERSONAS[int(personas[i])],
            timezone=zone, unit=unit,
            base_sum_insured=float(rng.choice(BASE_SUMS)),
            start_date=start, index=i,
            link=(Link.GLS_GATEWAY if on_gateway[i] and not wears[i]
                  and not PERSONAS[int(personas[i])].gamer else Link.WIRE_V1),
            cgm=CGM_PERSONAS[int(cgm_personas[i])] if wears[i] else None,
        ))
    return people


@dataclass
class MeterState:
    seq: int
    clock_offset_s: float
    drift_s_per_day: float
    battery: float
    firmware: str
    offline_until: date | None = None
    stored: list[Record] = field(default_factory=list)
    status_day: date | None = None  # the gateway reports meter status once a day
    last_sent: datetime | None = None  # a gateway sends one record after the other


def _value(mmol: float, unit: Unit) -> float:
    mmol = min(max(mmol, 1.2), 33.0)
    if unit == Unit.MG_DL:
        return float(round(mmol * MGDL_PER_MMOL))
    return round(mmol, 1)


# Measurements later in the day: (hour, meal, mean rise over fasting in mmol/L, chance on a day
# the policyholder measures at all).
LATER_MEASUREMENTS = ((9.0, Meal.POSTPRANDIAL, 2.8, 0.45), (13.5, Meal.PREPRANDIAL, 0.6, 0.25),
                      (19.5, Meal.POSTPRANDIAL, 3.0, 0.35), (22.0, Meal.BEDTIME, 1.2, 0.25))
SYNC_BATCH = 200  # records per message when a meter syncs its memory


def meter_messages(person: Policyholder, seed: int, days: int | None = None
                   ) -> Iterator[Outgoing]:
    """Every message one meter sends from the policy start, in send order (at, topic, order);
    lazily, forever when `days` is None. A day's messages do not depend on how many days are
    asked for."""
    if person.cgm is not None:
        yield from _Sensor(person, person.cgm, seed).messages(days)
        return
    meter = _Meter(person, _rng(seed, "meter", person.index),
                   _rng(seed, "gateway", person.index))
    days_drawn = itertools.count() if days is None else range(days)
    yield from _in_send_order(m for d in days_drawn for m in meter.day(d))


def _send_order(m: Outgoing) -> tuple[datetime, str, int]:
    return m.at, m.topic, m.order


def _in_send_order(messages: Iterator[Outgoing]) -> Iterator[Outgoing]:
    """A meter's messages as it draws them are in send order but for a gateway's second copy,
    which it draws DUPLICATE_AFTER after the first, before the messages sent meanwhile: hold
    each until nothing drawn later can come before it."""
    held: list[tuple[tuple[datetime, str, int], Outgoing]] = []
    for m in messages:
        heapq.heappush(held, (_send_order(m), m))
        while held and held[0][1].at < m.at - DUPLICATE_AFTER:
            yield heapq.heappop(held)[1]
    while held:
        yield heapq.heappop(held)[1]


Measured = list[tuple[datetime, Record]]  # (true local time, record as the meter stamps it)


class _Meter:
    """One simulated meter and the person using it, day after day. Each step draws from the
    meter's own random stream in a fixed order, so its messages depend only on the seed."""

    def __init__(self, person: Policyholder, rng: np.random.Generator,
                 link_rng: np.random.Generator) -> None:
        self.person, self.rng, self.link_rng = person, rng, link_rng
        self.zone = ZoneInfo(person.timezone)
        self.state = MeterState(
            seq=int(rng.integers(0, SEQ_MODULO)), clock_offset_s=float(rng.normal(0, 40)),
            drift_s_per_day=float(rng.normal(0, 1.5)), battery=float(rng.uniform(60, 100)),
            firmware=str(rng.choice(FIRMWARE)))
        self.order = 0

    def day(self, d: int) -> Iterator[Outgoing]:
        p, rng = self.person.persona, self.rng
        today = self.person.start_date + timedelta(days=d)
        frac = min(d / (TREND_DAYS - 1), 1.0)
        fasting_mean = p.fasting_start + (p.fasting_end - p.fasting_start) * frac
        adherence = p.adherence_start + (p.adherence_end - p.adherence_start) * frac
        fasting = float(rng.normal(fasting_mean, p.day_sd))
        measured: Measured = []
        if rng.random() < adherence:
            fasting = self._morning(today, fasting, fasting_mean, measured)
        elif p.clock_backdate_rate and d > 0 and rng.random() < p.clock_backdate_rate:
            self._backdated_morning(today, measured)
        self._later_in_the_day(today, fasting, adherence, measured)
        self._moves_on(today)
        yield from self._deliver(today, measured)

    def _record(self, true_local: datetime, mmol: float, meal: Meal, *,
                sample: Sample = Sample.CAPILLARY_PLASMA, source: Source = Source.METER,
                status: tuple[str, ...] = (), clock_shift: timedelta = timedelta()) -> Record:
        stamp = true_local + timedelta(seconds=self.state.clock_offset_s) + clock_shift
        flags = list(status)
        if self.state.battery < LOW_BATTERY_PCT and "battery_low" not in flags:
            flags.append("battery_low")
        # seq is given when the meter stores the record, in the order of true time (_deliver).
        return Record(seq=-1, measured_at=stamp.replace(microsecond=0), value=_value(
            mmol, self.person.unit), unit=self.person.unit, meal=meal, sample=sample,
            source=source, status=tuple(flags))

    def _at(self, today: date, hour: float, spread_min: float) -> datetime:
        minutes = hour * 60 + float(self.rng.normal(0, spread_min))
        minutes = min(max(minutes, 0), 24 * 60 - 1)
        return datetime.combine(today, time(), self.zone) + timedelta(minutes=minutes)

    def _morning(self, today: date, fasting: float, fasting_mean: float,
                 measured: Measured) -> float:
        """The fasting measurement, and what some personas do around it; returns the fasting
        value the rest of the day builds on (a retester's last try)."""
        p, rng = self.person.persona, self.rng
        when = self._at(today, 7.0, 35)
        if p.control_solution_rate and rng.random() < p.control_solution_rate:
            measured.append((when, self._record(when, float(rng.normal(5.9, 0.2)), Meal.FASTING,
                                                sample=Sample.CONTROL_SOLUTION)))
            when += timedelta(minutes=float(rng.uniform(2, 10)))
        if p.manual_rate and rng.random() < p.manual_rate:
            measured.append((when, self._record(when - timedelta(minutes=5), float(
                rng.normal(5.8, 0.3)), Meal.FASTING, source=Source.MANUAL)))
        if rng.random() < STRIP_ERROR_RATE:
            error = str(rng.choice(["strip_insertion_error", "sample_size_insufficient"]))
            measured.append((when, self._record(when, fasting, Meal.FASTING, status=(error,))))
            when += timedelta(minutes=2)
        measured.append((when, self._record(when, fasting, Meal.FASTING)))
        if p.retest:
            tries = 0
            while not 4.4 <= fasting <= 7.0 and tries < 3:
                when += timedelta(minutes=float(rng.uniform(3, 12)))
                fasting = float(rng.normal(fasting_mean - 0.8, p.day_sd))
                measured.append((when, self._record(when, fasting, Meal.FASTING)))
                tries += 1
        return fasting

    def _backdated_morning(self, today: date, measured: Measured) -> None:
        """Missed the morning: measure at noon with the clock set back to "yesterday 07:00"
        (the meter sometimes notices and raises time_fault)."""
        when = self._at(today, 12.5, 30)
        shift = (datetime.combine(today - timedelta(days=1), time(7), self.zone)) - when
        status = ("time_fault",) if self.rng.random() < 0.5 else ()
        measured.append((when, self._record(when, float(self.rng.normal(5.9, 0.3)),
                                            Meal.FASTING, status=status, clock_shift=shift)))

    def _later_in_the_day(self, today: date, fasting: float, adherence: float,
                          measured: Measured) -> None:
        rng = self.rng
        for hour, meal, rise, chance in LATER_MEASUREMENTS:
            if rng.random() < chance * adherence:
                when = self._at(today, hour, 40)
                measured.append((when, self._record(when, fasting + float(rng.normal(rise, 1.0)),
                                                    meal)))
        if rng.random() < self.person.persona.hypo_rate:
            when = self._at(today, float(rng.uniform(10, 23)), 10)
            measured.append((when, self._record(when, float(rng.uniform(2.4, 3.8)),
                                                Meal.CASUAL)))

    def _moves_on(self, today: date) -> None:
        """The meter's clock drifts, its battery drains; sometimes the phone goes away."""
        state, rng = self.state, self.rng
        state.clock_offset_s += state.drift_s_per_day
        state.battery -= float(rng.uniform(*BATTERY_DRAIN_PER_DAY))
        if state.battery < 3:
            state.battery = 100.0
        if state.offline_until is None and rng.random() < OFFLINE_START_RATE:
            state.offline_until = today + timedelta(days=int(rng.integers(*OFFLINE_DAYS)))

    def _deliver(self, today: date, measured: Measured) -> Iterator[Outgoing]:
        """The meter stores the day's records in true-time order (each takes the next seq) and
        sends each soon after it, or keeps them while offline and syncs them in batches in the
        evening it is back."""
        state = self.state
        measured.sort(key=lambda pair: pair[0])
        stored_records = []
        for when, rec in measured:
            stored_records.append((when, replace(rec, seq=state.seq)))
            state.seq = (state.seq + 1) % SEQ_MODULO
        last_true = stored_records[-1][0] if stored_records else None
        for when, rec in stored_records:
            if state.offline_until is not None:
                state.stored.append(rec)
                continue
            sent = when.astimezone(UTC) + timedelta(seconds=float(self.rng.uniform(1, 20)))
            if state.last_sent is not None and sent <= state.last_sent:
                sent = state.last_sent + timedelta(seconds=1)
            state.last_sent = sent
            yield from self._send(sent, (rec,))
        if state.offline_until is not None and today >= state.offline_until:
            sync = datetime.combine(today, time(20), self.zone)
            if last_true is not None and last_true >= sync:
                sync = last_true + timedelta(minutes=5)
            batch = tuple(state.stored)
            state.stored.clear()
            state.offline_until = None
            for i in range(0, len(batch), SYNC_BATCH):
                yield from self._send(sync.astimezone(UTC), batch[i:i + SYNC_BATCH])

    def _send(self, sent: datetime, records: tuple[Record, ...]) -> Iterator[Outgoing]:
        person, state, order = self.person, self.state, self.order
        self.order += 3
        if state.status_day != sent.date():
            state.status_day = sent.date()
            status = DeviceStatus(person.device_id, sent, "online",
                                  battery_pct=int(state.battery), firmware=state.firmware,
                                  clock_offset_s=round(state.clock_offset_s, 1))
            yield Outgoing(sent, order, status.topic, _kept(status.encode()), retain=True)
        message = (self._relayed(sent, records) if person.link == Link.GLS_GATEWAY
                   else ReadingsMessage(person.device_id, sent, records))
        seqs = tuple(r.seq for r in records)
        payload = _kept(message.encode())
        yield Outgoing(sent, order + 1, message.topic, payload, seqs=seqs)
        if self.rng.random() < DUPLICATE_SEND_RATE:
            yield Outgoing(sent + DUPLICATE_AFTER, order + 2, message.topic,
                           payload, seqs=seqs)

    def _relayed(self, sent: datetime, records: tuple[Record, ...]) -> GatewayMessage:
        """The records as a Bluetooth meter holds them (its local clock, no zone; the value in
        kg/L or mol/L) and the meter's clock as the gateway reads it at `sent`."""
        rng = self.link_rng
        meter_time = (sent.astimezone(self.zone).replace(tzinfo=None)
                      + timedelta(seconds=self.state.clock_offset_s))
        entries = []
        for r in records:
            with_context = rng.random() >= GATEWAY_CONTEXT_MISSING_RATE
            offset = int(rng.choice((-60, 30, 60))) if rng.random() < GATEWAY_TIME_OFFSET_RATE \
                else 0
            m = gls.Measurement(r.seq, r.measured_at.replace(tzinfo=None), r.value, r.unit,
                                r.sample, status_bits(r.status), with_context)
            entries.append(GlsEntry(gls.encode_measurement(m, offset), gls.encode_context(
                gls.Context(r.seq, r.meal)) if with_context else None))
        return GatewayMessage(self.person.device_id, sent, meter_time, tuple(entries))


class _Sensor:
    """One simulated CGM and its phone: readings drawn a week at a time
    (devices/cgm_sensor.py), sent live or back-filled, and each sensor session reported on the
    status topic when it starts, when its warm-up ends and when it ends or fails."""

    def __init__(self, person: Policyholder, persona: CgmPersona, seed: int) -> None:
        self.person, self.persona, self.seed = person, persona, seed
        self.zone = ZoneInfo(person.timezone)
        self.plan = cgm_sensor.SessionPlan(person.device_id, self._midnight(person.start_date),
                                    persona, _rng(seed, "sensors", person.index))
        self.seq = int(_rng(seed, "cgm-seq", person.index).integers(0, SEQ_MODULO))
        self.order = 0

    def _midnight(self, day: date) -> datetime:
        return datetime.combine(day, time(), self.zone).astimezone(UTC)

    def messages(self, days: int | None) -> Iterator[Outgoing]:
        """In send order: a back-fill sent after a week's end waits for the next week's. Whole
        weeks are always drawn and what falls after `days` dropped, so a day's readings do not
        depend on how many days are asked for."""
        pending: list[Outgoing] = []
        chunk = 0
        stop = None if days is None else self._midnight(
            self.person.start_date + timedelta(days=days))
        while days is None or chunk * CGM_CHUNK_DAYS < days:
            first = self.person.start_date + timedelta(days=chunk * CGM_CHUNK_DAYS)
            begin = self._midnight(first)
            end = self._midnight(first + timedelta(days=CGM_CHUNK_DAYS))
            pending += self._week(begin, end, chunk, stop)
            pending.sort(key=_send_order)
            ready = [m for m in pending if m.at < end]
            pending = pending[len(ready):]
            yield from ready
            chunk += 1
        yield from pending

    def _week(self, begin: datetime, end: datetime, chunk: int, stop: datetime | None
              ) -> list[Outgoing]:
        person = self.person
        w = cgm_sensor.wear(self.persona, begin, end, time(), self.plan.until(end),
                     _rng(self.seed, "cgm", person.index, chunk), self.seq)
        self.seq = (self.seq + len(w.measured_ns)) % SEQ_MODULO
        if stop is not None:  # the asked-for days end inside this week
            keep = w.measured_ns < cgm_sensor.ns(stop)
            w = cgm_sensor.Wear(w.measured_ns[keep], w.mgdl[keep], w.seq[keep], w.sent_ns[keep],
                         w.sessions)
            end = min(end, stop)
        out = [self._status(at, s, state) for s in w.sessions
               for at, state in ((s.started_at, "warming_up"), (s.warmup_ends_at, "active"),
                                 (s.ended_at, "failed" if s.failed else "ended"))
               if begin <= at < end]
        local = pd.DatetimeIndex(w.measured_ns.astype("datetime64[ns]"), tz="UTC").tz_convert(
            self.zone).to_pydatetime()
        for sent_ns, rows in cgm_sensor.batches(w):
            records = tuple(Record(
                int(w.seq[i]), local[i], _value(float(w.mgdl[i]) / MGDL_PER_MMOL, person.unit),
                person.unit, Meal.UNKNOWN, Sample.INTERSTITIAL_FLUID, Source.METER)
                for i in rows)
            sent = datetime.fromtimestamp(sent_ns / 1e9, UTC).replace(microsecond=0)
            message = ReadingsMessage(person.device_id, sent, records)
            out.append(Outgoing(sent, self._next(), message.topic, _kept(message.encode()),
                                seqs=tuple(r.seq for r in records)))
        return out

    def _status(self, at: datetime, s: cgm_sensor.SensorSession, state: str) -> Outgoing:
        status = DeviceStatus(self.person.device_id, at.replace(microsecond=0), "online",
                              sensor=SensorReport(
                                  s.sensor_id, state, s.started_at, s.warmup_ends_at,
                                  s.expected_end_at, s.ended_at if state in ("ended", "failed")
                                  else None))
        return Outgoing(status.sent_at, self._next(), status.topic, _kept(status.encode()),
                        retain=True)

    def _next(self) -> int:
        self.order += 1
        return self.order


def fleet_messages(people: list[Policyholder], seed: int, days: int,
                   until: datetime | None = None) -> list[Outgoing]:
    """All meters' messages over `days` days (and sent before `until`), merged in send order.
    Holds the fleet's whole history: fleet_stream gives the same messages a few at a time."""
    return list(fleet_stream(people, seed, days, until))


def meter_history(person: Policyholder, seed: int, days: int, until: datetime | None = None
                  ) -> Iterator[Outgoing]:
    """One meter's messages over `days` days (and sent before `until`), in send order, lazily."""
    messages = meter_messages(person, seed, days)
    return messages if until is None else itertools.takewhile(lambda m: m.at < until, messages)


def fleet_stream(people: list[Policyholder], seed: int, days: int,
                 until: datetime | None = None) -> Iterator[Outgoing]:
    """fleet_messages drawn as they are needed: each meter's stream is in send order, so a
    merge of them is too, holding a few messages per meter."""
    return heapq.merge(*(meter_history(p, seed, days, until) for p in people), key=_send_order)
