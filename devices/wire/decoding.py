"""Ingest's side of wire format v1, in three steps (Tidepool's habit): `parse` bytes into JSON,
`validate` collecting every problem with its JSON path, `normalise` into a `Reading` in mmol/L
and UTC. Pure: no I/O, so it is tested on its own and imported without the threaded worker.

A record that passes is stored as it came; whether it counts for pricing (control solution,
manual entries, error statuses, the meter's range, the clock) is the ruleset's business
(pricing/ruleset.py). Here only what can never be a reading is refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple

import msgspec
import orjson

from devices.wire import gls
from devices.wire.messages import (
    ENVELOPE_FIELDS,
    MAX_RECORDS,
    MAX_STATUS_BYTES,
    RECORD_FIELDS,
    SENSOR_STATES,
)
from devices.wire.values import in_mmol, mmol_of, stored_decimal, value_of
from kernel.sequence import MAX_PAYLOAD_BYTES
from kernel.vocabulary import Meal, Sample, Source, Status, Unit

# A reading outside this is physically impossible for a capillary meter and is refused at ingest;
# the narrower meter range (20-600 mg/dL) is the pricing ruleset's business.
ABSOLUTE_MAX_MMOL = 100.0
# A measured_at before this, or more than a year ahead of the receive time, is no reading at all
# (a reset clock); the tolerances that matter for money are the ruleset's.
EARLIEST_PLAUSIBLE = datetime(2000, 1, 1, tzinfo=UTC)
IMPLAUSIBLY_AHEAD = timedelta(days=366)


class RejectReason(StrEnum):
    """Why ingest refused a message or record; stored in rejected_messages.reason."""

    PAYLOAD_TOO_LARGE = "payload_too_large"
    INVALID_UTF8 = "invalid_utf8"
    INVALID_JSON = "invalid_json"
    UNKNOWN_TOPIC = "unknown_topic"
    INVALID_ENVELOPE = "invalid_envelope"
    DEVICE_MISMATCH = "device_mismatch"
    UNKNOWN_DEVICE = "unknown_device"
    INVALID_RECORD = "invalid_record"
    VALUE_OUT_OF_RANGE = "value_out_of_range"
    TIMESTAMP_IMPLAUSIBLE = "timestamp_implausible"
    CONFLICTING_DUPLICATE = "conflicting_duplicate"
    GLS_SPECIAL_VALUE = "gls_special_value"  # SFLOAT NaN, NRes, +/-INFINITY, reserved
    GLS_TRUNCATED = "gls_truncated"  # a Bluetooth record ends inside a field
    GLS_TRAILING_BYTES = "gls_trailing_bytes"
    GLS_ORPHAN_CONTEXT = "gls_orphan_context"  # a context whose seq matches no measurement
    GLS_BAD_BASE64 = "gls_bad_base64"
    GLS_METER_TIME = "gls_meter_time"  # the meter's clock as the gateway read it, unreadable
    STORAGE_ERROR = "storage_error"  # valid on the wire, refused by the database
    DECODER_ERROR = "decoder_error"  # our bug, not the device's: kept for review, never fatal


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a message, with the JSON path of the field."""

    reason: RejectReason
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class Reading(NamedTuple):
    """A validated, normalised record, ready for the readings table: its fields are the
    table's columns, in order (a tuple: ingest builds hundreds of thousands a second)."""

    device_id: str
    seq: int
    measured_at: datetime  # UTC
    utc_offset_min: int  # the meter's own offset, as sent
    received_at: datetime
    value_digits: int  # the value as sent, in `unit`: digits x 10^exponent (values.py)
    value_exponent: int
    unit: str
    meal: str
    sample: str
    source: str
    status: int

    @property
    def value(self) -> float:
        """As sent, in `unit`."""
        return value_of(self.value_digits, self.value_exponent)

    @property
    def value_mmol(self) -> float:
        """In mmol/L, unrounded."""
        return mmol_of(self.value_digits, self.value_exponent, self.unit)


class WireError(ValueError):
    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(map(str, problems)))
        self.problems = problems

    @property
    def reason(self) -> RejectReason:
        return self.problems[0].reason


