"""Decoding a batch of messages as they came off the broker into what the store writes: the
readings, the refused messages with their reasons, and device statuses. Pure (no threads, no
I/O), so the benchmarks and tests use it without the threaded worker (ingest/worker.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from devices.wire import decoding, topics
from ingest.store import Batch, Origin, Rejection, SensorUpdate, StatusUpdate, content

log = logging.getLogger("glucover.ingest")


# The batch's readings so far, per meter and seq: their indices in Batch.readings (one, unless the
# meter's counter wrapped). A reading's identity is (device_id, seq, measured_at).
Seen = dict[str, dict[int, list[int]]]


@dataclass(frozen=True, slots=True)
class Received:
    """A message as it came off the broker (paho reuses nothing; we keep what we need)."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    received_at: datetime


def decode(messages: list[Received], trust_sent_at: bool) -> Batch:
    """Parse, validate and normalise a batch; never raises for anything a device sends. Should
    the decoder itself fail on a message (a bug of ours), that message is recorded as a
    decoder_error with its payload and the rest of the batch goes on."""
    batch = Batch()
    seen: Seen = {}
    for msg in messages:
        try:
            _decode_message(msg, trust_sent_at, batch, seen)
        except Exception as exc:  # the guard that keeps the worker alive
            log.exception("decoder failed on a message on %s", msg.topic)
            found = topics.topic_device(msg.topic)
            batch.rejections.append(Rejection(
                msg.topic, found[0] if found else None, decoding.RejectReason.DECODER_ERROR,
                f"{type(exc).__name__}: {exc}", msg.payload, msg.received_at))
    return batch


def _decode_message(msg: Received, trust_sent_at: bool, batch: Batch,
                    seen: Seen) -> None:
    """Decode one message into `batch`: its readings, its rejections, or its status."""
    found = topics.topic_device(msg.topic)
    if found is None:
        batch.rejections.append(Rejection(msg.topic, None, decoding.RejectReason.UNKNOWN_TOPIC,
                                          "not a glucover v1 topic", msg.payload,
                                          msg.received_at))
        return
    device_id, kind = found
    if kind == "status" and not msg.payload:
        return  # a retained status cleared (ingest/worker.py clears oversized ones): no message
    try:
        if kind == "status":
            doc = decoding.decode_status(msg.payload, device_id)
            sent = decoding.parse_timestamp(doc.get("sent_at"), "$.sent_at", [])
            batch.statuses.append(StatusUpdate(
                device_id, doc["state"], doc.get("battery_pct"), doc.get("firmware"),
                doc.get("clock_offset_s"), sent or msg.received_at))
            if (s := doc.get("sensor")) is not None:
                batch.sensors.append(SensorUpdate(
                    device_id, s["sensor_id"], s["state"], s["started_at"], s["warmup_ends_at"],
                    s["expected_end_at"], s["ended_at"], sent or msg.received_at))
            return
        decoded = decoding.decode_readings(msg.payload, device_id, msg.received_at, trust_sent_at)
    except decoding.WireError as exc:
        batch.rejections.append(Rejection(msg.topic, device_id, exc.reason, str(exc),
                                          msg.payload, msg.received_at))
        return
    for err in decoded.rejected:
        batch.rejections.append(Rejection(msg.topic, device_id, err.reason, str(err),
                                          msg.payload, msg.received_at))
    by_seq = seen.setdefault(device_id, {})
    readings, origins = batch.readings, batch.origins
    origin = Origin(msg.topic, msg.payload)
    if decoded.readings:
        batch.meters.add(device_id)
    for reading in decoded.readings:
        earlier = by_seq.get(reading.seq)
        if earlier is None:
            by_seq[reading.seq] = [len(readings)]
            readings.append(reading)
            origins.append(origin)
            continue
        # The meter's seq came before in this batch: a re-send, or its counter wrapped.
        first = next((readings[i] for i in earlier
                      if readings[i].measured_at == reading.measured_at), None)
        if first is None:
            earlier.append(len(readings))
            readings.append(reading)
            origins.append(origin)
        elif content(first) == content(reading):
            batch.duplicates += 1
        else:
            batch.rejections.append(Rejection(
                msg.topic, device_id, decoding.RejectReason.CONFLICTING_DUPLICATE,
                f"seq {reading.seq} at {reading.measured_at.isoformat()} came twice in "
                f"one batch with different content ({first.value} vs {reading.value} "
                f"{reading.unit})", msg.payload, msg.received_at))
