"""`glucover actuary validate`: the validation pack of a proposed ruleset against the one in
force, on the stored portfolio (or a synthetic one), as text, JSON or the committee's PDF."""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from actuary import pack_pdf, validation
from actuary.cli import NO_POLICIES, SYNTHETIC_DAYS, _progress, _stored_through
from actuary.synthetic import synthetic_portfolio
from glucover.config import Settings
from glucover.errors import UserError
from pricing import ruleset as rulesets
from pricing import store
from pricing.evaluator import CHUNK_POLICIES
from pricing.ruleset import RULESET_OF_KIND, Ruleset

SYNTHETIC_SEED = 7  # the back-test's synthetic portfolio (actuary/cli.py), so figures agree


def in_force_for(proposed: Ruleset, published_names: list[str]) -> str:
    """The ruleset the proposal would replace: its own name when that is published or built
    in, else the shipped ruleset of its kind."""
    if proposed.name in published_names or proposed.name in rulesets.builtin_names():
        return proposed.name
    return RULESET_OF_KIND[proposed.kind]


def _holdout(args: argparse.Namespace, through: date) -> date:
    holdout: date = args.holdout_from or validation.default_holdout_from(through)
    if holdout > through:
        raise UserError(f"--holdout-from {holdout} is after the last day {through}")
    return holdout


def run_pack(args: argparse.Namespace, settings: Settings) -> validation.ValidationPack:
    proposed = rulesets.load(args.ruleset)
    if args.synthetic:
        p = synthetic_portfolio(args.synthetic, SYNTHETIC_DAYS, seed=SYNTHETIC_SEED,
                                with_claims=False)
        through = (p.policies["start_date"].min() + pd.Timedelta(days=SYNTHETIC_DAYS - 1)).date()
        in_force = rulesets.builtin_or_default(in_force_for(proposed, []))
        holdout = _holdout(args, through)
        part = validation.replay(p.policies, p.bindings, p.readings, proposed, in_force,
                                 holdout, through)
        return _pack([part], p.policies, proposed, in_force, holdout, through, None)
    import psycopg

    through = _stored_through(args)
    holdout = _holdout(args, through)
    with psycopg.connect(settings.require_database_url()) as conn:
        in_force = store.in_force(conn, in_force_for(proposed, store.ruleset_names(conn)))
        if in_force.kind != proposed.kind:
            raise UserError(f"{proposed.name} prices {proposed.kind} policies and "
                            f"{in_force.name} {in_force.kind} ones")
        policies, bindings = store.load_policies(conn)
        policies = store.of_kind(conn, policies, proposed.kind)
        if policies.empty:
            raise UserError(NO_POLICIES)
        progress = _progress if len(policies) > CHUNK_POLICIES else None
        part = validation.replay(policies, bindings,
                                 lambda ids: store.load_readings(conn, ids), proposed,
                                 in_force, holdout, through, progress)
    products = policies.set_index("policy_id")["ruleset_name"].astype(str)
    return _pack([part], policies, proposed, in_force, holdout, through, products)


def _pack(parts: list[tuple[Any, pd.DataFrame]], policies: pd.DataFrame, proposed: Ruleset,
          in_force: Ruleset, holdout: date, through: date,
          products: pd.Series | None) -> validation.ValidationPack:  # type: ignore[type-arg]
    try:
        return validation.validation_pack(parts, policies, proposed, in_force, holdout,
                                          through, products=products)
    except validation.NoClaimsExperience as exc:
        raise UserError(str(exc)) from None


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
          f"({s['gini_proposed_low']:.3f}-{s['gini_proposed_high']:.3f}), in force "
          f"{s['gini_in_force']:.3f} ({s['gini_in_force_low']:.3f}-"
          f"{s['gini_in_force_high']:.3f})")
    print(f"  credibility of own claims: tau2 {s['credibility_tau2']:.3g}, s2 "
          f"{s['credibility_s2']:.3g}, mean z {s['credibility_mean_z']:.3f}")
    print(f"  a year out: expected payouts {s['expected_payout_proposed']:,.0f} proposed, "
          f"{s['expected_payout_in_force']:,.0f} in force, cost of the change "
          f"{s['cost_of_change']:+,.0f}")
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
