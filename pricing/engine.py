"""`glucover price run`: the evaluator against the database, incremental and idempotent.

A run re-rates only what can have changed: for each policy, from the earliest local day of
readings ingested since the previous run (late readings re-open past days) or else from the day
after its ledger ends. It resumes from the ledger's own state on the day before (bonus, measured
days in the block), evaluates through `--through`, and appends rows only where the result
differs from the current ledger. Nothing changes on a second run; superseded rows stay.

Days without the policyholder's consent to pricing are priced as no_consent (rule 7 of
pricing/evaluator.py): a withdrawal re-opens the policy from its day, like a late reading.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import psycopg

from glucover.db import DateArray, TextArray
from pricing import cgm_days, cgm_rules, day_summaries, meter_days, store
from pricing.evaluator import CHUNK_POLICIES, DAY_STATUSES, FIGURE_COLUMNS, UNMEASURED, Resume
from pricing.products import evaluate
from pricing.ruleset import Ruleset
from privacy import consent, reviews

# A batch committed by ingest carries an ingested_at (its transaction start) before it is
# seen. A run's watermark is the start of the oldest transaction running when it looks
# (glucover/migrations/0031_pricing_watermark.sql), so the next run sees every reading not seen
# yet and none twice; where the database does not tell (its owner cannot read other sessions),
# the watermark is the run's start less this margin, as before.
WATERMARK_MARGIN = timedelta(minutes=5)
# Readings measured this long before a resume day may still fall on it in some timezone.
TZ_MARGIN = timedelta(days=1, hours=2)
# A chunk of a run holds at most this many policy-days (and so about that many days of
# readings in memory): a year of CHUNK_POLICIES policies on a first run, a whole portfolio of
# 100,000 when one new day comes (one pass of each statement instead of ten).
CHUNK_POLICY_DAYS = CHUNK_POLICIES * 366
# The run's statements are many, each over one chunk: compiling them (JIT) took from 0.1 s to
# 4 s and saved less; their sorts and hashes fit in RUN_WORK_MEM instead of spilling to disk;
# parallel workers cost more CPU than they save on a server doing other work (`glucover bench
# nightly`, docs/benchmarks.md).
RUN_SETTINGS = {"jit": "off", "work_mem": day_summaries.SUMMARY_WORK_MEM,
                "max_parallel_workers_per_gather": "0"}
# What a run spends its time on, each step timed apart (`glucover bench nightly`): what to
# re-rate and from where, the day summaries refreshed, the readings and summaries loaded, the
# evaluator, the comparison with the current ledger, the ledger rows written.
STEPS = ("plan", "summaries", "load", "evaluate", "compare", "write")
LEDGER_COLUMNS = ("day_status", "reading_seq", "delta", "bonus", "sum_insured",
                  "ruleset_version", *FIGURE_COLUMNS, "review_id")


class StepClock:
    """Seconds spent per step, summed over the chunks of a run."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(STEPS, 0.0)
        self._step = ""
        self._since = 0.0

    def __call__(self, step: str) -> StepClock:
        self._step = step
        return self

    def __enter__(self) -> None:
        self._since = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.seconds[self._step] += time.perf_counter() - self._since


@dataclass
class RunSummary:
    run_id: int
    through: date
    policies_evaluated: int
    policy_days: int
    rows_added: int
    seconds: float
    # Seconds per step (STEPS), summed over the run's chunks.
    steps: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["through"] = self.through.isoformat()
        return out

    def text(self) -> str:
        return (f"run {self.run_id} through {self.through}: {self.policies_evaluated} policies "
                f"re-rated ({self.policy_days:,} policy-days), {self.rows_added:,} ledger rows "
                f"added in {self.seconds:.2f}s")


