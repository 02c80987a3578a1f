"""Nightscout entries to glucover readings and back. Pure: no I/O.

An entry of `type` sgv (a CGM's sensor glucose) becomes a reading of the policy's Nightscout
device in interstitial fluid; `mbg` (a meter's blood glucose, as the app recorded it) a
fingerstick reading in capillary plasma; both in mg/dL as sent, source `meter`, meal unknown.
The instant is `date` (ms since the epoch, UTC), kept with the UTC offset of `dateString` (or
v3's `utcOffset`). Each is built as a wire-format record and goes through ingest's own
validation (devices/wire/decoding.py normalise_record: the same range and clock checks as an
MQTT reading), so a rule of what can be a reading lives in one place.

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

from devices.wire import decoding
from devices.wire.decoding import Reading, RejectReason, WireError
from kernel.vocabulary import Meal, Sample, Source, Unit

ENTRY_SEQ = {"sgv": 0, "mbg": 1}
SEQ_TYPE = {seq: kind for kind, seq in ENTRY_SEQ.items()}
SAMPLE_OF_TYPE = {"sgv": Sample.INTERSTITIAL_FLUID, "mbg": Sample.CAPILLARY_PLASMA}
VALUE_FIELD = {"sgv": "sgv", "mbg": "mbg"}

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


def _offset_of(entry: dict[str, Any]) -> timedelta | None:
    """The UTC offset the app stated: dateString's, else v3's utcOffset (minutes)."""
    text = entry.get("dateString")
    if isinstance(text, str):
        try:
            ts = datetime.fromisoformat(text)
        except ValueError:
            ts = None
        if ts is not None and ts.utcoffset() is not None:
            return ts.utcoffset()
    minutes = entry.get("utcOffset")
    if type(minutes) is int and abs(minutes) <= MAX_OFFSET_MIN:
        return timedelta(minutes=minutes)
    return None


def instant(entry: dict[str, Any], path: str) -> datetime:
    """The entry's time, aware, in the offset the app stated (UTC when it stated none).
    Raises WireError when it has none."""
    ms = _number(entry.get("date"))
    offset = _offset_of(entry)
    if ms is None:
        text = entry.get("dateString")
        try:
            ts = datetime.fromisoformat(text) if isinstance(text, str) else None
        except ValueError:
            ts = None
        if ts is None or ts.utcoffset() is None:
            raise WireError([decoding.Problem(RejectReason.INVALID_RECORD, f"{path}.date",
                                              "needs date (ms since 1970, UTC) or a dateString "
                                              "with its UTC offset")])
        return ts
    try:
        utc = EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        raise WireError([decoding.Problem(RejectReason.TIMESTAMP_IMPLAUSIBLE, f"{path}.date",
                                          f"{ms!r} is no time")]) from None
    return utc.astimezone(timezone(offset)) if offset is not None else utc


def entry_type(entry: dict[str, Any]) -> str | None:
    kind = entry.get("type")
    if isinstance(kind, str):
        return kind
    for candidate in ("sgv", "mbg"):
        if candidate in entry:
            return candidate
    return None


def map_entry(entry: Any, index: int, device_id: str, received_at: datetime) -> Mapped:
    """One uploaded entry: a reading, a sensor error code, an entry type we do not keep, or
    refused with the reason (RejectReason) and what was wrong."""
    path = f"$[{index}]"
    if not isinstance(entry, dict):
        return Refused(RejectReason.INVALID_RECORD, f"{path}: must be an object")
    kind = entry_type(entry)
    if kind not in ENTRY_SEQ:
        return Ignored(str(kind)[:MAX_TEXT])
    value = _number(entry.get(VALUE_FIELD[kind]))
    if value is None:
        return Refused(RejectReason.INVALID_RECORD,
                       f"{path}.{VALUE_FIELD[kind]}: must be a number (mg/dL)")
    try:
        at = instant(entry, path)
        if kind == "sgv" and value < DEXCOM_ERROR_BELOW:
            code = int(value)
            return SensorError(at.astimezone(UTC), code,
                               DEXCOM_ERRORS.get(code, f"sensor code {code}"))
        record = {"seq": ENTRY_SEQ[kind], "measured_at": at.isoformat(), "value": value,
                  "unit": Unit.MG_DL.value, "meal": Meal.UNKNOWN.value,
                  "sample": SAMPLE_OF_TYPE[kind].value, "source": Source.METER.value,
                  "status": []}
        reading = decoding.normalise_record(record, index, device_id, received_at)
    except WireError as exc:
        detail = str(exc).replace(f"$.records[{index}]", path)
        return Refused(exc.reason, detail)
    return Accepted(reading, _text(entry.get("direction")), _text(entry.get("device")))


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
