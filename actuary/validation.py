"""The validation pack a pricing committee reads before a ruleset change goes live (CAS
Monograph 5, Goldburd et al. 2020): a proposed ruleset against the one in force on one
portfolio. Pure functions over frames; I/O lives in actuary/validation_cli.py and the
dashboard. docs/actuarial.md explains every figure.

1. Both rulesets replay the history (the back-test's own replay, actuary/backtest.py, so the
   pack's back-test figures are the back-test's).
2. Each ruleset's score is a policy's sum insured over its base at the end of the training
   window (the day before the holdout). A claims model per ruleset (Poisson GLM, log link,
   exposure offset: claims ~ score + age band) is fitted on the training window's claims.
3. Out-of-time holdout: each model predicts the holdout's claims; lift, Gini and the double
   lift compare them with what happened (actuary/lift.py).
4. Credibility of the policies' own claim experience: Bühlmann–Straub with the policies as
   groups and quarters of the training window as periods (actuary/credibility.py).
5. The change's cost: each policy's sum insured projected a year out under each ruleset and
   the expected payouts (projected sum insured x the ruleset's model's claim probability), by
   product and segment, beside the hypoglycaemia exposure the back-test reports.

Claims come from one function, `claims_experience`: synthetic claims drawn as the workbench
draws them (actuary/synthetic.py) until stored claims replace them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from actuary import backtest, research
from actuary.backtest import BacktestPart, BacktestResult, ReadingsSource
from actuary.credibility import BuhlmannStraub
from actuary.lift import BOOTSTRAP_REPLICATES, LiftResult, lift_report
from actuary.synthetic import age_band, annual_claim_rate
from pricing.evaluator import CHUNK_POLICIES, Ledger
from pricing.ruleset import Ruleset

Floats = npt.NDArray[np.float64]

HOLDOUT_DAYS = 90  # the default out-of-time holdout: the last 90 days
PROJECTION_DAYS = 365  # "a year out"
TREND_DAYS = 90  # the sum insured's daily change over these last days projects it
CREDIBILITY_PERIOD_DAYS = 91  # periods of the credibility model: quarters of policy time
DAYS_PER_YEAR = 365.25
CLAIMS_SEED = 31  # the synthetic claims' draw
SCORE = "score"  # sum insured / base sum insured at the end of the training window
# The pricing committee's threshold: a change whose expected payouts a year out exceed those
# in force by more than this share of them needs the committee's reference to be published
# (the workbench asks for it; docs/actuarial.md, "The cost of the change").
COMMITTEE_REVIEW_SHARE = 0.02


class NoClaimsExperience(ValueError):
    """Too few claims in a window to fit or judge a claims model."""


@dataclass(frozen=True)
class ClaimsExperience:
    """Claims (policy_id, event_date) and each policy's exposure window (policy_id,
    exposure_from, exposure_to: whole days, inclusive)."""

    claims: pd.DataFrame
    exposure: pd.DataFrame


def claims_experience(policies: pd.DataFrame, est_a1c: pd.Series,  # type: ignore[type-arg]
                      through: date, seed: int = CLAIMS_SEED) -> ClaimsExperience:
    """THE source of claims for the pack. Until stored claims and premiums land, synthetic:
    each policy claims as a Poisson process at actuary/synthetic.py's annual rate (its true
    HbA1c when the portfolio is synthetic, else the estimated HbA1c of its readings, `est_a1c`
    by policy_id; its age band), from its start date through `through`, event days uniform."""
    start = pd.to_datetime(policies["start_date"]).dt.normalize().to_numpy("datetime64[D]")
    end = np.datetime64(through, "D")
    days = np.maximum((end - start).astype(np.int64) + 1, 0)
    if "true_a1c" in policies:
        a1c = policies["true_a1c"].to_numpy(dtype=np.float64)
    else:
        a1c = policies["policy_id"].map(est_a1c).fillna(7.0).to_numpy(dtype=np.float64)
    band = (policies["age_band"] if "age_band" in policies
            else age_band(policies["birth_year"].fillna(1965), through.year))
    rng = np.random.default_rng(seed)
    counts = rng.poisson(annual_claim_rate(a1c, band) * days / DAYS_PER_YEAR)
    who = np.repeat(np.arange(len(policies)), counts)
    offset = (rng.random(len(who)) * days[who]).astype(np.int64)
    claims = pd.DataFrame({"policy_id": policies["policy_id"].to_numpy()[who],
                           "event_date": start[who] + offset})
    exposure = pd.DataFrame({"policy_id": policies["policy_id"].to_numpy(),
                             "exposure_from": start, "exposure_to": end})
    return ClaimsExperience(claims, exposure[days > 0].reset_index(drop=True))


def window_experience(experience: ClaimsExperience, first: np.datetime64,
                      last: np.datetime64) -> pd.DataFrame:
    """Per policy: exposure_years and claims in [first, last] (whole days)."""
    e = experience.exposure
    lo = np.maximum(e["exposure_from"].to_numpy("datetime64[D]"), first)
    hi = np.minimum(e["exposure_to"].to_numpy("datetime64[D]"), last)
    days = np.maximum((hi - lo).astype(np.int64) + 1, 0)
    c = experience.claims
    when = c["event_date"].to_numpy("datetime64[D]")
    counted = c[(when >= first) & (when <= last)]["policy_id"].value_counts()
    return pd.DataFrame({"policy_id": e["policy_id"].to_numpy(),
                         "exposure_years": days / DAYS_PER_YEAR,
                         "claims": e["policy_id"].map(counted).fillna(0).to_numpy(float)})


def quarterly_frequencies(experience: ClaimsExperience, last: np.datetime64) -> pd.DataFrame:
    """The credibility model's input from the claims through `last`: group (policy), period
    (quarter of policy time from its start), weight (exposure years), value (claims per year)."""
    e = experience.exposure
    start = e["exposure_from"].to_numpy("datetime64[D]")
    end = np.minimum(e["exposure_to"].to_numpy("datetime64[D]"), last)
    days = np.maximum((end - start).astype(np.int64) + 1, 0)
    periods = -(-days // CREDIBILITY_PERIOD_DAYS)
    who = np.repeat(np.arange(len(e)), periods)
    period = np.arange(len(who)) - np.repeat(np.cumsum(periods) - periods, periods)
    length = np.minimum(days[who] - period * CREDIBILITY_PERIOD_DAYS, CREDIBILITY_PERIOD_DAYS)
    c = experience.claims
    when = c["event_date"].to_numpy("datetime64[D]")
    c = c[when <= last]
    index = pd.Index(e["policy_id"])
    row = index.get_indexer(c["policy_id"])
    ok = row >= 0
    claim_period = ((c["event_date"].to_numpy("datetime64[D]")[ok] - start[row[ok]])
                    .astype(np.int64) // CREDIBILITY_PERIOD_DAYS)
    first_cell = np.cumsum(periods) - periods
    cell = first_cell[row[ok]] + claim_period
    counts = np.bincount(cell, minlength=len(who)).astype(float)
    weight = length / DAYS_PER_YEAR
    return pd.DataFrame({"group": e["policy_id"].to_numpy()[who], "period": period + 1,
                         "weight": weight, "value": counts / weight})


# --------------------------------------------------------------- the replay's extra figures


def _on_day(ledger: Ledger, day_of_row: npt.NDArray[np.datetime64], values: Floats
            ) -> pd.Series:  # type: ignore[type-arg]
    """Per policy (by id), `values` on the ledger row whose day is the policy's day."""
    mask = ledger.day.astype("datetime64[D]") == day_of_row
    ids = np.asarray(ledger.policy_id.categories)[np.asarray(ledger.policy_id.codes)[mask]]
    return pd.Series(values[mask], index=ids)


