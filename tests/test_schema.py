"""`glucover migrate` and `glucover doctor` against a real PostgreSQL."""

from __future__ import annotations

import json
import threading
from datetime import date

import psycopg
import pytest

from cli.main import main
from glucover.config import Settings
from glucover.db import execute_when_free, migrate

TABLES = {"devices", "policies", "policy_devices", "readings", "rejected_messages", "rulesets",
          "sum_insured_ledger", "claims", "pricing_runs", "ruleset_drafts", "device_status",
          "dashboard_users", "dashboard_sessions"}


def test_migrate_creates_schema_and_is_idempotent(fresh_db: str, settings: Settings) -> None:
    first = migrate(fresh_db, settings)
    assert first.backend in ("postgresql", "timescaledb")
    assert first.applied[0] == "0001_core"
    second = migrate(fresh_db, settings)
    assert second.applied == []
    with psycopg.connect(fresh_db) as conn:
        tables = {r[0] for r in conn.execute(
            "select table_name from information_schema.tables where table_schema = 'public'")}
        assert tables >= TABLES
        views = {r[0] for r in conn.execute(
            "select table_name from information_schema.views where table_schema = 'public'")}
        assert "current_ledger" in views
        assert "policy_daily_summary" not in views  # read by nothing but tests: dropped (0029)
        unique = conn.execute("""
            select pg_get_indexdef(indexrelid) from pg_index
            where indrelid = 'readings'::regclass and indisunique""").fetchall()
        assert any("(device_id, seq, measured_at)" in r[0] for r in unique)


