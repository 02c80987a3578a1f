"""Nightscout entries to glucover readings and back. Pure: no I/O.

An entry of `type` sgv (a CGM's sensor glucose) becomes a reading of the policy's Nightscout
device in interstitial fluid; `mbg` (a meter's blood glucose, as the app recorded it) a
fingerstick reading in capillary plasma; both in mg/dL as sent, source `meter`, meal unknown.
The instant is `date` (ms since the epoch, UTC), kept with the UTC offset of `dateString` (or
v3's `utcOffset`). Each then goes through ingest's own normalisation (devices/wire/
decoding.py normalise_checked: the same range and clock checks as an MQTT reading), so a rule
of what can be a reading lives in one place.

A reading's identity is (device_id, seq, measured_at); here `seq` is the entry's type
(ENTRY_SEQ), so duplicates collapse on (device, instant, type) as Nightscout's do.

An sgv below DEXCOM_ERROR_BELOW is no glucose: Dexcom receivers use the values 0-38 for the
sensor's state (docs/nightscout.md#dexcom-error-codes). Such an entry becomes a SensorError,
recorded as device trouble and never as a reading. Other entry types (cal, etc.) are Ignored.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, NamedTuple

import msgspec
import orjson

from devices.wire import decoding
from devices.wire.decoding import Reading, RejectReason, WireError
from kernel.vocabulary import Meal, Sample, Source, Unit

ENTRY_SEQ = {"sgv": 0, "mbg": 1}
SEQ_TYPE = {seq: kind for kind, seq in ENTRY_SEQ.items()}
SAMPLE_OF_TYPE = {"sgv": Sample.INTERSTITIAL_FLUID.value, "mbg": Sample.CAPILLARY_PLASMA.value}
MG_DL, UNKNOWN_MEAL, METER = Unit.MG_DL.value, Meal.UNKNOWN.value, Source.METER.value

DEXCOM_ERROR_BELOW = 39  # sgv values below this are the sensor's state, not glucose
DEXCOM_ERRORS = {
    0: "no reading", 1: "sensor not active", 2: "minimal deviation", 3: "no antenna",
    5: "sensor not calibrated", 6: "counts deviation", 9: "absolute deviation",
    10: "power deviation", 12: "bad RF",
}
MAX_TEXT = 64  # of direction and the app's device name kept
MAX_OFFSET_MIN = 18 * 60  # a UTC offset further than this is no offset (ISO 8601's limit)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ID_NAMESPACE = uuid.UUID("6f1b5c2e-4d0a-5c1e-9b7f-3a2d1c0e9f8b")


class Accepted(NamedTuple):
    reading: Reading
    direction: str | None
    app_device: str | None


class SensorError(NamedTuple):
    measured_at: datetime
    code: int
    meaning: str


class Ignored(NamedTuple):
    type: str


class Refused(NamedTuple):
    reason: str  # a RejectReason value
    detail: str


Mapped = Accepted | SensorError | Ignored | Refused


def _text(value: Any) -> str | None:
    return value[:MAX_TEXT] if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _stated_time(text: Any) -> datetime | None:
    """A dateString with its UTC offset, or None."""
    if not isinstance(text, str):
        return None
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        return None
    return ts if ts.utcoffset() is not None else None


_ZONES: dict[timedelta, timezone] = {}


def _zone(offset: timedelta) -> timezone:
    zone = _ZONES.get(offset)
    if zone is None:
        zone = _ZONES[offset] = timezone(offset)
    return zone


def instant(date: Any, date_string: Any, utc_offset: Any, path: str) -> datetime:
    """An entry's time, aware, in the UTC offset the app stated (dateString's, else v3's
    utcOffset in minutes; UTC when it stated none): `date` (ms since 1970, UTC), else the
    dateString itself. Raises WireError when it has neither."""
    stated = _stated_time(date_string)
    offset = stated.utcoffset() if stated is not None else None
    if offset is None and type(utc_offset) is int and abs(utc_offset) <= MAX_OFFSET_MIN:
        offset = timedelta(minutes=utc_offset)
    ms = _number(date)
    if ms is None:
        if stated is None:
            raise WireError([decoding.Problem(RejectReason.INVALID_RECORD, f"{path}.date",
                                              "needs date (ms since 1970, UTC) or a dateString "
                                              "with its UTC offset")])
        return stated
    try:
        # One C call; ms / 1000 is within a tenth of a microsecond of the instant, and
        # fromtimestamp rounds to the nearest microsecond: exact to the millisecond.
        return datetime.fromtimestamp(ms / 1000, _zone(offset) if offset is not None else UTC)
    except (OverflowError, OSError, ValueError):
        raise WireError([decoding.Problem(RejectReason.TIMESTAMP_IMPLAUSIBLE, f"{path}.date",
                                          f"{ms!r} is no time")]) from None


class Entry(msgspec.Struct, gc=False):
    """The fields of an entry we read; the rest (delta, filtered, noise, ...) is skipped."""

    type: str | None = None
    sgv: float | None = None
    mbg: float | None = None
    date: float | None = None
    dateString: str | None = None  # Nightscout's names
    utcOffset: int | None = None
    direction: str | None = None
    device: str | None = None


_decode_entries = msgspec.json.Decoder(list[Entry]).decode


class NotEntries(ValueError):
    """An upload that is no JSON array (or object) at all: its reject reason and detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def decode_entries(body: bytes) -> list[Any]:
    """An upload's entries: typed Entry structs when every one has the expected field types
    (the common case, decoded in C), else the parsed JSON documents, which map_entry checks one
    by one. A single object is a list of one. Raises NotEntries."""
    try:
        return _decode_entries(body)
    except msgspec.DecodeError:
        pass
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise NotEntries(RejectReason.INVALID_JSON, f"invalid JSON: {exc}") from None
    if isinstance(doc, dict):
        return [doc]
    if not isinstance(doc, list):
        raise NotEntries(RejectReason.INVALID_ENVELOPE,
                         "the body must be a JSON array of entries (or one object)")
    return doc


