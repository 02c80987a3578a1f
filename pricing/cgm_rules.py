"""The CGM rules (a ruleset of kind `cgm`, `cgm-default.toml`): a policy-day priced on a day of
continuous glucose monitoring. Pure and vectorised like pricing/evaluator.py, whose rules 1, 4
and 5 (validity, the clamped bonus, weekly adherence) it shares.

For each policy-day d (a calendar day in the policy's timezone) from start_date through
`through`, with the parameters of the ruleset (defaults of cgm-default in brackets):
1. Valid readings are those of evaluator rule 1 under the ruleset's validity (cgm-default:
   interstitial fluid only, sent by the device, no error status, 40-400 mg/dL, at most 5 minutes
   ahead of and 7 days behind its receive time, not before start_date). Repeats of one
   (device_id, seq, measured_at) count once. A value in mg/dL is as sent, or mmol/L x 18.0156.
2. The day's slots are consecutive `slot_minutes` [5] intervals of absolute time from the
   instant of local midnight to the next local midnight: S = 288, or 276 / 300 on a day the
   clocks change. A slot is covered when a valid reading's measured_at lies in
   [slot start, slot end). C = covered slots; n = valid readings of the day; r_in, r_low, r_vh =
   valid readings with range_low [70] <= mg/dL <= range_high [180], mg/dL < hypo_below [54],
   mg/dL > very_high_above [250].
3. Status and step, the first that holds, compared exactly (integers times percentages):
   100 x C < min_coverage [70] x S -> insufficient, deltas.missed [0];
   100 x r_low >= hypo_max [1] x n -> hypo_risk, deltas.hypo_risk [0] (a day with clinically
   significant hypoglycaemia is never rewarded);
   100 x r_in >= in_range_min [70] x n -> in_target, deltas.in_target [+100];
   100 x r_vh >= very_high_min [25] x n -> high, deltas.high [-100];
   otherwise out_of_target, deltas.out_of_target [0].
4. bonus += step, clamped to [bonus.min, bonus.max] after each day (evaluator rule 4).
5. Weekly adherence (evaluator rule 5): on a block's last day, fewer than min_measured_days [5]
   days whose status is not `insufficient` adds the penalty [-200], clamped again.
6. One ledger row per policy-day, reading_seq empty, with the day's figures: coverage = 100 x
   C / S, time in range = 100 x r_in / n, below = 100 x r_low / n, very high = 100 x r_vh / n.

Two stages, so that pricing need not reload raw readings: `day_summaries` turns readings into
one row per policy-day holding a valid reading (C, n, r_in, r_low, r_vh: what the database keeps
as readings arrive), and `evaluate_days` prices from those rows. `evaluate` is both.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import numpy.typing as npt
import pandas as pd

from kernel import days
from kernel.units import MGDL_PER_MMOL
from pricing import evaluator as ev
from pricing.ruleset import Ruleset

SUMMARY_COLUMNS = ("policy_id", "day", "covered", "readings", "in_range", "low", "very_high")
NS_PER_MINUTE = 60 * 10**9
MAX_SLOTS = 25 * 60  # one-minute slots of the longest day (clocks put back an hour)
# value_mmol x 18.0156 carries the float error of the division (mg/dL -> mmol/L at ingest) and
# of the multiplication: rounding to 9 decimals gives back a value sent in mg/dL exactly and
# leaves a value sent in mmol/L (x 18.0156, at most 5 decimals) as it is.
MGDL_DECIMALS = 9


def value_mgdl(readings: pd.DataFrame) -> npt.NDArray[np.float64]:
    """Each reading's value in mg/dL (rule 1)."""
    if "value_mgdl" in readings:
        return readings["value_mgdl"].to_numpy(dtype=np.float64)
    mgdl: npt.NDArray[np.float64] = np.round(
        readings["value_mmol"].to_numpy(dtype=np.float64) * MGDL_PER_MMOL, MGDL_DECIMALS)
    return mgdl