def parse(payload: bytes) -> Any:
    """Step 1: bytes to JSON. Raises WireError(payload_too_large|invalid_utf8|invalid_json).

    orjson accepts only what RFC 8259 allows: no NaN or Infinity, no number that overflows a
    double, no lone surrogate escape, at most 1024 levels of nesting (Python's json module
    raised RecursionError on deep nesting and let lone surrogates through to the database)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise WireError([Problem(RejectReason.PAYLOAD_TOO_LARGE, "$",
                                 f"{len(payload)} bytes, limit {MAX_PAYLOAD_BYTES}")])
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise WireError([Problem(RejectReason.INVALID_UTF8, "$", str(bad))]) from None
        raise WireError([Problem(RejectReason.INVALID_JSON, "$", str(exc))]) from None


def parse_timestamp(value: Any, path: str, problems: list[Problem]) -> datetime | None:
    if not isinstance(value, str):
        problems.append(Problem(RejectReason.INVALID_RECORD, path, "must be an ISO-8601 string"))
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        problems.append(Problem(RejectReason.INVALID_RECORD, path, f"not ISO-8601: {value[:40]!r}"))
        return None
    if ts.tzinfo is None or ts.utcoffset() is None:
        problems.append(Problem(RejectReason.INVALID_RECORD, path, "needs a UTC offset"))
        return None
    if not _in_utc_range(ts):
        problems.append(Problem(RejectReason.INVALID_RECORD, path,
                                f"{value[:40]!r} lies outside years 1..9999 in UTC"))
        return None
    return ts


def _in_utc_range(ts: datetime) -> bool:
    """Whether an aware time has a UTC instant (9999-12-31T23:59-23:59 has none: it falls in
    the year 10000)."""
    try:
        ts.astimezone(UTC)
    except OverflowError:
        return False
    return True


def _enum(value: Any, enum: type[StrEnum], path: str, problems: list[Problem]) -> str | None:
    if isinstance(value, str) and value in enum._value2member_map_:
        return value
    allowed = ", ".join(m.value for m in enum)
    problems.append(Problem(RejectReason.INVALID_RECORD, path,
                            f"{str(value)[:40]!r} is not one of {allowed}"))
    return None


def validate_envelope(doc: Any, topic_device_id: str, entries: str = "records",
                      fields: frozenset[str] = ENVELOPE_FIELDS) -> list[Any]:
    """Step 2a: the message around the records (or a gateway's Bluetooth entries, `gls`).
    Returns the raw list."""
    problems: list[Problem] = []
    if not isinstance(doc, dict):
        raise WireError([Problem(RejectReason.INVALID_ENVELOPE, "$", "must be a JSON object")])
    device_id = doc.get("device_id")
    if not isinstance(device_id, str):
        problems.append(Problem(RejectReason.INVALID_ENVELOPE, "$.device_id", "missing or not a "
                                "string"))
    elif device_id != topic_device_id:
        problems.append(Problem(RejectReason.DEVICE_MISMATCH, "$.device_id",
                                f"{device_id[:64]!r} published on the topic of "
                                f"{topic_device_id!r}"))
    if "sent_at" not in doc:
        problems.append(Problem(RejectReason.INVALID_ENVELOPE, "$.sent_at", "missing"))
    else:
        sub: list[Problem] = []
        parse_timestamp(doc["sent_at"], "$.sent_at", sub)
        problems += [Problem(RejectReason.INVALID_ENVELOPE, p.path, p.message) for p in sub]
    records = doc.get(entries)
    if not isinstance(records, list) or not records:
        problems.append(Problem(RejectReason.INVALID_ENVELOPE, f"$.{entries}",
                                "must be a non-empty list"))
    elif len(records) > MAX_RECORDS:
        problems.append(Problem(RejectReason.INVALID_ENVELOPE, f"$.{entries}",
                                f"{len(records)} records, limit {MAX_RECORDS}"))
    if not doc.keys() <= fields:
        unknown = doc.keys() - fields
        problems.append(Problem(RejectReason.INVALID_ENVELOPE, "$",
                                f"unknown fields {sorted(unknown)[:5]}"))
    if problems:
        # A device mismatch is the headline: it is the one that hints at abuse.
        problems.sort(key=lambda p: p.reason != RejectReason.DEVICE_MISMATCH)
        raise WireError(problems)
    assert isinstance(records, list)
    return records


_UNITS = frozenset(m.value for m in Unit)
_MEALS = frozenset(m.value for m in Meal)
_SAMPLES = frozenset(m.value for m in Sample)
_SOURCES = frozenset(m.value for m in Source)
_STATUS_BIT = {s.name: 1 << s.value for s in Status}


# seq, measured_at, value, unit, meal, sample, source, status bits
_Checked = tuple[int, datetime, float, str, str, str, str, int]


# The fast path: a record (or a whole readings message) valid in every field decodes in C
# (msgspec) straight into these typed structs, whose fields are the wire format's
# (devices/wire/messages.py) and whose literals are the vocabulary's. Whatever they refuse
# takes the thorough path, which names every problem; both accept exactly the same records
# (tests/test_decoding.py).
if TYPE_CHECKING:
    _UnitName = str
    _MealName = str
    _SampleName = str
    _SourceName = str
    _StatusName = str
else:
    _UnitName = Literal[tuple(sorted(_UNITS))]
    _MealName = Literal[tuple(sorted(_MEALS))]
    _SampleName = Literal[tuple(sorted(_SAMPLES))]
    _SourceName = Literal[tuple(sorted(_SOURCES))]
    _StatusName = Literal[tuple(sorted(_STATUS_BIT))]


class _Record(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    seq: Annotated[int, msgspec.Meta(ge=0, le=0xFFFF)]
    measured_at: str
    value: float
    unit: _UnitName
    meal: _MealName
    sample: _SampleName
    source: _SourceName
    status: list[_StatusName]


class _Message(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    device_id: str
    sent_at: str
    records: list[_Record]
    version: Any = None


assert frozenset(_Record.__struct_fields__) == RECORD_FIELDS
assert frozenset(_Message.__struct_fields__) == ENVELOPE_FIELDS
_decode_message = msgspec.json.Decoder(_Message).decode


def _aware(text: str) -> datetime | None:
    """An ISO-8601 time with its UTC offset, or None."""
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        return None
    # fromisoformat's zones have an offset; a time without a UTC instant takes the path that
    # names the problem
    return ts if ts.tzinfo is not None and _in_utc_range(ts) else None


def _typed_checked(r: _Record) -> _Checked | None:
    measured_at = _aware(r.measured_at)
    if measured_at is None or not math.isfinite(r.value):
        return None
    bits = 0
    for name in r.status:
        bits |= _STATUS_BIT[name]
    return r.seq, measured_at, r.value, r.unit, r.meal, r.sample, r.source, bits


def check_fast(raw: Any) -> _Checked | None:
    """Step 2b for the common case, a valid record, without building anything for errors.
    None means "not obviously valid": the thorough check below then names every problem."""
    try:
        return _typed_checked(msgspec.convert(raw, _Record))
    except msgspec.ValidationError:
        return None


def check_thorough(raw: Any, index: int) -> _Checked:
    """Step 2b, naming every problem with its field path. Raises WireError."""
    p = f"$.records[{index}]"
    if not isinstance(raw, dict):
        raise WireError([Problem(RejectReason.INVALID_RECORD, p, "must be an object")])
    problems: list[Problem] = []
    if raw.keys() != RECORD_FIELDS:
        missing = RECORD_FIELDS - raw.keys()
        if missing:
            problems.append(Problem(RejectReason.INVALID_RECORD, p, f"missing {sorted(missing)}"))
        unknown = raw.keys() - RECORD_FIELDS
        if unknown:
            problems.append(Problem(RejectReason.INVALID_RECORD, p, f"unknown fields "
                                    f"{sorted(unknown)[:5]}"))
    seq = raw.get("seq")
    if not (type(seq) is int and 0 <= seq <= 0xFFFF):
        problems.append(Problem(RejectReason.INVALID_RECORD, f"{p}.seq",
                                "must be an integer 0..65535"))
    measured_at = parse_timestamp(raw.get("measured_at"), f"{p}.measured_at", problems)
    value = raw.get("value")
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        problems.append(Problem(RejectReason.INVALID_RECORD, f"{p}.value", "must be a number"))
        value = None
    unit, meal, sample, source = raw.get("unit"), raw.get("meal"), raw.get("sample"), raw.get(
        "source")
    if not (isinstance(unit, str) and unit in _UNITS):
        _enum(unit, Unit, f"{p}.unit", problems)
    if not (isinstance(meal, str) and meal in _MEALS):
        _enum(meal, Meal, f"{p}.meal", problems)
    if not (isinstance(sample, str) and sample in _SAMPLES):
        _enum(sample, Sample, f"{p}.sample", problems)
    if not (isinstance(source, str) and source in _SOURCES):
        _enum(source, Source, f"{p}.source", problems)
    status = raw.get("status")
    bits = 0
    if not isinstance(status, list):
        problems.append(Problem(RejectReason.INVALID_RECORD, f"{p}.status", "must be a list"))
    else:
        for i, name in enumerate(status):
            bit = _STATUS_BIT.get(name) if isinstance(name, str) else None
            if bit is None:
                problems.append(Problem(RejectReason.INVALID_RECORD, f"{p}.status[{i}]",
                                        f"{str(name)[:40]!r} is not a GLS status name"))
            else:
                bits |= bit
    if problems:
        raise WireError(problems)
    assert measured_at is not None and value is not None and type(seq) is int
    assert isinstance(unit, str) and isinstance(meal, str) and isinstance(sample, str)
    assert isinstance(source, str)
    return seq, measured_at, float(value), unit, meal, sample, source, bits


def normalise_record(raw: Any, index: int, device_id: str, received_at: datetime) -> Reading:
    """Steps 2b and 3 for one record: validate every field, then normalise to mmol/L and UTC."""
    checked = check_fast(raw) or check_thorough(raw, index)
    return _normalised(index, device_id, received_at, received_at + IMPLAUSIBLY_AHEAD, *checked)


def normalise_checked(index: int, device_id: str, received_at: datetime, seq: int,
                      measured_at: datetime, value: float, unit: str, meal: str, sample: str,
                      source: str, bits: int) -> Reading:
    """Step 3 for a record whose fields another front door has checked already (the Nightscout
    API, nightscout/mapping.py): the same range and clock checks, the same normalisation.
    Raises WireError."""
    return _normalised(index, device_id, received_at, received_at + IMPLAUSIBLY_AHEAD, seq,
                       measured_at, value, unit, meal, sample, source, bits)


_MINUTE = timedelta(minutes=1)
# A Reading from the tuple of its fields, built field for field in _normalised: tuple's own
# __new__, without the NamedTuple's Python-level one or _make's length check (135 -> 80 ns).
_new_reading: Callable[[type[Reading], tuple[Any, ...]], Reading] = tuple.__new__
# Minutes east of UTC of the offsets times came in, by their tzinfo: a meter's records share
# one or two offsets, and reading the minutes off each time cost a tenth of a microsecond a
# record (the lookup, a fifth of that). Bounded: an offset may carry seconds.
_OFFSET_MINUTES: dict[tzinfo | None, int] = {}
_OFFSETS_KEPT = 1024


def _offset_minutes(ts: datetime) -> int:
    """Whole minutes of an aware time's UTC offset, rounded down (the readings' column), kept
    in _OFFSET_MINUTES for the next time in that offset."""
    offset = ts.utcoffset()
    assert offset is not None
    minutes: int = offset // _MINUTE
    if len(_OFFSET_MINUTES) < _OFFSETS_KEPT:
        _OFFSET_MINUTES[ts.tzinfo] = minutes
    return minutes


def _normalised(index: int, device_id: str, received_at: datetime, latest: datetime, seq: int,
                measured_at: datetime, value: float, unit: str, meal: str, sample: str,
                source: str, bits: int) -> Reading:
    """Step 3: a checked record in mmol/L and UTC, or the reason it can be no reading.
    `latest` is the receive time + IMPLAUSIBLY_AHEAD (once per message, not per record)."""
    if not 0 < in_mmol(value, unit) <= ABSOLUTE_MAX_MMOL:
        raise WireError([Problem(RejectReason.VALUE_OUT_OF_RANGE, f"$.records[{index}].value",
                                 f"{value} {unit} is no possible blood glucose")])
    utc = measured_at.astimezone(UTC)
    if utc < EARLIEST_PLAUSIBLE or utc > latest:  # the meter's clock, far off ours
        raise WireError([Problem(RejectReason.TIMESTAMP_IMPLAUSIBLE,
                                 f"$.records[{index}].measured_at",
                                 f"{measured_at.isoformat()} is too far from the receive time "
                                 f"{received_at.isoformat()}")])
    minutes = _OFFSET_MINUTES.get(measured_at.tzinfo)
    if minutes is None:
        minutes = _offset_minutes(measured_at)
    digits, exponent = stored_decimal(value, unit)
    return _new_reading(Reading, (device_id, seq, utc, minutes, received_at, digits, exponent,
                                  unit, meal, sample, source, bits))


@dataclass
class Decoded:
    """What one readings message came to: the readings to store and the records refused."""

    readings: list[Reading]
    rejected: list[WireError]


def decode_readings(payload: bytes, topic_device_id: str, received_at: datetime,
                    trust_sent_at: bool = False) -> Decoded:
    """All three steps for a readings message: a meter's records, or a gateway's raw Bluetooth
    Glucose Service records first decoded to records. Raises WireError when the whole message
    is bad; a bad record inside a good message costs only that record.

    `trust_sent_at` (replays of recorded or simulated history only) takes the gateway's sent_at
    as the receive time when it is not later than the real one.
    """
    fast = decode_valid(payload, topic_device_id, received_at, trust_sent_at)
    if fast is not None:
        return fast
    return decode_thorough(payload, topic_device_id, received_at, trust_sent_at)


def decode_thorough(payload: bytes, topic_device_id: str, received_at: datetime,
                    trust_sent_at: bool = False) -> Decoded:
    """decode_readings for any message, naming every problem of a bad one."""
    doc = parse(payload)
    out = Decoded([], [])
    records: Iterable[tuple[int, Any]]
    if isinstance(doc, dict) and "gls" in doc:
        records = _gls_records(doc, topic_device_id, out)
    else:
        records = enumerate(validate_envelope(doc, topic_device_id))
    if trust_sent_at:
        sent = datetime.fromisoformat(doc["sent_at"]).astimezone(UTC)
        received_at = min(received_at, sent)
    for i, raw in records:
        try:
            out.readings.append(normalise_record(raw, i, topic_device_id, received_at))
        except WireError as exc:
            out.rejected.append(exc)
    return out


def decode_valid(payload: bytes, topic_device_id: str, received_at: datetime,
                  trust_sent_at: bool = False) -> Decoded | None:
    """decode_readings for a v1 message whose envelope and records are valid in every field
    (values out of range and implausible times are refused here too, record by record), or
    None: the message then takes the path that names every problem."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return None
    try:
        message = _decode_message(payload)
    except msgspec.MsgspecError:
        return None
    sent = _aware(message.sent_at)
    if (sent is None or message.device_id != topic_device_id
            or not 0 < len(message.records) <= MAX_RECORDS):
        return None
    if trust_sent_at:
        received_at = min(received_at, sent.astimezone(UTC))
    latest = received_at + IMPLAUSIBLY_AHEAD
    out = Decoded([], [])
    for i, r in enumerate(message.records):
        checked = _typed_checked(r)
        if checked is None:
            return None
        try:
            out.readings.append(_normalised(i, topic_device_id, received_at, latest, *checked))
        except WireError as exc:
            out.rejected.append(exc)
    return out


