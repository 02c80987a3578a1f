"""Driving the real ingest worker in tests: in-process or as a `glucover ingest` process."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from devices.fleet import Outgoing, Policyholder, fleet_messages, portfolio
from devices.provisioning import add_portfolio, sync_broker
from devices.publisher import publish_fleet
from devices.wire.decoding import decode_readings
from devices.wire.topics import topic_device
from glucover import broker
from glucover.config import MqttTarget
from ingest.worker import IngestWorker, WorkerConfig, ingest_target
from tests.conftest import Stack
from tests.helpers import START, TEST_SECRET, wait_until
from tests.mqtt_helpers import broker_accepts


def provision(stack: Stack, policies: int, seed: int, gateway_share: float = 0.0,
              cgm_share: float = 0.0) -> list[Policyholder]:
    people = portfolio(policies, seed, START, gateway_share, cgm_share)
    with psycopg.connect(stack.db_url) as conn:
        add_portfolio(conn, people, TEST_SECRET)
        conn.commit()
        sync_broker(conn, stack.settings)
    stack.broker.reload()
    last = people[-1].device_id  # the broker has re-read its files once it lets the last in
    assert wait_until(lambda: broker_accepts(
        stack.broker, last, broker.derive_password(TEST_SECRET, last)), 10)
    return people


def history(people: list[Policyholder], seed: int, days: int) -> list[Outgoing]:
    return fleet_messages(people, seed, days)


def by_device(messages: Iterable[Outgoing]) -> dict[str, list[Outgoing]]:
    grouped: dict[str, list[Outgoing]] = defaultdict(list)
    for m in messages:
        grouped[m.topic.split("/")[3]].append(m)
    return grouped


def publish(stack: Stack, messages: list[Outgoing], concurrency: int = 8,
            end_to_end: bool = False) -> None:
    """Publish as the meters; returns once every message is acknowledged: by the broker, or
    with `end_to_end` by ingest once stored (then a broker that dies loses nothing)."""
    stats = publish_fleet(MqttTarget("127.0.0.1", stack.broker.port), TEST_SECRET,
                          by_device(messages), concurrency, end_to_end=end_to_end)
    assert stats.failed == {}
    assert stats.acknowledged == stats.published == len(messages)


def distinct_readings(messages: Iterable[Outgoing]) -> set[tuple[str, int, datetime]]:
    """The identities of the readings the messages carry, through the wire format's own decoder
    (so a gateway's Bluetooth records count with the instant ingest gives them)."""
    keys = set()
    for m in messages:
        device_id, kind = topic_device(m.topic) or ("", "")
        if kind == "readings":
            for r in decode_readings(m.payload, device_id, m.at).readings:
                keys.add((r.device_id, r.seq, r.measured_at))
    return keys


def stored_readings(db_url: str) -> list[tuple[str, int, datetime]]:
    with psycopg.connect(db_url) as conn:
        return [(str(a), int(b), c) for a, b, c in conn.execute(  # type: ignore[misc]
            "select device_id, seq, measured_at from readings")]


def reading_count(db_url: str) -> int:
    """Readings stored; -1 while the database cannot be reached."""
    try:
        with psycopg.connect(db_url, connect_timeout=2) as conn:
            row = conn.execute("select count(*) from readings").fetchone()
            return int(row[0]) if row else 0
    except psycopg.OperationalError:
        return -1


def wait_for_rows(db_url: str, count: int, timeout: float = 60) -> int:
    """Wait until at least `count` readings are stored; the count then (or at the timeout)."""
    seen = [0]

    def enough() -> bool:
        seen[0] = reading_count(db_url)
        return seen[0] >= count

    wait_until(enough, timeout, 0.2)
    return seen[0]


def delivered_end_to_end(output: str, policies: int, db_url: str,
                         expected: set[tuple[str, int, datetime]]) -> int:
    """Assert what `glucover simulate` printed (`output`) and ingest stored after a run: every
    meter delivered, every message acknowledged as stored, each reading the meters hold stored
    once and no other. The number of messages sent again."""
    assert f"0 of {policies} meters could not deliver" in output, output[-3000:]
    summary = re.search(r"(\d+) messages from (\d+) meters, (\d+) acknowledged \(stored, end "
                        r"to end\), (\d+) sent again", output)
    assert summary is not None, output[-2000:]
    published, meters, acknowledged, resent = map(int, summary.groups())
    assert meters == policies and acknowledged == published
    rows = stored_readings(db_url)
    assert len(rows) == len(set(rows)), "a reading was stored twice"
    assert set(rows) == expected, "stored readings differ from those the meters hold"
    return resent


def kill_broker_for_a_while(stack: Stack) -> None:
    """The broker killed -9 and started again a second later: down a while on purpose, so
    the meters' sends fail meanwhile."""
    stack.broker.stop(kill=True)
    time.sleep(1.0)
    stack.broker.start()


def end_run(sim: subprocess.Popen[bytes], worker: subprocess.Popen[bytes]) -> None:
    """After a simulated run: the simulator killed if it still runs, the ingest worker
    stopped as a deployment stops it."""
    if sim.poll() is None:
        sim.kill()
    worker.send_signal(signal.SIGTERM)
    worker.wait(30)


def start_worker(stack: Stack, client_id: str = "test-ingest", **kw: Any) -> IngestWorker:
    worker = IngestWorker(WorkerConfig(stack.db_url, ingest_target(stack.settings), client_id,
                                       **kw))
    worker.start()
    assert worker.subscribed.wait(10)
    return worker


def spawn_worker(stack: Stack, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """Start `glucover ingest`; return once this process (not an earlier one logging to the
    same file) says the broker granted its subscriptions."""
    offset = log.stat().st_size if log.exists() else 0
    out = log.open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "ingest", *args],
                            env=stack.env(), stdout=out, stderr=subprocess.STDOUT)
    out.close()
    if wait_until(lambda: proc.poll() is not None or "subscribed to" in log.read_bytes()[
            offset:].decode(errors="replace"), 20) and proc.poll() is None:
        return proc
    raise AssertionError("ingest worker did not subscribe:\n" + log.read_text(errors="replace"))


def stored_exclusions(conn: psycopg.Connection[Any]) -> list[tuple[int, str]]:
    """(seq, what the pricing evaluator makes of it under the default ruleset) of every stored
    reading: 'ok' or the first exclusion reason it meets."""
    from pricing import store
    from pricing.evaluator import EXCLUSION_REASONS, exclusion_codes
    from pricing.ruleset import load_builtin

    devices = [str(d) for (d,) in conn.execute("select distinct device_id from readings")]
    readings = store.load_readings(conn, devices)
    codes = exclusion_codes(readings, load_builtin("default"))
    return [(int(s), EXCLUSION_REASONS[c]) for s, c in zip(readings["seq"], codes, strict=True)]
