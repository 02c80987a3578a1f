"""Bluetooth SIG Glucose Service records (GLS, service 0x1808), as a phone or hub relays them
verbatim: byte layouts to wire-format v1 records. Pure; no I/O.

A gateway reads a meter's Glucose Measurement (0x2A18) and, when present, Glucose Measurement
Context (0x2A34) characteristic values, and the meter's clock (Current Time, 0x2A2B), and sends
them undecoded. Decoding them here, server side, keeps gateways dumb and the decoding tested.
Byte layouts and sources: docs/domain.md#bluetooth-glucose-profile-records (Bluetooth SIG Glucose
Profile and Service specifications; IEEE 11073-20601 for SFLOAT). All integers little-endian.

`records(entries, meter_time, sent_at)` turns the relayed entries into the v1 record dicts that
`devices.wire.decoding` validates and normalises like any meter's, so there is one validation
path; what cannot become a record is a Problem with its own reason.

The other direction, `encode_measurement` and `encode_context`, is what a meter puts in its
characteristics: the simulator's gateway meters use it, and the round trip is tested.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from kernel.vocabulary import Meal, Sample, Source, Status, Unit, status_names

# IEEE 11073-20601 SFLOAT: 4-bit exponent, 12-bit mantissa, both two's complement.
SFLOAT_SPECIAL = {0x07FF: "NaN", 0x0800: "NRes", 0x07FE: "+INFINITY", 0x0802: "-INFINITY",
                  0x0801: "reserved"}
KG_PER_L_TO_MGDL = 100_000  # 1 kg/L = 100,000 mg/dL
MOL_PER_L_TO_MMOL = 1_000  # 1 mol/L = 1,000 mmol/L

# Glucose Measurement flags
TIME_OFFSET_PRESENT = 0x01
CONCENTRATION_PRESENT = 0x02  # with type and sample location
UNITS_MOL_PER_L = 0x04
STATUS_PRESENT = 0x08
CONTEXT_FOLLOWS = 0x10
# Glucose Measurement Context flags, in the order of the fields they announce
CARBOHYDRATE = 0x01  # id uint8 + SFLOAT kg
MEAL_PRESENT = 0x02  # uint8
TESTER_HEALTH = 0x04  # uint8 (two nibbles)
EXERCISE = 0x08  # duration uint16 s + intensity uint8 %
MEDICATION = 0x10  # id uint8 + SFLOAT
MEDICATION_LITRES = 0x20  # units only, no field
HBA1C = 0x40  # SFLOAT %
EXTENDED_FLAGS = 0x80  # uint8, right after the sequence number

# Type (low nibble) and sample location (high nibble) to our sample vocabulary. Control
# solution by either wins; "undetermined" blood types are taken as capillary whole blood, what
# a fingerstick meter measures.
TYPE_SAMPLE = {1: Sample.CAPILLARY_WHOLE_BLOOD, 2: Sample.CAPILLARY_PLASMA,
               3: Sample.VENOUS_WHOLE_BLOOD, 4: Sample.VENOUS_PLASMA,
               5: Sample.ARTERIAL_WHOLE_BLOOD, 6: Sample.ARTERIAL_PLASMA,
               7: Sample.CAPILLARY_WHOLE_BLOOD, 8: Sample.CAPILLARY_WHOLE_BLOOD,
               9: Sample.INTERSTITIAL_FLUID, 10: Sample.CONTROL_SOLUTION}
CONTROL_LOCATION = 4
FINGER_LOCATION, NO_LOCATION = 1, 15
SAMPLE_TYPE = {Sample.CAPILLARY_WHOLE_BLOOD: 1, Sample.CAPILLARY_PLASMA: 2,
               Sample.VENOUS_WHOLE_BLOOD: 3, Sample.VENOUS_PLASMA: 4,
               Sample.ARTERIAL_WHOLE_BLOOD: 5, Sample.ARTERIAL_PLASMA: 6,
               Sample.INTERSTITIAL_FLUID: 9, Sample.CONTROL_SOLUTION: 10}
MEALS = {1: Meal.PREPRANDIAL, 2: Meal.POSTPRANDIAL, 3: Meal.FASTING, 4: Meal.CASUAL,
         5: Meal.BEDTIME}
_STATUS_BITS = (1 << (max(s.value for s in Status) + 1)) - 1


class GlsError(ValueError):
    """A relayed value that cannot become a record; `reason` names which way it fails."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def sfloat(raw: int) -> float:
    """An IEEE 11073 SFLOAT's value; GlsError("gls_special_value") for NaN, NRes, +/-INF and
    the reserved value."""
    if raw in SFLOAT_SPECIAL:
        raise GlsError("gls_special_value", f"the concentration is {SFLOAT_SPECIAL[raw]}")
    exponent = raw >> 12
    mantissa = raw & 0x0FFF
    if exponent >= 0x8:
        exponent -= 0x10
    if mantissa >= 0x800:
        mantissa -= 0x1000
    return mantissa * 10.0 ** exponent


