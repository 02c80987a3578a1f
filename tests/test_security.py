"""Least-privilege database roles, and injection attempts through every input."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from psycopg import errors

from cli.main import main
from glucover.db import ensure_login_role, with_credentials
from tests.helpers import START, load_fleet

READING = ("insert into readings (device_id, seq, measured_at, utc_offset_min, received_at, "
           "value_digits, value_exponent, unit, meal, sample, source) values ('GM-X', 1, now(), "
           "0, now(), 55, -1, 'mmol/L', 'fasting', 'capillary_plasma', 'meter')")


def login(db_url: str, group: str) -> str:
    user, password = f"{group}_t", "pw-" + group
    ensure_login_role(db_url, group, user, password)
    return with_credentials(db_url, user, password)


def allowed(url: str, sql: str) -> bool:
    with psycopg.connect(url) as conn:
        try:
            conn.execute(sql)
        except errors.InsufficientPrivilege:
            return False
        conn.rollback()
    return True


@pytest.mark.parametrize(("group", "sql", "ok"), [
    ("glucover_ingest", READING, True),
    ("glucover_ingest", "insert into rejected_messages (topic, reason, detail, payload, "
     "payload_size) values ('t', 'r', 'd', 'x', 1)", True),
    ("glucover_ingest", "update readings set value_digits = 1", False),
    ("glucover_ingest", "delete from rejected_messages where received_at < now() - "
     "interval '30 days'", True),  # retention (ingest/rejects.py)
    ("glucover_ingest", "update rejected_messages set detail = ''", False),
    ("glucover_dashboard", "delete from sign_in_failures where failed_at < now()", True),
    ("glucover_dashboard", "update sign_in_failures set username = 'x'", False),
    ("glucover_ingest", "delete from readings", False),
    ("glucover_ingest", "select * from sum_insured_ledger", False),
    ("glucover_ingest", "insert into rulesets (name, version, author, body) values "
     "('x', 9, 'i', 'b')", False),
    ("glucover_ingest", "select password_hash from dashboard_users", False),
    ("glucover_pricing", "select count(*) from readings", True),
    ("glucover_pricing", "insert into pricing_runs (through) values (current_date)", True),
    ("glucover_pricing", READING, False),
    ("glucover_pricing", "delete from sum_insured_ledger", False),
    ("glucover_pricing", "update sum_insured_ledger set bonus = 0", False),
    ("glucover_pricing", "select password_hash from dashboard_users", False),
    ("glucover_dashboard", "select count(*) from current_ledger", True),
    ("glucover_dashboard", "insert into ruleset_drafts (name, author, body) values "
     "('d', 'a', 'b')", True),
    ("glucover_dashboard", "delete from dashboard_sessions", True),
    ("glucover_dashboard", READING, False),
    ("glucover_dashboard", "insert into pricing_runs (through) values (current_date)", False),
    ("glucover_dashboard", "update sum_insured_ledger set bonus = 0", False),
    ("glucover_dashboard", "delete from claims", False),
    ("glucover_dashboard", "update dashboard_users set role = 'actuary'", False),
    ("glucover_dashboard", "update policies set base_sum_insured = 1e6", False),
    ("glucover_dashboard", "update alerts set status = 'acknowledged'", True),
    ("glucover_dashboard", "select count(*) from claim_status", True),
    ("glucover_dashboard", "insert into dashboard_users (username, password_hash, role) "
     "values ('x', 'y', 'actuary')", False),
    ("glucover_dashboard", "update policy_terms set instalment = 0", False),
    ("glucover_dashboard", "delete from premium_payments", False),
    ("glucover_dashboard", "update alerts set rule = 'nothing'", False),
    ("glucover_dashboard", "delete from alerts", False),
    ("glucover_dashboard", "delete from alert_audit", False),
    ("glucover_dashboard", "delete from alert_inbox", False),
    ("glucover_ingest", "insert into alert_inbox default values", True),
    ("glucover_ingest", "select * from alerts", False),
    ("glucover_care", "select count(*) from readings", True),
    ("glucover_care", "delete from alert_inbox", True),
    ("glucover_care", "select id from alert_inbox for update skip locked", True),
    ("glucover_care", "update alert_inbox set committed_at = now()", False),
    ("glucover_care", "update readings set value_digits = 1", False),
    ("glucover_care", "delete from alerts", False),
    ("glucover_care", "insert into alert_audit (username, alert_id, action) values "
     "('x', 1, 'note')", False),
    ("glucover_care", "select password_hash from dashboard_users", False),
    ("glucover_care", READING, False),
])
def test_database_roles_are_least_privilege(db_url: str, group: str, sql: str, ok: bool
                                            ) -> None:
    assert allowed(login(db_url, group), sql) is ok


def test_services_work_with_their_own_roles(db_url: str) -> None:
    from pricing.engine import run_pricing

    load_fleet(db_url, n=3, days=10, seed=21)  # as the admin: provisioning is not a service
    summary = run_pricing(login(db_url, "glucover_pricing"), START + timedelta(days=9))
    assert summary.rows_added == 30


def test_the_claims_process_works_with_the_dashboards_role(db_url: str) -> None:
    """A policyholder files and a handler approves from the dashboard, under its login."""
    from dashboard.auth import create_user
    from policies import claims
    from pricing.engine import run_pricing

    load_fleet(db_url, n=2, days=10, seed=21)
    event = START + timedelta(days=95)
    run_pricing(db_url, event)
    with psycopg.connect(db_url) as conn:
        create_user(conn, "handler", "pw", "claims", rounds=4)
        conn.commit()
    with psycopg.connect(login(db_url, "glucover_dashboard")) as conn:
        claim_id = claims.file_claim(conn, "POL-021-000001", event, "I21", [], "holder")
        claims.approve(conn, claim_id, "handler")
        conn.commit()
        assert claims.claim(conn, claim_id).status == "approved"


def tables(db_url: str) -> set[str]:
    with psycopg.connect(db_url) as conn:
        return {str(r[0]) for r in conn.execute(
            "select table_name from information_schema.tables where table_schema = 'public'")}


INJECTIONS = ["x' or '1'='1", "x'; drop table readings; --", "\"; delete from policies; --",
              "x') union select password_hash from dashboard_users --"]


@pytest.mark.parametrize("evil", INJECTIONS)
def test_cli_arguments_cannot_inject_sql(db_url: str, evil: str,
                                         monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    load_fleet(db_url, n=2, days=5, seed=22)
    before = tables(db_url)
    monkeypatch.setenv("DATABASE_URL", db_url)
    assert main(["claims", "file", "--policy", evil, "--event-date", "2026-03-04",
                 "--diagnosis", evil]) == 2
    assert "no policy" in capsys.readouterr().err
    assert main(["devices", "revoke", evil]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["price", "run", "--through", "2026-03-05", "--ruleset", evil]) == 2
    assert "neither published nor built in" in capsys.readouterr().err
    assert tables(db_url) == before
    with psycopg.connect(db_url) as conn:
        assert conn.execute("select count(*) from claims").fetchone() == (0,)
        assert conn.execute("select count(*) from policies").fetchone() == (2,)
        assert conn.execute("select count(*) from devices where revoked_at is not null"
                            ).fetchone() == (0,)


def test_dashboard_inputs_cannot_inject_sql(db_url: str, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    from streamlit.testing.v1 import AppTest

    from dashboard.auth import create_user
    from tests.helpers import APP

    load_fleet(db_url, n=2, days=5, seed=23)
    with psycopg.connect(db_url) as conn:
        create_user(conn, "ann", "secret pw", "actuary", rounds=4)
        conn.commit()
    before = tables(db_url)
    monkeypatch.setenv("DATABASE_URL", db_url)
    for evil in INJECTIONS:
        at = AppTest.from_file(APP, default_timeout=60)
        at.run()
        at.text_input[0].input(evil)
        at.text_input[1].input(evil)
        at.button[0].click()
        at.run()
        assert [e.value for e in at.error] == ["Wrong username or password."]
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["policy"] = INJECTIONS[0]
    at.run()
    at.text_input[0].input("ann")
    at.text_input[1].input("secret pw")
    at.button[0].click()
    at.run()
    assert not at.exception  # the policy page, asked for by a policy id that is not one
    assert "x' or 1=1" not in " ".join(str(m.value) for m in at.markdown)
    at = AppTest.from_file(APP, default_timeout=60)  # the workbench, at its own URL
    at.run()
    at.text_input[0].input("ann")
    at.text_input[1].input("secret pw")
    at.button[0].click()
    at.run()
    name_box = next(t for t in at.text_input if t.label == "Name")
    name_box.input(INJECTIONS[1])
    at.button(key="FormSubmitter:ruleset-Validate").click()
    at.run()
    next(b for b in at.button if b.label == "Publish new version").click()
    at.run()
    assert not at.exception
    assert tables(db_url) == before
    with psycopg.connect(db_url) as conn:
        names = [str(r[0]) for r in conn.execute("select name from rulesets")]
    assert INJECTIONS[1] in names  # stored as a name, nothing executed



def test_migrate_creates_service_logins_from_the_environment(
        fresh_db: str, settings: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", fresh_db)
    monkeypatch.setenv("GLUCOVER_DB_PASSWORD_INGEST", "ingest-pw")
    assert main(["migrate"]) == 0
    ingest = with_credentials(fresh_db, "glucover_ingest_svc", "ingest-pw")
    assert allowed(ingest, READING)
    assert not allowed(ingest, "update readings set value_digits = 1")
    with psycopg.connect(fresh_db) as conn:
        others = conn.execute("select count(*) from pg_roles where rolname in "
                              "('glucover_pricing_svc', 'glucover_dashboard_svc')").fetchone()
    assert others == (0,)  # no password given, no login made