@dataclass
class ReplayFigures:
    """What the pack reads from each chunk's two ledgers beyond the back-test's: each
    ruleset's score at the end of training and its bonus TREND_DAYS before the end."""

    training_end: date
    through: date
    frames: list[pd.DataFrame]

    def __call__(self, chunk: pd.DataFrame, proposed: Ledger, in_force: Ledger) -> None:
        start = pd.to_datetime(chunk["start_date"]).dt.normalize().to_numpy("datetime64[D]")
        start_of = pd.Series(start, index=chunk["policy_id"].to_numpy())
        base = pd.Series(chunk["base_sum_insured"].to_numpy(float),
                         index=chunk["policy_id"].to_numpy())
        codes = np.asarray(proposed.policy_id.codes)
        ids = np.asarray(proposed.policy_id.categories)
        row_start = start_of.reindex(ids).to_numpy("datetime64[D]")[codes]
        anchor = np.maximum(row_start, np.datetime64(self.through, "D") - TREND_DAYS)
        train_end = np.full(len(codes), np.datetime64(self.training_end, "D"))
        frame = pd.DataFrame(index=pd.Index(chunk["policy_id"].to_numpy(), name="policy_id"))
        for name, ledger in (("proposed", proposed), ("in_force", in_force)):
            frame[f"{SCORE}_{name}"] = (_on_day(ledger, train_end, ledger.sum_insured)
                                        / base)
            frame[f"bonus_anchor_{name}"] = _on_day(ledger, anchor, ledger.bonus)
        frame["anchor_days"] = ((np.datetime64(self.through, "D") - np.maximum(
            start, np.datetime64(self.through, "D") - TREND_DAYS)).astype(np.int64))
        self.frames.append(frame.reset_index())


