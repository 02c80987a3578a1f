"""Wire format v1 and the fleet simulator, against the real broker where it matters."""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from cli.main import main
from devices import wire as wire_package
from devices.fleet import fleet_messages, portfolio
from devices.publisher import meter_session
from devices.wire import decoding, topics
from glucover.servers import LocalMosquitto
from kernel import units
from tests.helpers import START, TEST_SECRET, wait_until
from tests.mqtt_helpers import Collector, add_accounts, try_publish

SCHEMA = json.loads((Path(wire_package.__file__).parent / "wire_v1.schema.json").read_text())


def dry_run(tmp_path: Path, name: str, *args: str) -> list[dict[str, Any]]:
    out = tmp_path / name
    assert main(["simulate", "--dry-run", "--out", str(out), "--start", "2026-01-05",
                 *args]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_same_seed_same_messages_other_seed_other_messages(tmp_path: Path, settings: Any
                                                           ) -> None:
    a = dry_run(tmp_path, "a", "--policies", "15", "--days", "10", "--seed", "3")
    b = dry_run(tmp_path, "b", "--policies", "15", "--days", "10", "--seed", "3")
    c = dry_run(tmp_path, "c", "--policies", "15", "--days", "10", "--seed", "4")
    assert a == b
    assert a != c
    assert len(a) > 15 * 10


def test_every_generated_message_is_valid_v1(tmp_path: Path, settings: Any) -> None:
    messages = dry_run(tmp_path, "m", "--policies", "40", "--days", "30", "--seed", "5")
    validator = jsonschema.Draft202012Validator(SCHEMA)
    kinds: dict[str, int] = defaultdict(int)
    for m in messages:
        validator.validate(m["payload"])
        device_id, kind = topics.topic_device(m["topic"]) or ("", "")
        kinds[kind] += 1
        raw = json.dumps(m["payload"]).encode()
        if kind == "readings":
            decoded = decoding.decode_readings(raw, device_id, datetime.now(UTC))
            assert decoded.rejected == []
            assert decoded.readings
        else:
            assert m["retain"] is True
            decoding.decode_status(raw, device_id)
    assert kinds["readings"] > 0
    assert kinds["status"] > 0


def test_personas_and_meter_behaviour_are_realistic() -> None:
    people = portfolio(400, 9, START)
    messages = fleet_messages(people, 9, 120)
    persona = {p.device_id: p.persona.name for p in people}
    fasting: dict[str, list[tuple[int, float, str]]] = defaultdict(list)
    samples: dict[str, set[str]] = defaultdict(set)
    sources: dict[str, set[str]] = defaultdict(set)
    seqs: dict[str, list[int]] = defaultdict(list)
    batches = duplicates = 0
    seen: set[bytes] = set()
    for m in messages:
        if not m.topic.endswith("readings"):
            continue
        duplicates += m.payload in seen
        seen.add(m.payload)
        doc = json.loads(m.payload)
        batches += len(doc["records"]) > 1
        name = persona[doc["device_id"]]
        for r in doc["records"]:
            seqs[doc["device_id"]].append(r["seq"])
            samples[name].add(r["sample"])
            sources[name].add(r["source"])
            mmol = r["value"] / units.MGDL_PER_MMOL if r["unit"] == "mg/dL" else r["value"]
            if r["meal"] == "fasting" and r["sample"] != "control_solution" and r[
                    "source"] == "meter" and not r["status"]:
                day = (datetime.fromisoformat(r["measured_at"]).date() - START).days
                fasting[name].append((day, mmol, doc["device_id"]))

    def mean(name: str, lo: int, hi: int) -> float:
        return float(np.mean([v for d, v, _ in fasting[name] if lo <= d < hi]))

    assert 5.6 < mean("well_controlled", 0, 120) < 6.5
    assert mean("deteriorating", 90, 120) > mean("deteriorating", 0, 30) + 0.5
    assert mean("improving", 90, 120) < mean("improving", 0, 30) - 0.5
    spread = {name: float(np.std([v for _, v, _ in fasting[name]])) for name in fasting}
    assert spread["erratic"] > 2 * spread["well_controlled"]

    def measured_days(name: str, lo: int, hi: int) -> float:
        devices = {dev for dev, n in persona.items() if n == name}
        days = {(dev, d) for d, _, dev in fasting[name] if lo <= d < hi}
        return len(days) / (len(devices) * (hi - lo))

    assert measured_days("lapsing", 90, 120) < measured_days("lapsing", 0, 30) - 0.15
    assert "control_solution" in samples["gamer_control_solution"]
    assert "control_solution" not in samples["well_controlled"]
    assert "manual" in sources["gamer_manual"]
    assert batches > 0 and duplicates > 0
    for device, values in seqs.items():
        ordered = sorted(set(values), key=values.index)
        steps = np.diff(ordered) % 65536
        assert (steps == 1).all(), device  # increments by one, wrapping at 65536


def test_device_cannot_publish_for_another_and_strangers_are_refused(
        mosquitto: LocalMosquitto) -> None:
    add_accounts(mosquitto, "GM-A", "GM-B")
    from glucover import broker

    collector = Collector(mosquitto, "glucover/v1/devices/+/readings")
    try:
        pw_a = broker.derive_password(TEST_SECRET, "GM-A")
        assert try_publish(mosquitto, "GM-A", pw_a, topics.readings_topic("GM-B"), b"x") == (
            "ok", "Not authorized")
        assert try_publish(mosquitto, "GM-A", pw_a, topics.readings_topic("GM-A"), b"mine") == (
            "ok", "accepted")
        assert collector.wait_for(1, 5) == [b"mine"]
        assert try_publish(mosquitto, None, None, topics.readings_topic("GM-A"), b"x")[0] != "ok"
        assert try_publish(mosquitto, "GM-A", "wrong", topics.readings_topic("GM-A"), b"x")[
            0] != "ok"
        # The broker refused those before answering; a message sent after them arrives after
        # anything they might have let through.
        pw_b = broker.derive_password(TEST_SECRET, "GM-B")
        assert try_publish(mosquitto, "GM-B", pw_b, topics.readings_topic("GM-B"), b"after")[
            1] == "accepted"
        assert collector.wait_for(2, 5) == [b"mine", b"after"]
    finally:
        collector.close()


def test_provision_and_revoke_through_the_cli(db_url: str, mosquitto: LocalMosquitto,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from glucover import broker

    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("GLUCOVER_BROKER_DIR", str(mosquitto.confdir))
    assert main(["devices", "provision", "--count", "3"]) == 0
    out = capsys.readouterr().out
    assert "meter-000001 .. meter-000003" in out and "mode 0600" in out
    password = broker.derive_password(TEST_SECRET, "meter-000002")
    topic = topics.readings_topic("meter-000002")
    assert wait_until(lambda: try_publish(mosquitto, "meter-000002", password, topic, b"x")
                      == ("ok", "accepted"), 10)
    assert main(["devices", "revoke", "meter-000002"]) == 0
    assert wait_until(lambda: try_publish(mosquitto, "meter-000002", password, topic,
                                          b"x")[0] != "ok", 10)
    assert main(["devices", "revoke", "meter-000002"]) == 2
    assert "already revoked" in capsys.readouterr().err


def test_meter_resends_unacknowledged_messages_across_a_broker_restart(
        mosquitto: LocalMosquitto) -> None:
    people = portfolio(1, 21, START)
    messages = [m for m in fleet_messages(people, 21, 400) if m.topic.endswith("readings")]
    device = people[0].device_id
    add_accounts(mosquitto, device)
    collector = Collector(mosquitto, "glucover/v1/devices/+/readings")
    result: dict[str, Any] = {}

    def publish() -> None:
        from glucover.config import MqttTarget

        result["stats"] = meter_session(MqttTarget("127.0.0.1", mosquitto.port), TEST_SECRET,
                                        device, messages * 20, timeout=120)

    thread = threading.Thread(target=publish)
    thread.start()
    total = len(messages) * 20
    assert wait_until(lambda: len(collector.payloads) > 0, 30, 0.01)
    mosquitto.restart()
    delivered_before = len(collector.payloads)
    assert delivered_before < total and thread.is_alive()  # the restart came mid-stream
    thread.join(150)
    assert not thread.is_alive()
    stats = result["stats"]
    assert stats.reconnects >= 1
    assert stats.acknowledged == stats.published == len(messages) * 20
    received = collector.wait_for(len(messages) * 20, 60)
    collector.close()
    assert {m.payload for m in messages} <= set(received)


def test_live_mode_after_a_long_history_replay_sends_readings_at_the_real_now(
        mosquitto: LocalMosquitto) -> None:
    """The history replay took ten minutes: what the meters sent meanwhile is caught up at
    once, and then each live reading is sent when its sent_at says (its meter's clock is the
    real one), so ingest's lag is the real lag, not the replay's length."""
    from devices.simulator_cli import live
    from glucover.config import MqttTarget

    now = datetime.now(UTC)
    history_end = now - timedelta(minutes=10)
    people = portfolio(30, 33, now.date() - timedelta(days=2), cgm_share=1.0)
    add_accounts(mosquitto, *[p.device_id for p in people])
    collector = Collector(mosquitto, "glucover/v1/devices/+/readings")
    stop = threading.Event()
    thread = threading.Thread(target=live, args=(
        people, 33, history_end, 1.0, MqttTarget("127.0.0.1", mosquitto.port), TEST_SECRET,
        False, stop))
    thread.start()

    def sent_at() -> list[tuple[datetime, datetime]]:
        with collector.lock:
            pairs = list(zip(collector.payloads, collector.arrived_at, strict=True))
        return [(datetime.fromisoformat(json.loads(p)["sent_at"]), a) for p, a in pairs]

    try:
        assert wait_until(lambda: sum(s >= now for s, _ in sent_at()) >= 3, 90)
    finally:
        stop.set()
        thread.join(30)
        collector.close()
    caught_up = [(s, a) for s, a in sent_at() if s < now]
    assert caught_up and min(s for s, _ in caught_up) >= history_end
    live_lag = [(a - s).total_seconds() for s, a in sent_at() if s >= now]
    assert all(-0.5 < lag < 3 for lag in live_lag), live_lag


def test_a_meter_sends_again_what_ingest_has_not_acknowledged(
        mosquitto: LocalMosquitto) -> None:
    """End to end, the broker's PUBACK is not enough: with no ingest to say the reading is
    stored, the meter sends the same message again once RESEND_AFTER_S pass in silence."""
    import contextlib
    import time

    from devices.publisher import RESEND_AFTER_S, Stopped
    from glucover.config import MqttTarget

    people = portfolio(1, 23, START)
    device = people[0].device_id
    message = next(m for m in fleet_messages(people, 23, 1) if m.topic.endswith("readings"))
    add_accounts(mosquitto, device)
    collector = Collector(mosquitto, "glucover/v1/devices/+/readings")
    stop = threading.Event()

    def publish() -> None:
        with contextlib.suppress(Stopped):  # stopped as asked, below
            meter_session(MqttTarget("127.0.0.1", mosquitto.port), TEST_SECRET, device,
                          [message], timeout=60, end_to_end=True, stop=stop)

    thread = threading.Thread(target=publish)
    thread.start()
    try:
        assert wait_until(lambda: len(collector.payloads) >= 1, 30, 0.01)
        first = time.monotonic()
        assert wait_until(lambda: len(collector.payloads) >= 2, RESEND_AFTER_S + 25, 0.01)
        again = time.monotonic() - first
    finally:
        stop.set()
        thread.join(30)
        collector.close()
    assert collector.payloads[:2] == [message.payload, message.payload]
    assert again >= RESEND_AFTER_S - 1  # after the silence, not at once
