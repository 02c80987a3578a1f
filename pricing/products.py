"""Price policy-days under the rules of either product: fingerstick meters (a `bgm` ruleset,
pricing/evaluator.py) or continuous glucose monitoring (a `cgm` ruleset,
pricing/cgm_rules.py). The entry point for callers that may hold a ruleset of either kind;
the two rule modules share rules 1, 4 and 5 one way (the CGM rules import the evaluator's).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from pricing import cgm_rules, evaluator
from pricing.evaluator import AssignedReadings, Ledger, Resume
from pricing.ruleset import Ruleset


def evaluate(policies: pd.DataFrame, bindings: pd.DataFrame, readings: pd.DataFrame,
             ruleset: Ruleset, through: date | str | np.datetime64,
             resume: Resume | None = None, assigned: AssignedReadings | None = None,
             consent: pd.DataFrame | None = None,
             adjustments: pd.DataFrame | None = None) -> Ledger:
    """The ledger of every policy from its start_date (or its `resume` day) through `through`
    under `ruleset`'s product rules. `assigned`: rule 1 done already (fingerstick rules);
    `consent`: the periods consented to pricing (rule 7), None for every day; `adjustments`:
    reviewers' corrections (rule 8)."""
    if ruleset.kind == "cgm":
        return cgm_rules.evaluate(policies, bindings, readings, ruleset, through, resume,
                                  consent, adjustments)
    return evaluator.evaluate(policies, bindings, readings, ruleset, through, resume, assigned,
                              consent, adjustments)