# --------------------------------------------------------------------------- claims models


@dataclass
class ClaimsModel:
    """Poisson GLM, log link, log(exposure) offset: claims ~ score + age band. `fit` returns
    self with `params_` (by term); `rate` gives claims a year."""

    params_: pd.Series  # type: ignore[type-arg]
    bands_: list[str]

    @classmethod
    def fit(cls, score: Floats, band: npt.NDArray[Any], claims: Floats, exposure: Floats
            ) -> ClaimsModel:
        bands = sorted(set(band.tolist()))
        model = cls(pd.Series(dtype=float), bands[1:])
        params = poisson_glm(model._design(score, band), claims, exposure)
        model.params_ = pd.Series(params, index=model.terms())
        return model

    def terms(self) -> list[str]:
        return ["const", SCORE, *[f"age_{b}" for b in self.bands_]]

    def _design(self, score: Floats, band: npt.NDArray[Any]) -> Floats:
        columns = [np.ones(len(score)), score, *[(band == b).astype(float)
                                                  for b in self.bands_]]
        return np.column_stack(columns)

    def rate(self, score: Floats, band: npt.NDArray[Any]) -> Floats:
        """Expected claims a year."""
        out: Floats = np.exp(self._design(score, band) @ self.params_.to_numpy())
        return out


GLM_TOLERANCE = 1e-10  # Newton steps stop when no coefficient moves more than this
GLM_MAX_STEPS = 100


def poisson_glm(design: Floats, claims: Floats, exposure: Floats) -> Floats:
    """Maximum-likelihood coefficients β of a Poisson GLM with log link and log(exposure)
    offset: E[claims] = exposure x exp(design β). Newton–Raphson (the canonical link's
    iteratively reweighted least squares): β += (Xᵀ W X)⁻¹ Xᵀ (y − μ), W = diag(μ), from
    β = (log(Σ y / Σ exposure), 0, ...). The same fit as statsmodels' GLM (the tests compare),
    without its import on the pack's path."""
    beta = np.zeros(design.shape[1])
    beta[0] = np.log(max(claims.sum(), 1e-12) / exposure.sum())
    for _ in range(GLM_MAX_STEPS):
        mu = exposure * np.exp(design @ beta)
        step = np.linalg.solve(design.T @ (design * mu[:, None]), design.T @ (claims - mu))
        beta = beta + step
        if np.max(np.abs(step)) < GLM_TOLERANCE:
            break
    return beta


def claim_probability(annual_rate: Floats) -> Floats:
    """P(at least one claim in a year) = 1 − exp(−rate)."""
    out: Floats = 1.0 - np.exp(-annual_rate)
    return out


def projected_sum_insured(sum_insured: Floats, bonus: Floats, bonus_then: Floats,
                          days: npt.NDArray[np.int64], ruleset: Ruleset) -> Floats:
    """A year out: base + clamp(bonus + PROJECTION_DAYS x (bonus − bonus TREND_DAYS ago) /
    days, bonus_min, bonus_max); a policy younger than TREND_DAYS counts from its start."""
    with np.errstate(invalid="ignore", divide="ignore"):
        trend = np.where(days > 0, (bonus - bonus_then) / np.maximum(days, 1), 0.0)
    trend = np.nan_to_num(trend)
    future = np.clip(bonus + PROJECTION_DAYS * trend, ruleset.bonus_min, ruleset.bonus_max)
    out: Floats = sum_insured - bonus + future
    return out


# ------------------------------------------------------------------------------- the pack


