"""`glucover bench ingest`: end-to-end throughput and latency (publish -> committed row) of the
ingest worker, single-record and 20-record messages, and of a naive bridge (one INSERT per
message, autocommit) on the same single-record workload, all in one run on private servers.

Beside them, the limit of this machine: the same readings COPY'd straight into `readings` by
one process, no broker, in ingest's own binary COPY, measured in each round just before the
batched run; batched ingest is reported as a share of it, round by round and their median. And
what each process spends: CPU seconds per 1,000 readings of the worker(s), the broker, the
database (every backend, the ended ones included) and the load generator (this process), for
the median batched and single-record rounds, and of the database and the COPYing process for
the median COPY round: where ingest's cost exceeds the limit's."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psutil
import psycopg
from prometheus_client.parser import text_string_to_metric_families

from bench.harness import (
    LOADGEN_ACCOUNT,
    Servers,
    bench_device,
    emit,
    ingest_env,
    loadgen_password,
    median_run,
    private_servers,
    progress,
    recent_base,
    rounds,
    seed_devices,
    spawn,
    spawn_glucover,
    stop,
)
from bench.loadgen import publish_raw
from devices.wire.messages import ReadingsMessage, Record
from devices.wire.topics import readings_topic
from glucover.config import Settings
from glucover.servers import free_port
from ingest.batch import Received, decode
from ingest.store import COPY_READINGS_SQL, READING_TYPES
from kernel.sequence import SEQ_MODULO

# Completion check only: throughput and latencies come from commit timestamps. The ingest
# workers' own count of stored readings (their Prometheus metrics) costs the database nothing;
# a count(*) over the table, the check for anything else, cost the database ~45 ms per million
# readings on each poll, a few percent of the CPU the measured workload has.
POLL_S = 0.5
STORED_METRIC = "glucover_ingest_readings"


def workload(devices: int, readings: int, per_message: int, seed: int) -> list[tuple[str, bytes]]:
    """`readings` records from `devices` meters, `per_message` per message (a meter's batch).
    Message j comes from meter j % devices; its records carry that meter's next seq numbers."""
    rng = np.random.default_rng(seed)
    base = recent_base()
    values = np.round(rng.uniform(3.5, 14.0, readings), 1)
    messages = []
    for j in range(-(-readings // per_message)):
        device = bench_device(j % devices)
        first_seq = (j // devices) * per_message
        count = min(per_message, readings - j * per_message)
        records = tuple(
            Record(seq=(first_seq + k) % SEQ_MODULO,
                   measured_at=base + timedelta(minutes=30 * (first_seq + k)),
                   value=float(values[j * per_message + k]))
            for k in range(count))
        msg = ReadingsMessage(device, base, records)
        messages.append((readings_topic(device), msg.encode()))
    return messages


class Workers:
    """The ingest workers of a scenario: how many readings they have stored so far."""

    def __init__(self, metrics_ports: list[int]) -> None:
        self.urls = [f"http://127.0.0.1:{port}/metrics" for port in metrics_ports]

    def stored(self) -> int:
        total = 0.0
        for url in self.urls:
            with urllib.request.urlopen(url, timeout=5) as reply:  # noqa: S310 - our own port
                text = reply.read().decode()
            total += sum(s.value for family in text_string_to_metric_families(text)
                         if family.name == STORED_METRIC for s in family.samples
                         if s.name == STORED_METRIC + "_total")
        return int(total)


def _poll(db_url: str, expected: int, timeout: float, workers: Workers | None = None,
          base: int = 0) -> list[tuple[float, int]]:
    """Wait until `expected` readings are stored: as the workers count them (beyond `base`)
    when they are given, then (and otherwise) by counting the table."""
    seen: list[tuple[float, int]] = []
    deadline = time.monotonic() + timeout
    while workers and time.monotonic() < deadline:
        count = workers.stored() - base
        seen.append((time.monotonic(), count))
        if count >= expected:
            break
        time.sleep(POLL_S)
    with psycopg.connect(db_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("select count(*) from readings").fetchone()
            count = int(row[0]) if row else 0
            seen.append((time.monotonic(), count))
            if count >= expected:
                break
            time.sleep(POLL_S)
    return seen


# The processes of the COPY limit: the load generator is the process that COPYs.
COPY_PROCESSES = ("database", "load_generator")


def copy_limit(db_url: str, messages: list[tuple[str, bytes]], per_copy: int = 20_000,
               cpu: CpuMeter | None = None) -> dict[str, Any]:
    """The messages' readings, decoded as ingest decodes them, COPY'd into readings by this
    process in ingest's binary COPY, `per_copy` rows per transaction: readings/s, and (with
    `cpu`) what the database and this process spent on the COPY alone."""
    received = datetime.now(UTC)
    rows = decode(
        [Received(topic, payload, i, 1, received) for i, (topic, payload) in enumerate(
            messages)], trust_sent_at=False).readings
    _reset(db_url)
    before = cpu.sample() if cpu else None
    started = time.perf_counter()
    with psycopg.connect(db_url) as conn:
        for i in range(0, len(rows), per_copy):
            with conn.cursor() as cur, cur.copy(COPY_READINGS_SQL) as copy:
                copy.set_types(READING_TYPES)
                for row in rows[i:i + per_copy]:
                    copy.write_row(row)
            conn.commit()
    seconds = time.perf_counter() - started
    after = cpu.sample() if cpu else None
    use = per_thousand(before, after, len(rows)) if before and after else None
    return {"readings": len(rows), "seconds": round(seconds, 3),
            "readings_per_s": round(len(rows) / max(seconds, 1e-9)),
            "cpu_s_per_1000_readings": use and {k: use[k] for k in COPY_PROCESSES}}


class CpuMeter:
    """CPU seconds spent by the benchmark's processes: the ingest workers, Mosquitto, the
    PostgreSQL cluster (its postmaster, live backends, and the backends it has reaped) and the
    load generator (this process)."""

    def __init__(self, servers: Servers) -> None:
        self.root = str(servers.root)
        self.workers: list[psutil.Process] = []

    def _server(self, marker: str) -> psutil.Process | None:
        for proc in psutil.process_iter(["cmdline"]):
            if any(marker in part for part in proc.info["cmdline"] or []):
                return proc
        return None

    def sample(self) -> dict[str, float]:
        def total(proc: psutil.Process | None, reaped: bool = False) -> float:
            if proc is None:
                return 0.0
            try:
                t = proc.cpu_times()
                return t.user + t.system + ((t.children_user + t.children_system) if reaped
                                            else 0.0)
            except psutil.NoSuchProcess:
                return 0.0

        postmaster = self._server(f"{self.root}/pg")
        backends = postmaster.children(recursive=True) if postmaster else []
        return {
            "worker": sum(total(w) for w in self.workers),
            "broker": total(self._server(f"{self.root}/mqtt")),
            "database": total(postmaster, reaped=True) + sum(total(b) for b in backends),
            "load_generator": total(psutil.Process()),
        }


def per_thousand(before: dict[str, float], after: dict[str, float], readings: int
                 ) -> dict[str, float]:
    return {k: round(1000 * (after[k] - before[k]) / max(readings, 1), 4) for k in after}


def _reset(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("truncate readings, rejected_messages, device_acks")


def _integrity(db_url: str, expected_keys: int) -> tuple[int, int]:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("select count(*), count(distinct (device_id, seq, measured_at)) "
                           "from readings").fetchone()
    total, distinct = (int(row[0]), int(row[1])) if row else (0, 0)
    return max(expected_keys - distinct, 0), total - distinct


def _commit_times(db_url: str) -> dict[tuple[str, int], float]:
    """Exact commit time (epoch s) of every stored reading, from track_commit_timestamp."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("select device_id, seq, extract(epoch from "
                            "pg_xact_commit_timestamp(xmin))::float8 from readings").fetchall()
    return {(str(d), int(s)): float(t) for d, s, t in rows}


def run_scenario(servers: Servers, messages: list[tuple[str, bytes]], readings: int,
                 rate: float | None = None, cpu: CpuMeter | None = None,
                 workers: Workers | None = None) -> dict[str, Any]:
    """Publish `messages` (flat out, or paced at `rate` messages/s) and measure until every
    reading is committed (as `workers` count them, when given)."""
    _reset(servers.db_url)
    before = cpu.sample() if cpu else None
    result: dict[str, Any] = {}
    base = workers.stored() if workers else 0
    poller = threading.Thread(target=lambda: result.setdefault(
        "seen", _poll(servers.db_url, readings, 300, workers, base)))
    poller.start()
    load = publish_raw("127.0.0.1", servers.mqtt_port, LOADGEN_ACCOUNT, loadgen_password(servers),
                       messages, rate=rate)
    poller.join()
    # The processes' CPU up to the last commit, before this benchmark's own counting.
    after = cpu.sample() if cpu else None
    final = result["seen"][-1][1]
    committed = _commit_times(servers.db_url)
    latencies = []
    for index, (_, payload) in enumerate(messages):
        doc = json.loads(payload)
        for record in doc["records"]:
            at = committed.get((doc["device_id"], record["seq"]))
            if at is not None:
                latencies.append((at - load.send_times[index]) * 1000)
    start = load.send_times[0]
    done_at = max(committed.values()) if committed else start
    lost, duplicated = _integrity(servers.db_url, readings)
    cpu_use = per_thousand(before, after, final) if before and after else None
    return {
        "cpu_s_per_1000_readings": cpu_use,
        "messages": len(messages), "readings": readings, "stored": final,
        "seconds": round(done_at - start, 3),
        "readings_per_s": round(final / max(done_at - start, 1e-9)),
        "p50_latency_ms": round(float(np.percentile(latencies, 50)), 1) if latencies else None,
        "p99_latency_ms": round(float(np.percentile(latencies, 99)), 1) if latencies else None,
        "lost": lost, "duplicated": duplicated,
    }


PACED_SECONDS = 5
NAIVE_MAX = 60_000


@contextmanager
def ingest_workers(servers: Servers, env: dict[str, str], workers: int, acks: bool,
                   cpu: CpuMeter | None = None) -> Iterator[Workers]:
    """`workers` ingest processes sharing the subscription, end-to-end acks on or off (their
    CPU counted by `cpu` while they run)."""
    flags = [] if acks else ["--no-acks"]
    ports = [free_port() for _ in range(workers)]
    procs = [spawn_glucover(["ingest", "--worker-name", f"bench-{i}", "--metrics-port",
                             str(port), *flags], env, servers.root / f"ingest-{i}.log",
                            "connected to")
             for i, port in enumerate(ports)]
    if cpu is not None:
        cpu.workers = [psutil.Process(p.pid) for p in procs]
    try:
        yield Workers(ports)
    finally:
        for proc in procs:
            stop(proc)


def share(run: dict[str, Any], limit: dict[str, Any]) -> float:
    """A run's readings/s as a percentage of a COPY limit's."""
    return round(100 * float(run["readings_per_s"]) / max(float(limit["readings_per_s"]), 1.0), 1)


def run_bench(devices: int, readings: int, workers: int, settings: Settings,
              repeat: int = 3, paced_rate: int = 10_000, show_progress: bool = True
              ) -> dict[str, Any]:
    """Each flat-out scenario runs `repeat` times (single and batched alternating, so drifts of
    this VM's speed hit both alike); figures are the median run's. A paced run then measures
    latency at `paced_rate` readings/s, a load the workers keep up with."""
    say = progress(show_progress)
    runs: dict[str, list[dict[str, Any]]] = {
        "single": [], "batched": [], "single_no_acks": [], "batched_no_acks": [], "naive": [],
        "copy_limit": []}
    with ExitStack() as stack:
        servers = private_servers(stack, settings)
        seed_devices(servers.db_url, devices)
        env = ingest_env(servers)
        single = workload(devices, readings, 1, seed=1)
        batched = workload(devices, readings, 20, seed=2)
        cpu = CpuMeter(servers)
        for tag in rounds(repeat):
            # End-to-end acknowledgements on (the product's default), then off, in each round.
            for acks, suffix in ((True, ""), (False, "_no_acks")):
                with ingest_workers(servers, env, workers, acks, cpu) as running:
                    say(f"single-record{suffix}: {len(single):,} messages from {devices:,} "
                        f"meters{tag}")
                    runs["single" + suffix].append(run_scenario(servers, single, readings,
                                                                cpu=cpu, workers=running))
                    if acks:
                        # The limit right before the batched run it is compared with (the
                        # workers idle), so both see this VM in the same state: its speed
                        # drifts between minutes by as much as the goal's margin.
                        say(f"COPY limit: {readings:,} readings straight into the table{tag}")
                        runs["copy_limit"].append(copy_limit(servers.db_url, batched,
                                                             cpu=cpu))
                    say(f"batched{suffix}: {len(batched):,} messages of 20 records{tag}")
                    runs["batched" + suffix].append(run_scenario(servers, batched, readings,
                                                                 cpu=cpu, workers=running))
        paced_n = min(paced_rate * PACED_SECONDS, readings)
        with ingest_workers(servers, env, workers, acks=True) as running:
            say(f"paced: {paced_n:,} single-record messages at {paced_rate:,}/s")
            paced = run_scenario(servers, single[:paced_n], paced_n, rate=paced_rate,
                                 workers=running)
        # The naive bridge is the slow baseline (a few thousand a second, steady from the
        # start): a share of the workload, at most NAIVE_MAX readings, measures it.
        naive_n = min(max(readings // 4, 1000), NAIVE_MAX)
        naive = spawn([sys.executable, "-m", "bench.naive", servers.db_url, env["MQTT_URL"]], env,
                      servers.root / "naive.log", "subscribed")
        try:
            for tag in rounds(repeat):
                say(f"naive bridge: {naive_n:,} single-record messages{tag}")
                runs["naive"].append(run_scenario(servers, single[:naive_n], naive_n))
        finally:
            stop(naive)
    s, b, n, s0, b0, limit = (median_run(runs[k], "readings_per_s") for k in (
        "single", "batched", "naive", "single_no_acks", "batched_no_acks", "copy_limit"))
    every = [r for k in runs if k != "copy_limit" for r in runs[k]] + [paced]
    # The share is taken round by round (each batched run against the limit measured just
    # before it), and the median of those reported.
    shares = [share(r, c) for r, c in zip(runs["batched"], runs["copy_limit"], strict=True)]
    return {
        "devices": devices, "readings": readings, "workers": workers, "repeat": repeat,
        "single_readings_per_s": s["readings_per_s"],
        "batched_readings_per_s": b["readings_per_s"],
        "naive_readings_per_s": n["readings_per_s"],
        "single_no_acks_readings_per_s": s0["readings_per_s"],
        "batched_no_acks_readings_per_s": b0["readings_per_s"],
        "acks_cost_single_percent": round(100 * (1 - s["readings_per_s"]
                                                 / max(s0["readings_per_s"], 1)), 1),
        "acks_cost_batched_percent": round(100 * (1 - b["readings_per_s"]
                                                  / max(b0["readings_per_s"], 1)), 1),
        "copy_limit_readings_per_s": limit["readings_per_s"],
        "batched_share_of_limit_percent": sorted(shares)[len(shares) // 2],
        "batched_share_of_limit_rounds": shares,
        "single_share_of_limit_percent": share(s, limit),
        "cpu_s_per_1000_readings": {"single": s["cpu_s_per_1000_readings"],
                                    "batched": b["cpu_s_per_1000_readings"],
                                    "copy_limit": limit["cpu_s_per_1000_readings"]},
        "ratio_vs_naive": round(s["readings_per_s"] / max(n["readings_per_s"], 1), 1),
        "batched_ratio_vs_naive": round(b["readings_per_s"] / max(n["readings_per_s"], 1), 1),
        "p50_latency_ms": s["p50_latency_ms"], "p99_latency_ms": s["p99_latency_ms"],
        "batched_p50_latency_ms": b["p50_latency_ms"],
        "batched_p99_latency_ms": b["p99_latency_ms"],
        "paced_rate": paced_rate, "paced_readings_per_s": paced["readings_per_s"],
        "paced_p50_latency_ms": paced["p50_latency_ms"],
        "paced_p99_latency_ms": paced["p99_latency_ms"],
        "lost": sum(r["lost"] for r in every),
        "duplicated": sum(r["duplicated"] for r in every),
        "scenarios": {"single": s, "batched": b, "single_no_acks": s0, "batched_no_acks": b0,
                      "naive": n, "paced": paced},
        "rounds": {k: [r["readings_per_s"] for r in v] for k, v in runs.items()},
    }


def bench_cli(args: argparse.Namespace, settings: Settings) -> int:
    report = run_bench(args.devices, args.readings, args.workers, settings, args.repeat,
                       args.paced_rate)
    emit(report, args.json, print_report)
    return 0 if report["lost"] == 0 and report["duplicated"] == 0 else 1


def print_report(report: dict[str, Any]) -> None:
    print(f"ingest, {report['devices']:,} meters, {report['readings']:,} readings, "
          f"{report['workers']} worker(s)"
          + (f", median of {report['repeat']} rounds" if report["repeat"] > 1 else ""))
    for name in ("single", "batched", "single_no_acks", "batched_no_acks", "naive", "paced"):
        r = report["scenarios"][name]
        print(f"  {name:16s} {r['readings_per_s']:>9,} readings/s  p50 {r['p50_latency_ms']:>7}"
              f" ms  p99 {r['p99_latency_ms']:>7} ms  lost {r['lost']}  duplicated "
              f"{r['duplicated']}")
    print(f"  single vs naive: {report['ratio_vs_naive']}x, batched vs naive: "
          f"{report['batched_ratio_vs_naive']}x; paced = single-record at "
          f"{report['paced_rate']:,}/s offered")
    print(f"  COPY limit (one process, no broker): {report['copy_limit_readings_per_s']:,} "
          f"readings/s; batched ingest {report['batched_share_of_limit_percent']}% of it "
          f"(the median round's share"
          + (", rounds " + ", ".join(f"{v}%" for v in report["batched_share_of_limit_rounds"])
             if report["repeat"] > 1 else "")
          + f"), single-record {report['single_share_of_limit_percent']}%")
    for name, use in report["cpu_s_per_1000_readings"].items():
        print(f"  CPU s per 1,000 readings, {name}: " + ", ".join(
            f"{k.replace('_', ' ')} {v}" for k, v in (use or {}).items()))
    print(f"  end-to-end acks cost {report['acks_cost_single_percent']}% single-record, "
          f"{report['acks_cost_batched_percent']}% batched (against the _no_acks runs)")
    if report["repeat"] > 1:
        for name, values in report["rounds"].items():
            print(f"  {name} rounds: " + ", ".join(f"{v:,}" for v in values))