def test_migrate_cli_twice(fresh_db: str, settings: Settings, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATABASE_URL", fresh_db)
    assert main(["migrate"]) == 0
    assert "0001_core" in capsys.readouterr().out
    assert main(["migrate"]) == 0
    assert "nothing (up to date)" in capsys.readouterr().out


def test_published_rulesets_are_immutable(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("insert into rulesets (name, version, author, body) values "
                     "('x', 1, 'me', 'body')")
        with pytest.raises(psycopg.errors.RaiseException, match="immutable"):
            conn.execute("update rulesets set body = 'changed' where name = 'x'")


def test_ledger_rows_name_a_run_and_a_ruleset_that_exist(db_url: str) -> None:
    """The ledger's references to its run and ruleset version are checked once per statement
    (0062): a COPY naming a missing one is refused whole, and neither table gives up a row."""
    with psycopg.connect(db_url) as conn:
        conn.execute("insert into policies (policy_id, holder_name, base_sum_insured, timezone,"
                     " start_date) values ('P-REF', 'R', 10000, 'Asia/Kolkata', '2026-01-01')")
        conn.execute("insert into rulesets (name, version, author, body) values "
                     "('ref', 1, 'me', 'body')")
        run = conn.execute("insert into pricing_runs (through) values ('2026-01-02') "
                           "returning run_id").fetchone()
        assert run is not None
        conn.commit()
        row = "P-REF\t{day}\t{run}\tmissed\t\\N\t0\t0\t10000\t{name}\t{version}\n"
        good = row.format(day="2026-01-01", run=run[0], name="ref", version=1)

        def copy(text: str) -> None:
            with conn.cursor() as cur, cur.copy(
                    "copy sum_insured_ledger (policy_id, day, run_id, day_status, reading_seq,"
                    " delta, bonus, sum_insured, ruleset_name, ruleset_version) from stdin"
            ) as out:
                out.write(text)

        for bad, named in ((row.format(day="2026-01-02", run=run[0] + 99, name="ref",
                                       version=1), f"pricing run {run[0] + 99}"),
                           (row.format(day="2026-01-02", run=run[0], name="ref", version=2),
                            "ruleset ref version 2")):
            with pytest.raises(psycopg.errors.ForeignKeyViolation, match=named):
                copy(good + bad)
            conn.rollback()
        copy(good)
        conn.commit()
        assert conn.execute("select count(*) from sum_insured_ledger where policy_id = 'P-REF'"
                            ).fetchone() == (1,)
        for statement in ("delete from pricing_runs", "truncate pricing_runs cascade",
                          "truncate rulesets cascade"):
            with pytest.raises(psycopg.errors.RaiseException, match="only grows"):
                conn.execute(statement)
            conn.rollback()


def test_policy_ids_travel_as_one_array_whatever_they_hold(db_url: str) -> None:
    """glucover.db.TextArray: quotes, backslashes, commas and braces survive the literal."""
    from glucover.db import DateArray, TextArray

    odd = ['P-1', 'a"b', 'c\\d', 'e,f', '{g}', ' h ', 'NULL', '']
    with psycopg.connect(db_url) as conn:
        assert conn.execute("select %s::text[]", (TextArray(odd),)).fetchone() == (odd,)
        assert conn.execute("select %s::text[]", (TextArray([]),)).fetchone() == ([],)
        assert conn.execute("select 'e,f' = any(%s)", (TextArray(odd),)).fetchone() == (True,)
        days = [date(2026, 3, 8), date(2026, 11, 1)]
        assert conn.execute("select %s::date[]", (DateArray(days),)).fetchone() == (days,)


def test_doctor_reports_backend_and_broker(db_url: str, settings: Settings, mosquitto: object,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from glucover import broker
    from glucover.servers import LocalMosquitto
    from tests.helpers import TEST_SECRET

    assert isinstance(mosquitto, LocalMosquitto)
    password = broker.derive_password(TEST_SECRET, broker.INGEST_ACCOUNT)
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("MQTT_URL", f"mqtt://{broker.INGEST_ACCOUNT}:{password}@127.0.0.1:"
                       f"{mosquitto.port}")
    assert main(["devices", "provision", "--count", "2"]) == 0
    assert main(["devices", "provision", "--count", "1", "--kind", "cgm", "--prefix", "cgm"]) == 0
    assert main(["devices", "provision", "--count", "1", "--kind", "pump"]) == 2
    capsys.readouterr()
    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["devices"] == {"bgm": 2, "cgm": 1}  # the kinds of the live devices
    assert report["healthy"] is True
    assert report["backend"] in ("postgresql", "timescaledb")
    assert report["readings_hypertable"] is (report["backend"] == "timescaledb")

    monkeypatch.setenv("MQTT_URL", f"mqtt://{broker.INGEST_ACCOUNT}:wrong@127.0.0.1:"
                       f"{mosquitto.port}")
    assert main(["doctor"]) == 1
    assert "FAIL] broker" in capsys.readouterr().out


def test_doctor_on_unmigrated_database(fresh_db: str, settings: Settings,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATABASE_URL", fresh_db)
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "backend: unmigrated" in out
    assert "glucover migrate" in out


def test_a_statement_refused_for_a_lock_in_use_is_tried_again_once_it_is_free(
        fresh_db: str) -> None:
    """TimescaleDB refuses a refresh while another runs (SQLSTATE 55P03) instead of waiting;
    execute_when_free tries again until the other is done. The same refusal made here with a
    row lock and NOWAIT, released by the other session a moment later."""
    with psycopg.connect(fresh_db, autocommit=True) as setup:
        setup.execute("create table held (id int primary key); insert into held values (1)")
    holder = psycopg.connect(fresh_db)
    holder.execute("select * from held for update")
    release = threading.Timer(0.5, holder.commit)
    release.start()
    try:
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            with pytest.raises(psycopg.errors.LockNotAvailable):
                conn.execute("select * from held for update nowait")
            execute_when_free(conn, "select * from held for update nowait", wait_s=30)
            holder.execute("select * from held for update")
            with pytest.raises(psycopg.errors.LockNotAvailable):  # gives up after wait_s
                execute_when_free(conn, "select * from held for update nowait", wait_s=0.2)
    finally:
        release.cancel()
        holder.close()
