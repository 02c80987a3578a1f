"""Both storage backends: plain PostgreSQL always; TimescaleDB where it is installed."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from bench.harness import bench_device, seed_devices
from glucover.config import Settings
from glucover.db import execute_when_free, migrate
from glucover.doctor import database_facts
from glucover.servers import LocalPostgres, timescale_installed
from tests.helpers import START, current_ledger, load_fleet, state_dir


def _cluster(timescale: bool) -> Iterator[LocalPostgres]:
    root = state_dir("glucover-backend-")
    server = LocalPostgres(root / "data", timescale=timescale).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def plain_pg() -> Iterator[LocalPostgres]:
    yield from _cluster(timescale=False)


@pytest.fixture
def timescale_pg() -> Iterator[LocalPostgres]:
    if not timescale_installed():
        pytest.skip("the TimescaleDB extension is not installed here (the plain path runs)")
    yield from _cluster(timescale=True)


def _priced_fleet(url: str) -> None:
    from pricing.engine import run_pricing

    load_fleet(url, n=8, days=20, seed=17)
    run_pricing(url, START + timedelta(days=19))


def test_plain_postgresql_backend(plain_pg: LocalPostgres, settings: Settings,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLUCOVER_TIMESCALE", "off")
    url = plain_pg.url()
    assert migrate(url, Settings.from_env()).backend == "postgresql"
    _priced_fleet(url)
    facts = database_facts(url)
    assert facts["backend"] == "postgresql" and facts["readings_hypertable"] is False
    with psycopg.connect(url) as conn:
        kind = conn.execute("select relkind from pg_class where relname = 'readings_daily'"
                            ).fetchone()
        summary = conn.execute("select count(distinct device_id), sum(readings) "
                               "from readings_daily").fetchone()
    assert kind == ("m",)
    assert summary is not None and summary[0] == 8 and summary[1] > 0


def test_timescaledb_backend(timescale_pg: LocalPostgres, settings: Settings,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLUCOVER_TIMESCALE", "on")  # this test is about the extension
    url = timescale_pg.url()
    result = migrate(url, Settings.from_env())
    assert result.backend == "timescaledb"
    assert "0002_readings_storage.timescale" in result.applied
    _priced_fleet(url)
    facts = database_facts(url)
    assert facts["backend"] == "timescaledb"
    assert facts["readings_hypertable"] is True
    assert {"policy_refresh_continuous_aggregate", "policy_compression"} <= set(
        facts["policies"])
    with psycopg.connect(url, autocommit=True) as conn:
        _run_refresh_job(conn)
        agg = conn.execute("select count(*) from timescaledb_information.continuous_aggregates"
                           " where view_name = 'readings_daily'").fetchone()
        stored = conn.execute("select count(*) from readings").fetchone()
        daily = conn.execute("select sum(readings) from readings_daily").fetchone()
        chunks = conn.execute("select count(*) from show_chunks('readings')").fetchone()
    assert agg == (1,)
    assert stored is not None and daily is not None and 0 < daily[0] <= stored[0]
    assert chunks is not None and chunks[0] >= 3  # 7-day chunks over 20+ days
    assert len(current_ledger(url)) == 8 * 20


def _run_refresh_job(conn: psycopg.Connection[Any]) -> None:
    """The daily summary's refresh policy, run now as TimescaleDB's scheduler runs it (once
    the scheduler's own run of it, which may be under way, is done)."""
    row = conn.execute("select job_id from timescaledb_information.jobs where proc_name = "
                       "'policy_refresh_continuous_aggregate' and hypertable_name = "
                       "'readings_daily'").fetchone()
    assert row is not None
    execute_when_free(conn, f"call run_job({int(row[0])})")


def test_timescaledb_summarises_readings_stored_long_after_their_day(
        timescale_pg: LocalPostgres, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """History replayed, or a gateway's back-fill after weeks out of range, reaches the daily
    summary of a database whose summary is already materialized up to now: the refresh policy
    covers all time (a 10-day window left such days out for good)."""
    monkeypatch.setenv("GLUCOVER_TIMESCALE", "on")
    url = timescale_pg.url()
    migrate(url, Settings.from_env())
    seed_devices(url, 1)
    yesterday = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(
        days=1)  # at noon: a day's readings stay in that day
    with psycopg.connect(url, autocommit=True) as conn:
        def store(at: datetime, seqs: range) -> None:
            conn.cursor().executemany(
                "insert into readings (device_id, seq, measured_at, utc_offset_min, received_at,"
                " value_digits, value_exponent, unit, meal, sample, source, status) values "
                "(%s, %s, %s, 0, %s, 55, -1, 'mmol/L', 'fasting', 'capillary_plasma', 'meter', 0)",
                [(bench_device(0), seq, at + timedelta(minutes=seq), at + timedelta(minutes=seq))
                 for seq in seqs])

        store(yesterday, range(0, 5))
        _run_refresh_job(conn)  # materialized up to now
        old = yesterday - timedelta(days=60)
        store(old, range(5, 12))  # stored 60 days after its day, as a replay stores it
        _run_refresh_job(conn)
        days: dict[Any, int] = dict(conn.execute(
            "select day::date, readings from readings_daily").fetchall())
    assert days == {yesterday.date(): 5, old.date(): 7}
