"""`glucover price evaluate`: the evaluator on CSV files, no database."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from glucover.config import Settings
from pricing import ruleset as rulesets
from pricing.inputs import read_policies, read_readings
from pricing.products import evaluate


def evaluate_cli(args: argparse.Namespace, settings: Settings) -> int:
    ruleset = rulesets.load(args.ruleset)
    policies, bindings = read_policies(args.policies)
    readings = read_readings(args.readings)
    ledger = evaluate(policies, bindings, readings, ruleset, np.datetime64(args.through, "D"))
    frame = ledger.to_frame()
    frame["day"] = frame["day"].dt.strftime("%Y-%m-%d")
    for column in ("delta", "bonus", "sum_insured"):
        frame[column] = frame[column].round(2)
    out = open(args.out, "w", newline="") if args.out else sys.stdout  # noqa: SIM115
    try:
        if args.format == "csv":
            frame.to_csv(out, index=False)
        else:
            frame.to_json(out, orient="records", lines=False, indent=1)
            out.write("\n")
    finally:
        if args.out:
            out.close()
    return 0


def run_cli(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from pricing.engine import run_pricing

    url = settings.require_database_url()
    while True:
        summary = run_pricing(url, args.through, ruleset=args.ruleset)
        print(json.dumps(summary.as_dict()) if args.json else summary.text(), flush=True)
        if not args.every:
            return 0
        time.sleep(args.every)


def parameters_cli(args: argparse.Namespace, settings: Settings) -> int:
    """The ruleset parameters as a Markdown table (the README's is this output)."""
    sys.stdout.write(rulesets.markdown_table())
    return 0


def cgm_metrics_cli(args: argparse.Namespace, settings: Settings) -> int:
    """`glucover cgm metrics`: consensus CGM metrics per device from a CSV file, no database."""
    from pricing import cgm_metrics
    from pricing.inputs import read_cgm_readings

    table = cgm_metrics.metrics(read_cgm_readings(args.readings), args.date_from, args.date_to,
                        args.timezone)
    # For machines: every figure unrounded (shortest round-trip decimals); a person's
    # rounding is the dashboard's and the AGP report's, and targets are judged unrounded.
    print(f"days are local days of {args.timezone}", file=sys.stderr)
    if args.format == "csv":
        table.to_csv(sys.stdout, index=False, float_format=lambda v: repr(float(v)))
    else:
        records = [{str(k): v.item() if hasattr(v, "item") else v for k, v in row.items()}
                   for row in table.to_dict(orient="records")]
        sys.stdout.write(json.dumps(records, indent=1) + "\n")
    return 0