@dataclass
class ValidationPack:
    proposed: Ruleset
    in_force: Ruleset
    holdout_from: date
    through: date
    backtest: BacktestResult
    per_policy: pd.DataFrame  # per policy: scores, windows' claims, predictions, projections
    models: dict[str, ClaimsModel]
    lift: LiftResult  # the proposed model's, with the double lift against the in force
    lift_in_force: LiftResult
    credibility: BuhlmannStraub
    cost: pd.DataFrame  # by product and segment, with a total row
    left_out: int = 0  # stored policies left out for want of consent to research

    def summary(self) -> dict[str, Any]:
        p = self.per_policy
        holdout = p["holdout_years"] > 0
        z = self.credibility.groups_["z"]
        total = self.cost.iloc[-1]
        return {
            "proposed": self.proposed.name, "in_force": self.in_force.name,
            "in_force_version": self.in_force.version,
            "holdout_from": self.holdout_from.isoformat(), "through": self.through.isoformat(),
            "policies": len(p),
            "training_claims": int(p["training_claims"].sum()),
            "training_exposure_years": float(p["training_years"].sum()),
            "holdout_claims": int(p.loc[holdout, "holdout_claims"].sum()),
            "holdout_exposure_years": float(p.loc[holdout, "holdout_years"].sum()),
            "gini_proposed": self.lift.gini, "gini_proposed_low": self.lift.gini_low,
            "gini_proposed_high": self.lift.gini_high,
            "gini_in_force": self.lift_in_force.gini,
            "gini_in_force_low": self.lift_in_force.gini_low,
            "gini_in_force_high": self.lift_in_force.gini_high,
            "score_coefficient_proposed": float(self.models["proposed"].params_[SCORE]),
            "score_coefficient_in_force": float(self.models["in_force"].params_[SCORE]),
            **{f"credibility_{k}": v for k, v in self.credibility.summary().items()},
            "credibility_mean_z": float(z.mean()), "credibility_max_z": float(z.max()),
            "projected_sum_insured_proposed": float(total["projected_sum_insured_proposed"]),
            "projected_sum_insured_in_force": float(total["projected_sum_insured_in_force"]),
            "expected_payout_proposed": float(total["expected_payout_proposed"]),
            "expected_payout_in_force": float(total["expected_payout_in_force"]),
            "cost_of_change": float(total["cost_of_change"]),
            "cost_of_change_share": cost_share(float(total["cost_of_change"]),
                                               float(total["expected_payout_in_force"])),
            "committee_review_share": COMMITTEE_REVIEW_SHARE,
            "committee_review": needs_committee(float(total["cost_of_change"]),
                                                float(total["expected_payout_in_force"])),
            "backtest": {"ruleset": self.proposed.name, "baseline": self.in_force.name,
                         "through": self.through.isoformat(), **self.backtest.summary(),
                         research.LEFT_OUT_KEY: self.left_out},
            research.LEFT_OUT_KEY: self.left_out,
        }


def cost_share(cost_of_change: float, payout_in_force: float) -> float:
    """The cost of the change as a share of the expected payouts in force."""
    return cost_of_change / payout_in_force if payout_in_force > 0 else float("inf")


def needs_committee(cost_of_change: float, payout_in_force: float) -> bool:
    """A change costing more than COMMITTEE_REVIEW_SHARE of the expected payouts in force
    goes to the pricing committee."""
    return cost_share(cost_of_change, payout_in_force) > COMMITTEE_REVIEW_SHARE


def default_holdout_from(through: date) -> date:
    return through - timedelta(days=HOLDOUT_DAYS - 1)


def replay(policies: pd.DataFrame, bindings: pd.DataFrame, readings: ReadingsSource,
           proposed: Ruleset, in_force: Ruleset, holdout_from: date, through: date,
           progress: Callable[[float], None] | None = None,
           chunk_policies: int = CHUNK_POLICIES) -> tuple[BacktestPart, pd.DataFrame]:
    """One part of the pack's replay (any disjoint set of policies, as a back-test part):
    the back-test's part and the pack's figures from the same ledgers."""
    figures = ReplayFigures(holdout_from - timedelta(days=1), through, [])
    part = backtest.backtest_part(policies, bindings, readings, proposed, in_force, through,
                                  progress, chunk_policies=chunk_policies, ledgers=figures)
    return part, pd.concat(figures.frames, ignore_index=True)


