"""Synthetic portfolios for benchmarks, back-tests and GLM checks: vectorised and seeded.

Each policyholder has a persona (devices/personas.py), a mean fasting glucose and a measuring
habit; their meter's readings follow. Claims (severe complications needing surgery) arrive as a
Poisson process whose rate rises with glycaemic control as published (docs/domain.md):
estimated HbA1c from mean glucose by ADAG (pricing/glycaemia.py), and a hazard ratio
of about 1.59 per +1% HbA1c (UKPDS 35, microvascular).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from devices.personas import PERSONAS
from kernel.sequence import SEQ_MODULO
from kernel.vocabulary import Status
from pricing.glycaemia import estimated_a1c

ZONES = ("Asia/Shanghai", "Europe/London", "America/New_York")
ZONE_WEIGHTS = (0.7, 0.15, 0.15)
HAZARD_RATIO_PER_A1C = 1.59  # UKPDS 35: 1 / (1 - 0.37) per +1% HbA1c
BASE_ANNUAL_CLAIM_RATE = 0.02  # at HbA1c 7%, age band 50-64
AGE_BAND_RATE_RATIO = {"<50": 0.7, "50-64": 1.0, "65+": 1.6}
POST_MEAL_RISE = 2.6  # mmol/L, mean of the post-meal readings above fasting
POST_MEAL_SHARE = 0.5  # post-meal readings per measured day


@dataclass
class Portfolio:
    policies: pd.DataFrame  # + segment, birth_year, age_band, mean_fasting, adherence, true_a1c
    bindings: pd.DataFrame
    readings: pd.DataFrame
    claims: pd.DataFrame  # policy_id, claims (count), exposure_years


def synthetic_portfolio(n_policies: int, days: int, seed: int = 1,
                        start: str = "2025-01-01", with_claims: bool = True,
                        first: int = 1) -> Portfolio:
    """`n_policies` policies numbered from `first` (S0000001, meter M0000001, ...) with `days`
    of readings from `start`, seeded."""
    rng = np.random.default_rng(seed)
    numbers = np.arange(first, first + n_policies).astype(str)
    ids = np.char.add("S", np.char.zfill(numbers, 7))
    devices = np.char.add("M", np.char.zfill(numbers, 7))
    weights = np.array([p.weight for p in PERSONAS])
    persona = rng.choice(len(PERSONAS), n_policies, p=weights / weights.sum())
    mean_fasting = np.array([(p.fasting_start + p.fasting_end) / 2 for p in PERSONAS])[persona]
    mean_fasting = mean_fasting + rng.normal(0, 0.8, n_policies)
    day_sd = np.array([p.day_sd for p in PERSONAS])[persona]
    adherence = np.clip(np.array([(p.adherence_start + p.adherence_end) / 2 for p in PERSONAS])
                        [persona] + rng.normal(0, 0.05, n_policies), 0.05, 0.99)
    zone = rng.choice(len(ZONES), n_policies, p=ZONE_WEIGHTS)
    birth_year = rng.integers(1945, 1995, n_policies)
    start_ts = pd.Timestamp(start)
    policies = pd.DataFrame({
        "policy_id": ids, "start_date": start_ts,
        "base_sum_insured": rng.choice([10_000.0, 20_000.0, 50_000.0], n_policies),
        "timezone": np.array(ZONES)[zone],
        "segment": np.array([p.name for p in PERSONAS])[persona],
        "birth_year": birth_year,
        "mean_fasting": mean_fasting, "adherence": adherence,
    })
    policies["age_band"] = age_band(birth_year, start_ts.year)
    mean_glucose = mean_fasting + POST_MEAL_SHARE / (1 + POST_MEAL_SHARE) * POST_MEAL_RISE
    policies["true_a1c"] = estimated_a1c(mean_glucose)
    bindings = pd.DataFrame({"policy_id": ids, "device_id": devices,
                             "bound_from": pd.NaT, "bound_to": pd.NaT})
    for column in ("bound_from", "bound_to"):
        bindings[column] = pd.to_datetime(bindings[column], utc=True)

    # Casual lows from their own stream, so adding them moved no other draw.
    lows = _casual_lows(np.random.default_rng((seed, CASUAL_LOW_STREAM)), persona, days)
    readings = _readings(rng, policies, devices, persona, day_sd, days, start_ts, lows)
    claims = _claims(rng, policies, days) if with_claims else pd.DataFrame()
    return Portfolio(policies, bindings, readings, claims)


CASUAL_LOW_STREAM = 17


@dataclass(frozen=True)
class CasualLows:
    """Hypoglycaemia readings outside the meal routine: on a share of days (the persona's
    hypo_rate), one reading from 2.4 to 3.8 mmol/L between 10:00 and 23:00."""

    policy: npt.NDArray[np.int64]
    day: npt.NDArray[np.int64]
    minute: npt.NDArray[np.float64]
    value: npt.NDArray[np.float64]


def synthetic_chunks(n_policies: int, days: int, seed: int, chunk_policies: int,
                     start: str = "2025-01-01") -> Iterator[Portfolio]:
    """A portfolio of `n_policies` made chunk by chunk (policies numbered on across chunks,
    each chunk seeded by (seed, its index)): a bench holds one chunk at a time."""
    for index, first in enumerate(range(0, n_policies, chunk_policies)):
        yield synthetic_portfolio(min(chunk_policies, n_policies - first), days,
                                  seed * 1_000_003 + index, start=start, with_claims=False,
                                  first=first + 1)


def _casual_lows(rng: np.random.Generator, persona: npt.NDArray[np.int64], days: int
                 ) -> CasualLows:
    rate = np.array([p.hypo_rate for p in PERSONAS])[persona]
    counts = rng.binomial(days, rate)
    policy = np.repeat(np.arange(len(persona)), counts)
    return CasualLows(policy, rng.integers(0, days, len(policy)),
                      rng.uniform(600, 1380, len(policy)),
                      rng.uniform(2.4, 3.8, len(policy)).round(1))


def _readings(rng: np.random.Generator, policies: pd.DataFrame, devices: np.ndarray,  # type: ignore[type-arg]
              persona: np.ndarray, day_sd: np.ndarray, days: int,  # type: ignore[type-arg]
              start: pd.Timestamp, lows: CasualLows) -> pd.DataFrame:
    n = len(policies)
    measured = rng.random((n, days)) < policies["adherence"].to_numpy()[:, None]
    p_idx, d_idx = np.nonzero(measured)
    fasting = policies["mean_fasting"].to_numpy()[p_idx] + rng.normal(0, 1, len(p_idx)) * \
        day_sd[p_idx]
    extra = rng.random(len(p_idx)) < POST_MEAL_SHARE
    q_idx, e_day = p_idx[extra], d_idx[extra]
    post = fasting[extra] + rng.normal(POST_MEAL_RISE, 1.0, extra.sum())
    pol = np.concatenate([p_idx, q_idx, lows.policy])
    day = np.concatenate([d_idx, e_day, lows.day])
    minutes = np.concatenate([420 + rng.normal(0, 35, len(p_idx)),
                              570 + rng.normal(0, 40, len(q_idx)), lows.minute]).clip(0, 1439)
    value = np.concatenate([fasting, post, lows.value]).clip(1.2, 33.0).round(1)
    meal = np.concatenate([np.zeros(len(p_idx), np.int8), np.ones(len(q_idx), np.int8),
                           np.full(len(lows.policy), 2, np.int8)])
    # Gaming: control solution and manual entries replace a high morning; clock tampering
    # raises the meter's time_fault.
    names = [p.name for p in PERSONAS]
    gamer = persona[pol]
    sample = np.zeros(len(pol), np.int8)
    source = np.zeros(len(pol), np.int8)
    status = np.zeros(len(pol), np.int64)
    morning = meal == 0
    roll = rng.random(len(pol))
    cs = morning & (gamer == names.index("gamer_control_solution")) & (roll < 0.7)
    sample[cs], value[cs] = 1, 5.9
    manual = morning & (gamer == names.index("gamer_manual")) & (roll < 0.8)
    source[manual], value[manual] = 1, 5.8
    clock = morning & (gamer == names.index("gamer_clock")) & (roll < 0.4)
    status[clock] = 1 << Status.time_fault.value
    status[rng.random(len(pol)) < 0.02] |= 1 << Status.strip_insertion_error.value

    local = (start.to_datetime64().astype("datetime64[m]").astype(np.int64)
             + day * 1440 + minutes.astype(np.int64))
    measured_ns = np.empty(len(pol), np.int64)
    zone_of = pd.Index(ZONES).get_indexer(pd.Index(policies["timezone"]))[pol]
    for z, zone in enumerate(ZONES):
        mask = zone_of == z
        naive = pd.DatetimeIndex(local[mask].astype("datetime64[m]").astype("datetime64[ns]"))
        measured_ns[mask] = naive.tz_localize(zone, nonexistent="shift_forward",
                                              ambiguous=False).tz_convert("UTC").asi8
    delay_s = np.where(rng.random(len(pol)) < 0.03, rng.uniform(86400, 10 * 86400, len(pol)),
                       rng.uniform(1, 120, len(pol)))
    order = np.lexsort((measured_ns, pol))
    pol, measured_ns = pol[order], measured_ns[order]
    value, meal, sample, source, status, delay_s = (value[order], meal[order], sample[order],
                                                    source[order], status[order],
                                                    delay_s[order])
    # seq: each meter counts its records from a random start, wrapping at SEQ_MODULO.
    counts = np.bincount(pol, minlength=n)
    first = np.cumsum(counts) - counts
    seq = (np.arange(len(pol)) - first[pol] + rng.integers(0, SEQ_MODULO, n)[pol]) % SEQ_MODULO
    device_cat = pd.Categorical.from_codes(pol,  # type: ignore[call-overload]
                                            categories=pd.Index(devices))
    return pd.DataFrame({
        "device_id": device_cat, "seq": seq.astype(np.int32),
        "measured_at": pd.DatetimeIndex(measured_ns, tz="UTC"),
        "received_at": pd.DatetimeIndex(measured_ns + (delay_s * 1e3).astype(np.int64) * 10**6,
                                        tz="UTC"),  # gateways stamp milliseconds
        "value_mmol": value,
        "meal": pd.Categorical.from_codes(meal,  # type: ignore[call-overload]
                                          categories=["fasting", "postprandial", "casual"]),
        "sample": pd.Categorical.from_codes(sample,  # type: ignore[call-overload]
                                            categories=["capillary_plasma", "control_solution"]),
        "source": pd.Categorical.from_codes(source,  # type: ignore[call-overload]
                                            categories=["meter", "manual"]),
        "status": status.astype(np.int32),
    })


def age_band(birth_year: Any, year: int) -> npt.NDArray[np.str_]:
    """<50, 50-64 or 65+ by age in `year` (the bands of AGE_BAND_RATE_RATIO)."""
    age = year - np.asarray(birth_year, dtype=np.int64)
    out: npt.NDArray[np.str_] = np.where(age < 50, "<50", np.where(age < 65, "50-64", "65+"))
    return out


def annual_claim_rate(a1c: Any, band: Any) -> npt.NDArray[np.float64]:
    """Claims a year: base rate x 1.59^(HbA1c - 7) x the age band's rate ratio."""
    ratio = pd.Series(np.asarray(band)).map(AGE_BAND_RATE_RATIO).to_numpy(dtype=np.float64)
    rate: npt.NDArray[np.float64] = (BASE_ANNUAL_CLAIM_RATE
                                     * HAZARD_RATIO_PER_A1C ** (np.asarray(a1c) - 7.0) * ratio)
    return rate


def _claims(rng: np.random.Generator, policies: pd.DataFrame, days: int) -> pd.DataFrame:
    exposure = np.full(len(policies), days / 365.25)
    rate = annual_claim_rate(policies["true_a1c"].to_numpy(), policies["age_band"])
    return pd.DataFrame({"policy_id": policies["policy_id"],
                         "claims": rng.poisson(rate * exposure), "exposure_years": exposure})
