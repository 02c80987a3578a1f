"""`glucover bench api`: entries/s through the Nightscout-compatible API (posts of 1 and of
288 entries, gzip as xDrip+ sends them, each answered after its commit) beside MQTT ingest of
20-record messages in the same run, on the same private servers; p50/p99 POST latency; and
readings per CPU-second of the one service process doing the work (the API server, the ingest
worker), the "per core" the goal speaks of (docs/benchmarks.md)."""

from __future__ import annotations

import argparse
import gzip
import threading
import time
from contextlib import ExitStack
from datetime import timedelta
from typing import Any

import numpy as np
import orjson
import psutil
import psycopg
import requests

from bench.harness import (
    Servers,
    emit,
    ingest_env,
    private_servers,
    progress,
    recent_base,
    seed_devices,
    spawn_glucover,
    stop,
)
from bench.ingest import CpuMeter, ingest_workers, run_scenario, workload
from glucover.config import Settings
from glucover.servers import free_port
from nightscout.credentials import Credentials, sha1_hex
from nightscout.enrolment import enable

BATCH = 288  # a day of 5-minute CGM readings: what an app sends after a day offline
GOAL_SHARE_PERCENT = 50.0


def _tenants(db_url: str, secret: str, count: int) -> list[Credentials]:
    with psycopg.connect(db_url) as conn:
        with conn.cursor() as cur:
            cur.executemany(
                "insert into policies (policy_id, holder_name, base_sum_insured, timezone, "
                "start_date) values (%s, 'bench', 10000, 'Asia/Shanghai', current_date - 30)",
                [(f"NSB-{i:04d}",) for i in range(count)])
        found = [enable(conn, secret, f"NSB-{i:04d}", rotate=False)[0] for i in range(count)]
        conn.commit()
    return found


