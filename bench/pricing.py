"""`glucover bench pricing`: full re-rating of a synthetic portfolio by the vectorised evaluator
against the per-policy Python loop (bench/reference.py), in one run. The loop runs on a
sample of the same portfolio (it would take hours on all of it); its rate is per policy-day,
and the two ledgers are asserted equal on that sample."""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import pandas as pd

from bench.harness import emit, peak_rss_mb, progress
from bench.reference import evaluate_loop
from pricing.evaluator import evaluate
from pricing.ruleset import load_builtin
from pricing.synthetic import synthetic_portfolio


def run_bench(n_policies: int, days: int, loop_policies: int, seed: int = 1,
              show_progress: bool = True) -> dict[str, Any]:
    say = progress(show_progress)
    ruleset = load_builtin("default")
    started = time.perf_counter()
    portfolio = synthetic_portfolio(n_policies, days, seed, with_claims=False)
    through = (portfolio.policies["start_date"].min() + pd.Timedelta(days=days - 1)).date()
    say(f"generated {n_policies:,} policies x {days} days: {len(portfolio.readings):,} readings "
        f"in {time.perf_counter() - started:.1f}s")

    started = time.perf_counter()
    ledger = evaluate(portfolio.policies, portfolio.bindings, portfolio.readings, ruleset,
                      through)
    seconds = time.perf_counter() - started
    say(f"vectorised: {len(ledger):,} policy-days in {seconds:.2f}s")

    sample_ids = portfolio.policies["policy_id"].iloc[:loop_policies]
    pol = portfolio.policies[portfolio.policies["policy_id"].isin(sample_ids)]
    bind = portfolio.bindings[portfolio.bindings["policy_id"].isin(sample_ids)]
    devices = set(bind["device_id"])
    rows = portfolio.readings[portfolio.readings["device_id"].isin(devices)].copy()
    rows["device_id"] = rows["device_id"].astype(str)
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

    rate = len(ledger) / seconds
    loop_rate = len(slow) / loop_seconds
    statuses = np.bincount(ledger.day_status, minlength=4)
    return {
        "policies": n_policies, "days": days, "readings": len(portfolio.readings),
        "policy_days": len(ledger), "seconds": round(seconds, 3),
        "policy_days_per_s": round(rate), "loop_policy_days_per_s": round(loop_rate),
        "loop_sample_policies": len(pol), "ratio_vs_loop": round(rate / loop_rate, 1),
        "ledgers_equal_on_sample": True, "peak_rss_mb": round(peak_rss_mb()),
        "day_status_counts": dict(zip(("missed", "in_target", "high", "out_of_target"),
                                      statuses.tolist(), strict=True)),
    }


def bench_cli(args: argparse.Namespace, settings: object) -> int:
    report = run_bench(args.policies, args.days, args.loop_policies)
    emit(report, args.json, print_report)
    return 0


def print_report(report: dict[str, Any]) -> None:
    print(f"pricing, {report['policies']:,} policies x {report['days']} days "
          f"({report['readings']:,} readings)")
    print(f"  vectorised {report['policy_days_per_s']:>12,} policy-days/s "
          f"({report['seconds']}s for {report['policy_days']:,})")
    print(f"  loop       {report['loop_policy_days_per_s']:>12,} policy-days/s "
          f"(on {report['loop_sample_policies']:,} policies; ledgers equal)")
    print(f"  ratio {report['ratio_vs_loop']}x, peak RSS {report['peak_rss_mb']:,} MB")
