"""`glucover bench dashboard`: server time to render each role's page with a portfolio of
`--policies` policyholders and `--days` of history loaded by COPY (bench/copy_load.py: the
synthetic portfolio, its readings and the ledger the evaluator gives them) on a private
database. A page's time is one AppTest run (the script executing server-side, queries
included, no browser): the first render (caches cold) and the median and p95 of the runs after
it."""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from bench.copy_load import copy_portfolio
from bench.harness import emit, private_postgres, private_root
from dashboard.auth import create_user
from glucover.config import Settings

PANEL = 50  # the clinician's panel, half of it with an open alert
APP = str(Path(__file__).parent.parent / "dashboard" / "app.py")
PASSWORD = "bench-password"  # noqa: S105 - a throwaway private database


def _load(url: str, policies: int, days: int) -> dict[str, Any]:
    from care import store as care
    from care.alerts import Finding
    from dashboard.auth import add_to_panel

    loaded = copy_portfolio(url, policies, days)
    with psycopg.connect(url) as conn:
        ids = [str(r[0]) for r in conn.execute(
            "select policy_id from policies order by policy_id limit %s", (PANEL,))]
        create_user(conn, "holder", PASSWORD, "policyholder", ids[0], rounds=4)
        create_user(conn, "actuary", PASSWORD, "actuary", rounds=4)
        create_user(conn, "operations", PASSWORD, "operations", rounds=4)
        create_user(conn, "clinician", PASSWORD, "clinician", rounds=4)
        add_to_panel(conn, "clinician", ids)
        care.record(conn, [Finding(p, "lapsed", (), "bench", key="bench") for p in ids[::2]],
                    care.rules_in_force(conn))
        conn.commit()
    return loaded


def _time_page(username: str, runs: int) -> dict[str, float]:
    import streamlit as st

    started = time.perf_counter()
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.text_input[0].input(username)
    at.text_input[1].input(PASSWORD)
    at.button[0].click()
    at.run()  # sign-in, first render (pools and caches warm up)
    first = time.perf_counter() - started
    if at.exception:
        raise RuntimeError(f"{username}: {at.exception}")
    times = []
    for _ in range(runs):
        # Every run pays its own queries: the pages' caches (st.cache_data, 30-60 s) would
        # otherwise time a cache hit, not what a user meets when one expires.
        st.cache_data.clear()
        started = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - started)
    return {"first_s": round(first, 3), "best_s": round(min(times), 3),
            "median_s": round(statistics.median(times), 3),
            "p95_s": round(float(np.percentile(times, 95)), 3)}


def run_bench(policies: int, days: int, runs: int, settings: Settings) -> dict[str, Any]:

    with ExitStack() as stack:
        url = private_postgres(stack, private_root(stack, "glucover-bench-dash-"), settings)
        started = time.perf_counter()
        loaded = _load(url, policies, days)
        load_s = time.perf_counter() - started
        stack.enter_context(_environment("DATABASE_URL", url))  # the app reads it
        pages = {name: _time_page(user, runs) for name, user in (
            ("policyholder", "holder"), ("actuary", "actuary"), ("operations", "operations"),
            ("clinician", "clinician"))}
        plans = _plans(url)
    return {"policies": policies, "days": days, "readings": loaded["readings"],
            "ledger_rows": loaded["ledger_rows"], "load_seconds": round(load_s, 1),
            "runs": runs, "pages": pages, "plans": plans,
            "goal_met": all(p["median_s"] < 1.0 and p["p95_s"] < 2.0 for p in pages.values())}


def _plans(url: str) -> dict[str, list[str]]:
    """EXPLAIN ANALYZE of the pages' heaviest queries, as the pages run them."""
    from dashboard.db import WORK_MEM
    from devices import health
    from ingest import flow
    from pricing import portfolio_figures

    queries: dict[str, tuple[str, Any]] = {
        "workbench KPIs": (portfolio_figures.KPI_SQL, None),
        "portfolio time in range": (portfolio_figures.TIR_SQL, (
            _one(url, portfolio_figures.LAST_PRICED_SQL), portfolio_figures.TIR_WINDOW_DAYS)),
        "ingest lag": (flow.LAG_SQL, None),
        "silent meters": (health.SILENT_SQL, health.SILENT_PARAMS)}
    with psycopg.connect(url, options=f"-c work_mem={WORK_MEM}") as conn:  # as the pages'
        return {name: [str(r[0]) for r in conn.execute(
            "explain (analyze, costs off) " + sql, params)]  # type: ignore[arg-type]
            for name, (sql, params) in queries.items()}


def _one(url: str, sql: str) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
    return row[0] if row else None


@contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    """The variable set to `value` for the block, as under `glucover dashboard`; restored."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def bench_cli(args: argparse.Namespace, settings: Settings) -> int:
    report = run_bench(args.policies, args.days, args.runs, settings)
    emit(report, args.json, print_report)
    return 0 if report["goal_met"] else 1


def print_report(report: dict[str, Any]) -> None:
    print(f"dashboard, {report['policies']:,} policies x {report['days']} days "
          f"({report['readings']:,} readings, {report['ledger_rows']:,} ledger rows, loaded by "
          f"COPY in {report['load_seconds']}s); {report['runs']} runs per page")
    for name, t in report["pages"].items():
        print(f"  {name:13s} first {t['first_s']:.3f}s  median {t['median_s']:.3f}s  "
              f"p95 {t['p95_s']:.3f}s  best {t['best_s']:.3f}s")
    print(f"  goal (every page median < 1 s, p95 < 2 s): "
          f"{'met' if report['goal_met'] else 'not met'}")
    for name, plan in report["plans"].items():
        print(f"\n  plan of the {name} query:")
        print("\n".join(f"    {line}" for line in plan))
