"""Both storage backends: plain PostgreSQL always; TimescaleDB where it is installed."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest

from cli.doctor import database_facts
from glucover.config import Settings
from glucover.db import migrate
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
        kind = conn.execute("select relkind from pg_class where relname = 'meter_days'"
                            ).fetchone()
        summary = conn.execute("select count(distinct policy_id), sum(readings) "
                               "from meter_days").fetchone()
    assert kind == ("r",)
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
    assert "policy_compression" in set(facts["policies"])
    with psycopg.connect(url, autocommit=True) as conn:
        stored = conn.execute("select count(*) from readings").fetchone()
        daily = conn.execute("select sum(readings) from meter_days").fetchone()
        chunks = conn.execute("select count(*) from show_chunks('readings')").fetchone()
    assert stored is not None and daily is not None and 0 < daily[0] <= stored[0]
    assert chunks is not None and chunks[0] >= 3  # 7-day chunks over 20+ days
    assert len(current_ledger(url)) == 8 * 20


def test_daily_summary_takes_readings_stored_long_after_their_day(db_url: str) -> None:
    """History replayed, or a gateway's back-fill after weeks out of range, reaches the daily
    summary at the next pricing run, on the policy's local day."""
    from pricing.engine import run_pricing

    load_fleet(db_url, n=2, days=10, seed=3)
    through = START + timedelta(days=9)
    run_pricing(db_url, through)
    with psycopg.connect(db_url) as conn:
        policy, device, zone = conn.execute(
            "select p.policy_id, pd.device_id, p.timezone from policies p "
            "join policy_devices pd using (policy_id) order by 1 limit 1").fetchone() or ()
        before: dict[date, int] = dict(conn.execute(  # type: ignore[arg-type]
            "select day, readings from meter_days where policy_id = %s", (policy,)).fetchall())
        day = START + timedelta(days=2)
        noon = datetime.combine(day, datetime.min.time().replace(hour=12), ZoneInfo(zone))
        conn.cursor().executemany(
            "insert into readings (device_id, seq, measured_at, utc_offset_min, received_at,"
            " value_digits, value_exponent, unit, meal, sample, source, status) values "
            "(%s, %s, %s, 0, %s, 55, -1, 'mmol/L', 'casual', 'capillary_plasma', 'meter', 0)",
            [(device, 60000 + k, noon + timedelta(minutes=k), noon + timedelta(minutes=k + 1))
             for k in range(7)])  # received then, ingested now: weeks after their day
        conn.commit()
    run_pricing(db_url, through)
    with psycopg.connect(db_url) as conn:
        after: dict[date, int] = dict(conn.execute(  # type: ignore[arg-type]
            "select day, readings from meter_days where policy_id = %s", (policy,)).fetchall())
    assert after[day] == before.get(day, 0) + 7
    assert {d: n for d, n in after.items() if d != day} == {
        d: n for d, n in before.items() if d != day}
