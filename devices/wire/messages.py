"""What a meter sends (wire format v1), as frozen dataclasses that encode themselves.

ReadingsMessage payload (UTF-8 JSON) on the readings topic:
  {"device_id": str, "sent_at": ISO-8601, "records": [record, ...]} with 1..MAX_RECORDS records,
  one for a live reading or a batch when a meter syncs its memory after being offline.
  record = {"seq": 0..65535 (wraps), "measured_at": ISO-8601 with the meter's UTC offset,
            "value": number > 0, "unit": Unit, "meal": Meal, "sample": Sample,
            "source": Source, "status": [GLS annunciation names]}
GatewayMessage payload on the same readings topic, from a gateway relaying a Bluetooth meter:
  {"device_id", "sent_at", "meter_time": the meter's clock at sent_at, no zone,
   "gls": [{"measurement": base64 of 0x2A18, "context"?: base64 of 0x2A34}, ...]}
  (devices/wire/gls.py decodes it; docs/wire-format.md).
Ack payload on the ack topic (retained, from ingest):
  {"device_id", "sent_at", "stored": [[first_seq, last_seq], ...], "window"?: int}: inclusive
  ranges of the meter's sequence numbers stored so far, among the `window` (ACK_WINDOW) up to
  its newest; an ack without `window` is from an ingest before December 2026 (4,096).
DeviceStatus payload on the status topic (retained; the Last Will says "offline"):
  {"device_id", "sent_at", "state": "online"|"offline", "battery_pct"?: 0..100,
   "firmware"?: str, "clock_offset_s"?: number, "sensor"?: SensorReport}
  SensorReport (a CGM's current sensor session): {"sensor_id", "state": SENSOR_STATES,
   "started_at", "warmup_ends_at", "expected_end_at", "ended_at"?}
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from devices.wire.topics import ack_topic, notices_topic, readings_topic, status_topic
from kernel.sequence import ACK_WINDOW, LEGACY_ACK_WINDOW
from kernel.vocabulary import Meal, Sample, Source, Unit

MAX_RECORDS = 1000  # records in one message: a meter's memory synced in one go
# A status message is a few hundred bytes; it is retained by the broker, so a larger one is
# refused and ingest clears it from the broker (ingest/worker.py).
MAX_STATUS_BYTES = 4 * 1024
RECORD_FIELDS = frozenset({"seq", "measured_at", "value", "unit", "meal", "sample", "source",
                           "status"})
ENVELOPE_FIELDS = frozenset({"device_id", "sent_at", "records", "version"})


@dataclass(frozen=True)
class Record:
    seq: int
    measured_at: datetime
    value: float
    unit: Unit = Unit.MMOL_L
    meal: Meal = Meal.UNKNOWN
    sample: Sample = Sample.CAPILLARY_PLASMA
    source: Source = Source.METER
    status: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "measured_at": self.measured_at.isoformat(),
            "value": self.value,
            "unit": str(self.unit),
            "meal": str(self.meal),
            "sample": str(self.sample),
            "source": str(self.source),
            "status": list(self.status),
        }


@dataclass(frozen=True)
class ReadingsMessage:
    device_id: str
    sent_at: datetime
    records: tuple[Record, ...]

    @property
    def topic(self) -> str:
        return readings_topic(self.device_id)

    def to_json(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "sent_at": self.sent_at.isoformat(),
                "records": [r.to_json() for r in self.records]}

    def encode(self) -> bytes:
        return orjson.dumps(self.to_json())  # compact, as json.dumps(separators=(",", ":"))


@dataclass(frozen=True)
class GlsEntry:
    """One relayed record: its Glucose Measurement value and, when the meter sent one, its
    Glucose Measurement Context value, as the characteristics held them."""

    measurement: bytes
    context: bytes | None = None

    def to_json(self) -> dict[str, str]:
        doc = {"measurement": base64.b64encode(self.measurement).decode()}
        if self.context is not None:
            doc["context"] = base64.b64encode(self.context).decode()
        return doc


@dataclass(frozen=True)
class GatewayMessage:
    device_id: str
    sent_at: datetime
    meter_time: datetime  # the meter's own clock when the gateway read it: no zone
    entries: tuple[GlsEntry, ...]

    @property
    def topic(self) -> str:
        return readings_topic(self.device_id)

    def encode(self) -> bytes:
        return json.dumps({"device_id": self.device_id, "sent_at": self.sent_at.isoformat(),
                           "meter_time": self.meter_time.replace(microsecond=0).isoformat(),
                           "gls": [e.to_json() for e in self.entries]},
                          separators=(",", ":")).encode()


SENSOR_STATES = ("warming_up", "active", "ended", "failed")


@dataclass(frozen=True)
class SensorReport:
    """A CGM's sensor session as its status message reports it."""

    sensor_id: str
    state: str  # one of SENSOR_STATES
    started_at: datetime
    warmup_ends_at: datetime
    expected_end_at: datetime
    ended_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        doc = {"sensor_id": self.sensor_id, "state": self.state,
               "started_at": self.started_at.isoformat(),
               "warmup_ends_at": self.warmup_ends_at.isoformat(),
               "expected_end_at": self.expected_end_at.isoformat()}
        if self.ended_at is not None:
            doc["ended_at"] = self.ended_at.isoformat()
        return doc


