"""Claims as a process against the real database: `glucover claims ...` (docs/claims.md)."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cli.main import main
from dashboard.auth import create_user
from tests.helpers import PASSWORD, START, current_ledger, late_reading, load_fleet

POLICY = "POL-004-000002"
AFTER_WAITING = START + timedelta(days=100)  # the default waiting period is 90 days
PDF = b"%PDF-1.7\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def _users(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        create_user(conn, "handler", PASSWORD, "claims", rounds=4)
        create_user(conn, "insured-handler", PASSWORD, "claims", POLICY, rounds=4)
        create_user(conn, "actuary", PASSWORD, "actuary", rounds=4)
        conn.commit()


@pytest.fixture
def portfolio(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    from pricing.engine import run_pricing

    load_fleet(db_url, n=3, days=20, seed=4)
    with psycopg.connect(db_url) as conn:  # the fleet's readings arrived an hour ago
        conn.execute("update readings set ingested_at = ingested_at - interval '1 hour'")
        conn.commit()
    run_pricing(db_url, AFTER_WAITING)
    _users(db_url)
    monkeypatch.setenv("DATABASE_URL", db_url)
    return db_url


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main(list(argv)) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def _sum_insured(db_url: str, policy: str, day: Any) -> float:
    ledger = current_ledger(db_url)
    return float(ledger[(ledger["policy_id"] == policy) & (ledger["day"] == day)]
                 ["sum_insured"].item())


def test_frozen_basis_under_late_readings_and_approval_ends_the_cover(
        portfolio: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pricing.engine import run_pricing

    basis_day = AFTER_WAITING - timedelta(days=1)
    frozen = _sum_insured(portfolio, POLICY, basis_day)
    report = tmp_path / "discharge.pdf"
    report.write_bytes(PDF)
    filed = _run(capsys, "claims", "file", "--policy", POLICY, "--event-date",
                 AFTER_WAITING.isoformat(), "--diagnosis", "E11.35", "--document",
                 str(report), "--json")
    assert filed["status"] == "filed" and filed["policy_id"] == POLICY
    assert filed["diagnosis"] == "E11.35" and filed["payout"] is None
    assert filed["basis_day"] == basis_day.isoformat()
    assert filed["basis_sum_insured"] == frozen
    assert "waiting_period" not in filed["flags"]
    [doc] = filed["documents"]
    assert doc["sha256"] == hashlib.sha256(PDF).hexdigest() and doc["size_bytes"] == len(PDF)

    # A reading for a missed day before the basis day arrives late and the ledger moves.
    late_reading(portfolio, POLICY, basis_day - timedelta(days=2), 50001, timedelta(days=1))
    run_pricing(portfolio, AFTER_WAITING)
    assert _sum_insured(portfolio, POLICY, basis_day) == frozen + 100
    shown = _run(capsys, "claims", "show", "--claim", str(filed["claim_id"]), "--json")
    assert shown["basis_sum_insured"] == frozen  # the basis as the ledger stood when filed

    approved = _run(capsys, "claims", "approve", "--claim", str(filed["claim_id"]),
                    "--handler", "handler", "--json")
    assert approved["status"] == "approved" and approved["payout"] == frozen
    assert [e["kind"] for e in approved["events"]] == ["filed", "approved"]
    paid = _run(capsys, "claims", "pay", "--claim", str(filed["claim_id"]), "--handler",
                "handler", "--reference", "TX-1", "--json")
    assert paid["status"] == "paid" and paid["payout"] == frozen
    policy = _run(capsys, "policies", "show", "--policy", POLICY, "--json")
    assert policy["state"] == "claimed"
    _workbench_figures(portfolio, frozen)
    assert policy["history"][-1]["claim_id"] == filed["claim_id"]
    with psycopg.connect(portfolio) as conn, pytest.raises(psycopg.errors.RaiseException,
                                                           match="append-only"):
        conn.execute("update policy_events set state = 'active'")

    # The cover has ended: neither late readings nor later days move its ledger.
    with psycopg.connect(portfolio) as conn:
        before = conn.execute("select count(*) from sum_insured_ledger where policy_id = %s",
                              (POLICY,)).fetchone()
    late_reading(portfolio, POLICY, basis_day - timedelta(days=4), 50002, timedelta(days=1))
    summary = run_pricing(portfolio, AFTER_WAITING + timedelta(days=5))
    assert summary.rows_added > 0  # the other policies go on
    with psycopg.connect(portfolio) as conn:
        after = conn.execute("select count(*) from sum_insured_ledger where policy_id = %s",
                             (POLICY,)).fetchone()
    assert after == before
    # ... and it cannot be claimed on again.
    err = _refused(capsys, "claims", "file", "--policy", POLICY, "--event-date",
                   AFTER_WAITING.isoformat(), "--diagnosis", "I21")
    assert "paid a claim already" in err


def test_refusals_are_one_line_and_exit_2(portfolio: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    event = AFTER_WAITING.isoformat()
    assert "no policy 'nope'" in _refused(capsys, "claims", "file", "--policy", "nope",
                                          "--event-date", event, "--diagnosis", "I21")
    assert "not a covered diagnosis" in _refused(
        capsys, "claims", "file", "--policy", POLICY, "--event-date", event, "--diagnosis",
        "E11.9")
    assert "not covered" in _refused(
        capsys, "claims", "file", "--policy", POLICY, "--event-date",
        (START - timedelta(days=1)).isoformat(), "--diagnosis", "I21")
    fake = tmp_path / "scan.pdf"
    fake.write_bytes(PNG)  # a PNG that calls itself a PDF
    assert "is not a application/pdf file" in _refused(
        capsys, "claims", "file", "--policy", POLICY, "--event-date", event, "--diagnosis",
        "I21", "--document", str(fake))
    huge = tmp_path / "huge.pdf"
    huge.write_bytes(PDF + b"\x00" * (10 * 1024 * 1024))
    assert "the limit is 10 MiB" in _refused(
        capsys, "claims", "file", "--policy", POLICY, "--event-date", event, "--diagnosis",
        "I21", "--document", str(huge))
    script = tmp_path / "notes.txt"
    script.write_bytes(b"hello")
    assert "must be a PDF, PNG or JPEG" in _refused(
        capsys, "claims", "file", "--policy", POLICY, "--event-date", event, "--diagnosis",
        "I21", "--document", str(script))
    with psycopg.connect(portfolio) as conn:
        assert conn.execute("select count(*) from claims").fetchone() == (0,)

    # A claim in the waiting period is filed, flagged, and cannot be approved.
    early = _run(capsys, "claims", "file", "--policy", POLICY, "--event-date",
                 (START + timedelta(days=10)).isoformat(), "--diagnosis", "I63", "--json")
    assert "waiting_period" in early["flags"]
    assert "readings_after_event" in early["flags"]  # the fleet's meters went on measuring
    claim = str(early["claim_id"])
    assert "waiting period" in _refused(capsys, "claims", "approve", "--claim", claim,
                                        "--handler", "handler")
    assert "own policy" in _refused(capsys, "claims", "approve", "--claim", claim,
                                    "--handler", "insured-handler")
    assert "not a claims handler" in _refused(capsys, "claims", "approve", "--claim", claim,
                                              "--handler", "actuary")
    assert "not a decline reason" in _refused(capsys, "claims", "decline", "--claim", claim,
                                              "--handler", "handler", "--reason", "because")
    declined = _run(capsys, "claims", "decline", "--claim", claim, "--handler", "handler",
                    "--reason", "waiting_period", "--words", "within 90 days", "--json")
    assert declined["status"] == "declined" and declined["payout"] is None
    assert declined["events"][-1]["reason_code"] == "waiting_period"
    assert "only an open claim" in _refused(capsys, "claims", "approve", "--claim", claim,
                                            "--handler", "handler")
    assert _run(capsys, "policies", "show", "--policy", POLICY, "--json")["state"] == "active"


def test_more_information_documents_list_and_diagnoses(
        portfolio: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = "POL-004-000001"
    event = AFTER_WAITING.isoformat()
    first = _run(capsys, "claims", "file", "--policy", other, "--event-date", event,
                 "--diagnosis", "N18.5", "--json")["claim_id"]
    second = _run(capsys, "claims", "file", "--policy", POLICY, "--event-date", event,
                  "--diagnosis", "I21", "--json")["claim_id"]
    asked = _run(capsys, "claims", "ask", "--claim", str(first), "--handler", "handler",
                 "--words", "the dialysis unit's letter", "--json")
    assert asked["status"] == "more_information"
    photo = tmp_path / "letter.png"
    photo.write_bytes(PNG)
    back = _run(capsys, "claims", "add-documents", "--claim", str(first), "--document",
                str(photo), "--json")
    assert back["status"] == "filed" and back["documents"][0]["media_type"] == "image/png"
    listed = _run(capsys, "claims", "list", "--json")
    assert [c["claim_id"] for c in listed] == [second, first]
    assert {"claim_id", "policy_id", "event_date", "diagnosis", "status", "basis_day",
            "basis_sum_insured", "payout", "flags"} <= set(listed[0])
    mine = _run(capsys, "claims", "list", "--policy", POLICY, "--json")
    assert [c["claim_id"] for c in mine] == [second]
    assert _run(capsys, "claims", "list", "--status", "paid", "--json") == []
    codes = _run(capsys, "claims", "diagnoses", "--json")
    assert {"N18.5", "E11.35", "I21", "I63"} <= {d["code"] for d in codes}
    assert all(d["name_en"] and d["name_zh"] for d in codes)

    # Every step is an event; none can be rewritten or removed.
    with psycopg.connect(portfolio) as conn:
        assert conn.execute("select kind from claim_events where claim_id = %s order by "
                            "event_id", (first,)).fetchall() == [
            ("filed",), ("more_information",), ("documents_added",)]
        for statement in ("update claims set basis_sum_insured = 1",
                          "delete from claim_events", "delete from claim_documents"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(statement)
            conn.rollback()


def _workbench_figures(db_url: str, paid: float) -> None:
    """The workbench's claims figures: the payout incurred in the event's month, beside the
    premium the portfolio earned that month (the claimed policy until the event)."""
    from policies.figures import claims_by_month

    with psycopg.connect(db_url) as conn:
        figures = claims_by_month(conn, today=AFTER_WAITING + timedelta(days=20))
    month = figures[figures["month"] == AFTER_WAITING.strftime("%Y-%m")]
    assert month["incurred"].sum() == paid and month["paid"].sum() == paid
    assert month["claims_approved"].sum() == 1
    row = month[month["incurred"] > 0].iloc[0]
    assert row["earned_premium"] > 0
    assert row["loss_ratio"] == pytest.approx(row["incurred"] / row["earned_premium"])
    # Three policies earn 1,200 RMB a year or more each (the default table's lowest band).
    assert figures["earned_premium"].sum() >= 3 * 1200 * 100 / 365 * 0.95


def test_the_demo_has_a_claim_in_every_state(db_url: str) -> None:
    from policies.claims import STATUSES, claims
    from policies.demo import seed_claims
    from pricing.engine import run_pricing

    load_fleet(db_url, n=6, days=20, seed=5)
    today = START + timedelta(days=101)
    run_pricing(db_url, today - timedelta(days=1))
    with psycopg.connect(db_url) as conn:
        create_user(conn, "claims", PASSWORD, "claims", rounds=4)
        made = seed_claims(conn, [f"POL-005-{i:06d}" for i in range(1, 7)], "claims", today)
        conn.commit()
        found = {c.claim_id: c.status for c in claims(conn)}
    assert set(made) == set(STATUSES)
    assert {status: found[claim_id] for status, claim_id in made.items()} == {
        s: s for s in STATUSES}
