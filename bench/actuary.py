"""`glucover bench actuary`: the validation pack (actuary/validation.py) of a proposed ruleset
against the default on a synthetic portfolio, goal 100,000 policies x 365 days in under 60 s.
The portfolio is made a chunk of policies at a time (as `bench pricing` makes it) and each
chunk is replayed by the pack as it comes; the clock runs only while the pack works (the
replay of each chunk under both rulesets, then the models, holdout, credibility and cost), not
while the synthetic readings are made. Beside it, the back-test alone on the same chunks: the
pack's cost above the replay it needs anyway."""

from __future__ import annotations

import argparse
import time
from datetime import date, timedelta
from typing import Any

import pandas as pd

from actuary import backtest, validation
from actuary.synthetic import synthetic_chunks
from bench.harness import emit, peak_rss_mb, progress
from pricing.evaluator import CHUNK_POLICIES
from pricing.ruleset import load_builtin

START = "2025-01-01"


def proposed_ruleset() -> Any:
    """The change the bench validates: a wider in-target band, a dearer high day."""
    default = load_builtin("default")
    return default.with_parameters(name="bench-proposal", target_high=8.0, delta_high=-150.0)


def run_bench(n_policies: int, days: int, seed: int = 1,
              chunk_policies: int = CHUNK_POLICIES, show_progress: bool = True
              ) -> dict[str, Any]:
    say = progress(show_progress)
    proposed, in_force = proposed_ruleset(), load_builtin("default")
    through = date.fromisoformat(START) + timedelta(days=days - 1)
    holdout = validation.default_holdout_from(through)
    parts: list[tuple[backtest.BacktestPart, pd.DataFrame]] = []
    policies: list[pd.DataFrame] = []
    replay_s = backtest_s = 0.0
    readings = 0
    for chunk in synthetic_chunks(n_policies, days, seed, chunk_policies, start=START):
        readings += len(chunk.readings)
        started = time.perf_counter()
        parts.append(validation.replay(chunk.policies, chunk.bindings, chunk.readings,
                                       proposed, in_force, holdout, through,
                                       chunk_policies=chunk_policies))
        replay_s += time.perf_counter() - started
        started = time.perf_counter()
        backtest.backtest_part(chunk.policies, chunk.bindings, chunk.readings, proposed,
                               in_force, through, chunk_policies=chunk_policies)
        backtest_s += time.perf_counter() - started
        policies.append(chunk.policies)
        say(f"replayed {sum(len(p) for p in policies):,} of {n_policies:,} policies")
    started = time.perf_counter()
    pack = validation.validation_pack(parts, pd.concat(policies, ignore_index=True), proposed,
                                      in_force, holdout, through)
    figures_s = time.perf_counter() - started
    s = pack.summary()
    return {
        "policies": n_policies, "days": days, "readings": readings,
        "policy_days": s["backtest"]["policies"] and int(pack.backtest.exposure.policy_days),
        "chunk_policies": chunk_policies,
        "pack_seconds": round(replay_s + figures_s, 3), "replay_seconds": round(replay_s, 3),
        "figures_seconds": round(figures_s, 3), "backtest_seconds": round(backtest_s, 3),
        "goal_seconds": 60, "peak_rss_mb": round(peak_rss_mb()),
        "training_claims": s["training_claims"], "holdout_claims": s["holdout_claims"],
        "gini_proposed": s["gini_proposed"], "gini_in_force": s["gini_in_force"],
        "cost_of_change": s["cost_of_change"],
        "credibility_tau2": s["credibility_tau2"],
    }


def bench_cli(args: argparse.Namespace, settings: object) -> int:
    report = run_bench(args.policies, args.days, chunk_policies=args.chunk_policies)
    emit(report, args.json, print_report)
    return 0


def print_report(report: dict[str, Any]) -> None:
    print(f"validation pack, {report['policies']:,} policies x {report['days']} days "
          f"({report['readings']:,} readings, {report['policy_days']:,} policy-days), "
          f"{report['chunk_policies']:,} policies at a time")
    print(f"  pack {report['pack_seconds']} s (goal < {report['goal_seconds']} s): replay "
          f"under both rulesets {report['replay_seconds']} s, models, holdout, credibility "
          f"and cost {report['figures_seconds']} s")
    print(f"  the back-test alone on the same chunks {report['backtest_seconds']} s; peak RSS "
          f"{report['peak_rss_mb']:,} MB")
    print(f"  {report['training_claims']:,} training and {report['holdout_claims']:,} holdout "
          f"claims; Gini proposed {report['gini_proposed']:.3f}, in force "
          f"{report['gini_in_force']:.3f}; cost of the change {report['cost_of_change']:+,.0f}")