SFLOAT_MAX_MANTISSA = 2045  # 2046 and 2047 (and their negatives at exponent 0) are special


def to_sfloat(value: float) -> int:
    """`value` as the SFLOAT with the most precision that holds it (a mantissa within +/-2045);
    ValueError when no exponent can."""
    for exponent in range(-8, 8):
        mantissa = round(value / 10.0 ** exponent)
        if abs(mantissa) <= SFLOAT_MAX_MANTISSA:
            return (exponent & 0x0F) << 12 | (mantissa & 0x0FFF)
    raise ValueError(f"{value} does not fit an SFLOAT")


@dataclass(frozen=True)
class Measurement:
    seq: int
    local_time: datetime  # the meter's clock, no zone: base time + time offset
    value: float | None  # in `unit`; None when the meter sent no concentration
    unit: Unit
    sample: Sample
    status: int  # sensor status annunciation bits (our Status order)
    context_follows: bool


@dataclass(frozen=True)
class Context:
    seq: int
    meal: Meal | None


class _Reader:
    """Little-endian fields off a characteristic value, refusing short and long values."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def take(self, fmt: str) -> tuple[Any, ...]:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise GlsError("gls_truncated", f"{self.what}: {len(self.data)} bytes end inside "
                           f"a field at byte {self.pos}")
        fields = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return fields

    def done(self) -> None:
        if self.pos != len(self.data):
            raise GlsError("gls_trailing_bytes", f"{self.what}: {len(self.data) - self.pos} "
                           f"bytes after the last field")


def measurement(data: bytes) -> Measurement:
    """A Glucose Measurement (0x2A18) value."""
    r = _Reader(data, "measurement")
    flags, seq, year, month, day, hours, minutes, seconds = r.take("<BHHBBBBB")
    try:
        base = datetime(year, month, day, hours, minutes, seconds)
    except ValueError:
        raise GlsError("gls_truncated", f"measurement: base time {year}-{month}-{day} "
                       f"{hours}:{minutes}:{seconds} is no time") from None
    offset = r.take("<h")[0] if flags & TIME_OFFSET_PRESENT else 0
    value, sample = None, Sample.CAPILLARY_WHOLE_BLOOD
    unit = Unit.MMOL_L if flags & UNITS_MOL_PER_L else Unit.MG_DL
    if flags & CONCENTRATION_PRESENT:
        raw, type_location = r.take("<HB")
        concentration = sfloat(raw)
        value = (concentration * MOL_PER_L_TO_MMOL if flags & UNITS_MOL_PER_L
                 else concentration * KG_PER_L_TO_MGDL)
        kind, location = type_location & 0x0F, type_location >> 4
        sample = (Sample.CONTROL_SOLUTION if location == CONTROL_LOCATION
                  else TYPE_SAMPLE.get(kind, Sample.CAPILLARY_WHOLE_BLOOD))
    status = r.take("<H")[0] & _STATUS_BITS if flags & STATUS_PRESENT else 0
    r.done()
    return Measurement(seq, base + timedelta(minutes=offset), value, unit, sample, status,
                       bool(flags & CONTEXT_FOLLOWS))


def context(data: bytes) -> Context:
    """A Glucose Measurement Context (0x2A34) value; fields we do not use are skipped by their
    flags, so what follows them is still read right."""
    r = _Reader(data, "context")
    flags, seq = r.take("<BH")
    if flags & EXTENDED_FLAGS:
        r.take("<B")
    if flags & CARBOHYDRATE:
        r.take("<BH")
    meal = MEALS.get(r.take("<B")[0]) if flags & MEAL_PRESENT else None
    if flags & TESTER_HEALTH:
        r.take("<B")
    if flags & EXERCISE:
        r.take("<HB")
    if flags & MEDICATION:
        r.take("<BH")
    if flags & HBA1C:
        r.take("<H")
    r.done()
    return Context(seq, meal)


def encode_measurement(m: Measurement, time_offset_min: int = 0) -> bytes:
    """The Glucose Measurement value a meter sends for `m`: base time = its local time minus
    `time_offset_min` (the field is present when the offset is not 0)."""
    if m.value is None:
        raise ValueError("a measurement to send needs a concentration")
    flags = (CONCENTRATION_PRESENT | (TIME_OFFSET_PRESENT if time_offset_min else 0)
             | (UNITS_MOL_PER_L if m.unit == Unit.MMOL_L else 0)
             | (STATUS_PRESENT if m.status else 0) | (CONTEXT_FOLLOWS if m.context_follows else 0))
    base = m.local_time - timedelta(minutes=time_offset_min)
    out = struct.pack("<BHHBBBBB", flags, m.seq, base.year, base.month, base.day, base.hour,
                      base.minute, base.second)
    if time_offset_min:
        out += struct.pack("<h", time_offset_min)
    si = m.value / MOL_PER_L_TO_MMOL if m.unit == Unit.MMOL_L else m.value / KG_PER_L_TO_MGDL
    location = CONTROL_LOCATION if m.sample == Sample.CONTROL_SOLUTION else (
        NO_LOCATION if m.sample == Sample.INTERSTITIAL_FLUID else FINGER_LOCATION)
    out += struct.pack("<HB", to_sfloat(si), location << 4 | SAMPLE_TYPE[m.sample])
    if m.status:
        out += struct.pack("<H", m.status)
    return out


def encode_context(c: Context) -> bytes:
    """The Glucose Measurement Context value for `c`: its meal, when it has one."""
    meal_codes = {meal: code for code, meal in MEALS.items()}
    if c.meal is None or c.meal not in meal_codes:
        return struct.pack("<BH", 0, c.seq)
    return struct.pack("<BHB", MEAL_PRESENT, c.seq, meal_codes[c.meal])


def _bytes(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise GlsError("gls_bad_base64", f"{what} must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise GlsError("gls_bad_base64", f"{what} is not base64") from None


def meter_clock(text: Any) -> datetime:
    """The meter's clock as the gateway read it: YYYY-MM-DDTHH:MM:SS, no zone."""
    try:
        parsed = datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is not None:
        raise GlsError("gls_meter_time", f"meter_time {str(text)[:40]!r} is not a time like "
                       "2026-03-02T07:31:05 (the meter's own clock, no zone)")
    return parsed