def _first_days(conn: psycopg.Connection[Any], policies: pd.DataFrame,
                since: datetime | None, renewals: dict[str, dict[date, float]]
                ) -> dict[str, date]:
    """Per policy: the first day to compute. With no earlier run, every policy from its
    start; otherwise the day after its ledger ends (the opening row a renewal wrote is re-rated,
    policies/terms.py), or the earliest local day of readings ingested since `since` when that
    is earlier."""
    ids = TextArray(policies["policy_id"].tolist())
    starts = policies["start_date"].dt.date
    if since is None:
        return dict(zip(ids, starts, strict=True))
    # The last priced day of each policy: one descent of the ledger's key per policy (a max()
    # grouped over the ledger read every row of every policy's history, each run).
    last = {str(p): d for p, d in conn.execute(
        "select q.policy_id, (select max(l.day) from sum_insured_ledger l "
        "where l.policy_id = q.policy_id) from unnest(%s::text[]) q(policy_id)",
        (ids,)).fetchall() if d is not None}
    day_summaries.note_arrivals(conn, since)  # the policy-days of new readings, once a run
    # A consent given or withdrawn re-prices from the first day the ledger disagrees with it:
    # the ledgers of those few policies only (one statement over the ledger's every row of
    # the chunk's policies took a second and more a run with no consent changed).
    consent_changed = [str(p) for (p,) in conn.execute(
        "select distinct policy_id from consent_events where recorded_at >= %s "
        "and purpose = 'pricing' and policy_id = any(%s)", (since, ids)).fetchall()]
    changed: dict[str, date] = {}
    for pid, day in conn.execute(
        """select policy_id, min(day) from arrived where policy_id = any(%(ids)s)
           group by policy_id
           union all
           select l.policy_id, min(l.day) from current_ledger l
           where l.policy_id = any(%(consent)s)
                 and (l.day_status = 'no_consent')
                     = consent_live(l.policy_id, 'pricing', l.day)
           group by l.policy_id
           union all  -- a reviewer's correction re-prices from its day
           select policy_id, min(day) from decision_reviews
           where decided_at >= %(since)s and status = 'corrected'
                 and policy_id = any(%(ids)s)
           group by policy_id""", {"since": since, "ids": ids, "consent": consent_changed}
    ).fetchall():
        changed[str(pid)] = min(day, changed.get(str(pid), day))
    first = {}
    for pid, start in zip(ids, starts, strict=True):
        if pid in last:
            day = last[pid] if last[pid] in renewals.get(pid, {}) else last[pid] + timedelta(
                days=1)
        else:
            day = start
        if pid in changed:
            day = min(day, max(changed[pid], start))
        first[pid] = day
    return first


def _resume_points(policies: pd.DataFrame, first: dict[str, date], through: date,
                   ends: dict[str, date | None], renewals: dict[str, dict[date, float]],
                   done: dict[str, date], lapsed: dict[str, list[store.Lapse]] | None = None
                   ) -> pd.DataFrame:
    """Per policy: the first day to compute and the last (`until`) of this pass: `through`,
    or the end of its cover (`ends`: a lapse, an expiry, its last term), or the day before a
    renewed term starts: the evaluator carries the bonus from day to day, a renewal changes it
    (policies/terms.py), so a pass stops there and the next goes on from the opening bonus.
    Likewise a pass stops before a lapse that a reinstatement ended (`lapsed`), and the next
    goes on from the reinstatement with the bonus of the day before the lapse (`carry_day`):
    the lapsed days are never priced. `done`: the last day each policy's earlier passes
    computed."""
    lapsed = lapsed or {}
    ids = policies["policy_id"].tolist()
    resume, until, carry = [], [], []
    for pid in ids:
        day = first[pid] if pid not in done else max(first[pid], done[pid] + timedelta(days=1))
        carry_day = day - timedelta(days=1)
        for lapse_first, lapse_last in lapsed.get(pid, ()):
            if lapse_first <= day <= lapse_last:
                day, carry_day = lapse_last + timedelta(days=1), lapse_first - timedelta(days=1)
        last = min(through, ends.get(pid) or through)
        later = [s for s in renewals.get(pid, {}) if s > day] + [
            lapse_first for lapse_first, _ in lapsed.get(pid, ()) if lapse_first > day]
        if later:
            last = min(last, min(later) - timedelta(days=1))
        resume.append(day)
        until.append(last)
        carry.append(carry_day)
    frame = pd.DataFrame({"policy_id": pd.Series(ids, dtype=object), "resume_day": resume,
                          "start_date": policies["start_date"].dt.date.to_numpy(),
                          "until": until, "carry_day": carry})
    return frame[frame["resume_day"] <= frame["until"]].reset_index(drop=True)


