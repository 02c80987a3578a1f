"""`glucover actuary backtest|glm|gaming|credibility|lift`: the workbench from the command line
(`actuary validate` is actuary/validation_cli.py)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from actuary import backtest, gaming, glm, research
from actuary.synthetic import HAZARD_RATIO_PER_A1C, synthetic_portfolio
from glucover.config import Settings
from glucover.errors import UserError
from pricing import ruleset as rulesets
from pricing import store
from pricing.evaluator import CHUNK_POLICIES

SYNTHETIC_DAYS = 365


NO_POLICIES = ("no policies in the database: run `glucover simulate` or `glucover up` first, "
               "or pass --synthetic N")


def stored_portfolio(settings: Settings
                     ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, int]:
    """The stored policies consenting to research, their bindings and readings, and how many
    policies were left out for want of that consent."""
    import psycopg

    with psycopg.connect(settings.require_database_url()) as conn:
        policies, bindings = store.load_policies(conn)
        if policies.empty:
            raise UserError(NO_POLICIES)
        policies, left_out = research.consenting(conn, policies)
        bindings = bindings[bindings["policy_id"].isin(policies["policy_id"])]
        readings = store.load_readings(conn, sorted(set(bindings["device_id"])))
    return policies, bindings, readings, left_out


def _portfolio(args: argparse.Namespace, settings: Settings
               ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, date, int]:
    if getattr(args, "synthetic", 0):
        p = synthetic_portfolio(args.synthetic, SYNTHETIC_DAYS, seed=7, with_claims=False)
        through = (p.policies["start_date"].min() + pd.Timedelta(days=SYNTHETIC_DAYS - 1)).date()
        return p.policies, p.bindings, p.readings, through, 0
    policies, bindings, readings, left_out = stored_portfolio(settings)
    return policies, bindings, readings, _stored_through(args), left_out


def _stored_through(args: argparse.Namespace) -> date:
    """The last day a stored portfolio is replayed through: --through, else yesterday."""
    through: date | None = getattr(args, "through", None)
    return through or (datetime.now(UTC).date() - timedelta(days=1))


def _progress(fraction: float) -> None:
    print(f"\rback-test {fraction:6.1%}", end="" if fraction < 1 else "\n", file=sys.stderr,
          flush=True)


def _export(out: str | None, frames: dict[str, pd.DataFrame]) -> None:
    if not out:
        return
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    print(f"wrote {', '.join(f'{n}.csv' for n in frames)} to {folder}", file=sys.stderr)


def _run_backtest(args: argparse.Namespace, settings: Settings, candidate: rulesets.Ruleset,
                  baseline: rulesets.Ruleset) -> tuple[backtest.BacktestResult, date, int]:
    """The back-test, its last day, and the policies left out without research consent."""
    def run(policies: pd.DataFrame, bindings: pd.DataFrame, readings: backtest.ReadingsSource,
            through: date, left_out: int = 0) -> tuple[backtest.BacktestResult, date, int]:
        progress = _progress if len(policies) > CHUNK_POLICIES else None
        return backtest.backtest(policies, bindings, readings, candidate, baseline, through,
                                progress=progress), through, left_out

    if getattr(args, "synthetic", 0):
        return run(*_portfolio(args, settings))
    import psycopg

    # A stored portfolio's readings are loaded a chunk of policies at a time, so memory is
    # bounded by the chunk, not the portfolio.
    if candidate.kind != baseline.kind:
        raise UserError(f"{candidate.name} prices {candidate.kind} policies and "
                        f"{baseline.name} {baseline.kind} ones: compare rulesets of one kind")
    url = settings.require_database_url()
    with psycopg.connect(url) as conn:
        policies, bindings = store.load_policies(conn)
        policies = store.of_kind(conn, policies, candidate.kind)
        if policies.empty:
            raise UserError(NO_POLICIES)
        policies, left_out = research.consenting(conn, policies)
        if not getattr(args, "scheduler", None):
            return run(policies, bindings, lambda ids: store.load_readings(conn, ids),
                       _stored_through(args), left_out)
    from actuary import partitioned

    through = _stored_through(args)
    with partitioned.cluster(args.scheduler, args.workers) as client:
        return partitioned.partitioned_backtest(client, url, policies, candidate, baseline,
                                                through, args.partitions), through, left_out


def backtest_cli(args: argparse.Namespace, settings: Settings) -> int:
    candidate = rulesets.load(args.ruleset)
    baseline = rulesets.load(args.baseline)
    result, through, left_out = _run_backtest(args, settings, candidate, baseline)
    summary = {"ruleset": candidate.name, "baseline": baseline.name,
               "through": through.isoformat(), **result.summary(),
               research.LEFT_OUT_KEY: left_out}
    _export(args.out, {"per_policy": result.per_policy, "by_segment": result.by_segment,
                       "distribution": result.distribution(), "paths": result.paths})
    if args.json:
        print(json.dumps({**summary, "by_segment": _records(result.by_segment),
                          "distribution": _records(result.distribution())}, indent=2))
        return 0
    print(f"back-test of {candidate.name!r} against {baseline.name!r}, {summary['policies']:,} "
          f"policies through {through}")
    print(f"  total sum insured   {summary['total_sum_insured']:>16,.0f}  (baseline "
          f"{summary['total_sum_insured_baseline']:,.0f}, change "
          f"{summary['change_vs_baseline']:+,.0f})")
    print(f"  expected liability  {summary['expected_liability']:>16,.0f}  (baseline "
          f"{summary['expected_liability_baseline']:,.0f})")
    print(f"  hypoglycaemia       policy-days with a valid reading below 3.9 mmol/L "
          f"{summary['hypo_days_below_3_9_percent']:.2f}% (baseline "
          f"{summary['hypo_days_below_3_9_percent_baseline']:.2f}%), below 3.0 "
          f"{summary['hypo_days_below_3_0_percent']:.2f}% "
          f"({summary['hypo_days_below_3_0_percent_baseline']:.2f}%); readings below 3.9 "
          f"{summary['hypo_readings_below_3_9_percent']:.2f}% "
          f"({summary['hypo_readings_below_3_9_percent_baseline']:.2f}%)")
    print(result.by_segment.round(2).to_string(index=False))
    print(f"{left_out} policies left out: no consent to research")
    return 0


def glm_cli(args: argparse.Namespace, settings: Settings) -> int:
    portfolio = synthetic_portfolio(args.policies, SYNTHETIC_DAYS, seed=args.seed)
    through = (portfolio.policies["start_date"].min()
               + pd.Timedelta(days=SYNTHETIC_DAYS - 1)).date()
    fit = glm.glm_on_synthetic(portfolio, rulesets.load_builtin("default"), through)
    if args.json:
        print(json.dumps({"n": fit.n, "claims": fit.claims, "exposure_years": fit.exposure_years,
                          "deviance": fit.deviance, "simulated_rate_ratio_per_a1c":
                          HAZARD_RATIO_PER_A1C, "coefficients": _records(fit.table)},
                         indent=2))
        return 0
    # The GLM is fitted to a synthetic portfolio: no policyholder's data, none left out.
    print(f"claim frequency GLM: Poisson, log link, log(exposure) offset; {fit.n:,} policies, "
          f"{fit.claims} claims, {fit.exposure_years:,.0f} policy-years")
    print(fit.table.round(4).to_string(index=False))
    rr, lo, hi = fit.rate_ratio("est_a1c")
    print(f"rate ratio per +1% HbA1c: {rr:.3f} (95% CI {lo:.3f}-{hi:.3f}); simulated truth "
          f"{HAZARD_RATIO_PER_A1C}")
    return 0


def gaming_cli(args: argparse.Namespace, settings: Settings) -> int:
    policies, bindings, readings, through, left_out = _portfolio(args, settings)
    candidate = rulesets.load(args.ruleset) if args.ruleset else None
    published: Callable[[str], rulesets.Ruleset] = rulesets.builtin_or_default
    if not getattr(args, "synthetic", 0):
        import psycopg

        # Each product's published ruleset, as the nightly run prices its policies.
        with psycopg.connect(settings.require_database_url()) as conn:
            in_force = {name: store.in_force(conn, name)
                        for name in policies["ruleset_name"].astype(str).unique()}
        published = in_force.__getitem__
    report = gaming.gaming_report(policies, bindings, readings, candidate, through,
                                   published=published)
    if args.json:
        print(json.dumps({"by_segment": _records(report.by_segment),
                          "exclusions": _records(report.exclusions),
                          "clock_inversions": _records(report.clock_inversions),
                          "flagged_policies": _records(report.flagged_policies.head(200)),
                          "safety": _records(report.safety),
                          "hypo_rewarded": _records(report.hypo_rewarded.head(200)),
                          research.LEFT_OUT_KEY: left_out},
                         indent=2))
        return 0
    print(f"{left_out} policies left out: no consent to research")
    print("what each segment obtains, and would obtain without the exclusions:")
    print(report.by_segment.round(1).to_string(index=False))
    print("\nexcluded readings by reason:")
    print(report.exclusions.to_string(index=False))
    if not report.clock_inversions.empty:
        print("\nmeters whose clock went back while seq went up (review):")
        print(report.clock_inversions.to_string(index=False))
    print("\nsafety: % of policy-days with a valid reading below 3.9 and 3.0 mmol/L "
          "(flagged: rewarded while going low):")
    print(report.safety.to_string(index=False))
    print(f"\n{len(report.hypo_rewarded)} policies earned a bonus with at least "
          f"{gaming.HYPO_REWARDED_PERCENT:g}% of their days below 3.9 mmol/L (for the care team)")
    return 0


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = json.loads(frame.to_json(orient="records", date_format="iso"))
    return out


def _full(value: Any) -> Any:
    """A figure for JSON at full precision (NaN and infinities as null)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _full_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): _full(v) for k, v in row.items()}
            for row in frame.to_dict(orient="records")]