@dataclass(frozen=True)
class DeviceStatus:
    device_id: str
    sent_at: datetime
    state: str
    battery_pct: int | None = None
    firmware: str | None = None
    clock_offset_s: float | None = None
    sensor: SensorReport | None = None

    @property
    def topic(self) -> str:
        return status_topic(self.device_id)

    def encode(self) -> bytes:
        doc: dict[str, Any] = {"device_id": self.device_id, "sent_at": self.sent_at.isoformat(),
                               "state": self.state}
        for key in ("battery_pct", "firmware", "clock_offset_s"):
            if (value := getattr(self, key)) is not None:
                doc[key] = value
        if self.sensor is not None:
            doc["sensor"] = self.sensor.to_json()
        return json.dumps(doc, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Ack:
    """Which of a meter's records ingest has stored: inclusive ranges of sequence numbers."""

    device_id: str
    sent_at: datetime
    stored: tuple[tuple[int, int], ...]
    # How many numbers up to the newest the ack speaks of: a meter holding a longer backlog
    # sends it in sessions no longer than this (docs/wire-format.md#acknowledgements).
    window: int = ACK_WINDOW

    @property
    def topic(self) -> str:
        return ack_topic(self.device_id)

    def covers(self, seq: int) -> bool:
        return any(first <= seq <= last for first, last in self.stored)

    def encode(self) -> bytes:
        # orjson: ingest encodes an ack per meter per batch (json.dumps took 3.2 us of each,
        # a twentieth of the worker's time on 20-record messages; this 0.3, measured).
        return orjson.dumps({"device_id": self.device_id, "sent_at": self.sent_at,
                             "stored": self.stored, "window": self.window})

    @classmethod
    def decode(cls, payload: bytes) -> Ack:
        """An ack as a meter reads it; ValueError when it is not one."""
        doc = json.loads(payload)
        stored = doc["stored"]
        window = doc.get("window", LEGACY_ACK_WINDOW)
        if not (isinstance(doc.get("device_id"), str) and isinstance(stored, list) and all(
                isinstance(r, list) and len(r) == 2 and all(type(v) is int for v in r)
                for r in stored) and type(window) is int and window > 0):
            raise ValueError("not an ack")
        return cls(doc["device_id"], datetime.fromisoformat(doc["sent_at"]),
                   tuple((int(a), int(b)) for a, b in stored), window)


NOTICE_KINDS = ("very_low", "very_high", "measure_reminder")


@dataclass(frozen=True)
class Notice:
    """What the care service tells a policyholder through their meter (or its phone app):
    retained on the meter's notices topic, so the latest reaches it when it next connects."""

    notice_id: int
    device_id: str
    kind: str  # one of NOTICE_KINDS
    language: str  # en | zh
    text: str
    created_at: datetime

    @property
    def topic(self) -> str:
        return notices_topic(self.device_id)

    def encode(self) -> bytes:
        return json.dumps({"notice_id": self.notice_id, "device_id": self.device_id,
                           "kind": self.kind, "language": self.language, "text": self.text,
                           "created_at": self.created_at.isoformat()},
                          ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, payload: bytes) -> Notice:
        """A notice as a meter reads it; ValueError when it is not one."""
        doc = json.loads(payload)
        if not (isinstance(doc, dict) and doc.get("kind") in NOTICE_KINDS
                and all(isinstance(doc.get(k), str) for k in ("device_id", "text", "language"))
                and type(doc.get("notice_id")) is int):
            raise ValueError("not a notice")
        return cls(doc["notice_id"], doc["device_id"], doc["kind"], doc["language"],
                   doc["text"], datetime.fromisoformat(doc["created_at"]))