class _Calendar:
    """Local midnights of the policies' days: which day number starts where, per zone."""

    def __init__(self, policies: pd.DataFrame, width: int) -> None:
        zone_code, zones = pd.factorize(policies["timezone"].astype(str))
        self.zone = zone_code.astype(np.int64)
        self.start = ev.start_day_numbers(policies)
        self.first = int(self.start.min()) if len(self.start) else 0
        span = int(self.start.max()) - self.first + width if len(self.start) else 0
        self.midnight = days.midnights(pd.Index(zones), self.first, max(span, 0))

    def at(self, policy: npt.NDArray[np.int64], offset: npt.NDArray[np.int64]
           ) -> npt.NDArray[np.int64]:
        """UTC nanoseconds of the local midnight starting day `offset` of each policy."""
        found: npt.NDArray[np.int64] = self.midnight[
            self.zone[policy], self.start[policy] + offset - self.first]
        return found

    def slots(self, width: int, slot_minutes: int) -> npt.NDArray[np.int16]:
        """S of every policy-day (policies x width): rule 2. From a (zone x day) table, so no
        policy-sized intermediate is made."""
        step = slot_minutes * NS_PER_MINUTE
        per_zone_day = (-(-np.diff(self.midnight, axis=1) // step)).astype(np.int16)
        columns = (self.start - self.first)[:, None] + np.arange(width)[None, :]
        slots: npt.NDArray[np.int16] = per_zone_day[self.zone[:, None], columns]
        return slots


def day_summaries(policies: pd.DataFrame, bindings: pd.DataFrame, readings: pd.DataFrame,
                  ruleset: Ruleset, through: date | str | np.datetime64) -> pd.DataFrame:
    """Rules 1-2: one row per policy-day with a valid reading, with SUMMARY_COLUMNS."""
    n_days = ev.policy_day_counts(policies, through)
    width = int(n_days.max()) if len(policies) else 0
    assigned, _ = ev.assign_readings(policies, bindings, readings, ruleset, n_days)
    calendar = _Calendar(policies, width)
    step = ruleset.slot_minutes * NS_PER_MINUTE
    slot = (assigned.measured_ns - calendar.at(assigned.policy, assigned.day_offset)) // step
    cell = assigned.policy * width + assigned.day_offset
    mgdl = value_mgdl(readings)[assigned.row]
    size = len(policies) * width
    counts = {
        "readings": np.bincount(cell, minlength=size),
        "in_range": np.bincount(cell, weights=(mgdl >= ruleset.range_low_mgdl)
                                & (mgdl <= ruleset.range_high_mgdl), minlength=size),
        "low": np.bincount(cell, weights=mgdl < ruleset.hypo_below_mgdl, minlength=size),
        "very_high": np.bincount(cell, weights=mgdl > ruleset.very_high_above_mgdl,
                                 minlength=size),
    }
    keys = np.sort(cell * MAX_SLOTS + slot)  # distinct (cell, slot) pairs: sorted, then runs
    distinct = keys[np.flatnonzero(np.diff(keys, prepend=-1))]
    covered = np.bincount(distinct // MAX_SLOTS, minlength=size)
    where = np.flatnonzero(counts["readings"])
    policy, offset = where // max(width, 1), where % max(width, 1)
    day = (calendar.start[policy] + offset).astype("datetime64[D]")
    return pd.DataFrame({
        "policy_id": policies["policy_id"].astype(str).to_numpy()[policy],
        "day": day, "covered": covered[where].astype(np.int32),
        **{k: v[where].astype(np.int32) for k, v in counts.items()}})




def evaluate_days(policies: pd.DataFrame, summaries: pd.DataFrame, ruleset: Ruleset,
                  through: date | str | np.datetime64, resume: ev.Resume | None = None,
                  consent: pd.DataFrame | None = None,
                  adjustments: pd.DataFrame | None = None) -> ev.Ledger:
    """Rules 3-8 from the policy-day summaries (rows of days without one: no readings), in
    chunks of ev.CHUNK_POLICIES policies (each policy's days depend only on its own rows).
    `consent`: the periods consented to pricing (pricing/evaluator.py rule 7)."""
    n_policies = len(policies)
    if resume is None:
        resume = ev.Resume(np.zeros(n_policies, np.int64), np.zeros(n_policies),
                           np.zeros(n_policies, np.int64))
    row_policy = ev.positions(summaries["policy_id"],
                               pd.Index(policies["policy_id"].astype(str)))
    parts = []
    for a in range(0, max(n_policies, 1), ev.CHUNK_POLICIES):
        b = min(a + ev.CHUNK_POLICIES, n_policies)
        rows = np.flatnonzero((row_policy >= a) & (row_policy < b))
        chunk = ev.Resume(resume.offset[a:b], resume.bonus[a:b], resume.measured_in_block[a:b])
        parts.append(_evaluate_chunk(policies.iloc[a:b], summaries.iloc[rows],
                                     row_policy[rows] - a, ruleset, through, chunk, consent,
                                     adjustments))
    return ev.concat_ledgers(parts)


def _evaluate_chunk(policies: pd.DataFrame, summaries: pd.DataFrame,
                    row_policy: npt.NDArray[np.int64], ruleset: Ruleset,
                    through: date | str | np.datetime64, resume: ev.Resume,
                    consent: pd.DataFrame | None = None,
                    adjustments: pd.DataFrame | None = None) -> ev.Ledger:
    n_days = ev.policy_day_counts(policies, through)
    width = int(n_days.max()) if len(policies) else 0
    grids = _grids(policies, summaries, row_policy, width)
    slots = _Calendar(policies, width).slots(width, ruleset.slot_minutes)
    status = _statuses(grids, slots, ruleset)
    step = np.array([ruleset.delta_missed, ruleset.delta_in_target, ruleset.delta_high,
                     ruleset.delta_out_of_target, ruleset.delta_missed,
                     ruleset.delta_hypo_risk])[status]
    step = step + ev.adjustment_grid(policies, adjustments, width)
    paused = ev.paused_days(policies, consent, width)
    if paused is not None:
        status[paused] = ev.NO_CONSENT
    bonus, delta = ev.running_bonus(step, status != ev.INSUFFICIENT, ruleset, resume, paused)
    n = grids["readings"]
    with np.errstate(invalid="ignore", divide="ignore"):
        figures = ev.DayFigures(*(
            (100.0 * part / whole).astype(np.float32) for part, whole in (
                (grids["covered"], slots), (grids["in_range"], n), (grids["low"], n),
                (grids["very_high"], n))))
    if paused is not None:  # a day not priced keeps no figures of its readings
        for grid in (figures.coverage, figures.time_in_range, figures.below,
                     figures.very_high):
            grid[paused] = np.nan
    seq = np.full(status.shape, -1, dtype=np.int32)
    return ev.build_ledger(policies, n_days, resume, status, seq, bonus, delta, figures)


def _grids(policies: pd.DataFrame, summaries: pd.DataFrame,
           row_policy: npt.NDArray[np.int64], width: int) -> dict[str, npt.NDArray[np.int32]]:
    """The summaries as (policies x width) count grids, zero where a day has no row."""
    start = ev.start_day_numbers(policies)
    day_nums = summaries["day"].to_numpy(dtype="datetime64[D]").astype(np.int64)
    offset = day_nums - start[np.maximum(row_policy, 0)]
    keep = (row_policy >= 0) & (offset >= 0) & (offset < width)
    cell = row_policy[keep] * width + offset[keep]
    grids = {}
    for column in ("covered", "readings", "in_range", "low", "very_high"):
        grid = np.zeros(len(policies) * width, dtype=np.int32)
        grid[cell] = summaries[column].to_numpy(dtype=np.int32)[keep]
        grids[column] = grid.reshape(len(policies), width)
    return grids


def _statuses(grids: dict[str, npt.NDArray[np.int32]], slots: npt.NDArray[np.int16],
              ruleset: Ruleset) -> npt.NDArray[np.int8]:
    """Rule 3, first match wins: assigned in reverse order so that earlier rules overwrite."""
    n = grids["readings"].astype(np.float64)
    status = np.full(n.shape, ev.OUT_OF_TARGET, dtype=np.int8)
    status[100.0 * grids["very_high"] >= ruleset.very_high_min_percent * n] = ev.HIGH
    status[100.0 * grids["in_range"] >= ruleset.in_range_min_percent * n] = ev.IN_TARGET
    status[100.0 * grids["low"] >= ruleset.hypo_max_percent * n] = ev.HYPO_RISK
    status[100.0 * grids["covered"] < ruleset.min_coverage_percent * slots] = ev.INSUFFICIENT
    return status


def evaluate(policies: pd.DataFrame, bindings: pd.DataFrame, readings: pd.DataFrame,
             ruleset: Ruleset, through: date | str | np.datetime64,
             resume: ev.Resume | None = None, consent: pd.DataFrame | None = None,
             adjustments: pd.DataFrame | None = None) -> ev.Ledger:
    """Rules 1-8 from raw readings."""
    summaries = day_summaries(policies, bindings, readings, ruleset, through)
    return evaluate_days(policies, summaries, ruleset, through, resume, consent, adjustments)
