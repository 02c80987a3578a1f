"""`glucover bench alerts`: how fast a dangerous reading becomes an alert for the care team,
with readings flowing through the real broker and ingest at a sustained rate (5,000/s by
default), beside the nightly batch it replaces.

Meters with policies publish single-record messages, paced; one reading in `danger_every` is
below 3.0 mmol/L, each from a meter of its own. The latency of an alert is its `raised_at`
minus the commit time of the reading that raised it (track_commit_timestamp), and minus the
moment the load generator wrote the message (publish -> alert). The baseline: the same alerts
from a nightly batch over the day's readings, raised when the batch runs: a reading waits for
the next run (uniform over 24 hours: 12 h at the median, 23.8 h at p99), plus the batch's own
time, measured here by judging all the run's readings in one pass."""

from __future__ import annotations

import argparse
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psutil
import psycopg

from bench.harness import (
    LOADGEN_ACCOUNT,
    bench_device,
    emit,
    ingest_env,
    loadgen_password,
    private_servers,
    progress,
    spawn_glucover,
    stop,
)
from bench.loadgen import publish_raw
from care import alerts, store
from devices.wire.messages import ReadingsMessage, Record
from devices.wire.topics import readings_topic
from glucover.config import Settings
from kernel.sequence import SEQ_MODULO
from pricing import store as pricing_store
from privacy import consent

DAY_S = 86_400
LOW_MMOL = 2.5


def seed_policies(db_url: str, count: int) -> None:
    """Meters BENCH-000000.. each bound to a policy of its own (fingerstick, default ruleset)."""
    start = datetime.now(UTC).date() - timedelta(days=30)
    bound = datetime.now(UTC) - timedelta(days=32)
    with psycopg.connect(db_url) as conn, conn.cursor() as cur:
        with cur.copy("copy devices (device_id) from stdin") as copy:
            for i in range(count):
                copy.write_row((bench_device(i),))
        with cur.copy("copy policies (policy_id, holder_name, base_sum_insured, timezone, "
                      "start_date) from stdin") as copy:
            for i in range(count):
                copy.write_row((f"BP-{i:06d}", "bench", 100000, "Asia/Shanghai", start))
        with cur.copy("copy policy_devices (policy_id, device_id, bound_from) from stdin") as copy:
            for i in range(count):
                copy.write_row((f"BP-{i:06d}", bench_device(i), bound))
        consent.record_all(conn, [f"BP-{i:06d}" for i in range(count)], actor="glucover bench",
                           channel="provisioning")


