"""`glucover bench soak --minutes N`: a steady load through a real ingest worker, with its
throughput and memory sampled over time. Memory must stay flat: the slope of the worker's
resident memory after a warm-up is reported and judged against a bound."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import timedelta
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
    recent_base,
    seed_devices,
    spawn_glucover,
    stop,
)
from bench.loadgen import publish_raw
from devices.wire.messages import ReadingsMessage, Record
from devices.wire.topics import readings_topic
from glucover.config import Settings
from kernel.sequence import SEQ_MODULO

SAMPLE_EVERY_S = 5.0
WARMUP_FRACTION = 0.25  # memory slope is fitted after this share of the run...
WARMUP_MIN_S = 30.0  # ...and not before this (imports, caches, allocator arenas)
FLAT_MB_PER_MIN = 2.0  # a leak of 2 MB/min would show; noise stays well below
DEVICES = 2000


def steady_messages(seed: int = 3) -> Iterator[tuple[str, bytes]]:
    """Single-record messages from DEVICES meters, forever, every identity new."""
    rng = np.random.default_rng(seed)
    base = recent_base()
    i = 0
    while True:
        values = np.round(rng.uniform(3.5, 14.0, 10_000), 1)
        for value in values:
            device = bench_device(i % DEVICES)
            n = i // DEVICES
            msg = ReadingsMessage(device, base, (Record(
                seq=n % SEQ_MODULO, measured_at=base + timedelta(minutes=n), value=float(value)),))
            yield readings_topic(device), msg.encode()
            i += 1


def run_soak(minutes: float, rate: int, settings: Settings, progress: bool = True
             ) -> dict[str, Any]:
    with ExitStack() as stack:
        servers = private_servers(stack, settings)
        seed_devices(servers.db_url, DEVICES)
        env = ingest_env(servers)
        worker = spawn_glucover(["ingest", "--worker-name", "soak"], env,
                                servers.root / "ingest.log", "connected to")
        halt = threading.Event()
        result: dict[str, Any] = {}
        load = threading.Thread(target=lambda: result.setdefault("load", publish_raw(
            "127.0.0.1", servers.mqtt_port, LOADGEN_ACCOUNT, loadgen_password(servers),
            steady_messages(), rate=rate, stop=halt)))
        proc = psutil.Process(worker.pid)
        broker_proc = _broker_process(servers.mqtt_port)
        samples: list[dict[str, Any]] = []
        started = time.monotonic()
        load.start()
        last_count, last_t = 0, started
        try:
            with psycopg.connect(servers.db_url, autocommit=True) as conn:
                while time.monotonic() - started < minutes * 60:
                    time.sleep(SAMPLE_EVERY_S)
                    row = conn.execute("select count(*) from readings").fetchone()
                    count = int(row[0]) if row else 0
                    now = time.monotonic()
                    sample = {
                        "t_s": round(now - started, 1), "stored": count,
                        "readings_per_s": round((count - last_count) / (now - last_t)),
                        "worker_rss_mb": round(proc.memory_info().rss / 2**20, 1),
                        "broker_rss_mb": round(broker_proc.memory_info().rss / 2**20, 1)
                        if broker_proc else None,
                    }
                    samples.append(sample)
                    last_count, last_t = count, now
                    if progress:
                        print(f"  t={sample['t_s']:>6}s  {sample['readings_per_s']:>6}/s  "
                              f"worker {sample['worker_rss_mb']} MB  broker "
                              f"{sample['broker_rss_mb']} MB", file=sys.stderr, flush=True)
        finally:
            halt.set()
            load.join(120)
            stop(worker)
    sent = result["load"].sent if "load" in result else 0
    t = np.array([s["t_s"] for s in samples])
    rss = np.array([float(s["worker_rss_mb"]) for s in samples])
    steady = t >= max(WARMUP_MIN_S, t[-1] * WARMUP_FRACTION) if len(t) else t.astype(bool)
    slope = float(np.polyfit(t[steady] / 60, rss[steady], 1)[0]) if steady.sum() >= 3 else 0.0
    rates = [s["readings_per_s"] for s in samples[1:]] or [0]
    return {
        "minutes": minutes, "offered_per_s": rate, "sent": sent,
        "stored": samples[-1]["stored"] if samples else 0,
        "mean_readings_per_s": round(float(np.mean(rates))),
        "min_readings_per_s": int(np.min(rates)),
        "worker_rss_start_mb": float(rss[0]) if len(rss) else None,
        "worker_rss_end_mb": float(rss[-1]) if len(rss) else None,
        "worker_rss_max_mb": float(rss.max()) if len(rss) else None,
        "worker_rss_slope_mb_per_min": round(slope, 3),
        "memory_flat": abs(slope) < FLAT_MB_PER_MIN,
        "samples": samples,
    }


def _broker_process(port: int) -> psutil.Process | None:
    for conn in psutil.net_connections("tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == "LISTEN" and conn.pid:
            return psutil.Process(conn.pid)
    return None


def soak_cli(args: argparse.Namespace, settings: Settings) -> int:
    report = run_soak(args.minutes, args.rate, settings)
    emit(report, args.json, print_report)
    return 0 if report["memory_flat"] else 1


def print_report(report: dict[str, Any]) -> None:
    print(f"soak {report['minutes']} min at {report['offered_per_s']:,} readings/s offered: "
          f"{report['mean_readings_per_s']:,}/s stored on average (min "
          f"{report['min_readings_per_s']:,}/s); worker RSS {report['worker_rss_start_mb']}"
          f" -> {report['worker_rss_end_mb']} MB (max {report['worker_rss_max_mb']}), slope "
          f"{report['worker_rss_slope_mb_per_min']} MB/min: "
          f"{'flat' if report['memory_flat'] else 'GROWING'}")
