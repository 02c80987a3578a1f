"""`glucover bench dashboard`: server time to render each page, for policyholders with a year
of data, on a private database. A page's time is one AppTest run (the script executing
server-side, queries included, no browser), best and median of several."""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from bench.harness import emit, private_postgres, private_root
from dashboard.auth import create_user
from devices.fleet import fleet_messages, portfolio
from devices.provisioning import add_portfolio
from glucover.config import Settings
from ingest.decode import Received, decode
from ingest.store import prepare, write_batch

APP = str(Path(__file__).parent.parent / "dashboard" / "app.py")
PASSWORD = "bench-password"  # noqa: S105 - a throwaway private database


def _load_year(url: str, policies: int, days: int) -> list[str]:
    first = datetime.now(UTC).date() - timedelta(days=days)
    people = portfolio(policies, 77, first)
    with psycopg.connect(url) as conn:
        add_portfolio(conn, people, "bench-secret")
        conn.commit()
        prepare(conn)
        messages = [m for m in fleet_messages(people, 77, days) if m.topic.endswith("readings")]
        for k in range(0, len(messages), 500):
            part = messages[k:k + 500]
            write_batch(conn, decode([Received(m.topic, m.payload, i, 1, m.at)
                                      for i, m in enumerate(part)], trust_sent_at=False))
            conn.commit()
        create_user(conn, "holder", PASSWORD, "policyholder", people[0].policy_id, rounds=4)
        create_user(conn, "actuary", PASSWORD, "actuary", rounds=4)
        create_user(conn, "operations", PASSWORD, "operations", rounds=4)
        conn.commit()
    return [p.policy_id for p in people]


def _time_page(username: str, runs: int) -> dict[str, float]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.text_input[0].input(username)
    at.text_input[1].input(PASSWORD)
    at.button[0].click()
    at.run()  # sign-in, first render (pools and caches warm up)
    if at.exception:
        raise RuntimeError(f"{username}: {at.exception}")
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - started)
    return {"best_s": round(min(times), 3), "median_s": round(statistics.median(times), 3)}


def run_bench(policies: int, days: int, runs: int, settings: Settings) -> dict[str, Any]:
    from pricing.engine import run_pricing

    with ExitStack() as stack:
        url = private_postgres(stack, private_root(stack, "glucover-bench-dash-"), settings)
        _load_year(url, policies, days)
        run_pricing(url, datetime.now(UTC).date() - timedelta(days=1))
        with psycopg.connect(url) as conn:
            row = conn.execute("select count(*) from readings").fetchone()
        stack.enter_context(_environment("DATABASE_URL", url))  # the app reads it
        pages = {name: _time_page(user, runs) for name, user in (
            ("policyholder", "holder"), ("actuary", "actuary"), ("operations", "operations"))}
    return {"policies": policies, "days": days, "readings": int(row[0]) if row else 0,
            "pages": pages, "all_under_1s": all(p["median_s"] < 1.0 for p in pages.values())}


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
    return 0 if report["all_under_1s"] else 1


def print_report(report: dict[str, Any]) -> None:
    print(f"dashboard, {report['policies']} policies x {report['days']} days "
          f"({report['readings']:,} readings)")
    for name, t in report["pages"].items():
        print(f"  {name:13s} median {t['median_s']:.3f}s  best {t['best_s']:.3f}s")
