"""The access log (privacy/access_log.py): staff reads of one person's data leave a row (a
clinician or actuary opening a policy, a reviewer opening a review, an export); the data
protection officer reads and filters it on their page (both languages) and from the command
line; nobody can change it, whatever their database role."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from cli.main import main
from dashboard.auth import add_to_panel, create_user
from pricing.engine import run_pricing
from privacy import access_log, reviews
from tests.helpers import PASSWORD, START, load_fleet, signed_in

POLICY = "POL-006-000001"


@pytest.fixture
def people(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    load_fleet(db_url, n=6, days=20, seed=6)
    run_pricing(db_url, START + timedelta(days=19))
    with psycopg.connect(db_url) as conn:
        create_user(conn, "alice", PASSWORD, "policyholder", POLICY, rounds=4)
        create_user(conn, "dr_li", PASSWORD, "clinician", rounds=4)
        add_to_panel(conn, "dr_li", [POLICY])
        create_user(conn, "ann", PASSWORD, "actuary", rounds=4)
        create_user(conn, "uwe", PASSWORD, "reviewer", rounds=4)
        create_user(conn, "dpo", PASSWORD, "privacy", rounds=4)
        conn.commit()
    monkeypatch.setenv("DATABASE_URL", db_url)
    return db_url


def _log(db_url: str) -> list[tuple[str, str, str, str, str]]:
    with psycopg.connect(db_url) as conn:
        log = access_log.entries(conn)
    return [tuple(r) for r in log[["username", "role", "policy_id", "what", "purpose"]]
            .itertuples(index=False)][::-1]


def test_every_staff_read_is_logged_and_the_policyholders_own_are_not(
        people: str, tmp_path: Path) -> None:
    signed_in("alice")  # their own page: not a staff read
    assert _log(people) == []
    signed_in("dr_li", {"policy": POLICY}).run()  # a second run of the page: logged once
    signed_in("ann", {"policy": POLICY})
    with psycopg.connect(people) as conn:
        reviews.request(conn, POLICY, START + timedelta(days=4), "Please look again.", "alice")
        conn.commit()
    signed_in("uwe")
    assert main(["export", "fhir", "--policy", POLICY, "--out",
                 str(tmp_path / "p.json")]) == 0
    entries = _log(people)
    assert entries[:3] == [("dr_li", "clinician", POLICY, "policy_page", "care"),
                           ("ann", "actuary", POLICY, "policy_page", "underwriting"),
                           ("uwe", "reviewer", POLICY, "review", "review")]
    assert entries[3][1:] == ("operator", POLICY, "fhir_export", "data_rights")
    assert len(entries) == 4


def test_nobody_can_change_the_log(people: str) -> None:
    with psycopg.connect(people) as conn:
        access_log.record(conn, "dr_li", "clinician", POLICY, "policy_page")
        conn.commit()
        for statement in ("update access_log set username = 'nobody'", "delete from access_log",
                          "truncate access_log"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(statement)
            conn.rollback()
        for role in ("glucover_dashboard", "glucover_pricing", "glucover_care",
                     "glucover_ingest"):
            conn.execute(f"set role {role}")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("delete from access_log")
            conn.rollback()
        assert len(access_log.entries(conn)) == 1


@pytest.mark.parametrize(("lang", "title", "count"), [
    ("en", "Access log", "2 reads of a person's data."),
    ("zh", "访问日志", "共 2 次个人数据访问。")])
def test_the_data_protection_officer_filters_and_exports_the_log(
        people: str, lang: str, title: str, count: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    with psycopg.connect(people) as conn:
        access_log.record(conn, "dr_li", "clinician", POLICY, "policy_page")
        access_log.record(conn, "ann", "actuary", POLICY, "policy_page")
        access_log.record(conn, "ann", "actuary", "POL-006-000002", "policy_page")
        conn.commit()
    at = signed_in("dpo", {"lang": lang})
    assert at.title[0].value == title
    at.text_input[0].input(POLICY).run()
    assert at.caption[0].value == count
    assert len(at.dataframe[0].value) == 2
    # Other roles are refused the page.
    other = signed_in("ann", {"lang": lang})
    assert all(p != title for p in [t.value for t in other.title])
    assert main(["privacy", "access-log", "--user", "ann", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(r["policy_id"] for r in rows) == [POLICY, "POL-006-000002"]


def test_the_dashboards_role_may_do_what_its_pages_do(people: str) -> None:
    """The pages run as glucover_dashboard: a consent, a review and its decision (a ledger row
    of its own), a staff read and an erasure request, all within its grants."""
    from privacy import consent, erasure

    with psycopg.connect(people) as conn:
        conn.execute("set role glucover_dashboard")
        consent.record(conn, POLICY, "care", False, "alice", "page")
        review_id = reviews.request(conn, POLICY, START + timedelta(days=4), "Look again.",
                                    "alice")
        reviews.decide(conn, review_id, "uwe", "corrected", "Meter fault.", 100.0)
        access_log.record(conn, "uwe", "reviewer", POLICY, "review")
        erasure.request(conn, POLICY, "alice")
        conn.commit()
        assert len(access_log.entries(conn)) == 1