GLS_ENVELOPE_FIELDS = frozenset({"device_id", "sent_at", "meter_time", "gls"})


def _gls_records(doc: dict[str, Any], topic_device_id: str, out: Decoded
                 ) -> list[tuple[int, dict[str, Any]]]:
    """A gateway's message of raw Bluetooth Glucose Service records (docs/wire-format.md): each
    entry decoded to a v1 record (devices/wire/gls.py) for the steps every record takes; an
    entry that cannot be decoded is refused into `out` with its own reason."""
    entries = validate_envelope(doc, topic_device_id, "gls", GLS_ENVELOPE_FIELDS)
    try:
        meter_time = gls.meter_clock(doc.get("meter_time"))
    except gls.GlsError as exc:
        raise WireError([Problem(RejectReason(exc.reason), "$.meter_time", str(exc))]) from None
    records, refused = gls.records(entries, meter_time, datetime.fromisoformat(doc["sent_at"]))
    out.rejected += [WireError([Problem(RejectReason(exc.reason), f"$.gls[{i}]", str(exc))])
                     for i, exc in refused]
    return records


def decode_status(payload: bytes, topic_device_id: str) -> dict[str, Any]:
    if len(payload) > MAX_STATUS_BYTES:
        raise WireError([Problem(RejectReason.PAYLOAD_TOO_LARGE, "$",
                                 f"{len(payload)} bytes, a status may have {MAX_STATUS_BYTES}")])
    doc = parse(payload)
    problems: list[Problem] = []
    if not isinstance(doc, dict):
        raise WireError([Problem(RejectReason.INVALID_ENVELOPE, "$", "must be a JSON object")])
    if doc.get("device_id") != topic_device_id:
        problems.append(Problem(RejectReason.DEVICE_MISMATCH, "$.device_id",
                                "differs from the topic"))
    if doc.get("state") not in ("online", "offline"):
        problems.append(Problem(RejectReason.INVALID_ENVELOPE, "$.state",
                                "must be online or offline"))
    battery = doc.get("battery_pct")
    if battery is not None and not (type(battery) is int and 0 <= battery <= 100):
        problems.append(Problem(RejectReason.INVALID_ENVELOPE, "$.battery_pct",
                                "must be an integer 0..100"))
    if "sent_at" in doc:
        sub: list[Problem] = []
        parse_timestamp(doc["sent_at"], "$.sent_at", sub)
        problems += [Problem(RejectReason.INVALID_ENVELOPE, p.path, p.message) for p in sub]
    offset = doc.get("clock_offset_s")
    if offset is not None and (type(offset) not in (int, float) or not math.isfinite(offset)):
        problems.append(Problem(RejectReason.INVALID_ENVELOPE, "$.clock_offset_s",
                                "must be a number"))
    firmware = doc.get("firmware")
    if firmware is not None and not (isinstance(firmware, str) and len(firmware) <= 64):
        problems.append(Problem(RejectReason.INVALID_ENVELOPE, "$.firmware",
                                "must be a string of at most 64 characters"))
    if "sensor" in doc:
        doc["sensor"] = _sensor(doc["sensor"], problems)
    if problems:
        raise WireError(problems)
    return doc


