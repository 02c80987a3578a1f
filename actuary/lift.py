"""Does a score rank risk? Lift by equal-exposure bins, the ordered Lorenz curve and its Gini
index with a bootstrap interval, and the double lift of two models (CAS Monograph 5, Goldburd
et al. 2020, ch. 7; Frees, Meyers & Cummings 2011). Pure; docs/actuarial.md, "Lift and Gini".

Inputs are per policy: exposure (> 0), actual (claims), predicted (the model's expected claims
over that exposure) and, for a double lift, predicted_b (another model's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

INPUT_COLUMNS = ("policy_id", "exposure", "actual", "predicted")
SECOND_MODEL = "predicted_b"
DEFAULT_BINS = 10
BOOTSTRAP_REPLICATES = 1000  # resamples behind the Gini's 95% interval
INTERVAL = (2.5, 97.5)  # percentiles of the bootstrap Ginis


def rate_order(exposure: Floats, predicted: Floats) -> Ints:
    """Policies in ascending order of predicted per unit exposure (ties keep input order)."""
    order: Ints = np.argsort(predicted / exposure, kind="stable")
    return order


def exposure_bins(exposure_sorted: Floats, bins: int) -> Ints:
    """Bin (0..bins-1) of each policy, in sorted order: the policy's cumulative exposure
    midpoint m = (E_before + e/2) / E falls in [k/bins, (k+1)/bins) for bin k."""
    total = float(exposure_sorted.sum())
    midpoint = (np.cumsum(exposure_sorted) - exposure_sorted / 2) / total
    out: Ints = np.minimum((midpoint * bins).astype(np.int64), bins - 1)
    return out


def lorenz_area(exposure_sorted: Floats, actual_sorted: Floats,
                counts: Floats | None = None, claimed: Ints | None = None) -> float:
    """Area under the ordered Lorenz curve: x_k = cumulative exposure share, y_k = cumulative
    actual share (policies sorted by predicted per unit exposure, ascending), trapezoids from
    (0,0): Σ_k (x_k − x_{k−1}) (y_k + y_{k−1}) / 2. `counts`: each policy's multiplicity (a
    bootstrap resample); `claimed`: the positions with actual > 0, when known.

    Computed as the same sum regrouped by policy, which needs only the policies with claims:
    with X_j the cumulative exposure through j, E and A the totals,
    area = (Σ_j a_j (E − X_j) + ½ Σ_j e_j a_j) / (E A)."""
    e = exposure_sorted if counts is None else exposure_sorted * counts
    cumulative = np.cumsum(e)
    total_e = float(cumulative[-1])
    if claimed is None:
        claimed = np.flatnonzero(actual_sorted)
    a = actual_sorted[claimed] if counts is None else actual_sorted[claimed] * counts[claimed]
    total_a = float(a.sum())
    inner = float(np.dot(a, total_e - cumulative[claimed]) + 0.5 * np.dot(e[claimed], a))
    return inner / (total_e * total_a)


def spread_ties(exposure_sorted: Floats, actual_sorted: Floats, rate_sorted: Floats) -> Floats:
    """The actual of policies whose predicted rates tie (equal to 1e-9 relative), shared within
    their group in proportion to exposure: the Lorenz curve runs straight across a tie, so the
    Gini does not depend on the order ties happen to be in (nor on float noise that scaling the
    exposure adds to equal rates)."""
    if len(rate_sorted) < 2:
        return actual_sorted
    new_group = ~np.isclose(rate_sorted[1:], rate_sorted[:-1], rtol=1e-9, atol=0.0)
    group = np.concatenate([[0], np.cumsum(new_group)])
    group_actual = np.bincount(group, weights=actual_sorted)
    group_exposure = np.bincount(group, weights=exposure_sorted)
    spread: Floats = exposure_sorted * (group_actual / group_exposure)[group]
    return spread


def gini_index(exposure: Floats, actual: Floats, predicted: Floats) -> float:
    """Gini = 1 − 2 × area under the ordered Lorenz curve (NaN when there is no actual); tied
    predicted rates share their actual (spread_ties)."""
    if not actual.sum() > 0:
        return float("nan")
    order = rate_order(exposure, predicted)
    e = exposure[order]
    return 1.0 - 2.0 * lorenz_area(e, spread_ties(e, actual[order], (predicted / exposure)[order]))


def bootstrap_gini(exposure: Floats, actual: Floats, predicted: Floats, seed: int,
                   replicates: int = BOOTSTRAP_REPLICATES) -> Floats:
    """The Gini of `replicates` resamples of the n policies, each n draws with replacement (a
    policy drawn k times counts k times; a resample keeps the original's sort order)."""
    order = rate_order(exposure, predicted)
    e = exposure[order]
    a = spread_ties(e, actual[order], (predicted / exposure)[order])
    rng = np.random.default_rng(seed)
    n = len(e)
    claimed = np.flatnonzero(a)
    out = np.empty(replicates)
    for r in range(replicates):
        counts = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        out[r] = (1.0 - 2.0 * lorenz_area(e, a, counts, claimed)
                  if counts[claimed].any() else np.nan)
    return out


def lift_table(exposure: Floats, actual: Floats, predicted: Floats, bins: int) -> pd.DataFrame:
    """Equal-exposure bins by predicted per unit exposure: bin, policies, exposure, actual and
    predicted per unit exposure, ae = Σ actual / Σ predicted."""
    order = rate_order(exposure, predicted)
    return _binned(exposure[order], exposure_bins(exposure[order], bins), bins,
                   {"actual": actual[order], "predicted": predicted[order]}, ["predicted"])


def double_lift_table(exposure: Floats, actual: Floats, predicted: Floats,
                      predicted_b: Floats, bins: int) -> pd.DataFrame:
    """Equal-exposure bins by predicted / predicted_b: per bin each model's predicted and the
    actual per unit exposure, ae (actual / predicted) and ae_b (actual / predicted_b)."""
    order: Ints = np.argsort(predicted / predicted_b, kind="stable")
    return _binned(exposure[order], exposure_bins(exposure[order], bins), bins,
                   {"actual": actual[order], "predicted": predicted[order],
                    "predicted_b": predicted_b[order]}, ["predicted", "predicted_b"])


def _binned(exposure: Floats, bin_of: Ints, bins: int, sums: dict[str, Floats],
            models: list[str]) -> pd.DataFrame:
    e = np.bincount(bin_of, weights=exposure, minlength=bins)
    table = pd.DataFrame({"bin": np.arange(1, bins + 1),
                          "policies": np.bincount(bin_of, minlength=bins), "exposure": e})
    totals = {name: np.bincount(bin_of, weights=v, minlength=bins) for name, v in sums.items()}
    with np.errstate(invalid="ignore", divide="ignore"):
        for name, total in totals.items():
            table[f"{name}_per_exposure"] = total / e
        for model in models:
            suffix = model.removeprefix("predicted")
            table[f"ae{suffix}"] = totals["actual"] / totals[model]
    return table


@dataclass(frozen=True)
class LiftResult:
    lift: pd.DataFrame
    gini: float
    gini_low: float
    gini_high: float
    replicates: int
    seed: int
    double_lift: pd.DataFrame | None

    def summary(self) -> dict[str, float | int]:
        return {"gini": self.gini, "gini_low": self.gini_low, "gini_high": self.gini_high,
                "replicates": self.replicates, "seed": self.seed}


def lift_report(frame: pd.DataFrame, bins: int = DEFAULT_BINS, seed: int = 1,
                replicates: int = BOOTSTRAP_REPLICATES) -> LiftResult:
    """Lift, Gini with its bootstrap 95% interval, and (with predicted_b) the double lift."""
    e = frame["exposure"].to_numpy(np.float64)
    a = frame["actual"].to_numpy(np.float64)
    p = frame["predicted"].to_numpy(np.float64)
    boot = bootstrap_gini(e, a, p, seed, replicates) if replicates else np.array([np.nan])
    low, high = (np.nanpercentile(boot, INTERVAL) if np.isfinite(boot).any()
                 else (np.nan, np.nan))
    double = (double_lift_table(e, a, p, frame[SECOND_MODEL].to_numpy(np.float64), bins)
              if SECOND_MODEL in frame else None)
    return LiftResult(lift_table(e, a, p, bins), gini_index(e, a, p), float(low), float(high),
                      replicates, seed, double)
