"""Ingest against the real broker and database."""

from __future__ import annotations

import json
import signal
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devices.wire import decoding, topics
from devices.wire.messages import ReadingsMessage, Record
from tests.conftest import Stack
from tests.helpers import TEST_SECRET, wait_until
from tests.ingest_helpers import (
    by_device,
    distinct_readings,
    history,
    provision,
    publish,
    reading_count,
    spawn_worker,
    start_worker,
    stored_exclusions,
    stored_readings,
    wait_for_rows,
)
from tests.mqtt_helpers import add_accounts, try_publish


def test_fleet_history_is_stored_once_with_status(stack: Stack) -> None:
    people = provision(stack, 12, seed=1)
    messages = history(people, 1, 20)
    worker = start_worker(stack)
    try:
        publish(stack, messages)
        expected = distinct_readings(messages)
        assert wait_for_rows(stack.db_url, len(expected)) == len(expected)
        # A re-sent stretch changes nothing (end to end, publish returns once ingest has
        # acknowledged every message as stored: handled, not merely delivered).
        publish(stack, messages[:200], end_to_end=True)
    finally:
        worker.stop()
    rows = stored_readings(stack.db_url)
    assert len(rows) == len(set(rows)) == len(expected)
    assert set(rows) == expected
    with psycopg.connect(stack.db_url) as conn:
        reasons = Counter(reason for _, reason in stored_exclusions(conn))
        statuses = conn.execute("select count(*) from device_status").fetchone()
        rejects = conn.execute("select count(*) from rejected_messages").fetchone()
    personas = {p.persona.name for p in people}
    if "gamer_control_solution" in personas:
        assert reasons["excluded_sample"] > 0
    # Stored as they came, priced by the ruleset: the real receive time is now, so a 20-day
    # history is mostly later than the ruleset's 7-day tolerance.
    assert reasons["too_late"] > 0
    assert statuses == (12,)
    assert rejects == (0,)


def _payload(device: str, **record_changes: object) -> bytes:
    record = {"seq": 1, "measured_at": "2026-03-01T07:00:00+08:00", "value": 5.5,
              "unit": "mmol/L", "meal": "fasting", "sample": "capillary_plasma",
              "source": "meter", "status": []}
    record.update(record_changes)
    return json.dumps({"device_id": device, "sent_at": "2026-03-01T07:00:05+08:00",
                       "records": [record]}).encode()


def test_every_rejection_reason_is_recorded_and_the_worker_carries_on(stack: Stack) -> None:
    people = provision(stack, 2, seed=2)
    a, b = people[0].device_id, people[1].device_id
    from glucover import broker

    pw_a = broker.derive_password(TEST_SECRET, a)
    cases = [
        (b"{not json", decoding.RejectReason.INVALID_JSON),
        (b"\xff\xfe garbage", decoding.RejectReason.INVALID_UTF8),
        (b'{"device_id": "x"}', decoding.RejectReason.DEVICE_MISMATCH),
        (json.dumps({"device_id": a, "records": []}).encode(),
         decoding.RejectReason.INVALID_ENVELOPE),
        (_payload(a, unit="mmol"), decoding.RejectReason.INVALID_RECORD),
        (_payload(a, value=-3), decoding.RejectReason.VALUE_OUT_OF_RANGE),
        (_payload(a, measured_at="1970-01-01T00:00:00Z"),
         decoding.RejectReason.TIMESTAMP_IMPLAUSIBLE),
        (b"[" + b"1," * 524_300 + b"1]", decoding.RejectReason.PAYLOAD_TOO_LARGE),  # > 1 MiB
        (_payload(a, seq=7), None),                       # stored
        (_payload(a, seq=7, value=9.9), decoding.RejectReason.CONFLICTING_DUPLICATE),
        (b'{"device_id": "' + a.encode() + b'", "sent_at": "x", "records": [1, 2]}',
         decoding.RejectReason.INVALID_ENVELOPE),
        (json.dumps({"device_id": a, "sent_at": "2026-03-01T07:00:05+08:00", "records": [
            json.loads(_payload(a, seq=8))["records"][0], {"seq": "nine"}]}).encode(),
         decoding.RejectReason.INVALID_RECORD),               # the good record beside it is kept
    ]
    worker = start_worker(stack)
    try:
        for payload, reason in cases:
            assert try_publish(stack.broker, a, pw_a, topics.readings_topic(a), payload)[1] == \
                "accepted"
            if reason is None:  # stored before its conflicting duplicate is sent
                assert wait_until(lambda: reading_count(stack.db_url) == 1, 20)
        # A meter with a broker account but no record in the database (provisioning half done).
        add_accounts(stack.broker, a, b, "GM-STRANGER")
        stranger = broker.derive_password(TEST_SECRET, "GM-STRANGER")
        try_publish(stack.broker, "GM-STRANGER", stranger, topics.readings_topic("GM-STRANGER"),
                    _payload("GM-STRANGER", seq=3))
        expected = [r for _, r in cases if r] + [decoding.RejectReason.UNKNOWN_DEVICE]
        got: list[str] = []

        def all_refused() -> bool:
            with psycopg.connect(stack.db_url) as conn:
                got[:] = [str(r[0]) for r in conn.execute(
                    "select reason from rejected_messages order by id")]
            return len(got) >= len(expected)

        wait_until(all_refused, 20, 0.2)
    finally:
        worker.stop()
    assert sorted(got) == sorted(str(r) for r in expected)
    with psycopg.connect(stack.db_url) as conn:
        stored = conn.execute("select seq, glucose_value(value_digits, value_exponent) "
                              "from readings order by seq").fetchall()
        big = conn.execute("select payload_size, length(payload) from rejected_messages "
                           "where reason = 'payload_too_large'").fetchone()
        detail = conn.execute("select detail from rejected_messages where reason = "
                              "'invalid_record' and detail like '%%unit%%'").fetchone()
    assert stored == [(7, 5.5), (8, 5.5)]
    assert big is not None and big[0] > 1_000_000 and big[1] == 65_536
    assert detail is not None and "$.records[0].unit" in detail[0]


