"""`glucover bench cgm`: CGM volume, each figure beside its baseline in the same run.

1. Ingest of CGM-shaped traffic (simulated sensors: single live records and back-fills) through
   the real broker and an ingest worker, beside fingerstick single-record traffic of the same
   number of readings.
2. Bytes per stored reading (table and indexes), and on TimescaleDB after compressing every
   chunk, beside the same before compression.
3. Pricing 100,000 CGM policies from day summaries (pricing/cgm_rules.py evaluate_days):
   a back-test of 365 days and the nightly run of one new day, with peak memory, beside the
   same rules run on raw readings (a simulated sample: the rate per policy-day, and the two
   ledgers asserted equal on it).
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
import psycopg

from bench.harness import (
    emit,
    ingest_env,
    peak_rss_mb,
    private_servers,
    progress,
    seed_devices,
)
from bench.ingest import ingest_workers, run_scenario, workload
from devices import cgm_sensor as sensors
from devices.fleet import fleet_messages, portfolio
from devices.provisioning import add_devices
from glucover.config import Settings
from kernel.units import MGDL_PER_MMOL
from kernel.vocabulary import DeviceKind
from pricing import cgm_rules
from pricing.evaluator import Resume
from pricing.ruleset import load_builtin

START = date(2026, 1, 5)
NO_COMPRESSION_POLICY = "36500 days"
ZONES = ("Asia/Shanghai", "Asia/Hong_Kong", "Europe/London", "America/New_York")


def cgm_traffic(wearers: int, days: int, seed: int) -> tuple[list[tuple[str, bytes]], int,
                                                              list[str]]:
    """The simulator's CGM messages (readings only), the distinct readings they carry, and
    the device ids."""
    people = portfolio(wearers, seed, START, cgm_share=1.0)
    sent = [m for m in fleet_messages(people, seed, days) if m.topic.endswith("/readings")]
    return ([(m.topic, m.payload) for m in sent], sum(len(m.seqs) for m in sent),
            [p.device_id for p in people])


def storage(db_url: str) -> dict[str, Any]:
    """Bytes per stored reading, table and indexes; on TimescaleDB also after compressing."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        count = int(str(conn.execute("select count(*) from readings").fetchone()[0]))  # type: ignore[index]
        timescale = bool(conn.execute(
            "select 1 from pg_extension where extname = 'timescaledb'").fetchone())
        size_sql = ("select hypertable_size('readings')" if timescale
                    else "select pg_total_relation_size('readings')")
        before = int(str(conn.execute(size_sql).fetchone()[0]))  # type: ignore[index]
        out: dict[str, Any] = {"readings": count, "backend": "timescaledb" if timescale
                               else "postgresql",
                               "bytes_per_reading": round(before / max(count, 1), 1)}
        if timescale:
            conn.execute("select compress_chunk(c, if_not_compressed => true) "
                         "from show_chunks('readings') c")
            after = int(str(conn.execute(size_sql).fetchone()[0]))  # type: ignore[index]
            out["compressed_bytes_per_reading"] = round(after / max(count, 1), 1)
    return out


