"""The pricing evaluator: readings + policies + ruleset -> the sum insured ledger. Pure.

These are the rules of a `bgm` ruleset (fingerstick meters); a `cgm` ruleset's day rules are in
pricing/cgm_rules.py, which shares rules 1, 4 and 5 from here (it imports this module, never
the reverse); pricing/products.py `evaluate` takes a ruleset of either kind.

One code path serves the nightly run (pricing/engine.py), `price evaluate` on CSV files, the
actuaries' back-tests and the tests. It is vectorised: no Python loop over readings or
policies; the only loop is over day columns, because the clamped bonus is a running state.

The rules, for each policy-day d (a calendar day in the policy's timezone) from start_date
through `through`:
1. A reading is valid when it comes from the meter bound to the policy at measured_at, is not an
   excluded sample or source, carries no excluded status bit, lies in the meter range in mmol/L,
   is at most `future_tolerance` ahead of and `late_tolerance` behind its receive time, and its
   day is not before start_date. Repeats of one (device_id, seq, measured_at) count once
   (the input frames guarantee this: see pricing/inputs.py).
2. The qualifying reading of d is the valid reading in a qualifying meal context with the
   earliest measured_at (ties: lowest seq).
3. Status and delta: none -> missed; target_low <= v <= target_high -> in_target;
   v > high_above -> high; otherwise out_of_target.
4. bonus += delta, clamped to [bonus_min, bonus_max] after each day.
5. On the last day of each block of block_days from start_date, fewer than min_measured_days
   qualifying days adds the (negative) penalty, clamped again.
6. One ledger row per policy-day: delta is the bonus change after clamping, weekly step included.
7. A day without the policyholder's live consent to pricing (privacy/consent.py; only when the
   caller passes the consented periods) is no_consent whatever its readings: no reading is
   chosen, its step is 0, a block holding such a day costs no adherence penalty, and the bonus
   is kept as it stood (`consent.withdrawn_bonus = "keep"`) or returns to 0, the sum insured
   to its base (`"base"`: that day's delta is the return, later ones 0).
8. A reviewer's correction of a day (privacy/reviews.py; only when the caller passes them) adds
   its adjustment to that day's step; the bonus is clamped as ever.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from kernel import days
from pricing.ruleset import Ruleset

# Policies priced together wherever a portfolio is priced piece by piece (the nightly run,
# back-tests, CGM day grids, the pricing bench): bounds memory by the chunk, whatever the
# portfolio's size, at no cost in policy-days/s (`glucover bench pricing`).
CHUNK_POLICIES = 10_000
DAY_STATUSES = ("missed", "in_target", "high", "out_of_target", "insufficient", "hypo_risk",
                "no_consent")
MISSED, IN_TARGET, HIGH, OUT_OF_TARGET, INSUFFICIENT, HYPO_RISK, NO_CONSENT = range(7)
# A day that does not count towards weekly adherence: no qualifying reading, or (CGM) too little
# of the day covered by the sensor; or a day not priced for want of consent (rule 7).
UNMEASURED = ("missed", "insufficient", "no_consent")
EXCLUSION_REASONS = (
    "ok", "not_bound_device", "excluded_sample", "excluded_source", "error_status",
    "outside_meter_range", "future_clock", "too_late", "before_start",
)

# Input frame contracts (built by pricing/inputs.py from CSV or from the database):
#   policies: policy_id (str), start_date (datetime64, midnight), base_sum_insured (float),
#             timezone (str)
#   bindings: policy_id, device_id, bound_from, bound_to (UTC datetimes; NaT = open)
#   readings: device_id, seq (int), measured_at, received_at (UTC datetime64[ns]),
#             value_mmol (float), meal, sample, source (str or category), status (int bits)


@dataclass(frozen=True)
class DayFigures:
    """A CGM day's figures, in percent, as (policies x days) grids or ledger columns; NaN
    where the day has no reading."""

    coverage: npt.NDArray[np.floating[Any]]  # float32: the ledger stores them as real
    time_in_range: npt.NDArray[np.floating[Any]]
    below: npt.NDArray[np.floating[Any]]
    very_high: npt.NDArray[np.floating[Any]]

    def pick(self, where: npt.NDArray[np.bool_]) -> DayFigures:
        return DayFigures(self.coverage[where], self.time_in_range[where], self.below[where],
                          self.very_high[where])


FIGURE_COLUMNS = ("coverage", "time_in_range", "below", "very_high")


@dataclass(frozen=True)
class Ledger:
    """The evaluator's result, column-wise: row i is policy `policy[i]`'s day `day[i]`."""

    policy_id: pd.Categorical  # type: ignore[type-arg]
    day: npt.NDArray[np.datetime64]
    day_status: npt.NDArray[np.int8]
    reading_seq: npt.NDArray[np.int32]  # -1 when missed
    delta: npt.NDArray[np.float64]
    bonus: npt.NDArray[np.float64]
    sum_insured: npt.NDArray[np.float64]
    figures: DayFigures | None = None  # CGM rulesets

    def __len__(self) -> int:
        return len(self.day)

    def to_frame(self) -> pd.DataFrame:
        seq = pd.array(self.reading_seq, dtype="Int32")
        seq[self.reading_seq < 0] = pd.NA
        return pd.DataFrame({
            "policy_id": self.policy_id,
            "day": self.day,
            "day_status": pd.Categorical.from_codes(self.day_status,  # type: ignore[call-overload]
                                                    categories=list(DAY_STATUSES)),
            "reading_seq": seq,
            "delta": self.delta,
            "bonus": self.bonus,
            "sum_insured": self.sum_insured,
            **({} if self.figures is None else {
                name: getattr(self.figures, name) for name in FIGURE_COLUMNS}),
        })


def concat_ledgers(parts: list[Ledger]) -> Ledger:
    """Ledgers of disjoint sets of policies as one (policies in the parts' order). `parts` is
    emptied as it goes, field by field, so the copy never holds two whole ledgers at once."""
    if len(parts) == 1:
        return parts.pop()
    columns: dict[str, Any] = {}
    figure_columns: dict[str, Any] = {}
    with_figures = all(p.figures is not None for p in parts)
    names = ("day", "day_status", "reading_seq", "delta", "bonus", "sum_insured")
    columns["policy_id"] = pd.api.types.union_categoricals([p.policy_id for p in parts])
    for name in names + (FIGURE_COLUMNS if with_figures else ()):
        pieces = []
        for i, p in enumerate(parts):
            source = p.figures if name in FIGURE_COLUMNS else p
            pieces.append(getattr(source, name))
            parts[i] = _without(p, name)
        (figure_columns if name in FIGURE_COLUMNS else columns)[name] = np.concatenate(pieces)
        del pieces
    parts.clear()
    return Ledger(**columns, figures=DayFigures(**figure_columns) if with_figures else None)


def _without(ledger: Ledger, name: str) -> Ledger:
    """The ledger with one column dropped (an empty array in its place)."""
    empty = np.empty(0)
    if name in FIGURE_COLUMNS:
        assert ledger.figures is not None
        return replace(ledger, figures=replace(ledger.figures, **{name: empty}))
    return replace(ledger, **{name: empty})  # type: ignore[arg-type]


def exclusion_codes(readings: pd.DataFrame, ruleset: Ruleset,
                    measured: npt.NDArray[np.int64] | None = None) -> npt.NDArray[np.int8]:
    """The first policy-independent rule each reading fails (index into EXCLUSION_REASONS).
    `measured`: measured_at in UTC nanoseconds, when the caller has it already."""
    n = len(readings)
    code = np.zeros(n, dtype=np.int8)

    def mark(mask: npt.NDArray[np.bool_], reason: str) -> None:
        code[(code == 0) & mask] = EXCLUSION_REASONS.index(reason)

    mark(np.asarray(readings["sample"].isin(ruleset.excluded_samples)), "excluded_sample")
    mark(~np.asarray(readings["source"].isin(ruleset.allowed_sources)), "excluded_source")
    status = readings["status"].to_numpy(dtype=np.int64)
    mark((status & ruleset.excluded_status_mask) != 0, "error_status")
    mmol = readings["value_mmol"].to_numpy(dtype=np.float64)
    mark(~((mmol >= ruleset.min_mmol) & (mmol <= ruleset.max_mmol)), "outside_meter_range")
    measured = _ns(readings["measured_at"]) if measured is None else measured
    received = _ns(readings["received_at"])
    mark(measured - received > ruleset.future_tolerance_seconds * 10**9, "future_clock")
    mark(received - measured > ruleset.late_tolerance_seconds * 10**9, "too_late")
    return code


def _ns(series: pd.Series) -> npt.NDArray[np.int64]:  # type: ignore[type-arg]
    """UTC nanoseconds of a datetime column (tz-aware or naive UTC)."""
    values = series.dt.tz_convert("UTC").dt.tz_localize(None) if getattr(
        series.dt, "tz", None) is not None else series
    return values.to_numpy(dtype="datetime64[ns]").astype(np.int64)


@dataclass(frozen=True)
class AssignedReadings:
    """Readings that passed every rule, placed at their policy (index) and day offset."""

    row: npt.NDArray[np.int64]  # index into the readings frame
    policy: npt.NDArray[np.int64]
    day_offset: npt.NDArray[np.int64]
    measured_ns: npt.NDArray[np.int64]  # measured_at of each, UTC nanoseconds


def assign_readings(policies: pd.DataFrame, bindings: pd.DataFrame, readings: pd.DataFrame,
                    ruleset: Ruleset, n_days: npt.NDArray[np.int64]
                    ) -> tuple[AssignedReadings, npt.NDArray[np.int8]]:
    """Rule 1: which reading counts for which policy-day. Returns the valid readings and each
    reading's exclusion code (before_start / not_bound_device included)."""
    measured = _ns(readings["measured_at"])
    code = exclusion_codes(readings, ruleset, measured)
    policy_index = pd.Index(policies["policy_id"])
    b_policy = policy_index.get_indexer(pd.Index(bindings["policy_id"]))
    row, binding = bound_readings(bindings, readings, measured)
    policy = b_policy[binding]
    keep = policy >= 0
    row, policy = row[keep], policy[keep]
    bound_rows = np.zeros(len(readings), dtype=bool)
    bound_rows[row] = True
    code[(code == 0) & ~bound_rows] = EXCLUSION_REASONS.index("not_bound_device")

    zone_code, zones = pd.factorize(policies["timezone"].astype(str))
    local_day = days.day_numbers_by_zone(measured[row], zone_code.astype(np.int64)[policy],
                                         pd.Index(zones))
    start_day = start_day_numbers(policies)[policy]
    offset = local_day - start_day
    before = offset < 0
    code[row[before & (code[row] == 0)]] = EXCLUSION_REASONS.index("before_start")
    ok = (code[row] == 0) & (offset >= 0) & (offset < n_days[policy])
    return AssignedReadings(row[ok], policy[ok], offset[ok], measured[row[ok]]), code


def bound_readings(bindings: pd.DataFrame, readings: pd.DataFrame,
                   measured: npt.NDArray[np.int64] | None = None
                   ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Rule 1's binding: each reading with every binding of its meter in force when it was
    measured (bound_from <= measured_at < bound_to; no bound_to: still bound), as (reading
    row, binding row) pairs. `measured`: the readings' UTC nanoseconds, when known."""
    if measured is None:
        measured = _ns(readings["measured_at"])
    devices = pd.Index(pd.unique(bindings["device_id"].astype(str)))
    r_device = positions(readings["device_id"], devices)
    b_device = positions(bindings["device_id"], devices)
    lo = _bound_ns(bindings["bound_from"], np.iinfo(np.int64).min)
    hi = _bound_ns(bindings["bound_to"], np.iinfo(np.int64).max)
    # Readings x bindings of their device. The common case, one binding per device, is a
    # direct lookup; several bindings per device go through a sorted expansion.
    if len(b_device) == len(devices):
        binding_of = np.empty(len(devices), dtype=np.int64)
        binding_of[b_device] = np.arange(len(b_device))
        row = np.flatnonzero(r_device >= 0)
        binding = binding_of[r_device[row]]
    else:
        row, binding = _expand(r_device, b_device, len(devices))
    bound = (measured[row] >= lo[binding]) & (measured[row] < hi[binding])
    return row[bound], binding[bound]


def _expand(r_device: npt.NDArray[np.int64], b_device: npt.NDArray[np.int64], n_devices: int
            ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Every (reading row, binding) pair of the same device."""
    order = np.argsort(b_device, kind="stable")
    starts = np.searchsorted(b_device[order], np.arange(n_devices), side="left")
    ends = np.searchsorted(b_device[order], np.arange(n_devices), side="right")
    known = r_device >= 0
    safe = np.maximum(r_device, 0)
    counts = np.where(known, ends[safe] - starts[safe], 0)
    row = np.repeat(np.arange(len(r_device)), counts)
    first = np.repeat(np.where(known, starts[safe], 0), counts)
    within = np.arange(len(row)) - np.repeat(np.cumsum(counts) - counts, counts)
    binding: npt.NDArray[np.int64] = order[first + within]
    return row, binding


def positions(values: pd.Series, index: pd.Index) -> npt.NDArray[np.int64]:  # type: ignore[type-arg]
    """Position of each value in `index` (-1 when absent); categoricals by their codes, so
    millions of readings never become Python strings."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        per_category = index.get_indexer(pd.Index(values.cat.categories.astype(str)))
        codes = values.cat.codes.to_numpy()
        out: npt.NDArray[np.int64] = np.where(codes >= 0, per_category[codes], -1).astype(
            np.int64)
        return out
    return index.get_indexer(pd.Index(values.astype(str))).astype(np.int64)


def _bound_ns(series: pd.Series, default: int) -> npt.NDArray[np.int64]:  # type: ignore[type-arg]
    values = pd.to_datetime(series, utc=True)
    ns = values.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").astype(np.int64)
    return np.where(values.isna().to_numpy(), default, ns)


def start_day_numbers(policies: pd.DataFrame) -> npt.NDArray[np.int64]:
    """Each policy's start date as a day number (kernel/days.py)."""
    return days.date_numbers(policies["start_date"])


def policy_day_counts(policies: pd.DataFrame, through: date | str | np.datetime64
                      ) -> npt.NDArray[np.int64]:
    counts: npt.NDArray[np.int64] = np.maximum(
        days.day_number(through) - start_day_numbers(policies) + 1, 0)
    return counts


@dataclass(frozen=True)
class Resume:
    """Where to pick policies up (aligned with `policies`): the first day to compute, as an
    offset from start_date, with the bonus before it and the measured days of its block before
    it. A policy resumed at offset 0 with (0, 0) is evaluated from scratch."""

    offset: npt.NDArray[np.int64]
    bonus: npt.NDArray[np.float64]
    measured_in_block: npt.NDArray[np.int64]


def validity_key(ruleset: Ruleset) -> tuple[object, ...]:
    """Two rulesets with the same key accept the same readings (rule 1)."""
    return (ruleset.excluded_samples, ruleset.allowed_sources, ruleset.excluded_status_mask,
            ruleset.min_mgdl, ruleset.max_mgdl, ruleset.future_tolerance_seconds,
            ruleset.late_tolerance_seconds)


def evaluate(policies: pd.DataFrame, bindings: pd.DataFrame, readings: pd.DataFrame,
             ruleset: Ruleset, through: date | str | np.datetime64,
             resume: Resume | None = None, assigned: AssignedReadings | None = None,
             consent: pd.DataFrame | None = None,
             adjustments: pd.DataFrame | None = None) -> Ledger:
    """Rules 1-7 for every policy from its start_date (or its `resume` day) through `through`,
    inclusive. Readings before a resume day may be left out of `readings`. `assigned` (from
    assign_readings with a ruleset of the same validity_key) saves redoing rule 1. `consent`:
    the consented periods to pricing (privacy.consent.periods); None: every day consented.
    `adjustments`: reviewers' corrections (policy_id, day, amount; rule 8)."""
    if ruleset.kind != "bgm":
        raise ValueError(f"ruleset {ruleset.name} is of kind {ruleset.kind}: price it with "
                         "pricing.products.evaluate")
    n_policies = len(policies)
    n_days = policy_day_counts(policies, through)
    width = int(n_days.max()) if n_policies else 0
    if resume is None:
        resume = Resume(np.zeros(n_policies, np.int64), np.zeros(n_policies),
                        np.zeros(n_policies, np.int64))
    if assigned is None:
        assigned, _ = assign_readings(policies, bindings, readings, ruleset, n_days)
    values, seq_grid = _qualifying_readings(readings, assigned, ruleset, n_policies, width)
    status, step = _day_statuses(values, ruleset)
    step = step + adjustment_grid(policies, adjustments, width)
    paused = paused_days(policies, consent, width)
    if paused is not None:
        status[paused] = NO_CONSENT
        seq_grid[paused] = -1
    bonus, delta = running_bonus(step, status != MISSED, ruleset, resume, paused)
    return build_ledger(policies, n_days, resume, status, seq_grid, bonus, delta)


def adjustment_grid(policies: pd.DataFrame, adjustments: pd.DataFrame | None, width: int
                    ) -> npt.NDArray[np.float64]:
    """Rule 8: the (policies x days) grid of reviewers' adjustments to each day's step (0
    where none). `adjustments`: policy_id, day, amount."""
    grid = np.zeros((len(policies), width))
    if adjustments is None or adjustments.empty:
        return grid
    row = pd.Index(policies["policy_id"].astype(str)).get_indexer(
        pd.Index(adjustments["policy_id"].astype(str)))
    offset = days.date_numbers(adjustments["day"]) - start_day_numbers(policies)[row]
    keep = (row >= 0) & (offset >= 0) & (offset < width)
    np.add.at(grid, (row[keep], offset[keep]),
              adjustments["amount"].to_numpy(dtype=np.float64)[keep])
    return grid


def paused_days(policies: pd.DataFrame, consent: pd.DataFrame | None, width: int
                ) -> npt.NDArray[np.bool_] | None:
    """Rule 7: the (policies x days) grid of days no consented period covers; None when
    `consent` is None. `consent`: policy_id, from_day, to_day (NaT: open)."""
    if consent is None:
        return None
    start = start_day_numbers(policies)
    covered = np.zeros((len(policies), width + 1), dtype=np.int32)
    row = pd.Index(policies["policy_id"].astype(str)).get_indexer(
        pd.Index(consent["policy_id"].astype(str)))
    keep = row >= 0
    first = days.date_numbers(consent["from_day"])[keep] - start[row[keep]]
    to = consent["to_day"][keep]
    last = np.where(to.isna().to_numpy(), width,
                    days.date_numbers(to.fillna(pd.Timestamp(0))) - start[row[keep]])
    first, last = np.clip(first, 0, width), np.clip(last, 0, width)
    ok = first < last
    np.add.at(covered, (row[keep][ok], first[ok]), 1)
    np.add.at(covered, (row[keep][ok], last[ok]), -1)
    paused: npt.NDArray[np.bool_] = np.cumsum(covered, axis=1)[:, :width] <= 0
    return paused


def _qualifying_readings(readings: pd.DataFrame, assigned: AssignedReadings, ruleset: Ruleset,
                         n_policies: int, width: int
                         ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int32]]:
    """Rule 2: the value and seq of each policy-day's qualifying reading (NaN and -1 when
    none), as (policies x days) grids. The earliest qualifying reading, found without sorting:
    a scatter-min on measured_at, then on seq among the readings that tie on it."""
    meal_ok = np.asarray(readings["meal"].isin(ruleset.qualifying_meals))[assigned.row]
    rows = assigned.row[meal_ok]
    cell = assigned.policy[meal_ok] * width + assigned.day_offset[meal_ok]
    measured = assigned.measured_ns[meal_ok]
    seqs = readings["seq"].to_numpy(dtype=np.int64)[rows]
    first_time = np.full(n_policies * width, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_time, cell, measured)
    earliest = measured == first_time[cell]
    rows, cell, seqs = rows[earliest], cell[earliest], seqs[earliest]
    first_seq = np.full(n_policies * width, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_seq, cell, seqs)
    chosen = seqs == first_seq[cell]
    rows, cell = rows[chosen], cell[chosen]

    value = np.full(n_policies * width, np.nan)
    value[cell] = readings["value_mmol"].to_numpy(dtype=np.float64)[rows]
    seq_of_day = np.full(n_policies * width, -1, dtype=np.int32)
    seq_of_day[cell] = readings["seq"].to_numpy(dtype=np.int32)[rows]
    return value.reshape(n_policies, width), seq_of_day.reshape(n_policies, width)


def _day_statuses(values: npt.NDArray[np.float64], ruleset: Ruleset
                  ) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float64]]:
    """Rule 3: each policy-day's status and the step it adds to the bonus."""
    status = np.full(values.shape, OUT_OF_TARGET, dtype=np.int8)
    status[np.isnan(values)] = MISSED
    with np.errstate(invalid="ignore"):
        status[(values >= ruleset.target_low) & (values <= ruleset.target_high)] = IN_TARGET
        status[values > ruleset.high_above] = HIGH
    step = np.array([ruleset.delta_missed, ruleset.delta_in_target, ruleset.delta_high,
                     ruleset.delta_out_of_target])[status]
    return status, step


