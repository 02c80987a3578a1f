"""Where the validation pack's portfolio comes from: the stored one (through a database
connection, readings loaded a chunk of policies at a time) or a seeded synthetic one. The
command line (actuary/validation_cli.py) and the workbench (dashboard/views/actuary.py) both
run the pack through these."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import date
from typing import Any

import pandas as pd

from actuary import research, validation
from actuary.synthetic import synthetic_portfolio
from glucover.errors import UserError
from pricing import ruleset as rulesets
from pricing import store
from pricing.evaluator import CHUNK_POLICIES
from pricing.ruleset import RULESET_OF_KIND, Ruleset

SYNTHETIC_DAYS = 365
SYNTHETIC_SEED = 7  # the back-test's synthetic portfolio (actuary/cli.py), so figures agree
NO_POLICIES = ("no policies in the database: run `glucover simulate` or `glucover up` first, "
               "or use a synthetic portfolio")


def in_force_for(proposed: Ruleset, published_names: list[str]) -> str:
    """The ruleset the proposal would replace: its own name when that is published or built
    in, else the shipped ruleset of its kind."""
    if proposed.name in published_names or proposed.name in rulesets.builtin_names():
        return proposed.name
    return RULESET_OF_KIND[proposed.kind]


def checked_holdout(holdout_from: date | None, through: date) -> date:
    holdout = holdout_from or validation.default_holdout_from(through)
    if holdout > through:
        raise UserError(f"--holdout-from {holdout} is after the last day {through}")
    return holdout


def _pack(parts: list[tuple[Any, pd.DataFrame]], policies: pd.DataFrame, proposed: Ruleset,
          in_force: Ruleset, holdout: date, through: date,
          products: pd.Series | None) -> validation.ValidationPack:  # type: ignore[type-arg]
    try:
        return validation.validation_pack(parts, policies, proposed, in_force, holdout,
                                          through, products=products)
    except validation.NoClaimsExperience as exc:
        raise UserError(str(exc)) from None


def synthetic_pack(n_policies: int, proposed: Ruleset, holdout_from: date | None = None
                   ) -> validation.ValidationPack:
    """The pack on the back-test's synthetic portfolio of `n_policies` (a year from
    2025-01-01), against the built-in ruleset in force."""
    p = synthetic_portfolio(n_policies, SYNTHETIC_DAYS, seed=SYNTHETIC_SEED, with_claims=False)
    through = (p.policies["start_date"].min() + pd.Timedelta(days=SYNTHETIC_DAYS - 1)).date()
    in_force = rulesets.builtin_or_default(in_force_for(proposed, []))
    holdout = checked_holdout(holdout_from, through)
    part = validation.replay(p.policies, p.bindings, p.readings, proposed, in_force, holdout,
                             through)
    return _pack([part], p.policies, proposed, in_force, holdout, through, None)


def stored_pack(conn: store.Conn, proposed: Ruleset, through: date,
                holdout_from: date | None = None,
                progress: Callable[[float], None] | None = None,
                readings: Callable[[list[str]], pd.DataFrame] | None = None
                ) -> validation.ValidationPack:
    """The pack on the stored policies of the proposal's kind, against the ruleset in force
    for it. `readings`: a loader of some meters' readings (default: through `conn`)."""
    holdout = checked_holdout(holdout_from, through)
    in_force = store.in_force(conn, in_force_for(proposed, store.ruleset_names(conn)))
    if in_force.kind != proposed.kind:
        raise UserError(f"{proposed.name} prices {proposed.kind} policies and "
                        f"{in_force.name} {in_force.kind} ones")
    policies, bindings = store.load_policies(conn)
    policies = store.of_kind(conn, policies, proposed.kind)
    # Only the policies whose holders consent to research (docs/privacy.md).
    policies, left_out = research.consenting(conn, policies)
    if policies.empty:
        raise UserError(NO_POLICIES)
    bindings = bindings[bindings["policy_id"].isin(policies["policy_id"])]
    load = readings or (lambda ids: store.load_readings(conn, ids))
    if progress is not None and len(policies) <= CHUNK_POLICIES:
        progress = None
    part = validation.replay(policies, bindings, load, proposed, in_force, holdout, through,
                             progress)
    products = policies.set_index("policy_id")["ruleset_name"].astype(str)
    pack = _pack([part], policies, proposed, in_force, holdout, through, products)
    return dataclasses.replace(pack, left_out=left_out)
