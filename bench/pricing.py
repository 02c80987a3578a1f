"""`glucover bench pricing`: full re-rating of a synthetic portfolio by the vectorised evaluator
against the per-policy Python loop (bench/reference.py), in one run. The loop runs on a
sample of the same portfolio (it would take hours on all of it); its rate is per policy-day,
and the two ledgers are asserted equal on that sample.

Memory: the portfolio is made and priced a chunk of policies at a time, as back-tests and the
nightly run price stored portfolios (pricing/evaluator.py CHUNK_POLICIES), in the compact
representation the database loader gives (32-bit seq and status, categories, no object
column). Beside it, in a process of its own so its peak is its own, the same portfolio made
and priced all at once: the baseline of memory and of speed."""

from __future__ import annotations

import argparse
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from actuary.synthetic import Portfolio, synthetic_chunks, synthetic_portfolio
from bench.harness import emit, peak_rss_mb, progress
from bench.reference import evaluate_loop
from pricing.evaluator import CHUNK_POLICIES, DAY_STATUSES
from pricing.products import evaluate
from pricing.ruleset import load_builtin


def _through(portfolio: Portfolio, days: int) -> Any:
    return (portfolio.policies["start_date"].min() + pd.Timedelta(days=days - 1)).date()


def all_at_once(n_policies: int, days: int, seed: int) -> dict[str, Any]:
    """The baseline: the whole portfolio made and priced in one go (run in a child process)."""
    from glucover.memory import fixed_mmap_threshold

    fixed_mmap_threshold()  # as every glucover command has it
    portfolio = synthetic_portfolio(n_policies, days, seed, with_claims=False)
    started = time.perf_counter()
    ledger = evaluate(portfolio.policies, portfolio.bindings, portfolio.readings,
                      load_builtin("default"), _through(portfolio, days))
    seconds = time.perf_counter() - started
    return {"readings": len(portfolio.readings), "policy_days": len(ledger),
            "seconds": round(seconds, 3), "policy_days_per_s": round(len(ledger) / seconds),
            "peak_rss_mb": round(peak_rss_mb())}


def run_bench(n_policies: int, days: int, loop_policies: int, seed: int = 1,
              chunk_policies: int = CHUNK_POLICIES, baseline: bool = True,
              show_progress: bool = True) -> dict[str, Any]:
    say = progress(show_progress)
    ruleset = load_builtin("default")
    readings = policy_days = largest = 0
    seconds = made = 0.0
    statuses = np.zeros(len(DAY_STATUSES), np.int64)
    sample: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame] | None = None
    frame_bytes = 0.0
    started = time.perf_counter()
    for part in synthetic_chunks(n_policies, days, seed, chunk_policies):
        made += time.perf_counter() - started
        through = _through(part, days)
        started = time.perf_counter()
        ledger = evaluate(part.policies, part.bindings, part.readings, ruleset, through)
        seconds += time.perf_counter() - started
        policy_days += len(ledger)
        statuses += np.bincount(ledger.day_status, minlength=len(DAY_STATUSES))
        readings += len(part.readings)
        largest = max(largest, len(part.readings))
        if sample is None:  # the loop's sample, from the first chunk, kept apart from it
            ids = set(part.policies["policy_id"].iloc[:loop_policies])
            pol = part.policies[part.policies["policy_id"].isin(ids)].copy()
            bind = part.bindings[part.bindings["policy_id"].isin(ids)].copy()
            rows = part.readings[part.readings["device_id"].isin(set(bind["device_id"]))].copy()
            sample = (pol, bind, rows)
            frame_bytes = part.readings.memory_usage(deep=True).sum() / len(part.readings)
        del ledger, part
        started = time.perf_counter()
    peak = peak_rss_mb()
    say(f"vectorised, {chunk_policies:,} policies at a time: {policy_days:,} policy-days "
        f"from {readings:,} readings in {seconds:.2f}s (portfolio made in {made:.1f}s); "
        f"peak RSS {peak:,.0f} MB")

    assert sample is not None
    pol, bind, rows = sample
    rows["device_id"] = rows["device_id"].astype(str)
    through = (pol["start_date"].min() + pd.Timedelta(days=days - 1)).date()
    started = time.perf_counter()
    slow = evaluate_loop(pol, bind, rows, ruleset, through)
    loop_seconds = time.perf_counter() - started
    say(f"loop: {len(slow):,} policy-days in {loop_seconds:.2f}s")
    fast = evaluate(pol, bind, rows, ruleset, through).to_frame()
    fast["policy_id"] = fast["policy_id"].astype(str)
    fast["day_status"] = fast["day_status"].astype(str)
    fast["day"] = fast["day"].dt.date
    slow["reading_seq"] = slow["reading_seq"].astype("Int32")
    pd.testing.assert_frame_equal(fast.reset_index(drop=True), slow, check_dtype=False)

    whole = None
    if baseline:
        say("baseline: the same size made and priced all at once, in a process of its own")
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            whole = pool.submit(all_at_once, n_policies, days, seed).result()
        say(f"all at once: {whole['policy_days_per_s']:,} policy-days/s, peak RSS "
            f"{whole['peak_rss_mb']:,} MB")
    rate = policy_days / seconds
    loop_rate = len(slow) / loop_seconds
    return {
        "policies": n_policies, "days": days, "readings": readings,
        "policy_days": policy_days, "seconds": round(seconds, 3),
        "policy_days_per_s": round(rate), "loop_policy_days_per_s": round(loop_rate),
        "loop_sample_policies": len(pol), "ratio_vs_loop": round(rate / loop_rate, 1),
        "ledgers_equal_on_sample": True, "peak_rss_mb": round(peak),
        "chunk_policies": chunk_policies, "largest_chunk_readings": largest,
        # What the process holds per reading of the largest chunk, at its peak.
        "working_set_bytes_per_reading": round(peak * 2**20 / max(largest, 1)),
        # The readings frame itself (pricing/evaluator.py's contract, compact dtypes).
        "frame_bytes_per_reading": round(frame_bytes, 1),
        "all_at_once": whole,
        "day_status_counts": dict(zip(DAY_STATUSES, statuses.tolist(), strict=True)),
    }


def bench_cli(args: argparse.Namespace, settings: object) -> int:
    report = run_bench(args.policies, args.days, args.loop_policies,
                       chunk_policies=args.chunk_policies, baseline=not args.no_baseline)
    emit(report, args.json, print_report)
    return 0


def print_report(report: dict[str, Any]) -> None:
    print(f"pricing, {report['policies']:,} policies x {report['days']} days "
          f"({report['readings']:,} readings), {report['chunk_policies']:,} policies at a time")
    print(f"  vectorised {report['policy_days_per_s']:>12,} policy-days/s "
          f"({report['seconds']}s for {report['policy_days']:,})")
    print(f"  loop       {report['loop_policy_days_per_s']:>12,} policy-days/s "
          f"(on {report['loop_sample_policies']:,} policies; ledgers equal)")
    print(f"  ratio {report['ratio_vs_loop']}x; peak RSS {report['peak_rss_mb']:,} MB, "
          f"{report['working_set_bytes_per_reading']} bytes per reading of the largest chunk "
          f"({report['largest_chunk_readings']:,} readings; the readings frame itself "
          f"{report['frame_bytes_per_reading']} bytes per reading)")
    whole = report["all_at_once"]
    if whole:
        per = whole["peak_rss_mb"] * 2**20 // max(whole["readings"], 1)
        print(f"  all at once (baseline): {whole['policy_days_per_s']:,} policy-days/s, peak "
              f"RSS {whole['peak_rss_mb']:,} MB ({per} bytes per reading)")
