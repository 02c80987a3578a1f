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