def validation_pack(parts: list[tuple[BacktestPart, pd.DataFrame]],
                    policies: pd.DataFrame, proposed: Ruleset, in_force: Ruleset,
                    holdout_from: date, through: date, seed: int = 1,
                    replicates: int = BOOTSTRAP_REPLICATES,
                    products: pd.Series | None = None) -> ValidationPack:  # type: ignore[type-arg]
    """The pack from the replay's parts (`replay`) of `policies`. `products`: each policy's
    product (ruleset name) by policy_id, default the in-force ruleset's name."""
    result = backtest.combine([p for p, _ in parts], policies, proposed, in_force, through)
    extra = pd.concat([f for _, f in parts], ignore_index=True)
    per = result.per_policy.merge(extra, on="policy_id", how="left")
    experience = claims_experience(policies, per.set_index("policy_id")["est_a1c"], through)
    first = np.datetime64(holdout_from, "D")
    train = window_experience(experience, np.datetime64("1970-01-01"), first - 1)
    hold = window_experience(experience, first, np.datetime64(through, "D"))
    per = per.merge(train.rename(columns={"exposure_years": "training_years",
                                          "claims": "training_claims"}), on="policy_id",
                    how="left")
    per = per.merge(hold.rename(columns={"exposure_years": "holdout_years",
                                         "claims": "holdout_claims"}), on="policy_id", how="left")
    band_of = policies.set_index("policy_id")
    band = (band_of["age_band"] if "age_band" in band_of
            else pd.Series(age_band(band_of["birth_year"].fillna(1965), through.year),
                           index=band_of.index))
    per["age_band"] = per["policy_id"].map(band).astype(str)
    per[["training_years", "training_claims", "holdout_years", "holdout_claims"]] = per[[
        "training_years", "training_claims", "holdout_years", "holdout_claims"]].fillna(0.0)

    trained = (per["training_years"] > 0) & per[f"{SCORE}_proposed"].notna() & \
        per[f"{SCORE}_in_force"].notna()
    if per.loc[trained, "training_claims"].sum() < 1:
        raise NoClaimsExperience(
            f"no claims before {holdout_from} among {int(trained.sum())} policies: the "
            "claims models need claims experience (a longer history or more policies)")
    bands = per["age_band"].to_numpy()
    models: dict[str, ClaimsModel] = {}
    for name in ("proposed", "in_force"):
        t = per[trained]
        models[name] = ClaimsModel.fit(t[f"{SCORE}_{name}"].to_numpy(float), bands[trained],
                                       t["training_claims"].to_numpy(float),
                                       t["training_years"].to_numpy(float))
        score = per[f"{SCORE}_{name}"].fillna(1.0).to_numpy(float)
        per[f"predicted_{name}"] = (models[name].rate(score, bands)
                                    * per["holdout_years"].to_numpy(float))
        # The year ahead: the model's rate at the policy's score today.
        today = (per["sum_insured" if name == "proposed" else "sum_insured_baseline"]
                 / (per["sum_insured"] - per["bonus"])).to_numpy(float)
        per[f"claim_probability_{name}"] = claim_probability(models[name].rate(today, bands))

    judged = trained & (per["holdout_years"] > 0)
    h = per[judged]
    if h["holdout_claims"].sum() < 1:
        raise NoClaimsExperience(
            f"no claims from {holdout_from} through {through} among {int(judged.sum())} "
            "policies: the holdout cannot judge the models (an earlier --holdout-from?)")
    frame = pd.DataFrame({"exposure": h["holdout_years"], "actual": h["holdout_claims"],
                          "predicted": h["predicted_proposed"],
                          "predicted_b": h["predicted_in_force"]})
    lifted = lift_report(frame, seed=seed, replicates=replicates)
    lifted_in_force = lift_report(
        frame.drop(columns="predicted_b").assign(predicted=h["predicted_in_force"]),
        seed=seed, replicates=replicates)
    cred = BuhlmannStraub().fit(quarterly_frequencies(experience, first - 1))

    for name, column, bonus in (("proposed", "sum_insured", "bonus"),
                                ("in_force", "sum_insured_baseline", "bonus_baseline")):
        per[f"projected_sum_insured_{name}"] = projected_sum_insured(
            per[column].to_numpy(float), per[bonus].to_numpy(float),
            per[f"bonus_anchor_{name}"].to_numpy(float),
            per["anchor_days"].fillna(0).to_numpy(np.int64),
            proposed if name == "proposed" else in_force)
        per[f"expected_payout_{name}"] = (per[f"projected_sum_insured_{name}"]
                                          * per[f"claim_probability_{name}"])
    per["product"] = (per["policy_id"].map(products).fillna(in_force.name) if products
                      is not None else in_force.name)
    return ValidationPack(proposed, in_force, holdout_from, through, result, per, models,
                          lifted, lifted_in_force, cred, cost_table(per))


COST_FIGURES = ("projected_sum_insured_in_force", "projected_sum_insured_proposed",
                "expected_payout_in_force", "expected_payout_proposed")


def cost_table(per: pd.DataFrame) -> pd.DataFrame:
    """By product and segment, and in total: policies, projected sums insured and expected
    payouts under each ruleset, cost_of_change = expected payout proposed − in force."""
    grouped = per.groupby(["product", "segment"], sort=True).agg(
        policies=("policy_id", "count"), **{c: (c, "sum") for c in COST_FIGURES}).reset_index()
    total = pd.DataFrame([{"product": "all", "segment": "all", "policies": len(per),
                           **{c: float(per[c].sum()) for c in COST_FIGURES}}])
    table = pd.concat([grouped, total], ignore_index=True)
    table["cost_of_change"] = table["expected_payout_proposed"] - table["expected_payout_in_force"]
    return table
