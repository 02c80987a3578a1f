"""A meter of our own fleet misbehaving on purpose (issue 27): packets larger than the wire
format allows, junk at full speed, times no calendar has; and the ledger against its own admin."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from psycopg import errors

from devices.wire import messages, topics
from glucover import broker
from ingest import rejects
from ingest.store import Rejection
from kernel import vocabulary
from kernel.sequence import MAX_PACKET_BYTES, MAX_PAYLOAD_BYTES
from tests.conftest import Stack
from tests.helpers import START, TEST_SECRET, load_fleet, wait_until
from tests.ingest_helpers import provision, start_worker

ROOT = Path(__file__).parent.parent


class Meter:
    def __init__(self, stack: Stack, device: str) -> None:
        self.device = device
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device,
                                  protocol=mqtt.MQTTv311)
        self.client.username_pw_set(device, broker.derive_password(TEST_SECRET, device))
        self.connected = threading.Event()
        self.dropped = threading.Event()

        def on_connect(c: Any, u: Any, f: Any, reason: Any, p: Any) -> None:
            if not reason.is_failure:
                self.connected.set()

        def on_disconnect(c: Any, u: Any, f: Any, reason: Any, p: Any) -> None:
            self.dropped.set()

        self.client.on_connect = on_connect
        self.client.on_disconnect = on_disconnect
        self.client.connect("127.0.0.1", stack.broker.port)
        self.client.loop_start()
        assert self.connected.wait(10)

    def send(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(30)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _retained(stack: Stack, device: str, topic: str) -> bytes | None:
    """What the broker keeps retained on `topic` (read as its meter, which may)."""
    got: dict[str, bytes] = {}
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{device}-reader",
                         protocol=mqtt.MQTTv311)
    client.username_pw_set(device, broker.derive_password(TEST_SECRET, device))

    def on_message(c: Any, u: Any, m: Any) -> None:
        got.setdefault("payload", bytes(m.payload))

    client.on_message = on_message
    acknowledged: list[int] = []
    client.on_subscribe = lambda c, u, mid, reasons, p: acknowledged.append(mid)
    client.on_connect = lambda c, u, f, r, p: c.subscribe(topic, 1)
    client.connect("127.0.0.1", stack.broker.port)
    client.loop_start()
    try:
        assert wait_until(lambda: len(acknowledged) == 1, 10)
        # The broker queues a topic's retained message as it takes the subscription, so by
        # the acknowledgement of a later one (its notices) that message has come.
        client.subscribe(topics.notices_topic(device), 1)
        assert wait_until(lambda: len(acknowledged) == 2, 10)
    finally:
        client.disconnect()
        client.loop_stop()
    return got.get("payload")


def test_the_broker_takes_no_packet_beyond_the_wire_formats_limit(stack: Stack) -> None:
    """A 2 MiB readings message or retained status: the broker drops the meter and keeps
    nothing; a message of the wire format's largest size still goes through."""
    device = provision(stack, 1, seed=41)[0].device_id
    worker = start_worker(stack)
    try:
        meter = Meter(stack, device)
        status = topics.status_topic(device)
        meter.send(status, b'{"small": 1}', retain=True)
        meter.client.publish(status, b"x" * (2 * MAX_PAYLOAD_BYTES), qos=1, retain=True)
        assert meter.dropped.wait(10), "the broker took a 2 MiB packet"
        meter.close()
        assert _retained(stack, device, status) == b'{"small": 1}'
        meter = Meter(stack, device)
        meter.send(topics.readings_topic(device), b"y" * (MAX_PAYLOAD_BYTES + 1))
        meter.close()
        with psycopg.connect(stack.db_url, autocommit=True) as conn:
            assert wait_until(lambda: conn.execute(
                "select reason, payload_size from rejected_messages where payload_size > "
                "%s", (MAX_PAYLOAD_BYTES,)).fetchall() == [
                    ("payload_too_large", MAX_PAYLOAD_BYTES + 1)], 20)
    finally:
        worker.stop()


def test_a_status_too_large_to_be_one_is_not_kept_retained(stack: Stack) -> None:
    """8 KB of retained status (under the packet limit): refused, and cleared from the
    broker, so it does not sit in its memory and persistence."""
    device = provision(stack, 1, seed=45)[0].device_id
    worker = start_worker(stack)
    try:
        meter = Meter(stack, device)
        status = topics.status_topic(device)
        meter.send(status, b'{"x": "' + b"y" * 8192 + b'"}', retain=True)
        meter.close()
        with psycopg.connect(stack.db_url, autocommit=True) as conn:
            assert wait_until(lambda: conn.execute(
                "select reason from rejected_messages where topic = %s", (status,)
            ).fetchall() == [("payload_too_large",)], 20)
        assert wait_until(lambda: _retained(stack, device, status) is None, 10)
        # A reading sent after the clearing reaches ingest after it: once it is stored,
        # ingest has seen the clearing, and the clearing itself is no message.
        now = datetime.now(UTC)
        meter = Meter(stack, device)
        meter.send(topics.readings_topic(device), messages.ReadingsMessage(device, now, (
            messages.Record(1, now - timedelta(minutes=1), 5.5,
                            meal=vocabulary.Meal.FASTING),)).encode())
        meter.close()
        with psycopg.connect(stack.db_url, autocommit=True) as conn:
            assert wait_until(lambda: conn.execute("select count(*) from readings"
                                                   ).fetchone() == (1,), 20)
            assert conn.execute("select count(*) from rejected_messages").fetchone() == (1,)
    finally:
        worker.stop()


