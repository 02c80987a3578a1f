"""Consent per purpose (privacy/consent.py, docs/privacy.md), against the real database: the
events are append-only, the command line records and shows them, and each purpose is
enforced where the data is used: pricing (a no_consent ledger from the day of withdrawal),
care (no alert raised or shown), research (back-tests and the gaming report leave the policy
out and say so), the FHIR export (a Consent per purpose), the policyholder's page."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import psycopg
import pytest
from fhir.resources.R4B.bundle import Bundle

from care import store as care_store
from care.alerts import Finding
from care.rules import builtin
from cli.main import main
from dashboard.auth import create_user
from pricing import evaluator
from pricing.engine import run_pricing
from pricing.ruleset import load_builtin
from privacy import consent
from records.export import policy_bundle, pseudonym_key
from tests.helpers import PASSWORD, START, TEST_SECRET, load_fleet, signed_in

POLICY = "POL-006-000001"
OTHER = "POL-006-000002"


@pytest.fixture
def fleet(db_url: str) -> str:
    load_fleet(db_url, n=6, days=30, seed=6)
    return db_url


def _at(conn: psycopg.Connection[tuple[object, ...]], policy: str, day_offset: int,
        hour: int = 10) -> datetime:
    """An instant on the policy's local day START + day_offset."""
    row = conn.execute("select timezone from policies where policy_id = %s", (policy,)
                       ).fetchone()
    assert row is not None
    local = datetime.combine(START + timedelta(days=day_offset), time(hour),
                             ZoneInfo(str(row[0])))
    return local.astimezone(UTC)


def _ledger(conn: psycopg.Connection[tuple[object, ...]], policy: str) -> pd.DataFrame:
    rows = conn.execute("select day, day_status, delta::float8, sum_insured::float8, "
                        "reading_seq from current_ledger where policy_id = %s order by day",
                        (policy,)).fetchall()
    return pd.DataFrame(rows, columns=["day", "day_status", "delta", "sum_insured",
                                       "reading_seq"])


def test_provisioned_policies_consent_to_every_purpose_from_their_start(fleet: str) -> None:
    with psycopg.connect(fleet) as conn:
        choices = consent.state(conn, POLICY)
        assert [(c.purpose, c.given, c.channel, c.needs_reconsent) for c in choices] == [
            ("pricing", True, "provisioning", False), ("care", True, "provisioning", False),
            ("research", True, "provisioning", False)]
        assert consent.live(conn, POLICY, "pricing", START)
        assert not consent.live(conn, POLICY, "pricing", START - timedelta(days=1))
        stored = conn.execute("select purpose, version, body_zh from consent_texts "
                              "order by purpose").fetchall()
        assert [(p, v) for p, v, _ in stored] == [("care", 1), ("pricing", 1), ("research", 1)]


