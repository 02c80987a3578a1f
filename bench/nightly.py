"""`glucover bench nightly`: the nightly pricing run a user waits for, timed end to end from
the database, each step apart (pricing/engine.py STEPS), with the evaluator alone beside it.

Three scenarios, each against its goal (issue 26):
  a. the first run over a backfilled portfolio (the demo's 300 policies x 90 days, one in ten
     wearing a CGM): under 5 s;
  b. one new day for 100,000 policies (10% CGM wearers) whose history is priced: under 10 s;
  c. late readings touching 1% of (b)'s policy-days, priced after (b): under 5 s.

The data is made inside the database, set-based (generate_series; nothing crosses the socket
and no broker is involved): fingerstick meters measure up to four times a day (fasting,
before lunch, after dinner, bedtime), CGMs every five minutes with a few gaps, on the local
days of three time zones. Readings are stamped ingested when they are made, so the engine
sees them as new, as it would see the ingest worker's.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from bench.harness import emit, private_root, progress
from glucover.config import Settings
from glucover.db import migrate
from glucover.servers import LocalPostgres
from kernel.sequence import SEQ_MODULO
from pricing.engine import STEPS, RunSummary, run_pricing

GOALS_S = {"a": 5.0, "b": 10.0, "c": 5.0}
ZONES = ("Asia/Shanghai", "Europe/London", "America/New_York")
LATE_SHARE = 0.01  # scenario c: the share of (b)'s policy-days late readings touch

_POLICIES_SQL = """
insert into policies (policy_id, holder_name, birth_year, base_sum_insured, timezone,
                      start_date, ruleset_name)
select 'NB-' || lpad(i::text, 7, '0'), 'bench', 1960 + i %% 40, 10000,
       (%(zones)s::text[])[1 + i %% %(n_zones)s], %(start)s,
       case when i %% %(cgm_every)s = 0 then 'cgm-default' else 'default' end
from generate_series(0, %(n)s - 1) i;
insert into devices (device_id, kind)
select 'NBD-' || substr(policy_id, 4),
       case when ruleset_name = 'cgm-default' then 'cgm' else 'bgm' end from policies;
insert into policy_devices (policy_id, device_id, bound_from)
select policy_id, 'NBD-' || substr(policy_id, 4), start_date - 2 from policies;
"""

# Fingerstick: four chances a day, each taken seven times in ten; values 4.0-11.9 mmol/L.
_METER_SQL = """
insert into readings (device_id, seq, measured_at, utc_offset_min, received_at, value_digits,
                      value_exponent, unit, meal, sample, source, status)
select pd.device_id, ((d - date '2000-01-01') * 4 + k) %% %(seq_modulo)s, m.at, 0,
       m.at + interval '1 minute', 40 + floor(random() * 80)::bigint, -1, 'mmol/L',
       (array['fasting', 'preprandial', 'postprandial', 'bedtime'])[k + 1],
       'capillary_whole_blood', 'meter', 0
from policies p
join policy_devices pd using (policy_id)
cross join generate_series(%(first)s::date, %(last)s::date, interval '1 day') g(day)
cross join lateral (select g.day::date as d) dd
cross join generate_series(0, 3) k
cross join lateral (select (d + make_interval(hours => 7 + 4 * k, mins => %(minute)s))
                           at time zone p.timezone as at) m
where p.ruleset_name = 'default' and p.policy_id = any(%(ids)s) and random() < 0.7
"""

# CGM: a reading every five minutes of the local day, 3% missing; 55-295 mg/dL around meals.
_CGM_SQL = """
insert into readings (device_id, seq, measured_at, utc_offset_min, received_at, value_digits,
                      value_exponent, unit, meal, sample, source, status)
select pd.device_id, ((d - date '2000-01-01') * 288 + s) %% %(seq_modulo)s, m.at, 0,
       m.at + interval '1 minute',
       (95 + 60 * sin(s / 288.0 * 6 * pi()) + random() * 80 - 40 * (i %% 3))::bigint, 0,
       'mg/dL', 'unknown', 'interstitial_fluid', 'meter', 0
