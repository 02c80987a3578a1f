"""The claim-frequency GLM: Poisson, log link, exposure offset, claims on estimated HbA1c,
adherence and age band (statsmodels). See docs/domain.md, "Actuarial tools"."""


from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from actuary.backtest import policy_glycaemia
from actuary.synthetic import Portfolio
from pricing.ruleset import Ruleset


@dataclass
class GlmResult:
    table: pd.DataFrame  # term, coef, std_err, ci_low, ci_high, rate_ratio, rr_low, rr_high, p
    n: int
    claims: int
    exposure_years: float
    deviance: float

    def rate_ratio(self, term: str) -> tuple[float, float, float]:
        row = self.table.set_index("term").loc[term]
        return (float(str(row["rate_ratio"])), float(str(row["rr_low"])),
                float(str(row["rr_high"])))


def claim_frequency_glm(frame: pd.DataFrame) -> GlmResult:
    """Poisson GLM, log link, log(exposure) offset: claims ~ est_a1c + adherence + age band.
    `frame` needs claims, exposure_years, est_a1c, adherence, age_band."""
    import statsmodels.api as sm

    data = frame.dropna(subset=["est_a1c", "adherence"]).copy()
    bands = pd.get_dummies(data["age_band"], prefix="age", drop_first=False, dtype=float)
    bands = bands.drop(columns=[c for c in ("age_50-64",) if c in bands])  # reference band
    exog = pd.concat([data[["est_a1c", "adherence"]].astype(float), bands], axis=1)
    exog = sm.add_constant(exog, has_constant="add")
    model = sm.GLM(data["claims"].astype(float), exog, family=sm.families.Poisson(),
                   exposure=data["exposure_years"].astype(float))
    fit = model.fit()
    ci = fit.conf_int(alpha=0.05)
    table = pd.DataFrame({
        "term": fit.params.index, "coef": fit.params.to_numpy(),
        "std_err": fit.bse.to_numpy(), "ci_low": ci[0].to_numpy(), "ci_high": ci[1].to_numpy(),
        "p_value": fit.pvalues.to_numpy(),
    })
    table["rate_ratio"] = np.exp(table["coef"])
    table["rr_low"] = np.exp(table["ci_low"])
    table["rr_high"] = np.exp(table["ci_high"])
    return GlmResult(table, len(data), int(data["claims"].sum()),
                     float(data["exposure_years"].sum()), float(fit.deviance))


def glm_on_synthetic(portfolio: Portfolio, ruleset: Ruleset, through: date) -> GlmResult:
    glyc = policy_glycaemia(portfolio.policies, portfolio.bindings, portfolio.readings, ruleset,
                            through)
    frame = portfolio.claims.merge(glyc, on="policy_id").merge(
        portfolio.policies[["policy_id", "age_band"]], on="policy_id")
    return claim_frequency_glm(frame)