def synthetic_summaries(policies: int, days: int, seed: int
                        ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A portfolio of CGM policies and one summary row per worn policy-day, drawn like the
    simulator's wearers: a policy's own time in range and wear habit, day-to-day noise."""
    rng = np.random.default_rng(seed)
    pol = pd.DataFrame({
        "policy_id": pd.Categorical([f"C{i:07d}" for i in range(policies)]),
        "start_date": pd.Timestamp(START), "base_sum_insured": 20_000.0,
        "timezone": rng.choice(ZONES, policies)})
    tir = np.clip(rng.normal(0.65, 0.18, policies), 0.05, 0.99)
    wear = np.clip(rng.normal(0.85, 0.1, policies), 0.3, 1.0)
    parts: dict[str, list[np.ndarray[Any, Any]]] = {k: [] for k in (
        "policy", "day", "covered", "readings", "in_range", "low", "very_high")}
    for a in range(0, policies, 10_000):  # in chunks, int32 from the start: a compact frame
        b = min(a + 10_000, policies)
        policy = np.repeat(np.arange(a, b, dtype=np.int32), days)
        day = np.tile(np.arange(days, dtype=np.int32), b - a)
        worn = rng.random(len(policy)) < wear[policy]
        policy, day = policy[worn], day[worn]
        covered = np.minimum(rng.binomial(288, np.clip(wear[policy] + 0.1, 0, 1)), 288)
        n = covered + rng.integers(0, 3, len(covered))
        in_range = rng.binomial(n, tir[policy])
        for key, values in (("policy", policy), ("day", day), ("covered", covered),
                            ("readings", n), ("in_range", in_range),
                            ("low", rng.binomial(n, 0.004)),
                            ("very_high", rng.binomial(n - in_range, 0.3))):
            parts[key].append(values.astype(np.int32))
    column = {k: np.concatenate(v) for k, v in parts.items()}
    summaries = pd.DataFrame({
        "policy_id": pd.Categorical.from_codes(column.pop("policy"),
                                               categories=pol["policy_id"].cat.categories),
        "day": (np.datetime64(START, "D") + column.pop("day")).astype("datetime64[s]"),
        **column})
    return pol, summaries


def raw_sample(wearers: int, days: int, seed: int
               ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Simulated wearers' raw readings, as the evaluator reads them from the database."""
    people = portfolio(wearers, seed, START, cgm_share=1.0)
    frames = []
    for p in people:
        assert p.cgm is not None
        plan = sensors.SessionPlan(p.device_id, pd.Timestamp(START, tz="UTC").to_pydatetime(),
                                   p.cgm, np.random.default_rng(seed + p.index))
        begin = pd.Timestamp(START, tz=p.timezone).tz_convert("UTC").to_pydatetime()
        end = begin + timedelta(days=days)
        w = sensors.wear(p.cgm, begin, end, pd.Timestamp(0).time(), plan.until(end),
                         np.random.default_rng(seed * 7 + p.index))
        measured = pd.to_datetime(w.measured_ns, utc=True)
        frames.append(pd.DataFrame({
            "device_id": p.device_id, "seq": w.seq, "measured_at": measured,
            "received_at": measured + pd.Timedelta(seconds=20),
            "value_mmol": w.mgdl / MGDL_PER_MMOL, "meal": "unknown", "sample": "interstitial_fluid",
            "source": "meter", "status": 0}))
    pol = pd.DataFrame({"policy_id": [p.policy_id for p in people],
                        "start_date": pd.Timestamp(START), "base_sum_insured": 20_000.0,
                        "timezone": [p.timezone for p in people]})
    bindings = pd.DataFrame({"policy_id": pol["policy_id"],
                             "device_id": [p.device_id for p in people],
                             "bound_from": [pd.NaT] * len(people),
                             "bound_to": [pd.NaT] * len(people)})
    readings = pd.concat(frames, ignore_index=True)
    readings["device_id"] = readings["device_id"].astype("category")
    return pol, bindings, readings


def price_from_summaries(policies: int, days: int, seed: int) -> dict[str, Any]:
    """The back-test of `days` days and tonight's run of one new day, from synthetic summaries;
    run in a fresh process, its peak RSS is what pricing this portfolio takes."""
    from glucover.memory import fixed_mmap_threshold

    fixed_mmap_threshold()  # as every glucover command has it
    rules = load_builtin("cgm-default")
    pol, summaries = synthetic_summaries(policies, days, seed)
    through = START + timedelta(days=days - 1)
    started = time.perf_counter()
    ledger = cgm_rules.evaluate_days(pol, summaries, rules, through)
    backtest_s = time.perf_counter() - started
    policy_days = len(ledger)
    # Tonight's run resumes every policy from yesterday's bonus (all start on one day, so the
    # ledger is policies x days in order); the block's worn days are not needed for a day that
    # is not a block's last.
    last = days - 1
    yesterday = ledger.bonus.reshape(policies, days)[:, last - 1].copy()
    del ledger
    resume = Resume(np.full(policies, last, np.int64), yesterday, np.zeros(policies, np.int64))
    tonight = summaries[summaries["day"] == pd.Timestamp(through)]
    started = time.perf_counter()
    cgm_rules.evaluate_days(pol, tonight, rules, through, resume)
    return {"summary_rows": len(summaries), "policy_days": policy_days,
            "backtest_seconds": backtest_s, "nightly_seconds": time.perf_counter() - started,
            "peak_rss_mb": peak_rss_mb()}


def run_bench(settings: Settings, wearers: int, ingest_days: int, policies: int, days: int,
              sample: int, seed: int = 3, show_progress: bool = True) -> dict[str, Any]:
    say = progress(show_progress)
    rules = load_builtin("cgm-default")
    report: dict[str, Any] = {}

    messages, count, device_ids = cgm_traffic(wearers, ingest_days, seed)
    with ExitStack() as stack:
        # The simulated history starts in January: TimescaleDB's compression policy must not
        # compress it in the middle of the ingest run (storage() compresses every chunk itself).
        servers = private_servers(stack, replace(settings, compress_after=NO_COMPRESSION_POLICY))
        with psycopg.connect(servers.db_url) as conn:
            add_devices(conn, device_ids, servers.secret, DeviceKind.CGM)
            conn.commit()
        seed_devices(servers.db_url, wearers)  # the meters of the baseline
        env = ingest_env(servers)
        with ingest_workers(servers, env, 1, acks=True) as running:
            say(f"CGM traffic: {len(messages):,} messages, {count:,} readings from "
                f"{wearers:,} sensors over {ingest_days} days")
            report["ingest_cgm"] = run_scenario(servers, messages, count, workers=running)
            report["storage"] = storage(servers.db_url)
            say(f"meter baseline: {count:,} single-record messages")
            report["ingest_meters"] = run_scenario(servers, workload(wearers, count, 1, seed),
                                                   count, workers=running)

    say(f"summaries: {policies:,} CGM policies x {days} days (in a process of its own, so "
        "its peak memory is the pricing's)")
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        priced = pool.submit(price_from_summaries, policies, days, seed).result()
    say(f"back-test from summaries: {priced['policy_days']:,} policy-days in "
        f"{priced['backtest_seconds']:.1f}s; nightly, one new day: "
        f"{priced['nightly_seconds']:.2f}s; peak RSS {priced['peak_rss_mb']:,.0f} MB")
    through = START + timedelta(days=days - 1)
    say(f"raw readings: {sample} simulated wearers x {days} days")
    spol, sbind, sreadings = raw_sample(sample, days, seed)
    started = time.perf_counter()
    raw = cgm_rules.evaluate(spol, sbind, sreadings, rules, through)
    raw_s = time.perf_counter() - started
    from_rows = cgm_rules.evaluate_days(
        spol, cgm_rules.day_summaries(spol, sbind, sreadings, rules, through), rules,
        through)
    pd.testing.assert_frame_equal(raw.to_frame(), from_rows.to_frame())
    raw_rate = len(raw) / raw_s
    backtest_days = priced["policy_days"]
    rate = backtest_days / priced["backtest_seconds"]
    report.update({
        "policies": policies, "days": days, "summary_rows": priced["summary_rows"],
        "backtest_seconds": round(priced["backtest_seconds"], 2),
        "backtest_policy_days_per_s": round(rate),
        "nightly_seconds": round(priced["nightly_seconds"], 3),
        "peak_rss_mb": round(priced["peak_rss_mb"]),
        "raw_sample_wearers": sample, "raw_sample_readings": len(sreadings),
        "raw_policy_days_per_s": round(raw_rate),
        "raw_backtest_seconds_estimated": round(backtest_days / raw_rate, 1),
        "ratio_vs_raw": round(rate / raw_rate, 1), "ledgers_equal_on_sample": True,
    })
    return report


def bench_cli(args: argparse.Namespace, settings: Settings) -> int:
    report = run_bench(settings, args.sensors, args.ingest_days, args.policies, args.days,
                       args.sample)
    emit(report, args.json, print_report)
    lost = report["ingest_cgm"]["lost"] + report["ingest_meters"]["lost"]
    return 0 if lost == 0 else 1


def print_report(report: dict[str, Any]) -> None:
    c, m, s = report["ingest_cgm"], report["ingest_meters"], report["storage"]
    print(f"cgm: ingest of {c['readings']:,} readings ({c['messages']:,} messages)")
    print(f"  CGM traffic      {c['readings_per_s']:>9,} readings/s  p99 {c['p99_latency_ms']} ms"
          f"  lost {c['lost']}")
    print(f"  meter baseline   {m['readings_per_s']:>9,} readings/s  p99 {m['p99_latency_ms']} ms"
          f"  (single-record messages)")
    print(f"  stored ({s['backend']}): {s['bytes_per_reading']} bytes/reading with indexes"
          + (f", {s['compressed_bytes_per_reading']} compressed"
             if "compressed_bytes_per_reading" in s else " (no compression on plain PostgreSQL)"))
    print(f"pricing {report['policies']:,} CGM policies x {report['days']} days from "
          f"{report['summary_rows']:,} day summaries")
    print(f"  back-test  {report['backtest_seconds']:>8}s  "
          f"({report['backtest_policy_days_per_s']:,} policy-days/s), peak RSS "
          f"{report['peak_rss_mb']:,} MB")
    print(f"  nightly    {report['nightly_seconds']:>8}s  (one new day for every policy)")
    print(f"  raw readings: {report['raw_policy_days_per_s']:,} policy-days/s on "
          f"{report['raw_sample_wearers']} wearers ({report['raw_sample_readings']:,} readings; "
          f"ledgers equal), a back-test would take ~{report['raw_backtest_seconds_estimated']}s;"
          f" summaries {report['ratio_vs_raw']}x")