def test_events_are_append_only_for_everyone(fleet: str) -> None:
    with psycopg.connect(fleet) as conn:
        for statement in ("update consent_events set given = false",
                          "delete from consent_events",
                          "update consent_texts set body_en = 'changed'"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(statement)
            conn.rollback()
    # The dashboard's role may add a choice, never change one.
    with psycopg.connect(fleet) as conn:
        conn.execute("set role glucover_dashboard")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("update consent_events set given = false")


def test_the_command_line_gives_withdraws_and_shows(fleet: str, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", fleet)
    assert main(["consent", "withdraw", "--policy", POLICY, "--purpose", "research",
                 "--channel", "call_centre", "--actor", "agent-7", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    research = out["consents"][0]
    assert (research["purpose"], research["given"], research["channel"],
            research["actor"]) == ("research", False, "call_centre", "agent-7")
    assert main(["consent", "show", "--policy", POLICY, "--json"]) == 0
    shown = {c["purpose"]: c["given"] for c in json.loads(capsys.readouterr().out)["consents"]}
    assert shown == {"pricing": True, "care": True, "research": False}
    assert main(["consent", "give", "--policy", POLICY, "--purpose", "research"]) == 0
    assert "research given" in capsys.readouterr().out
    assert main(["consent", "show", "--policy", "NOPE"]) == 2
    assert "no policy 'NOPE'" in capsys.readouterr().err


def test_withdrawing_pricing_stops_pricing_from_that_day(fleet: str) -> None:
    through = START + timedelta(days=27)
    run_pricing(fleet, through)
    with psycopg.connect(fleet) as conn:
        before = _ledger(conn, POLICY)
        consent.record(conn, POLICY, "pricing", False, "test", "paper",
                       at=_at(conn, POLICY, 10))
        consent.record(conn, POLICY, "pricing", True, "test", "paper",
                       at=_at(conn, POLICY, 20))
        conn.commit()
    run_pricing(fleet, through)
    with psycopg.connect(fleet) as conn:
        after = _ledger(conn, POLICY)
        other_after = _ledger(conn, OTHER)
    paused = after.iloc[10:20]
    assert set(paused["day_status"]) == {"no_consent"}
    assert (paused["delta"] == 0).all()
    assert paused["reading_seq"].isna().all()
    # The sum insured is kept as it stood the day before (the default `keep`).
    assert (paused["sum_insured"] == before["sum_insured"].iloc[9]).all()
    pd.testing.assert_frame_equal(after.iloc[:10], before.iloc[:10])
    assert "no_consent" not in set(after.iloc[20:]["day_status"])
    assert "no_consent" not in set(other_after["day_status"])


def test_without_consent_the_sum_insured_returns_to_base_when_the_ruleset_says_so() -> None:
    """Rule 7 with `consent.withdrawn_bonus = "base"`: the day of withdrawal takes the bonus
    back to 0, the days after change nothing, the block costs no penalty."""
    rules = load_builtin("default")
    base = rules.__class__(**{**rules.parameters(), "withdrawn_bonus": "base"})
    policies = pd.DataFrame({"policy_id": ["P"], "start_date": pd.to_datetime(["2026-03-02"]),
                             "base_sum_insured": [10000.0], "timezone": ["UTC"]})
    step = np.full((1, 14), 100.0)
    consented = pd.DataFrame({"policy_id": ["P"], "from_day": pd.to_datetime(["2026-03-02"]),
                              "to_day": pd.to_datetime(["2026-03-06"])})
    paused = evaluator.paused_days(policies, consented, 14)
    assert paused is not None and paused[0].tolist() == [False] * 4 + [True] * 10
    resume = evaluator.Resume(np.zeros(1, np.int64), np.zeros(1), np.zeros(1, np.int64))
    for rule, kept in ((rules, 400.0), (base, 0.0)):
        bonus, delta = evaluator.running_bonus(step, np.ones((1, 14), bool), rule, resume,
                                               paused)
        assert bonus[0, 3] == 400.0
        assert (bonus[0, 4:] == kept).all()
        assert delta[0, 4] == kept - 400.0
        assert (delta[0, 5:] == 0).all()  # no penalty for the short weeks either


def test_without_care_consent_no_alert_is_raised_or_shown(fleet: str) -> None:
    rules = builtin()
    with psycopg.connect(fleet) as conn:
        finding = Finding(POLICY, "lapsed", (), "no readings for 3 days", key="lapse-1")
        assert care_store.record(conn, [finding], rules)
        conn.commit()
        assert len(care_store.list_alerts(conn, [POLICY])) == 1
        consent.record(conn, POLICY, "care", False, "test", "paper")
        conn.commit()
        assert care_store.list_alerts(conn, [POLICY]).empty  # not shown
        other = Finding(POLICY, "device_trouble", (), "clock off", key="clock-1")
        assert care_store.record(conn, [other], rules) == []  # not raised
        assert conn.execute("select count(*) from alerts where policy_id = %s",
                            (POLICY,)).fetchone() == (1,)


def test_without_research_consent_the_actuaries_tools_leave_the_policy_out(
        fleet: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", fleet)
    with psycopg.connect(fleet) as conn:
        for policy in (POLICY, OTHER):
            consent.record(conn, policy, "research", False, "test", "paper")
        conn.commit()
    assert main(["actuary", "backtest", "--ruleset", "default", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["left_out_without_research_consent"] == 2
    assert summary["policies"] == 4
    assert main(["actuary", "gaming", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["left_out_without_research_consent"] == 2
    assert main(["actuary", "gaming"]) == 0
    assert "2 policies left out: no consent to research" in capsys.readouterr().out


def test_the_fhir_bundle_carries_a_consent_per_purpose_and_validates(fleet: str) -> None:
    with psycopg.connect(fleet) as conn:
        consent.record(conn, POLICY, "care", False, "test", "paper")
        conn.commit()
        export = policy_bundle(conn, POLICY, pseudonym_key(TEST_SECRET))
    document = json.loads(export.to_json())
    Bundle.model_validate(document)
    consents = [e["resource"] for e in document["entry"]
                if e["resource"]["resourceType"] == "Consent"]
    by_purpose = {c["provision"]["purpose"][0]["code"]: c for c in consents}
    assert set(by_purpose) == {"pricing", "care", "research"}
    assert by_purpose["care"]["provision"]["type"] == "deny"
    assert by_purpose["care"]["policyRule"]["coding"][0]["code"] == "OPTOUT"
    assert by_purpose["pricing"]["provision"]["type"] == "permit"


@pytest.mark.parametrize(("lang", "title", "withdraw", "saved"), [
    ("en", "Your consents", "Withdraw consent", "Your choice is recorded."),
    ("zh", "我的授权同意", "撤回同意", "您的选择已记录。")])
def test_the_policyholder_changes_their_consent_on_their_page(
        fleet: str, monkeypatch: pytest.MonkeyPatch, lang: str, title: str, withdraw: str,
        saved: str) -> None:
    monkeypatch.setenv("DATABASE_URL", fleet)
    with psycopg.connect(fleet) as conn:
        create_user(conn, "alice", PASSWORD, "policyholder", POLICY, rounds=4)
        conn.commit()
    at = signed_in("alice", {"lang": lang})
    assert any(e.label == title for e in at.expander)
    next(b for b in at.button if b.key == "consent_research").click()
    at.run()
    assert not at.exception
    assert [s.value for s in at.success] == [saved]
    assert at.button(key="consent_research").label != withdraw  # now offers to give it
    with psycopg.connect(fleet) as conn:
        assert not consent.live(conn, POLICY, "research")
        event = conn.execute("select actor, channel from consent_events where policy_id = %s "
                             "order by event_id desc limit 1", (POLICY,)).fetchone()
    assert event == ("alice", "page")


def test_a_new_text_version_asks_to_confirm(fleet: str, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    monkeypatch.setenv("DATABASE_URL", fleet)
    with psycopg.connect(fleet) as conn:
        create_user(conn, "alice", PASSWORD, "policyholder", POLICY, rounds=4)
        # A policy sold before consent records: the migration's version 0.
        conn.execute("insert into consent_events (policy_id, purpose, given, actor, channel, "
                     "text_version) values (%s, 'pricing', true, 'glucover migrate', "
                     "'migration', 0)", (POLICY,))
        conn.commit()
        assert consent.state(conn, POLICY)[0].needs_reconsent
    at = signed_in("alice", {"lang": "zh"})
    assert any("条款已更新" in w.value for w in at.warning)
    at.button(key="consent_confirm_pricing").click()
    at.run()
    with psycopg.connect(fleet) as conn:
        assert not consent.state(conn, POLICY)[0].needs_reconsent


def test_a_changed_text_is_stored_as_a_new_version_and_asks_everyone_again(
        fleet: str, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = consent.texts()
    changed = {**shipped, "research": consent.ConsentText(
        "research", 2, shipped["research"].en + " Also in claims studies.",
        shipped["research"].zh + "也用于理赔研究。")}
    monkeypatch.setattr(consent, "texts", lambda: changed)
    with psycopg.connect(fleet) as conn:
        research = consent.state(conn, POLICY)[2]
        assert research.needs_reconsent and research.text_version == 1
        assert consent.live(conn, POLICY, "research")  # live until confirmed or withdrawn
        consent.record(conn, POLICY, "research", True, "alice", "page")
        assert not consent.state(conn, POLICY)[2].needs_reconsent
        versions = conn.execute("select version, body_en from consent_texts where purpose = "
                                "'research' order by version").fetchall()
    assert [v for v, _ in versions] == [1, 2]
    assert versions[0][1] == shipped["research"].en  # the old words stay as shown


def test_the_alert_sweep_raises_nothing_without_care_consent(fleet: str) -> None:
    from care import stream

    with psycopg.connect(fleet) as conn:
        consent.record(conn, POLICY, "care", False, "test", "paper")
        conn.commit()
        raised = stream.sweep(conn, builtin())
    lapsed = {r.policy_id for r in raised if r.rule == "lapsed"}
    assert OTHER in lapsed  # the fleet's meters went quiet months ago
    assert POLICY not in {r.policy_id for r in raised}