def _csv(frame: pd.DataFrame) -> None:
    """A table on standard output, floats as their shortest round-trip decimals."""
    frame.to_csv(sys.stdout, index=False, float_format=lambda v: repr(float(v)))


def credibility_cli(args: argparse.Namespace, settings: Settings) -> int:
    """Bühlmann–Straub on a CSV file: the groups' table, then (after a blank line) the
    summary; or one JSON object with both."""
    from actuary.credibility import BuhlmannStraub
    from actuary.inputs import read_credibility

    model = BuhlmannStraub().fit(read_credibility(args.input))
    if args.json:
        print(json.dumps({"summary": {k: _full(v) for k, v in model.summary().items()},
                          "groups": _full_records(model.groups_)}, indent=1))
        return 0
    _csv(model.groups_)
    print()
    _csv(pd.DataFrame([model.summary()]))
    return 0


def lift_cli(args: argparse.Namespace, settings: Settings) -> int:
    """Lift table, Gini summary and (with predicted_b) double lift, as CSV tables separated by
    blank lines, or one JSON object."""
    from actuary.inputs import read_lift
    from actuary.lift import lift_report

    if args.bins < 1:
        raise UserError(f"--bins {args.bins}: give at least 1")
    report = lift_report(read_lift(args.input), args.bins, args.seed)
    if args.json:
        out: dict[str, Any] = {"summary": {k: _full(v) for k, v in report.summary().items()},
                               "lift": _full_records(report.lift)}
        if report.double_lift is not None:
            out["double_lift"] = _full_records(report.double_lift)
        print(json.dumps(out, indent=1))
        return 0
    _csv(report.lift)
    print()
    _csv(pd.DataFrame([report.summary()]))
    if report.double_lift is not None:
        print()
        _csv(report.double_lift)
    return 0


def actuary_cli(args: argparse.Namespace, settings: Settings) -> int:
    handler = {"backtest": backtest_cli, "glm": glm_cli, "gaming": gaming_cli,
               "credibility": credibility_cli, "lift": lift_cli}
    return handler[args.actuary_command](args, settings)