def _chunks(points: pd.DataFrame) -> list[pd.DataFrame]:
    """`points` cut into runs of policies of at most CHUNK_POLICY_DAYS policy-days each (a
    policy longer than that alone)."""
    spans = np.array([(u - r).days + 1 for r, u in zip(points["resume_day"], points["until"],
                                                        strict=True)], dtype=np.int64)
    chunks, start, total = [], 0, 0
    for i, span in enumerate(spans):
        if i > start and total + span > CHUNK_POLICY_DAYS:
            chunks.append(points.iloc[start:i].reset_index(drop=True))
            start, total = i, 0
        total += int(span)
    if len(points):
        chunks.append(points.iloc[start:].reset_index(drop=True))
    return chunks


def _ledger_state(conn: psycopg.Connection[Any], points: pd.DataFrame, block_days: int,
                  renewals: dict[str, dict[date, float]]
                  ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Bonus on the day before each resume day (the opening bonus when a renewed term starts
    on it; on the day before the lapse when a reinstatement ends one: `carry_day`), and
    measured days of its block before it, where the lapsed days count as measured: a lapse
    neither earns nor costs, the adherence penalty included."""
    offsets = [(r - s).days for r, s in zip(points["resume_day"], points["start_date"],
                                              strict=True)]
    block_start = [s + timedelta(days=(o // block_days) * block_days)
                   for s, o in zip(points["start_date"], offsets, strict=True)]
    rows = conn.execute(
        """select q.policy_id,
                  (select l.bonus::float8 from current_ledger l where l.policy_id = q.policy_id
                     and l.day = q.carry_day),
                  (select count(*) from current_ledger l where l.policy_id = q.policy_id
                     and l.day >= q.block_start and l.day < q.resume_day
                     and l.day_status <> all(%s))
           from unnest(%s::text[], %s::date[], %s::date[], %s::date[])
                as q(policy_id, resume_day, block_start, carry_day)""",
        (list(UNMEASURED), TextArray(points["policy_id"].tolist()),
         DateArray(points["resume_day"]), DateArray(block_start),
         DateArray(points["carry_day"]))).fetchall()
    lapsed_in_block = {
        str(p): max(0, (r - max(b, c + timedelta(days=1))).days) for p, r, b, c in zip(
            points["policy_id"], points["resume_day"], block_start, points["carry_day"],
            strict=True)}
    state = {str(r[0]): (float(r[1]) if r[1] is not None else 0.0,
                         int(str(r[2])) + lapsed_in_block[str(r[0])]) for r in rows}
    bonus = np.array([renewals.get(p, {}).get(day, state[p][0])
                      for p, day in zip(points["policy_id"], points["resume_day"],
                                        strict=True)])
    measured = np.array([state[p][1] for p in points["policy_id"]], dtype=np.int64)
    return bonus, measured


def run_pricing(database_url: str, through: date | None = None, ruleset: str | None = None
                ) -> RunSummary:
    started = time.monotonic()
    clock = StepClock()
    through = through or (datetime.now(UTC).date() - timedelta(days=1))
    with psycopg.connect(database_url) as conn:
        conn.execute("select pg_advisory_xact_lock(hashtext('glucover-pricing'))")
        for setting, value in RUN_SETTINGS.items():
            conn.execute("select set_config(%s, %s, true)", (setting, value))
        prev = conn.execute("select max(watermark) from pricing_runs where finished_at is not "
                            "null").fetchone()
        since = prev[0] if prev and prev[0] else None
        row = conn.execute(
            "insert into pricing_runs (through, watermark) values "
            "(%s, coalesce(oldest_running_transaction(), now() - %s)) returning run_id",
            (through, WATERMARK_MARGIN)).fetchone()
        assert row is not None
        run_id = int(str(row[0]))
        with clock("plan"):
            policies, bindings = store.load_policies(conn)
            # Policy ids as Python strings (object), not Arrow strings: the run walks them
            # policy by policy, which reads an Arrow string one scalar at a time.
            policies["policy_id"] = policies["policy_id"].astype(object)
            bindings["policy_id"] = bindings["policy_id"].astype(object)
            # A claimed, cancelled or not yet accepted policy's ledger never moves; a lapsed or
            # expired one's stops at the end of its cover (policies/states.py).
            ends = store.cover_ends(conn)
        frozen = {pid for pid, end in ends.items() if end is None}
        policies = policies[~policies["policy_id"].isin(frozen)]
        if ruleset:
            policies["ruleset_name"] = ruleset
        every = TextArray(policies["policy_id"].tolist())
        renewals = store.term_starts(conn, every)
        lapsed = store.lapses(conn, every)
        total_days = added = 0
        evaluated: set[str] = set()
        for name, group in policies.groupby("ruleset_name", sort=True):
            rules = store.current(conn, str(name))
            group = group.reset_index(drop=True)
            with clock("plan"):
                first = _first_days(conn, group, since, renewals)
            done: dict[str, date] = {}
            while True:  # more than one pass only across a renewal
                points = _resume_points(group, first, through, ends, renewals, done, lapsed)
                if points.empty:
                    break
                # A chunk of policy-days at a time: a first run over a long history, or a day
                # many meters synced, holds one chunk's readings, not the portfolio's.
                for part in _chunks(points):
                    days, rows = _price(conn, group, bindings, part, rules,
                                        max(part["until"]), since, run_id, renewals, clock)
                    total_days += days
                    added += rows
                evaluated.update(points["policy_id"])
                done.update(zip(points["policy_id"], points["until"], strict=True))
        conn.execute("update pricing_runs set finished_at = now(), policies = %s, rows_added = %s"
                     " where run_id = %s", (len(evaluated), added, run_id))
        with clock("write"):
            conn.commit()
    return RunSummary(run_id, through, len(evaluated), total_days, added,
                      time.monotonic() - started, clock.seconds)


def _price(conn: psycopg.Connection[Any], group: pd.DataFrame, bindings: pd.DataFrame,
           points: pd.DataFrame, rules: Ruleset, through: date, since: datetime | None,
           run_id: int, renewals: dict[str, dict[date, float]], clock: StepClock
           ) -> tuple[int, int]:
    """Price the policies of `points` (one ruleset's) from their resume days through
    `through`; append the changed ledger rows. Returns (policy-days evaluated, rows added)."""
    group = group.set_index("policy_id").loc[points["policy_id"]].reset_index()
    with clock("plan"):
        bonus, measured = _ledger_state(conn, points, rules.block_days, renewals)
    resume = Resume(
        offset=np.array([(r - s).days for r, s in zip(
            points["resume_day"], points["start_date"], strict=True)], dtype=np.int64),
        bonus=bonus, measured_in_block=measured)
    its_bindings = bindings[bindings["policy_id"].isin(points["policy_id"])]
    earliest = min(points["resume_day"])
    ids = TextArray(points["policy_id"].tolist())
    with clock("plan"):
        consented = consent.periods(conn, ids, "pricing")
        corrections = reviews.corrections(conn, ids)
    if rules.kind == "cgm":
        # One summary row per policy-day instead of a CGM's 288 readings a day.
        with clock("summaries"):
            cgm_days.refresh(conn, ids, rules, since)
        with clock("load"):
            summaries = cgm_days.load(conn, ids, rules, earliest)
        with clock("evaluate"):
            ledger = cgm_rules.evaluate_days(group, summaries, rules, through, resume,
                                             consented, corrections).to_frame()
    else:
        with clock("summaries"):
            meter_days.refresh(conn, ids, rules, since)
        with clock("load"):
            readings = store.load_readings(
                conn, sorted(set(its_bindings["device_id"])),
                since=datetime.combine(earliest, datetime.min.time(), UTC) - TZ_MARGIN,
                until=datetime.combine(through, datetime.min.time(), UTC) + 2 * TZ_MARGIN)
        with clock("evaluate"):
            ledger = evaluate(group, its_bindings, readings, rules, through, resume,
                              consent=consented, adjustments=corrections).to_frame()
    until = pd.to_datetime(ledger["policy_id"].astype(str).map(
        dict(zip(points["policy_id"], points["until"], strict=True))))
    ledger = ledger[(ledger["day"] <= until).to_numpy()].reset_index(drop=True)
    ledger["ruleset_version"] = rules.version
    ledger["ruleset_name"] = rules.name
    ledger = _naming_reviews(ledger, corrections)
    with clock("compare"):
        fresh = _changed_rows(conn, ledger, earliest)
    with clock("write"):
        written = _append(conn, fresh, run_id)
    return len(ledger), written


def _naming_reviews(ledger: pd.DataFrame, corrections: pd.DataFrame) -> pd.DataFrame:
    """Each row with the review that corrected its day (rule 8), else NA."""
    named = corrections.assign(policy_id=corrections["policy_id"].astype(str),
                               day=pd.to_datetime(corrections["day"]))
    latest = named.groupby(["policy_id", "day"], as_index=False)["review_id"].max()
    out = ledger.assign(policy_id=ledger["policy_id"].astype(str)).merge(
        latest, on=["policy_id", "day"], how="left")
    out["review_id"] = out["review_id"].astype("Int64")
    return out


def _changed_rows(conn: psycopg.Connection[Any], ledger: pd.DataFrame, earliest: date
                  ) -> pd.DataFrame:
    """Rows of `ledger` that the current ledger does not already hold exactly."""
    ids = TextArray(ledger["policy_id"].astype(str).unique().tolist())
    rows = conn.execute(
        "select policy_id, day, day_status, reading_seq, delta::float8, bonus::float8, "
        "sum_insured::float8, ruleset_version, coverage::float8, time_in_range::float8, "
        "below::float8, very_high::float8, review_id from current_ledger "
        "where policy_id = any(%s) and day >= %s", (ids, earliest)).fetchall()
    now = pd.DataFrame(rows, columns=["policy_id", "day", *LEDGER_COLUMNS])
    new = ledger.copy()
    for column in FIGURE_COLUMNS:
        if column not in new:
            new[column] = np.nan
    new["policy_id"] = new["policy_id"].astype(str)
    new["day"] = new["day"].dt.date
    new["day_status"] = new["day_status"].astype(str)
    for frame in (new, now):
        frame["reading_seq"] = frame["reading_seq"].astype("Int64")
        frame["review_id"] = frame["review_id"].astype("Int64")
        for column in ("delta", "bonus", "sum_insured"):
            frame[column] = frame[column].astype(float).round(2)
        for column in FIGURE_COLUMNS:  # stored as real: compared at its precision
            frame[column] = frame[column].astype(float).astype(np.float32)
    merged = new.merge(now, on=["policy_id", "day"], how="left", suffixes=("", "_now"),
                       indicator=True)
    differs = merged["_merge"] == "left_only"
    for column in LEDGER_COLUMNS:
        a, b = merged[column], merged[column + "_now"]
        differs |= ~((a == b).fillna(False) | (a.isna() & b.isna()))
    return new[differs.to_numpy()]


def _append(conn: psycopg.Connection[Any], rows: pd.DataFrame, run_id: int) -> int:
    """COPY the rows into the ledger as one CSV text (written row by row from Python, the
    ledger of a first run took longer to send than to compute)."""
    if rows.empty:
        return 0
    assert set(rows["day_status"]) <= set(DAY_STATUSES)
    frame = pd.DataFrame({
        "policy_id": rows["policy_id"].astype(str), "day": rows["day"], "run_id": run_id,
        "day_status": rows["day_status"].astype(str),
        "reading_seq": rows["reading_seq"].astype("Int64"),
        **{c: rows[c].astype(float).round(2) for c in ("delta", "bonus", "sum_insured")},
        "ruleset_name": rows["ruleset_name"], "ruleset_version": rows["ruleset_version"],
        # The CGM figures are real (float4) columns: written at that precision, shortest form.
        **{c: rows[c].astype(np.float32) for c in FIGURE_COLUMNS},
        "review_id": rows["review_id"].astype("Int64")})  # the review a correction names
    text = frame.to_csv(index=False, header=False, na_rep="", float_format=None)
    with conn.cursor() as cur, cur.copy(
            f"copy sum_insured_ledger ({', '.join(frame.columns)}) from stdin (format csv)"
    ) as copy:
        copy.write(text)
    return len(rows)
