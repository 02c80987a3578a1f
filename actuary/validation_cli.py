"""`glucover actuary validate`: the validation pack of a proposed ruleset against the one in
force, on the stored portfolio (or a synthetic one), as text, JSON or the committee's PDF."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from actuary import pack_pdf, pack_sources, validation
from actuary.cli import _progress, _stored_through
from glucover.config import Settings
from pricing import ruleset as rulesets


def run_pack(args: argparse.Namespace, settings: Settings) -> validation.ValidationPack:
    proposed = rulesets.load(args.ruleset)
    if args.synthetic:
        return pack_sources.synthetic_pack(args.synthetic, proposed, args.holdout_from)
    import psycopg

    with psycopg.connect(settings.require_database_url()) as conn:
        return pack_sources.stored_pack(conn, proposed, _stored_through(args),
                                        args.holdout_from, _progress)


def _full(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _full(v) for k, v in value.items()}
    return value


def _records(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    if frame is None:
        return []
    return [{str(k): _full(v) for k, v in row.items()} for row in frame.to_dict("records")]


def pack_json(pack: validation.ValidationPack) -> dict[str, Any]:
    """Every figure of the pack at full precision (what the PDF and the workbench show)."""
    return {"summary": _full(pack.summary()), "lift": _records(pack.lift.lift),
            "lift_in_force": _records(pack.lift_in_force.lift),
            "double_lift": _records(pack.lift.double_lift),
            "models": {name: _full(m.params_.to_dict()) for name, m in pack.models.items()},
            "cost": _records(pack.cost)}


def validate_cli(args: argparse.Namespace, settings: Settings) -> int:
    pack = run_pack(args, settings)
    if args.pdf:
        Path(args.pdf).write_bytes(pack_pdf.render(pack, args.lang))
        print(f"wrote {args.pdf}", file=sys.stderr)
    if args.json:
        print(json.dumps(pack_json(pack), indent=1))
        return 0
    s = pack.summary()
    print(f"validation of {s['proposed']!r} against {s['in_force']!r} in force: "
          f"{s['policies']:,} policies, holdout {s['holdout_from']} through {s['through']}")
    print(f"  claims: {s['training_claims']} in training ({s['training_exposure_years']:,.0f} "
          f"policy-years), {s['holdout_claims']} in the holdout "
          f"({s['holdout_exposure_years']:,.0f})")
    print(f"  Gini on the holdout: proposed {s['gini_proposed']:.3f} "
          f"({s['gini_proposed_low']:.3f} to {s['gini_proposed_high']:.3f}), in force "
          f"{s['gini_in_force']:.3f} ({s['gini_in_force_low']:.3f} to "
          f"{s['gini_in_force_high']:.3f})")
    print(f"  credibility of own claims: tau2 {s['credibility_tau2']:.3g}, s2 "
          f"{s['credibility_s2']:.3g}, mean z {s['credibility_mean_z']:.3f}")
    print(f"  a year out: expected payouts {s['expected_payout_proposed']:,.0f} proposed, "
          f"{s['expected_payout_in_force']:,.0f} in force, cost of the change "
          f"{s['cost_of_change']:+,.0f} ({s['cost_of_change_share']:+.2%})")
    if s["committee_review"]:
        print(f"  above the committee's threshold of {s['committee_review_share']:.0%}: "
              "publishing needs the pricing committee's reference")
    b = s["backtest"]
    print(f"  hypoglycaemia: policy-days below 3.9 mmol/L {b['hypo_days_below_3_9_percent']:.2f}%"
          f" ({b['hypo_days_below_3_9_percent_baseline']:.2f}% in force)")
    print("\nlift (proposed):")
    print(pack.lift.lift.round(4).to_string(index=False))
    if pack.lift.double_lift is not None:
        print("\ndouble lift (sorted by proposed / in force):")
        print(pack.lift.double_lift.round(4).to_string(index=False))
    print("\ncost by product and segment:")
    print(pack.cost.round(0).to_string(index=False))
    return 0