def running_bonus(step: npt.NDArray[np.float64], measured_day: npt.NDArray[np.bool_],
                   ruleset: Ruleset, resume: Resume,
                   paused: npt.NDArray[np.bool_] | None = None
                   ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Rules 4-5 and 7: the running, clamped bonus with the weekly adherence penalty, all
    policies at once, one day column at a time; and each day's change (rule 6's delta).
    `paused`: the days without consent to pricing (rule 7)."""
    n_policies, width = step.shape
    if paused is not None:
        step = np.where(paused, 0.0, step)
        measured_day = measured_day & ~paused
        to_base = ruleset.withdrawn_bonus == "base"
    bonus = np.empty((n_policies, width))
    running = np.zeros(n_policies)
    block = ruleset.block_days
    measured_in_block = np.zeros(n_policies, dtype=np.int64)
    resumes_at = {int(t): np.flatnonzero(resume.offset == t) for t in np.unique(resume.offset)}
    for t in range(width):
        if t in resumes_at:
            who = resumes_at[t]
            running[who] = resume.bonus[who]
            measured_in_block[who] = resume.measured_in_block[who]
        running = np.clip(running + step[:, t], ruleset.bonus_min, ruleset.bonus_max)
        if paused is not None and to_base:
            running[paused[:, t]] = 0.0
        measured_in_block += measured_day[:, t]
        if (t + 1) % block == 0:
            short = measured_in_block < ruleset.min_measured_days
            if paused is not None:
                short &= ~paused[:, t + 1 - block:t + 1].any(axis=1)
            running = np.where(short, np.clip(running + ruleset.adherence_penalty,
                                              ruleset.bonus_min, ruleset.bonus_max), running)
            measured_in_block[:] = 0
        bonus[:, t] = running
    delta = np.diff(bonus, axis=1, prepend=0.0)
    at_resume = resume.offset < width
    rows_at = np.flatnonzero(at_resume)
    delta[rows_at, resume.offset[rows_at]] = (bonus[rows_at, resume.offset[rows_at]]
                                              - resume.bonus[rows_at])
    return bonus, delta


def build_ledger(policies: pd.DataFrame, n_days: npt.NDArray[np.int64], resume: Resume,
            status: npt.NDArray[np.int8], seq_grid: npt.NDArray[np.int32],
            bonus: npt.NDArray[np.float64], delta: npt.NDArray[np.float64],
            figures: DayFigures | None = None) -> Ledger:
    """Rule 6: one row per live policy-day (each policy's columns from its resume day to its
    last day)."""
    n_policies, width = status.shape
    columns = np.arange(width)[None, :]
    live = (columns < n_days[:, None]) & (columns >= resume.offset[:, None])
    policy_of_cell = np.broadcast_to(np.arange(n_policies)[:, None], live.shape)[live]
    start = start_day_numbers(policies)
    day = (start[policy_of_cell] + np.broadcast_to(np.arange(width)[None, :], live.shape)[live]
           ).astype("datetime64[D]")
    base = policies["base_sum_insured"].to_numpy(dtype=np.float64)
    bonus_flat = bonus[live]
    return Ledger(
        policy_id=pd.Categorical.from_codes(  # type: ignore[arg-type]
            policy_of_cell, categories=pd.Index(policies["policy_id"].astype(str))),
        day=day,
        day_status=status[live],
        reading_seq=seq_grid[live],
        delta=delta[live],
        bonus=bonus_flat,
        sum_insured=base[policy_of_cell] + bonus_flat,
        figures=None if figures is None else figures.pick(live),
    )
