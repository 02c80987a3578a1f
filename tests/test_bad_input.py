"""Every case of tests/corpus/bad_input.json gets its documented outcome; the worker stays up,
and the valid messages published around each case are all stored."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from devices.wire import messages, topics
from glucover import broker
from kernel import vocabulary
from kernel.sequence import MAX_PAYLOAD_BYTES
from tests.conftest import Stack
from tests.helpers import CORPUS, TEST_SECRET, case_payloads, wait_until
from tests.ingest_helpers import provision, start_worker, stored_exclusions


def sentinel(device: str, seq: int, now: datetime) -> bytes:
    return messages.ReadingsMessage(device, now, (messages.Record(
        seq=seq, measured_at=now - timedelta(minutes=1), value=6.1,
        meal=vocabulary.Meal.FASTING),)).encode()


class Meter:
    """One persistent connection of a provisioned meter, publishing in order."""

    def __init__(self, stack: Stack, device: str) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device,
                                  protocol=mqtt.MQTTv311)
        self.client.username_pw_set(device, broker.derive_password(TEST_SECRET, device))
        self.client.max_inflight_messages_set(1)  # strictly one after the other
        connected = threading.Event()
        self.client.on_connect = lambda *a: connected.set()
        self.client.connect("127.0.0.1", stack.broker.port)
        self.client.loop_start()
        assert connected.wait(10)
        self.topic = topics.readings_topic(device)

    def send(self, payload: bytes) -> None:
        self.client.publish(self.topic, payload, qos=1).wait_for_publish(30)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_bad_input_corpus(stack: Stack) -> None:
    cases = CORPUS["cases"]
    assert len(cases) >= 40
    people = provision(stack, 2, seed=31)
    me, other = people[0].device_id, people[1].device_id
    now = datetime.now(UTC).replace(microsecond=0)
    # Every case's rejection is looked at: no budget on how many one meter's are kept whole.
    worker = start_worker(stack, batch_size=50, flush_ms=20, rejects_kept_per_minute=10_000)
    meter = Meter(stack, me)
    sent: dict[int, list[bytes]] = {}
    try:
        for i, case in enumerate(cases):
            meter.send(sentinel(me, 1000 * i + 500, now))
            sent[i] = case_payloads(case, i, me, other, now)
            for payload in sent[i]:
                meter.send(payload)
            meter.send(sentinel(me, 1000 * i + 501, now))
        def sentinels() -> tuple[object, ...] | None:
            with psycopg.connect(stack.db_url) as conn:
                return conn.execute("select count(*) from readings where seq % 1000 in "
                                    "(500, 501)").fetchone()

        assert wait_until(lambda: sentinels() == (2 * len(cases),), 60, 0.3), \
            "valid messages beside bad ones were lost"
        assert worker.writer.is_alive()
    finally:
        meter.close()
        worker.stop()

    with psycopg.connect(stack.db_url) as conn:
        rejects = conn.execute("select reason, payload, payload_size from rejected_messages "
                               "order by id").fetchall()
        stored = stored_exclusions(conn)
    failures = []
    for i, case in enumerate(cases):
        expect = case["expect"]
        prefixes = {p[:65536] for p in sent[i]}
        reasons = [str(r) for r, p, _ in rejects if bytes(p) in prefixes]
        mine = [(s, reason) for s, reason in stored if 1000 * i <= s < 1000 * i + 500]
        if "rejected" in expect and expect["rejected"] not in reasons:
            failures.append(f"{case['name']}: expected rejection {expect['rejected']}, "
                            f"got {reasons}")
        if "rejected" in expect and "stored" not in expect and mine:
            failures.append(f"{case['name']}: stored {mine} though it must be refused")
        if "stored" in expect:
            if not mine:
                failures.append(f"{case['name']}: nothing stored")
            elif any(reason != expect["stored"] for _, reason in mine):
                failures.append(f"{case['name']}: {mine}, expected {expect['stored']}")
            if "rejected" not in expect and reasons:
                failures.append(f"{case['name']}: unexpectedly rejected {reasons}")
    assert not failures, "\n".join(failures)
    big = [size for r, _, size in rejects if r == "payload_too_large"]
    assert big == [MAX_PAYLOAD_BYTES + 1]
