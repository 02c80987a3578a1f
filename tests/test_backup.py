"""`glucover backup` and `glucover restore`: a restore into a fresh cluster reproduces every
table exactly (row counts and checksums) and the services run on it."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import psycopg
import pytest

from care import store as care_store
from care import stream
from cli.main import main
from dashboard import auth, sessions
from glucover.backup import BackupError, Manifest, table_figures
from glucover.config import Settings
from glucover.servers import LocalPostgres
from pricing.engine import run_pricing
from tests.helpers import START, TEST_SECRET, load_fleet


def _portfolio_with_history(db_url: str) -> str:
    """Readings, a priced ledger, alerts with an audit trail, a dashboard user and session;
    the session's token."""
    load_fleet(db_url, n=6, days=20)
    run_pricing(db_url, START + timedelta(days=18))
    with psycopg.connect(db_url) as conn:
        rules = care_store.rules_in_force(conn)
        stream.judge_inbox(conn, rules)
        stream.sweep(conn, rules, now=datetime.combine(START + timedelta(days=26), time(12),
                                                       UTC))  # the meters have fallen silent
        alert = conn.execute("select alert_id from alerts order by alert_id limit 1").fetchone()
        assert alert is not None, "the fleet raises alerts"
        auth.create_user(conn, "nurse", "pw", "clinician", None, rounds=4)
        care_store.act(conn, "nurse", int(alert[0]), "acknowledge")
        auth.create_user(conn, "actuary", "pw", "actuary", None, rounds=4)
        user = auth.authenticate(conn, "actuary", "pw")
        assert user is not None
        token, _ = sessions.open_session(conn, sessions.signing_key(TEST_SECRET), user)
        conn.commit()
    return token


def test_restore_into_a_fresh_cluster_reproduces_every_table_and_serves(
        db_url: str, settings: Settings, own_pg: LocalPostgres, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    token = _portfolio_with_history(db_url)
    with psycopg.connect(db_url) as conn:
        before = table_figures(conn)
    for table in ("readings", "sum_insured_ledger", "alerts", "alert_audit",
                  "dashboard_sessions", "policies", "rulesets", "pricing_runs"):
        assert before[table].rows > 0, table

    monkeypatch.setenv("DATABASE_URL", db_url)
    assert main(["backup", "--out", str(tmp_path / "backup")]) == 0
    manifest = Manifest.read(tmp_path / "backup")
    assert manifest.tables == before
    assert {"glucover_ingest", "glucover_pricing", "glucover_dashboard"} <= set(manifest.roles)
    assert main(["backup", "--out", str(tmp_path / "backup")]) == 2  # never over a backup

    # A fresh cluster: no glucover roles, no database.
    with psycopg.connect(own_pg.url("postgres"), autocommit=True) as conn:
        conn.execute("create database restored")
    target = own_pg.url("restored")
    monkeypatch.setenv("DATABASE_URL", target)
    assert main(["restore", "--from", str(tmp_path / "backup")]) == 0
    assert "each equal to the backup's count and checksum" in capsys.readouterr().out
    with psycopg.connect(target) as conn:
        assert table_figures(conn) == before  # readings, ledger, alerts, audit, sessions...
        # The services run on it: the dashboard resumes the session, the care team's audit
        # trail is there, and a pricing run prices a new day.
        user = sessions.resume(conn, sessions.signing_key(TEST_SECRET), token)
        assert user is not None and user.username == "actuary"
        assert list(care_store.audit_trail(conn, int(str(conn.execute(
            "select alert_id from alert_audit").fetchone()[0])))["action"]) == [  # type: ignore[index]
            "acknowledge"]
    summary = run_pricing(target, START + timedelta(days=19))
    assert summary.rows_added > 0
    # Restoring over a database that holds the schema is refused.
    assert main(["restore", "--from", str(tmp_path / "backup")]) == 2


def test_a_backup_that_does_not_match_its_manifest_is_not_restored(
        db_url: str, settings: Settings, fresh_db: str, tmp_path: Path) -> None:
    from glucover.backup import backup, restore

    backup(db_url, tmp_path / "b", settings)
    with (tmp_path / "b" / "glucover.dump").open("ab") as dump:
        dump.write(b"tampered")
    with pytest.raises(BackupError, match="not the file the manifest describes"):
        restore(fresh_db, tmp_path / "b", settings)