from policies p
join policy_devices pd using (policy_id)
cross join lateral (select substr(p.policy_id, 4)::int as i) n
cross join generate_series(%(first)s::date, %(last)s::date, interval '1 day') g(day)
cross join lateral (select g.day::date as d) dd
cross join generate_series(0, 287) s
cross join lateral (select (d + make_interval(mins => 5 * s + %(minute)s))
                           at time zone p.timezone as at) m
where p.ruleset_name = 'cgm-default' and p.policy_id = any(%(ids)s) and random() > 0.03
"""


def _database(admin_url: str, name: str, settings: Settings) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"create database {name}")
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    migrate(url, settings)
    return url


def load_portfolio(url: str, policies: int, first: date, cgm_share: float) -> None:
    """`policies` policies starting on `first`, each with its meter or CGM bound."""
    with psycopg.connect(url) as conn:
        params = {"zones": list(ZONES), "n_zones": len(ZONES), "start": first, "n": policies,
                  "cgm_every": max(1, round(1 / cgm_share)) if cgm_share > 0 else policies + 1}
        for statement in _POLICIES_SQL.split(";"):
            if statement.strip():
                conn.execute(statement, params)  # type: ignore[arg-type]


def add_readings(url: str, first: date, last: date, ids: list[str] | None = None,
                 minute: int = 0) -> int:
    """Readings of the policies `ids` (all when None) on the local days first..last, at
    `minute` past their usual times (late readings: a minute no reading has yet); made
    ingested now. The readings added."""
    with psycopg.connect(url) as conn:
        if ids is None:
            ids = [r[0] for r in conn.execute("select policy_id from policies").fetchall()]
        conn.execute("select setseed(0.26)")
        added = 0
        for statement in (_METER_SQL, _CGM_SQL):
            cur = conn.execute(statement, {"first": first, "last": last,  # type: ignore[arg-type]
                                           "ids": ids, "minute": minute,
                                           "seq_modulo": SEQ_MODULO})
            added += cur.rowcount
        conn.commit()
        conn.execute("analyze")
    return added


def _cluster_cpu(data_dir: Path) -> dict[int, float]:
    """CPU seconds used so far by each of the cluster's processes (the postmaster and its
    children)."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    ticks = os.sysconf("SC_CLK_TCK")
    children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
    used = {}
    for pid in [postmaster, *map(int, children)]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited
        used[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return used


class DatabaseCpu:
    """The CPU the cluster uses while it runs, sampled every SAMPLE_S (a backend that exits
    is counted up to its last sample)."""

    SAMPLE_S = 0.05

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            for pid, cpu in _cluster_cpu(self.data_dir).items():
                self.first.setdefault(pid, cpu if not self.last or pid in self.last else 0.0)
                self.last[pid] = cpu
            if self._stop.wait(self.SAMPLE_S):
                return

    def __enter__(self) -> DatabaseCpu:
        self.first = _cluster_cpu(self.data_dir)
        self.last = dict(self.first)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def seconds(self) -> float:
        return sum(self.last[pid] - self.first.get(pid, 0.0) for pid in self.last)


def _timed_run(url: str, through: date, goal_s: float, data_dir: Path) -> dict[str, Any]:
    own_before = sum(os.times()[:2])
    with DatabaseCpu(data_dir) as database:
        summary: RunSummary = run_pricing(url, through)
    own = sum(os.times()[:2]) - own_before
    steps = summary.steps
    evaluate_s = steps["evaluate"]
    return {
        "seconds": round(summary.seconds, 3), "goal_s": goal_s,
        # The machine is shared: the CPU the run used (this process and the database's), what
        # the wall time would be were the run alone on one core.
        "cpu_s": round(own + database.seconds(), 3),
        "cpu_s_database": round(database.seconds(), 3),
        "within_goal": summary.seconds < goal_s,
        "steps_s": {step: round(steps[step], 3) for step in STEPS},
        "policies_rerated": summary.policies_evaluated, "policy_days": summary.policy_days,
        "ledger_rows_added": summary.rows_added,
        "policy_days_per_s": round(summary.policy_days / max(summary.seconds, 1e-9)),
        # The evaluator alone, in the same run: the rate `glucover bench pricing` measures.
        "evaluator_s": round(evaluate_s, 3),
        "evaluator_policy_days_per_s": round(summary.policy_days / max(evaluate_s, 1e-9)),
    }


def scenario_a(url: str, policies: int, days: int, cgm_share: float, through: date,
               data_dir: Path) -> dict[str, Any]:
    first = through - timedelta(days=days - 1)
    load_portfolio(url, policies, first, cgm_share)
    readings = add_readings(url, first, through)
    return {"policies": policies, "days": days, "readings": readings,
            **_timed_run(url, through, GOALS_S["a"], data_dir)}


def scenario_b_c(url: str, policies: int, history_days: int, cgm_share: float, through: date,
                 data_dir: Path, say: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(b) one new day after a priced history, then (c) late readings on 1% of its
    policy-days."""
    first = through - timedelta(days=history_days)
    load_portfolio(url, policies, first, cgm_share)
    history = add_readings(url, first, through - timedelta(days=1))
    say(f"  history: {history:,} readings; pricing it (untimed)")
    run_pricing(url, through - timedelta(days=1))
    new = add_readings(url, through, through)
    say(f"  (b) one new day: {new:,} readings")
    b = {"policies": policies, "history_days": history_days, "readings": new,
         **_timed_run(url, through, GOALS_S["b"], data_dir)}
    with psycopg.connect(url) as conn:
        ids = [r[0] for r in conn.execute(
            "select policy_id from policies order by md5(policy_id) limit %s",
            (max(1, round(policies * LATE_SHARE)),)).fetchall()]
    late = add_readings(url, through - timedelta(days=1), through - timedelta(days=1), ids,
                        minute=2)
    say(f"  (c) late readings for {len(ids):,} policy-days: {late:,} readings")
    c = {"policies_touched": len(ids), "readings": late,
         **_timed_run(url, through, GOALS_S["c"], data_dir)}
    return b, c


def bench_cli(args: argparse.Namespace, settings: Settings) -> int:
    say = progress(not args.json)
    through = datetime.now(UTC).date() - timedelta(days=1)
    report: dict[str, Any] = {"through": through.isoformat(), "cgm_share": args.cgm_share}
    with ExitStack() as stack:
        root = private_root(stack, "glucover-bench-nightly-")
        pg = LocalPostgres(root / "pg").start()
        stack.callback(pg.stop)
        admin = pg.url()
        if args.scenario in ("a", "all"):
            say(f"(a) first run: {args.policies:,} policies x {args.days} days")
            started = time.monotonic()
            url = _database(admin, "nightly_a", settings)
            report["a"] = scenario_a(url, args.policies, args.days, args.cgm_share, through,
                                     root / "pg")
            report["a"]["setup_s"] = round(time.monotonic() - started
                                           - report["a"]["seconds"], 1)
        if args.scenario in ("b", "c", "all"):
            say(f"(b) one new day for {args.new_day_policies:,} policies")
            url = _database(admin, "nightly_b", settings)
            report["b"], report["c"] = scenario_b_c(url, args.new_day_policies,
                                                    args.history_days, args.cgm_share, through,
                                                    root / "pg", say)
    emit(report, args.json, _print)
    return 0


def _print(report: dict[str, Any]) -> None:
    names = {"a": "first run over a backfilled portfolio", "b": "one new day",
             "c": "late readings on 1% of (b)'s policy-days"}
    for key, name in names.items():
        if key not in report:
            continue
        r = report[key]
        steps = ", ".join(f"{s} {v:.2f}" for s, v in r["steps_s"].items())
        print(f"({key}) {name}: {r['seconds']:.2f} s, {r['cpu_s']:.2f} s of CPU "
              f"(goal < {r['goal_s']:.0f} s, "
              f"{'met' if r['within_goal'] else 'NOT met'}); {r['policies_rerated']:,} policies "
              f"re-rated, {r['policy_days']:,} policy-days, {r['ledger_rows_added']:,} ledger rows"
              f"\n    steps (s): {steps}"
              f"\n    end to end {r['policy_days_per_s']:,} policy-days/s; the evaluator alone "
              f"{r['evaluator_s']:.3f} s, {r['evaluator_policy_days_per_s']:,} policy-days/s")
