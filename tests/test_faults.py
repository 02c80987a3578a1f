"""Faults survived, against the real servers: after each, the stored readings equal the
distinct readings sent, nothing is doubled, and the priced ledger equals a clean run's."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from devices.fleet import (
    DEFAULT_GATEWAY_SHARE,
    Link,
    Outgoing,
    Policyholder,
    fleet_messages,
    portfolio,
)
from devices.simulator_cli import history_window
from glucover.db import migrate
from glucover.servers import LocalPostgres
from pricing.evaluator import evaluate
from pricing.ruleset import load_builtin
from tests.conftest import Stack
from tests.helpers import START, comparable, current_ledger, wait_until
from tests.ingest_helpers import (
    delivered_end_to_end,
    distinct_readings,
    end_run,
    history,
    kill_broker_for_a_while,
    provision,
    publish,
    reading_count,
    spawn_worker,
    stored_readings,
    wait_for_rows,
)

pytestmark = pytest.mark.fault
DAYS = 30
THROUGH = START + timedelta(days=DAYS - 1)


def clean_ledger(people: list[Policyholder], messages: list[Outgoing]) -> pd.DataFrame:
    """The ledger a fault-free run gives: the evaluator on the messages themselves (first copy
    of each identity, received when sent, as ingest --trust-sent-at stores them)."""
    rows, seen = [], set()
    for m in messages:
        if not m.topic.endswith("readings"):
            continue
        doc = json.loads(m.payload)
        sent = datetime.fromisoformat(doc["sent_at"]).astimezone(UTC)
        for r in doc["records"]:
            measured = datetime.fromisoformat(r["measured_at"]).astimezone(UTC)
            key = (doc["device_id"], r["seq"], measured)
            if key in seen:
                continue
            seen.add(key)
            from kernel.units import MGDL_PER_MMOL
            from kernel.vocabulary import status_bits

            mmol = r["value"] / MGDL_PER_MMOL if r["unit"] == "mg/dL" else r["value"]
            rows.append({"device_id": doc["device_id"], "seq": r["seq"], "measured_at": measured,
                         "received_at": min(sent, measured + timedelta(days=3650)),
                         "value_mmol": mmol, "meal": r["meal"], "sample": r["sample"],
                         "source": r["source"], "status": status_bits(r["status"])})
    readings = pd.DataFrame(rows)
    readings["measured_at"] = pd.to_datetime(readings["measured_at"], utc=True)
    readings["received_at"] = pd.to_datetime(readings["received_at"], utc=True)
    policies = pd.DataFrame({"policy_id": [p.policy_id for p in people],
                             "start_date": pd.to_datetime([p.start_date for p in people]),
                             "base_sum_insured": [p.base_sum_insured for p in people],
                             "timezone": [p.timezone for p in people]})
    bindings = pd.DataFrame({"policy_id": policies["policy_id"],
                             "device_id": [p.device_id for p in people],
                             "bound_from": pd.NaT, "bound_to": pd.NaT})
    return comparable(evaluate(policies, bindings, readings, load_builtin("default"), THROUGH))


def check(db_url: str, people: list[Policyholder], messages: list[Outgoing]) -> None:
    from pricing.engine import run_pricing

    expected = distinct_readings(messages)
    assert wait_for_rows(db_url, len(expected), 120) == len(expected)
    rows = stored_readings(db_url)
    assert len(rows) == len(set(rows)), "duplicates stored"
    assert set(rows) == expected, "stored readings differ from those sent"
    run_pricing(db_url, THROUGH)
    ledger = current_ledger(db_url)
    ledger["reading_seq"] = ledger["reading_seq"].astype("Int64")
    pd.testing.assert_frame_equal(ledger, clean_ledger(people, messages), check_dtype=False)


POLICIES = 80  # enough that storing takes seconds, so a fault can land while it goes on


class MidStream:
    """Waits, before a fault, until readings are flowing (a share of them stored, not all) and
    notes the stored count at each fault, to check afterwards that every fault landed while
    readings were on their way."""

    def __init__(self, db_url: str, total: int) -> None:
        self.db_url, self.total = db_url, total
        self.at_fault: list[int] = []

    def wait_for(self, share: float) -> None:
        target = max(1, int(self.total * share))
        assert wait_until(lambda: reading_count(self.db_url) >= target, 120, every_s=0.02), \
            f"fewer than {target} readings stored"

    def fault_now(self) -> None:
        self.at_fault.append(reading_count(self.db_url))

    def check(self, faults: int) -> None:
        assert len(self.at_fault) == faults
        assert all(0 < n < self.total for n in self.at_fault), \
            f"a fault landed before or after the stream: stored {self.at_fault} of {self.total}"


def run_with_fault(stack: Stack, tmp_path: Path, seed: int,
                   fault: Callable[[Stack, list, Path, MidStream], None],  # type: ignore[type-arg]
                   workers: int = 1, copies: int = 1, faults: int = 1) -> None:
    people = provision(stack, POLICIES, seed)
    messages = history(people, seed, DAYS)
    assert any(len(json.loads(m.payload)["records"]) > 1 for m in messages
               if m.topic.endswith("readings")), "no offline meter synced a batch"
    procs = [spawn_worker(stack, tmp_path / f"w{i}.log", "--worker-name", f"fault-{i}",
                          "--batch-size", "100", "--trust-sent-at") for i in range(workers)]
    mid = MidStream(stack.db_url, len(distinct_readings(messages)))
    # A storm: the gateway sends every message `copies` times in a row.
    sent = [m for m in messages for _ in range(copies)]
    # End to end, as `glucover simulate` publishes by default: a meter keeps each message until
    # ingest says it is stored, so a broker that dies with messages it acknowledged but had
    # not yet saved (it saves every second) loses nothing.
    publisher = threading.Thread(target=publish, args=(stack, sent, 4, True))
    publisher.start()
    try:
        fault(stack, procs, tmp_path, mid)
        publisher.join(180)
        check(stack.db_url, people, messages)
        mid.check(faults)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)


def test_ingest_killed_three_times(stack: Stack, tmp_path: Path) -> None:
    def fault(stack: Stack, procs: list, tmp_path: Path,  # type: ignore[type-arg]
              mid: MidStream) -> None:
        for i in range(3):
            mid.wait_for(0.1 + 0.2 * i)
            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait()
            mid.fault_now()
            procs[0] = spawn_worker(stack, tmp_path / f"again{i}.log", "--worker-name",
                                    "fault-0", "--batch-size", "100", "--trust-sent-at")

    run_with_fault(stack, tmp_path, 41, fault, faults=3)


def test_broker_restarted_mid_stream(stack: Stack, tmp_path: Path) -> None:
    def fault(stack: Stack, procs: list, tmp_path: Path,  # type: ignore[type-arg]
              mid: MidStream) -> None:
        mid.wait_for(0.2)
        mid.fault_now()
        stack.broker.restart()

    run_with_fault(stack, tmp_path, 42, fault)


def test_database_restarted_mid_stream(stack: Stack, own_pg: LocalPostgres,
                                       tmp_path: Path) -> None:
    migrate(own_pg.url(), stack.settings)
    stack.db_url = own_pg.url()

    def fault(stack: Stack, procs: list, tmp_path: Path,  # type: ignore[type-arg]
              mid: MidStream) -> None:
        mid.wait_for(0.2)
        mid.fault_now()
        own_pg.stop()
        time.sleep(2)  # deliberately down a while: ingest must hold and retry, not give up
        own_pg.start()

    run_with_fault(stack, tmp_path, 43, fault)


def test_one_of_two_shared_workers_killed(stack: Stack, tmp_path: Path) -> None:
    def fault(stack: Stack, procs: list, tmp_path: Path,  # type: ignore[type-arg]
              mid: MidStream) -> None:
        mid.wait_for(0.2)
        procs[1].send_signal(signal.SIGKILL)
        procs[1].wait()
        mid.fault_now()
        time.sleep(3)  # the other goes on alone; the dead one's session waits for it
        procs[1] = spawn_worker(stack, tmp_path / "back.log", "--worker-name", "fault-1",
                                "--batch-size", "100", "--trust-sent-at")

    run_with_fault(stack, tmp_path, 44, fault, workers=2)


def test_duplicate_storm(stack: Stack, tmp_path: Path) -> None:
    run_with_fault(stack, tmp_path, 45, lambda *a: None, copies=3, faults=0)





def test_simulator_delivers_end_to_end_through_broker_and_ingest_kills(stack: Stack,
                                                                       tmp_path: Path) -> None:
    """`glucover simulate` (1,500 meters, 60 days) while the broker is killed -9 twice and the
    ingest worker killed -9 twice: every meter keeps its readings until ingest acknowledges
    them stored and sends again the rest, so nothing is lost and nothing doubled, and the run
    ends with every meter delivered and exit 0. (Before: the first meter caught by a broker
    kill raised out of the fleet, the meters after it never published, and readings the broker
    acknowledged just before a kill -9 were lost.)"""
    policies, days, seed = 1500, 60, 47
    provision(stack, policies, seed)  # same seed: the simulator's device ids
    first = datetime.now(UTC).date() - timedelta(days=days + 1)  # history wholly in the past
    first, end = history_window(first, days, datetime.now(UTC))
    # As simulate has it, without CGMs: 10% of 1,500 would add 2.6 million readings; a CGM's
    # messages take the same path (tests/test_cgm_devices.py).
    people = portfolio(policies, seed, first, DEFAULT_GATEWAY_SHARE)
    assert any(p.link == Link.GLS_GATEWAY for p in people)
    expected = distinct_readings(fleet_messages(people, seed, days, until=end))
    worker = spawn_worker(stack, tmp_path / "w.log", "--worker-name", "e2e", "--trust-sent-at")
    log = tmp_path / "simulate.log"
    with log.open("wb") as out:
        sim = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "simulate", "--policies", str(policies),
             "--days", str(days), "--seed", str(seed), "--start", first.isoformat(),
             "--cgm-share", "0", "--no-provision"], env=stack.env(), stdout=out,
            stderr=subprocess.STDOUT)
    try:
        for fault in ("broker", "ingest", "broker", "ingest"):
            target = reading_count(stack.db_url) + len(expected) // 6
            assert wait_until(lambda t=target: reading_count(stack.db_url) >= t  # type: ignore[misc]
                              or sim.poll() is not None, 300)
            assert sim.poll() is None, "the run ended before the faults: make it longer"
            if fault == "broker":
                kill_broker_for_a_while(stack)
            else:
                worker.send_signal(signal.SIGKILL)
                worker.wait()
                worker = spawn_worker(stack, tmp_path / "w.log", "--worker-name", "e2e",
                                      "--trust-sent-at")
        assert sim.wait(600) == 0, log.read_text()[-3000:]
        assert wait_for_rows(stack.db_url, len(expected), 60) == len(expected)
    finally:
        end_run(sim, worker)
    # The kills cost re-sends, which the idempotent key makes harmless.
    assert delivered_end_to_end(log.read_text(), policies, stack.db_url, expected) > 0