def entry_type(kind: Any, sgv: Any, mbg: Any) -> str | None:
    if isinstance(kind, str):
        return kind
    if sgv is not None:
        return "sgv"
    return "mbg" if mbg is not None else None


def map_entry(entry: Any, index: int, device_id: str, received_at: datetime) -> Mapped:
    """One uploaded entry (an Entry or a parsed JSON document): a reading, a sensor error code,
    an entry type we do not keep, or refused with the reason (RejectReason) and what was
    wrong."""
    if isinstance(entry, Entry):
        return _map(entry.type, entry.sgv, entry.mbg, entry.date, entry.dateString,
                    entry.utcOffset, entry.direction, entry.device, index, device_id,
                    received_at)
    if not isinstance(entry, dict):
        return Refused(RejectReason.INVALID_RECORD, f"$[{index}]: must be an object")
    get = entry.get
    return _map(get("type"), get("sgv"), get("mbg"), get("date"), get("dateString"),
                get("utcOffset"), get("direction"), get("device"), index, device_id,
                received_at)


def _map(kind: Any, sgv: Any, mbg: Any, date: Any, date_string: Any, utc_offset: Any,
         direction: Any, device: Any, index: int, device_id: str, received_at: datetime
         ) -> Mapped:
    path = f"$[{index}]"
    kind = entry_type(kind, sgv, mbg)
    if kind not in ENTRY_SEQ:
        return Ignored(str(kind)[:MAX_TEXT])
    value = _number(sgv if kind == "sgv" else mbg)
    if value is None:
        return Refused(RejectReason.INVALID_RECORD, f"{path}.{kind}: must be a number (mg/dL)")
    try:
        at = instant(date, date_string, utc_offset, path)
        if kind == "sgv" and value < DEXCOM_ERROR_BELOW:
            code = int(value)
            return SensorError(at.astimezone(UTC), code,
                               DEXCOM_ERRORS.get(code, f"sensor code {code}"))
        reading = decoding.normalise_checked(
            index, device_id, received_at, ENTRY_SEQ[kind], at, value, MG_DL, UNKNOWN_MEAL,
            SAMPLE_OF_TYPE[kind], METER, 0)
    except WireError as exc:
        return Refused(exc.reason, str(exc).replace(f"$.records[{index}]", path))
    return Accepted(reading, _text(direction), _text(device))


# ---------------------------------------------------------------- what GET returns


def entry_id(device_id: str, seq: int, measured_at: datetime) -> str:
    """A stored entry's `_id`: 24 hex digits, as Nightscout's (MongoDB) ids look, derived from
    the reading's identity, so the same reading always has the same id."""
    ms = round(measured_at.timestamp() * 1000)
    return hashlib.sha1(f"{device_id}|{seq}|{ms}".encode()).hexdigest()[:24]  # noqa: S324


def identifier(device_id: str, seq: int, measured_at: datetime) -> str:
    """API v3's `identifier` of a stored entry: a UUID derived from the same identity."""
    ms = round(measured_at.timestamp() * 1000)
    return str(uuid.uuid5(_ID_NAMESPACE, f"{device_id}|{seq}|{ms}"))


class StoredEntry(NamedTuple):
    device_id: str
    seq: int
    measured_at: datetime  # aware, UTC
    utc_offset_min: int
    value: float  # mg/dL as sent
    ingested_at: datetime
    direction: str | None
    app_device: str | None


def _ms(ts: datetime) -> int:
    return round(ts.timestamp() * 1000)


def local_iso(measured_at: datetime, utc_offset_min: int) -> str:
    """The instant in the offset it was sent in, with milliseconds (Nightscout's dateString)."""
    local = measured_at.astimezone(timezone(timedelta(minutes=utc_offset_min)))
    return local.isoformat(timespec="milliseconds")


def v1_document(e: StoredEntry) -> dict[str, Any]:
    """A stored reading as GET /api/v1/entries returns it."""
    kind = SEQ_TYPE.get(e.seq, "sgv")
    value = int(e.value) if float(e.value).is_integer() else e.value
    doc: dict[str, Any] = {
        "_id": entry_id(e.device_id, e.seq, e.measured_at), "type": kind, kind: value,
        "date": _ms(e.measured_at), "dateString": local_iso(e.measured_at, e.utc_offset_min),
        "sysTime": local_iso(e.measured_at, e.utc_offset_min),
        "utcOffset": e.utc_offset_min, "device": e.app_device or e.device_id,
    }
    if kind == "sgv":
        doc["direction"] = e.direction or "NONE"
    return doc


def v3_document(e: StoredEntry) -> dict[str, Any]:
    """A stored reading as API v3 returns it (history, after a create)."""
    doc = v1_document(e)
    del doc["_id"], doc["sysTime"]
    doc.update(identifier=identifier(e.device_id, e.seq, e.measured_at),
               srvModified=_ms(e.ingested_at), srvCreated=_ms(e.ingested_at), isValid=True,
               units="mg/dl")
    return doc