def records(entries: list[Any], meter_time: datetime, sent_at: datetime
            ) -> tuple[list[tuple[int, dict[str, Any]]], list[tuple[int, GlsError]]]:
    """(entry index, v1 record dict) of the relayed entries, and (entry index, error) for each
    entry that cannot become one. A record's instant is sent_at - (meter_time - its meter time):
    the meter's clock error and its time zone corrected in one step."""
    out: list[tuple[int, dict[str, Any]]] = []
    refused: list[tuple[int, GlsError]] = []
    for i, entry in enumerate(entries):
        try:
            if not isinstance(entry, dict) or "measurement" not in entry:
                raise GlsError("gls_truncated", "an entry needs a measurement")
            m = measurement(_bytes(entry["measurement"], "measurement"))
            meal = Meal.UNKNOWN
            if entry.get("context") is not None:
                c = context(_bytes(entry["context"], "context"))
                if c.seq != m.seq:
                    raise GlsError("gls_orphan_context", f"context of seq {c.seq} beside the "
                                   f"measurement of seq {m.seq}")
                meal = c.meal or Meal.UNKNOWN
            if m.value is None:
                raise GlsError("gls_special_value", "the measurement carries no concentration")
            instant = sent_at - (meter_time - m.local_time)
            out.append((i, {"seq": m.seq, "measured_at": instant.isoformat(),
                             "value": round(m.value, 6), "unit": str(m.unit),
                             "meal": str(meal), "sample": str(m.sample),
                             "source": str(Source.METER), "status": status_names(m.status)}))
        except GlsError as exc:
            refused.append((i, exc))
    return out, refused