def _bodies(entries: int, per_post: int, tenant: int) -> list[bytes]:
    """gzip JSON arrays of xDrip+-shaped sgv entries, a minute apart (tests/test_nightscout.py
    builds the same shape from xDrip+'s source)."""
    base = recent_base() - timedelta(days=10)
    base_ms = int(base.timestamp() * 1000) + tenant  # tenants' instants differ
    rng = np.random.default_rng(tenant)
    values = rng.integers(60, 300, entries)
    docs = []
    for i in range(entries):
        ms = base_ms + 60_000 * i
        text = time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime(ms // 1000))
        docs.append({"device": "xDrip-DexcomG5", "date": ms, "dateString": text,
                     "sgv": int(values[i]), "delta": 1.5, "direction": "Flat", "type": "sgv",
                     "filtered": 118000.0, "unfiltered": 120000.0, "rssi": 100, "noise": 1,
                     "sysTime": text})
    return [gzip.compress(orjson.dumps(docs[i:i + per_post]), compresslevel=6)
            for i in range(0, entries, per_post)]


def _post_all(base: str, creds: Credentials, bodies: list[bytes], latencies: list[float],
              answers: list[int]) -> None:
    headers = {"api-secret": sha1_hex(creds.api_secret), "Content-Type": "application/json",
               "Content-Encoding": "gzip"}
    with requests.Session() as session:
        for body in bodies:
            started = time.perf_counter()
            reply = session.post(f"{base}/api/v1/entries", data=body, headers=headers,
                                 timeout=120)
            latencies.append((time.perf_counter() - started) * 1000)
            reply.raise_for_status()
            answers.append(int(reply.json()["stored"]))


def api_scenario(base: str, proc: psutil.Process, tenants: list[Credentials],
                 bodies: list[list[bytes]], entries: int) -> dict[str, Any]:
    """Each client posts its tenant's bodies one after the other; timed to the last answer."""
    latencies: list[list[float]] = [[] for _ in tenants]
    answers: list[list[int]] = [[] for _ in tenants]
    threads = [threading.Thread(target=_post_all, args=(base, t, b, lat, ans))
               for t, b, lat, ans in zip(tenants, bodies, latencies, answers, strict=True)]
    cpu_before = sum(proc.cpu_times()[:2])
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    cpu = sum(proc.cpu_times()[:2]) - cpu_before
    every = [x for lat in latencies for x in lat]
    stored = sum(sum(a) for a in answers)
    return {"entries": entries, "stored": stored, "posts": len(every),
            "seconds": round(seconds, 3), "entries_per_s": round(stored / seconds),
            "api_cpu_s": round(cpu, 3),
            "entries_per_api_cpu_s": round(stored / max(cpu, 1e-9)),
            "p50_post_ms": round(float(np.percentile(every, 50)), 1),
            "p99_post_ms": round(float(np.percentile(every, 99)), 1)}


def _integrity(db_url: str, tenants: list[Credentials]) -> tuple[int, int]:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("select count(*), count(distinct (device_id, seq, measured_at)) "
                           "from readings where device_id = any(%s)",
                           ([t.device_id for t in tenants],)).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def run_bench(entries: int, singles: int, clients: int, readings: int, settings: Settings,
              show_progress: bool = True) -> dict[str, Any]:
    say = progress(show_progress)
    with ExitStack() as stack:
        servers: Servers = private_servers(stack, settings)
        # MQTT first: one ingest worker (one core's worth) on 20-record messages.
        devices = 1000
        seed_devices(servers.db_url, devices)
        env = ingest_env(servers)
        cpu = CpuMeter(servers)
        batched = workload(devices, readings, 20, seed=2)
        with ingest_workers(servers, env, 1, acks=True, cpu=cpu) as running:
            say(f"MQTT ingest: {len(batched):,} messages of 20 records, one worker")
            mqtt = run_scenario(servers, batched, readings, cpu=cpu, workers=running)
        worker_cpu = mqtt["cpu_s_per_1000_readings"]["worker"]
        mqtt["readings_per_worker_cpu_s"] = round(1000 / max(worker_cpu, 1e-9))
        tenants = _tenants(servers.db_url, servers.secret, clients)
        port = free_port()
        api_proc = spawn_glucover(["api", "--host", "127.0.0.1", "--port", str(port)],
                                  {**env, "GLUCOVER_API_URL": f"http://127.0.0.1:{port}"},
                                  servers.root / "api.log", "nightscout API on")
        stack.callback(stop, api_proc)
        time.sleep(1.0)  # uvicorn binds after the line
        base = f"http://127.0.0.1:{port}"
        proc = psutil.Process(api_proc.pid)
        per = entries // clients
        say(f"API: {entries:,} entries in posts of {BATCH}, {clients} clients")
        big = api_scenario(base, proc, tenants, [_bodies(per, BATCH, i) for i in
                                                 range(clients)], per * clients)
        one_per = singles // clients
        say(f"API: {singles:,} entries one a post, {clients} clients")
        # Later instants than the batched run's, so these are new readings too.
        single_bodies = [_bodies(per + one_per, 1, i)[per:] for i in range(clients)]
        small = api_scenario(base, proc, tenants, single_bodies, one_per * clients)
        say("API: the batched posts again (every entry a duplicate)")
        again = api_scenario(base, proc, tenants, [_bodies(per, BATCH, i) for i in
                                                   range(clients)], per * clients)
        total, distinct = _integrity(servers.db_url, tenants)
    expected = per * clients + one_per * clients
    share = 100 * big["entries_per_api_cpu_s"] / max(mqtt["readings_per_worker_cpu_s"], 1)
    return {
        "clients": clients, "batch": BATCH,
        "api_batched": big, "api_single": small, "api_reupload": again,
        "mqtt_batched": {k: mqtt[k] for k in ("readings", "readings_per_s", "p50_latency_ms",
                                              "p99_latency_ms", "readings_per_worker_cpu_s",
                                              "cpu_s_per_1000_readings")},
        "batched_share_of_mqtt_per_core_percent": round(share, 1),
        "goal_percent": GOAL_SHARE_PERCENT,
        "lost": expected - distinct, "duplicated": total - distinct,
    }


def print_report(r: dict[str, Any]) -> None:
    m = r["mqtt_batched"]
    print(f"Nightscout API vs MQTT ingest, {r['clients']} API clients, one ingest worker")
    print(f"  MQTT, 20-record messages: {m['readings_per_s']:>9,} readings/s wall, "
          f"{m['readings_per_worker_cpu_s']:,} per worker CPU-second, p99 "
          f"{m['p99_latency_ms']} ms")
    for name, label in (("api_batched", f"API, posts of {r['batch']}"),
                        ("api_single", "API, posts of 1"),
                        ("api_reupload", f"API, posts of {r['batch']}, all duplicates")):
        a = r[name]
        print(f"  {label:26s} {a['entries_per_s']:>9,} entries/s wall, "
              f"{a['entries_per_api_cpu_s']:,} per API CPU-second, POST p50 "
              f"{a['p50_post_ms']} ms p99 {a['p99_post_ms']} ms ({a['posts']:,} posts)")
    print(f"  batched API per core: {r['batched_share_of_mqtt_per_core_percent']}% of MQTT "
          f"batched ingest (goal >= {r['goal_percent']:g}%); lost {r['lost']}, duplicated "
          f"{r['duplicated']}")


def bench_cli(args: argparse.Namespace, settings: Settings) -> int:
    report = run_bench(args.entries, args.singles, args.clients, args.readings, settings)
    emit(report, args.json, print_report)
    return 0 if report["lost"] == 0 and report["duplicated"] == 0 else 1