def _metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def test_two_workers_share_the_subscription(stack: Stack, tmp_path: Path) -> None:
    from glucover.servers import free_port

    people = provision(stack, 20, seed=4)
    messages = history(people, 4, 30)
    expected = distinct_readings(messages)
    ports = [free_port(), free_port()]
    procs = [spawn_worker(stack, tmp_path / f"w{i}.log", "--worker-name", f"w{i}",
                          "--metrics-port", str(port)) for i, port in enumerate(ports)]
    try:
        publish(stack, messages)
        assert wait_for_rows(stack.db_url, len(expected)) == len(expected)
        # Every message once, plus each meter's "offline" status when its session ends (those
        # may reach the workers a moment after the last reading is stored).
        everything = len(messages) + len(by_device(messages))
        assert wait_until(lambda: sum(_metric(port, "glucover_ingest_messages_total")
                                      for port in ports) >= everything, timeout_s=30)
        shares = [_metric(port, "glucover_ingest_messages_total") for port in ports]
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        assert [proc.wait(30) for proc in procs] == [0, 0]
    assert all(share > 0.1 * len(messages) for share in shares), shares
    assert sum(shares) == everything
    rows = stored_readings(stack.db_url)
    assert len(rows) == len(set(rows)) == len(expected)


def test_a_message_the_database_refuses_costs_only_itself(stack: Stack) -> None:
    people = provision(stack, 3, seed=6)
    with psycopg.connect(stack.db_url) as conn:  # a rule the wire format knows nothing of
        conn.execute("""create function refuse_1313() returns trigger language plpgsql as $$
            begin
                if glucose_value(new.value_digits, new.value_exponent) = 13.13 then
                    raise exception 'value 13.13 is refused';
                end if;
                return new;
            end $$""")
        conn.execute("create trigger refuse_1313 before insert on readings for each row "
                     "execute function refuse_1313()")
        conn.commit()
    devices = [p.device_id for p in people]
    messages = [ReadingsMessage(d, datetime.now(UTC), (Record(
        seq=seq, measured_at=datetime.now(UTC) - timedelta(minutes=seq),
        value=13.13 if (d, seq) == (devices[1], 5) else 6.0),)).encode()
        for seq in range(10) for d in devices]
    worker = start_worker(stack, batch_size=1000, flush_ms=500)
    from glucover import broker

    try:
        for i, payload in enumerate(messages):
            device = devices[i % 3]
            assert try_publish(stack.broker, device, broker.derive_password(TEST_SECRET, device),
                               topics.readings_topic(device), payload)[1] == "accepted"
        assert wait_for_rows(stack.db_url, 29, 30) == 29
        late = ReadingsMessage(devices[0], datetime.now(UTC), (Record(
            seq=99, measured_at=datetime.now(UTC), value=6.5),)).encode()
        try_publish(stack.broker, devices[0], broker.derive_password(TEST_SECRET, devices[0]),
                    topics.readings_topic(devices[0]), late)
        assert wait_for_rows(stack.db_url, 30, 30) == 30  # the worker carries on
    finally:
        worker.stop()
    with psycopg.connect(stack.db_url) as conn:
        rejects = conn.execute("select reason, device_id, detail from rejected_messages"
                               ).fetchall()
    assert len(rejects) == 1
    reason, device, detail = rejects[0]
    assert (reason, device) == ("storage_error", devices[1])
    assert "value 13.13 is refused" in detail


