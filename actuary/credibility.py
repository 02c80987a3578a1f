"""Bühlmann–Straub credibility: how much a group's own experience counts against the
collective's. One small pure function per quantity, its formula in the docstring
(docs/actuarial.md, "Credibility"); `BuhlmannStraub` fits them all, estimator style.

Notation: groups i = 1..I, periods j of group i (n_i of them), weights w_ij > 0, values X_ij.
The estimators of s² and τ² are the unbiased ones of Bühlmann & Gisler (2005) §4.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

Floats = npt.NDArray[np.float64]

INPUT_COLUMNS = ("group", "period", "weight", "value")


def group_weights(weight: Floats, group: npt.NDArray[np.int64], groups: int) -> Floats:
    """w_i = Σ_j w_ij."""
    return np.bincount(group, weights=weight, minlength=groups).astype(np.float64)


def group_means(weight: Floats, value: Floats, group: npt.NDArray[np.int64],
                w_i: Floats) -> Floats:
    """X_i = Σ_j w_ij X_ij / w_i."""
    out: Floats = np.bincount(group, weights=weight * value, minlength=len(w_i)) / w_i
    return out


def overall_mean(w_i: Floats, x_i: Floats) -> float:
    """X = Σ_i w_i X_i / w, w = Σ_i w_i."""
    return float(np.sum(w_i * x_i) / np.sum(w_i))


def within_variance(weight: Floats, value: Floats, group: npt.NDArray[np.int64],
                    x_i: Floats, n_i: npt.NDArray[np.int64]) -> float:
    """s² = Σ_i Σ_j w_ij (X_ij − X_i)² / Σ_i (n_i − 1); NaN when no group has two periods."""
    dof = int(np.sum(n_i - 1))
    if dof <= 0:
        return float("nan")
    return float(np.sum(weight * (value - x_i[group]) ** 2) / dof)


def between_variance(w_i: Floats, x_i: Floats, s2: float) -> float:
    """τ² = max(0, (Σ_i w_i (X_i − X)² − (I − 1) s²) / (w − Σ_i w_i² / w))."""
    w = float(np.sum(w_i))
    x = overall_mean(w_i, x_i)
    denominator = w - float(np.sum(w_i ** 2)) / w
    if denominator <= 0:  # a single group: nothing to compare it with
        return 0.0
    return max(0.0, (float(np.sum(w_i * (x_i - x) ** 2)) - (len(w_i) - 1) * s2) / denominator)


def credibility_factors(w_i: Floats, s2: float, tau2: float) -> Floats:
    """z_i = w_i / (w_i + s² / τ²); 0 when τ² = 0 (the groups do not differ)."""
    if tau2 <= 0:
        return np.zeros_like(w_i)
    if s2 == 0:  # no noise within groups: each group's own mean is the whole story
        return np.ones_like(w_i)
    out: Floats = w_i / (w_i + s2 / tau2)
    return out


def collective_mean(z_i: Floats, x_i: Floats, w_i: Floats) -> float:
    """Σ_i z_i X_i / Σ_i z_i (X, the weighted overall mean, when every z_i is 0)."""
    if np.sum(z_i) <= 0:
        return overall_mean(w_i, x_i)
    return float(np.sum(z_i * x_i) / np.sum(z_i))


def credibility_estimates(z_i: Floats, x_i: Floats, mu: float) -> Floats:
    """estimate_i = z_i X_i + (1 − z_i) μ, μ the collective mean."""
    out: Floats = z_i * x_i + (1.0 - z_i) * mu
    return out


class BuhlmannStraub:
    """The Bühlmann–Straub model. `fit(frame)` takes columns group, weight, value (one row per
    group and period; the period itself is only a label) and returns self with `groups_`
    (group, weight, mean, z, estimate), `collective_mean_`, `s2_`, `tau2_`."""

    groups_: pd.DataFrame
    collective_mean_: float
    s2_: float
    tau2_: float

    def fit(self, frame: pd.DataFrame) -> BuhlmannStraub:
        codes, labels = pd.factorize(frame["group"], sort=True)
        group = codes.astype(np.int64)
        weight = frame["weight"].to_numpy(dtype=np.float64)
        value = frame["value"].to_numpy(dtype=np.float64)
        n_i = np.bincount(group, minlength=len(labels)).astype(np.int64)
        w_i = group_weights(weight, group, len(labels))
        x_i = group_means(weight, value, group, w_i)
        self.s2_ = within_variance(weight, value, group, x_i, n_i)
        # Without s² (every group a single period) τ² cannot be told from noise: no credibility.
        self.tau2_ = 0.0 if np.isnan(self.s2_) else between_variance(w_i, x_i, self.s2_)
        z_i = credibility_factors(w_i, self.s2_, self.tau2_)
        self.collective_mean_ = collective_mean(z_i, x_i, w_i)
        self.groups_ = pd.DataFrame({
            "group": np.asarray(labels), "weight": w_i, "mean": x_i, "z": z_i,
            "estimate": credibility_estimates(z_i, x_i, self.collective_mean_)})
        return self

    def summary(self) -> dict[str, float | int]:
        """collective_mean, s2, tau2, groups (full precision)."""
        return {"collective_mean": self.collective_mean_, "s2": self.s2_, "tau2": self.tau2_,
                "groups": len(self.groups_)}


