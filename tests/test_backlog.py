"""Long backlogs complete through a broker with Mosquitto's stock queue limits
(max_queued_messages 1000: it drops what a busy ingest worker has no room for), a broker
killed -9 and an ingest worker killed -9: every reading stored exactly once, every meter told
so. (Before: an ack spoke of the 4,096 sequence numbers up to the newest, so a CGM's 30 days,
8,640 readings, ended in "not stored before the deadline".)"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devices.fleet import fleet_messages, portfolio
from devices.provisioning import acl_text
from devices.simulator_cli import history_window
from glucover import broker
from glucover.config import Settings
from glucover.servers import LocalMosquitto
from tests.conftest import Stack
from tests.helpers import TEST_SECRET, state_dir, wait_until
from tests.ingest_helpers import (
    delivered_end_to_end,
    distinct_readings,
    end_run,
    kill_broker_for_a_while,
    provision,
    reading_count,
    spawn_worker,
    wait_for_rows,
)

pytestmark = pytest.mark.fault


@pytest.fixture
def stock_stack(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """The stack with a broker at Mosquitto's own queue limits, not the generous ones
    `glucover up` writes."""
    root = state_dir("glucover-test-stock-mqtt-")
    server = LocalMosquitto(root / "broker", acl=acl_text(), stock_limits=True)
    server.write_config()
    broker.write_passwd(broker.BrokerFiles(server.confdir).passwd,
                        broker.service_entries(TEST_SECRET))
    server.start()
    assert "max_queued_messages" not in (server.confdir / "mosquitto.conf").read_text()
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("MQTT_URL", f"mqtt://127.0.0.1:{server.port}")
    monkeypatch.setenv("GLUCOVER_BROKER_DIR", str(server.confdir))
    try:
        yield Stack(db_url, server, Settings.from_env())
    finally:
        server.stop(kill=True)
        shutil.rmtree(root, ignore_errors=True)


def test_a_cgms_30_days_complete_through_stock_queue_limits_and_kills(
        stock_stack: Stack, tmp_path: Path) -> None:
    stack = stock_stack
    policies, days, seed = 3, 30, 61
    people = provision(stack, policies, seed, cgm_share=1.0)
    first = datetime.now(UTC).date() - timedelta(days=days + 1)  # history wholly in the past
    first, end = history_window(first, days, datetime.now(UTC))
    people = portfolio(policies, seed, first, 0.0, 1.0)
    assert all(p.cgm is not None for p in people)
    expected = distinct_readings(fleet_messages(people, seed, days, until=end))
    per_meter = len(expected) / policies
    assert per_meter > 8000, "a CGM's 30 days: about 8,640 readings in one session"
    worker = spawn_worker(stack, tmp_path / "w.log", "--worker-name", "backlog",
                          "--trust-sent-at")
    log = tmp_path / "simulate.log"
    with log.open("wb") as out:
        sim = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "simulate", "--policies", str(policies),
             "--days", str(days), "--seed", str(seed), "--start", first.isoformat(),
             "--gateway-share", "0", "--cgm-share", "1", "--no-provision"],
            env=stack.env(), stdout=out, stderr=subprocess.STDOUT)
    at_fault = {}
    try:
        # The ingest worker killed -9 as readings start to flow: its session at the broker
        # holds 1,000 messages (the stock queue) and the broker drops the rest (Mosquitto
        # 2.0.11 counts 2,000 dropped of 3,000 sent to an offline shared subscriber).
        assert wait_until(lambda: reading_count(stack.db_url) > 0 or sim.poll() is not None, 300)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        at_fault["ingest"] = reading_count(stack.db_url)
        time.sleep(10)  # two rounds of re-sends (RESEND_AFTER_S) into the full queue
        worker = spawn_worker(stack, tmp_path / "w.log", "--worker-name", "backlog",
                              "--trust-sent-at")
        # The broker killed -9 halfway.
        half = len(expected) // 2
        assert wait_until(lambda: reading_count(stack.db_url) >= half or sim.poll() is not None,
                          300)
        assert sim.poll() is None, "the run ended before the faults"
        at_fault["broker"] = reading_count(stack.db_url)
        kill_broker_for_a_while(stack)
        assert sim.wait(600) == 0, log.read_text()[-3000:]
        assert wait_for_rows(stack.db_url, len(expected), 60) == len(expected)
    finally:
        end_run(sim, worker)
    # Each fault hit while readings were on their way.
    assert all(0 < n < len(expected) for n in at_fault.values()), at_fault
    output = log.read_text()
    assert "not stored before the deadline" not in output, output[-3000:]
    # The broker's drops and the kills cost re-sends.
    assert delivered_end_to_end(output, policies, stack.db_url, expected) > 0