def workload(devices: int, readings: int, danger_every: int, seed: int
             ) -> tuple[list[tuple[str, bytes]], dict[str, int]]:
    """Single-record messages measured in the last minutes, message j from meter j % devices;
    one in `danger_every` a low, each from a meter that sends no other (round r of the meters,
    r = j // devices, takes its lows from meters r, r + danger_every, ...). Returns the
    messages and, per dangerous meter, the index of its low's message."""
    rng = np.random.default_rng(seed)
    values = np.round(rng.uniform(4.5, 9.0, readings), 1)
    now = datetime.now(UTC)
    messages, lows = [], {}
    for j in range(readings):
        device = bench_device(j % devices)
        value = float(values[j])
        if j % danger_every == (j // devices) % danger_every and device not in lows:
            value, lows[device] = LOW_MMOL, j
        record = Record(seq=(j // devices) % SEQ_MODULO,
                        measured_at=now - timedelta(seconds=readings - j), value=value)
        messages.append((readings_topic(device), ReadingsMessage(device, now, (record,)).encode()))
    return messages, lows


def _alert_times(db_url: str) -> dict[str, tuple[float, float]]:
    """Per meter with a hypo_level2 alert: (raised_at, commit time of its reading), epoch s."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "select r.device_id, extract(epoch from a.raised_at)::float8, "
            "extract(epoch from pg_xact_commit_timestamp(g.xmin))::float8 "
            "from alerts a join alert_readings r using (alert_id) join readings g "
            "using (device_id, seq, measured_at) where a.rule = 'hypo_level2'").fetchall()
    return {str(d): (float(raised), float(committed)) for d, raised, committed in rows}


def _pending(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("select count(*) from alert_inbox").fetchone()
    return int(row[0]) if row else 0


def nightly_batch(db_url: str) -> dict[str, Any]:
    """The baseline's own cost: every stored reading judged in one pass, as a nightly job
    would (the same rules, placed the same way)."""
    started = time.perf_counter()
    with psycopg.connect(db_url) as conn:
        rules = store.rules_in_force(conn)
        readings = pricing_store.load_readings(conn, None)
        policies, bindings = pricing_store.load_policies(conn)
        frame = store.place(readings, policies, bindings, store.Rulesets(conn))
        found = alerts.streaming_findings(frame, rules)
    seconds = time.perf_counter() - started
    return {"readings": len(readings), "seconds": round(seconds, 2),
            "alerts": sum(f.rule == "hypo_level2" for f in found)}


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    return {"p50_ms": round(float(np.percentile(values, 50)), 1),
            "p99_ms": round(float(np.percentile(values, 99)), 1),
            "max_ms": round(float(np.max(values)), 1)}


def run_bench(rate: int, seconds: int, devices: int, danger_every: int, workers: int,
              settings: Settings, show_progress: bool = True) -> dict[str, Any]:
    say = progress(show_progress)
    readings = rate * seconds
    with ExitStack() as stack:
        servers = private_servers(stack, settings)
        seed_policies(servers.db_url, devices)
        env = ingest_env(servers)
        messages, lows = workload(devices, readings, danger_every, seed=3)
        procs = [spawn_glucover(["ingest", "--worker-name", f"bench-{i}"], env,
                                servers.root / f"ingest-{i}.log", "connected to")
                 for i in range(workers)]
        service = spawn_glucover(["alerts", "run", "--no-notices", "--sweep-every", "0"],
                                 {**env, "DATABASE_URL": servers.db_url},
                                 servers.root / "alerts.log", "listening on")
        cpu = psutil.Process(service.pid)
        cpu_before = sum(cpu.cpu_times()[:2])
        try:
            say(f"publishing {readings:,} readings at {rate:,}/s from {devices:,} meters, "
                f"{len(lows):,} of them dangerous")
            load = publish_raw("127.0.0.1", servers.mqtt_port, LOADGEN_ACCOUNT,
                               loadgen_password(servers), messages, rate=rate)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and (
                    len(_alert_times(servers.db_url)) < len(lows) or _pending(servers.db_url)):
                time.sleep(0.5)
            cpu_s = sum(cpu.cpu_times()[:2]) - cpu_before
        finally:
            stop(service)
            for proc in procs:
                stop(proc)
        with psycopg.connect(servers.db_url) as conn:
            row = conn.execute(
                "select count(*), extract(epoch from max(pg_xact_commit_timestamp(xmin)) - "
                "min(pg_xact_commit_timestamp(xmin)))::float8 from readings").fetchone()
        stored, span = (int(row[0]), float(row[1] or 0)) if row else (0, 0.0)
        times = _alert_times(servers.db_url)
        commit_to_alert = [(raised - committed) * 1000 for raised, committed in times.values()]
        publish_to_alert = [(times[d][0] - load.send_times[j]) * 1000
                            for d, j in lows.items() if d in times]
        say("baseline: the same readings judged by one nightly batch")
        batch = nightly_batch(servers.db_url)
    return {
        "rate_offered": rate, "seconds": seconds, "meters": devices, "workers": workers,
        "readings": readings, "stored": stored,
        "ingest_readings_per_s": round(stored / max(span, 1e-9)),
        "dangerous": len(lows), "alerts": len(times),
        "commit_to_alert": _percentiles(commit_to_alert),
        "publish_to_alert": _percentiles(publish_to_alert),
        "alert_service_cpu_s_per_1000_readings": round(1000 * cpu_s / max(stored, 1), 4),
        "nightly_batch": {**batch, "p50_ms": DAY_S * 1000 / 2 + batch["seconds"] * 1000,
                          "p99_ms": DAY_S * 1000 * 0.99 + batch["seconds"] * 1000},
        "goal_p99_ms": 2000,
    }


def bench_cli(args: argparse.Namespace, settings: Settings) -> int:
    report = run_bench(args.rate, args.seconds, args.devices, args.danger_every, args.workers,
                       settings)
    emit(report, args.json, print_report)
    return 0 if report["alerts"] == report["dangerous"] else 1


def print_report(report: dict[str, Any]) -> None:
    c, p, b = report["commit_to_alert"], report["publish_to_alert"], report["nightly_batch"]
    print(f"alerts, {report['readings']:,} readings offered at {report['rate_offered']:,}/s "
          f"from {report['meters']:,} meters through the broker and {report['workers']} ingest "
          f"worker(s): stored {report['stored']:,} at {report['ingest_readings_per_s']:,}/s")
    print(f"  dangerous readings {report['dangerous']:,}, alerts raised {report['alerts']:,}")
    print(f"  commit -> alert:   p50 {c['p50_ms']} ms, p99 {c['p99_ms']} ms, max {c['max_ms']} ms "
          f"(goal p99 < {report['goal_p99_ms']:,} ms)")
    print(f"  publish -> alert:  p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms")
    print(f"  alert service CPU: {report['alert_service_cpu_s_per_1000_readings']} s per 1,000 "
          "readings")
    hours = b["p50_ms"] / 3_600_000
    print(f"  nightly batch:     p50 {hours:.1f} h, p99 {b['p99_ms'] / 3_600_000:.1f} h "
          f"(judging all {b['readings']:,} readings took {b['seconds']} s, {b['alerts']:,} "
          f"alerts): streaming is {b['p50_ms'] / max(c['p50_ms'] or 1, 1):,.0f}x sooner at the "
          "median")