def test_the_compose_broker_has_the_same_limit() -> None:
    conf = (ROOT / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    found = re.search(r"^max_packet_size (\d+)$", conf, re.MULTILINE)
    assert found is not None and int(found.group(1)) == MAX_PACKET_BYTES


JUNK = 64 * 1024


def test_one_meter_cannot_fill_the_rejected_messages(stack: Stack) -> None:
    """300 junk messages of 64 KB from one meter within a minute: the first few are kept
    whole for review, the rest are not written one by one; the meter's good reading after
    them is stored as usual."""
    device = provision(stack, 1, seed=42)[0].device_id
    worker = start_worker(stack)
    meter = Meter(stack, device)
    try:
        for i in range(300):
            meter.send(topics.readings_topic(device), b"\xff" * (JUNK - 1) + bytes([i % 200]))
        now = datetime.now(UTC)
        meter.send(topics.readings_topic(device), messages.ReadingsMessage(device, now, (
            messages.Record(7, now - timedelta(minutes=1), 6.1,
                            meal=vocabulary.Meal.FASTING),)).encode())
        with psycopg.connect(stack.db_url, autocommit=True) as conn:
            assert wait_until(lambda: conn.execute(
                "select count(*) from readings where device_id = %s", (device,)
            ).fetchone() == (1,), 60)
            rows, kept_bytes = conn.execute(
                "select count(*), coalesce(sum(length(payload)), 0) from rejected_messages "
                "where device_id = %s", (device,)).fetchone()  # type: ignore[misc]
        assert rows == rejects.KEPT_PER_MINUTE
        assert kept_bytes <= rejects.KEPT_PER_MINUTE * JUNK
    finally:
        meter.close()
        worker.stop()


def _rejection(device: str, reason: str = "invalid_utf8", size: int = 10) -> Rejection:
    return Rejection(topics.readings_topic(device), device, reason, "bad", b"x" * size,
                     datetime.now(UTC))


def test_what_is_not_kept_is_summed_up_once_the_minute_is_over() -> None:
    budget = rejects.RejectBudget(kept_per_minute=3, window_s=60)
    kept = budget.admit([_rejection("GM-A") for _ in range(10)] + [_rejection("GM-B")], 0.0)
    assert [j.device_id for j in kept] == ["GM-A"] * 3 + ["GM-B"]
    assert budget.admit([_rejection("GM-A", "invalid_json")], 30.0) == []
    (summary,) = budget.flush(61.0)
    assert summary.device_id == "GM-A" and summary.reason == "invalid_utf8"
    assert summary.payload == b""
    assert "8 more refused messages (80 bytes)" in summary.detail
    assert "invalid_utf8 x7, invalid_json x1" in summary.detail
    assert budget.minutes == {}  # nothing is held for meters that went quiet
    assert len(budget.admit([_rejection("GM-A")], 62.0)) == 1  # a new minute, a new budget


def test_refused_messages_are_deleted_after_their_retention(stack: Stack) -> None:
    with psycopg.connect(stack.db_url) as conn:
        conn.execute("insert into rejected_messages (received_at, topic, reason, detail, "
                     "payload, payload_size) values (now() - %s - interval '1 hour', 'old', "
                     "'invalid_json', 'old', 'x', 1), (now() - %s + interval '1 hour', "
                     "'young', 'invalid_json', 'young', 'x', 1)",
                     (rejects.RETENTION, rejects.RETENTION))
        conn.commit()
    worker = start_worker(stack)
    try:
        with psycopg.connect(stack.db_url, autocommit=True) as conn:
            assert wait_until(lambda: conn.execute(
                "select array_agg(topic) from rejected_messages").fetchone() == (["young"],),
                20)
    finally:
        worker.stop()


def test_the_ledger_is_append_only_even_for_its_admin(db_url: str) -> None:
    from pricing.engine import run_pricing

    load_fleet(db_url, n=2, days=5, seed=43)
    run_pricing(db_url, START + timedelta(days=4))
    with psycopg.connect(db_url) as conn:
        for sql in ("update sum_insured_ledger set bonus = 1e6",
                    "delete from sum_insured_ledger", "truncate sum_insured_ledger cascade"):
            with pytest.raises(errors.RaiseException, match="append-only"):
                conn.execute(sql)
            conn.rollback()
        assert conn.execute("select count(*) from sum_insured_ledger").fetchone() == (10,)