def test_a_revoked_meter_is_refused_at_once(stack: Stack) -> None:
    """Revocation takes effect with the next batch, not when the worker's cache of known
    meters next expires: the insert itself refuses a revoked meter."""
    from devices.provisioning import revoke
    from glucover import broker

    people = provision(stack, 2, seed=7)
    gone, kept = people[0].device_id, people[1].device_id

    def send(device: str, seq: int) -> None:
        payload = ReadingsMessage(device, datetime.now(UTC), (Record(
            seq=seq, measured_at=datetime.now(UTC) - timedelta(minutes=1), value=6.1),)).encode()
        # The broker account is left in place: ingest must refuse on its own.
        assert try_publish(stack.broker, device, broker.derive_password(TEST_SECRET, device),
                           topics.readings_topic(device), payload)[1] == "accepted"

    worker = start_worker(stack)
    try:
        send(gone, 1)
        assert wait_for_rows(stack.db_url, 1, 20) == 1
        with psycopg.connect(stack.db_url) as conn:
            revoke(conn, gone)
            conn.commit()
        send(gone, 2)
        send(kept, 3)
        assert wait_for_rows(stack.db_url, 2, 20) == 2

        def refused() -> bool:
            with psycopg.connect(stack.db_url) as conn:
                return conn.execute("select count(*) from rejected_messages").fetchone() == (1,)

        assert wait_until(refused, 20)
        assert gone in worker.devices.known  # the cache still says yes; the database said no
    finally:
        worker.stop()
    with psycopg.connect(stack.db_url) as conn:
        stored = conn.execute("select device_id, seq from readings order by seq").fetchall()
        rejects = conn.execute("select reason, device_id, detail from rejected_messages"
                               ).fetchall()
    assert stored == [(gone, 1), (kept, 3)]
    assert rejects == [("unknown_device", gone, f"device {gone!r} was revoked")]


def test_a_decoder_failure_costs_only_its_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """Should decoding itself fail (a bug of ours), the message is recorded, not fatal."""
    from ingest.batch import Received, decode

    real = decoding.decode_readings

    def flaky(payload: bytes, *args: Any) -> decoding.Decoded:
        if b"boom" in payload:
            raise RecursionError("maximum recursion depth exceeded")
        return real(payload, *args)

    monkeypatch.setattr(decoding, "decode_readings", flaky)
    now = datetime.now(UTC)
    good = _payload("GM-1", measured_at=now.isoformat())
    bad = good.replace(b'"meter"', b'"boom"')
    batch = decode([Received(topics.readings_topic("GM-1"), p, i, 1, now)
                    for i, p in enumerate([bad, good])], trust_sent_at=False)
    assert [r.seq for r in batch.readings] == [1]
    assert [(j.reason, j.device_id, j.payload) for j in batch.rejections] == [
        (decoding.RejectReason.DECODER_ERROR, "GM-1", bad)]
    assert "RecursionError" in batch.rejections[0].detail


def test_the_inbox_wakes_the_writer_batches_and_keeps_order() -> None:
    import threading

    from ingest.batch import Received
    from ingest.worker import Inbox

    inbox = Inbox()
    now = datetime.now(UTC)

    def item(i: int) -> Received:
        return Received("t", b"", i, 1, now)

    assert inbox.take(10, 0.0, 0.05) == []  # nothing came: empty after the timeout
    # Woken by the put, not by the timeout: waiting up to an hour, the take returns once the
    # put comes (put once the taker is waiting).
    taken: list[int] = []
    taker = threading.Thread(target=lambda: taken.extend(
        m.mid for m in inbox.take(10, 0.0, 3600.0)), daemon=True)
    taker.start()
    assert wait_until(lambda: inbox.idle, 10, 0.01)
    inbox.put(item(1))
    taker.join(60)
    assert not taker.is_alive() and taken == [1]
    for i in range(2, 30):
        inbox.put(item(i))
    assert [m.mid for m in inbox.take(10, 0.0, 1.0)] == list(range(2, 12))  # limit, in order
    # Lingering lets a batch gather what arrives after its first message: 18 waiting, a
    # 19th put shortly after, and a batch of 19 lingering up to a minute takes all of them.
    threading.Timer(0.05, lambda: inbox.put(item(99))).start()
    assert [m.mid for m in inbox.take(19, 60.0, 1.0)] == [*range(12, 30), 99]
    assert len(inbox) == 0


def test_a_revoked_meters_status_is_refused_and_its_last_status_kept(db_url: str) -> None:
    """Statuses are dropped like readings once a meter is revoked: the operations page keeps
    the status it sent before. Unlike a reading, a status is not kept as a rejection (nothing
    of the person's is lost, and a revoked meter cannot fill the table with them)."""
    from devices.provisioning import revoke
    from devices.wire.messages import DeviceStatus
    from tests.helpers import store_messages

    with psycopg.connect(db_url) as conn:
        conn.execute("insert into devices (device_id, kind) values ('GM-R', 'bgm')")
        conn.commit()
    before = datetime(2026, 3, 2, 8, tzinfo=UTC)
    after = before + timedelta(hours=1)
    first = DeviceStatus("GM-R", before, "online", battery_pct=60)
    store_messages(db_url, [(first.topic, first.encode(), before)])
    with psycopg.connect(db_url) as conn:
        revoke(conn, "GM-R")
        conn.commit()
    late = DeviceStatus("GM-R", after, "online", battery_pct=5, clock_offset_s=900.0)
    store_messages(db_url, [(late.topic, late.encode(), after)])
    with psycopg.connect(db_url) as conn:
        status = conn.execute("select battery_pct, clock_offset_s, sent_at from device_status "
                              "where device_id = 'GM-R'").fetchall()
        rejects = conn.execute("select reason, detail from rejected_messages").fetchall()
    assert status == [(60, None, before)]
    assert rejects == []