SENSOR_TIMES = ("started_at", "warmup_ends_at", "expected_end_at", "ended_at")


def _sensor(raw: Any, problems: list[Problem]) -> dict[str, Any] | None:
    """A status message's `sensor` (a CGM's session), its times parsed; problems named."""
    if not isinstance(raw, dict):
        problems.append(Problem(RejectReason.INVALID_ENVELOPE, "$.sensor", "must be an object"))
        return None
    found: list[Problem] = []
    sensor_id = raw.get("sensor_id")
    if not (isinstance(sensor_id, str) and 0 < len(sensor_id) <= 64):
        found.append(Problem(RejectReason.INVALID_ENVELOPE, "$.sensor.sensor_id",
                             "must be a string of 1 to 64 characters"))
    if raw.get("state") not in SENSOR_STATES:
        found.append(Problem(RejectReason.INVALID_ENVELOPE, "$.sensor.state",
                             f"must be one of {', '.join(SENSOR_STATES)}"))
    times: dict[str, datetime | None] = {}
    for key in SENSOR_TIMES:
        if key == "ended_at" and raw.get(key) is None:
            times[key] = None
            continue
        times[key] = parse_timestamp(raw.get(key), f"$.sensor.{key}", found)
    problems += [Problem(RejectReason.INVALID_ENVELOPE, p.path, p.message) for p in found]
    return None if found else {"sensor_id": sensor_id, "state": raw["state"], **times}
