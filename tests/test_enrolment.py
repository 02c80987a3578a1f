"""Enrolment against the real database: `glucover policies apply --json FILE`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cli.main import main

APPLICATION = {
    "holder_name": "Li Wei", "birth_year": 1980, "diabetes_type": "type2",
    "diagnosis_year": 2015, "timezone": "Asia/Shanghai", "device": "bgm",
    "product": "default", "frequency": "monthly", "start_date": "2030-01-01",
    "consents": [{"purpose": "pricing", "granted": True},
                 {"purpose": "research", "granted": False}],
}


def _file(tmp_path: Path, **changes: Any) -> str:
    path = tmp_path / "application.json"
    path.write_text(json.dumps({**APPLICATION, **changes}))
    return str(path)


def test_an_eligible_application_becomes_a_policy(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    assert main(["policies", "apply", "--json", _file(tmp_path), "--output-json"]) == 0
    outcome = json.loads(capsys.readouterr().out)
    assert outcome["outcome"] == "accepted" and outcome["term_start"] == "2030-01-01"
    assert outcome["term_end"] == "2030-12-31" and outcome["frequency"] == "monthly"
    assert outcome["instalment"] == round(1800 / 12 * 1.05, 2)  # aged 50 in 2030: band 2
    policy = outcome["policy_id"]
    assert main(["policies", "show", "--policy", policy, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["state"] == "active" and shown["state_since"] == "2030-01-01"
    assert [h["state"] for h in shown["history"]] == ["applied", "active"]
    assert shown["waiting_period_ends"] == "2030-04-01"
    with psycopg.connect(db_url) as conn:
        device = conn.execute("select d.kind, d.mqtt_password_hash is not null from devices d "
                              "join policy_devices using (device_id) where policy_id = %s",
                              (policy,)).fetchone()
        body = conn.execute("select body from policy_applications where policy_id = %s",
                            (policy,)).fetchone()
    assert device == ("bgm", True)
    assert body is not None and body[0]["consents"] == APPLICATION["consents"]
    # The consents are in the register, through the enrolment channel, from the start.
    from datetime import date

    from privacy import consent

    with psycopg.connect(db_url) as conn:
        events = conn.execute("select purpose, given, channel from consent_events where "
                              "policy_id = %s order by purpose", (policy,)).fetchall()
        assert events == [("pricing", True, "enrolment"), ("research", False, "enrolment")]
        assert consent.live(conn, policy, "pricing", date(2030, 1, 1))
        assert not consent.live(conn, policy, "research", date(2030, 1, 1))


@pytest.mark.parametrize(("changes", "reason"), [
    ({"birth_year": 1940}, "above the product's 70 (eligibility.max_age)"),
    ({"birth_year": 2020, "diagnosis_year": 2024}, "below the product's 18"),
    ({"diabetes_type": "other"}, "enrols diabetes type1, type2, not other"),
    ({"consents": [{"purpose": "pricing", "granted": False}]}, "needs the consent 'pricing'"),
    ({"device": "cgm"}, "priced on the other kind of device"),
    ({"product": "gold"}, "there is no product 'gold'"),
])
def test_refusals_say_why(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str], changes: dict[str, Any],
                          reason: str) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    assert main(["policies", "apply", "--json", _file(tmp_path, **changes)]) == 2
    err = capsys.readouterr().err.strip()
    assert "refused" in err and reason in err and len(err.splitlines()) == 1
    with psycopg.connect(db_url) as conn:
        assert conn.execute("select count(*) from policies").fetchone() == (0,)
        assert conn.execute("select outcome, cardinality(reasons) > 0 from "
                            "policy_applications").fetchall() == [("refused", True)]


def test_a_malformed_application_names_every_field(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    path = _file(tmp_path, timezone="Mars/Base", birth_year="1980", device="pump")
    assert main(["policies", "apply", "--json", path]) == 2
    err = capsys.readouterr().err
    assert "timezone" in err and "birth_year" in err and "device: one of bgm, cgm" in err


def _signup_page(lang: str = "en") -> Any:
    from streamlit.testing.v1 import AppTest

    def page(lang: str) -> None:
        import streamlit as st

        from dashboard.views import signup

        st.session_state["lang"] = lang
        signup.render()

    at = AppTest.from_function(page, args=(lang,), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def test_the_sign_up_page_enrols_and_gives_a_login(db_url: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from dashboard.auth import authenticate

    monkeypatch.setenv("DATABASE_URL", db_url)
    refused = _signup_page("zh")
    assert refused.title[0].value == "申请投保"
    refused.text_input[0].input("王芳")
    refused.text_input[1].input("a long password")
    refused.button[0].click().run()  # without the consent to pricing
    assert any("无法承保" in e.value and "pricing" in e.value for e in refused.error)

    at = _signup_page()
    at.text_input[0].input("Li Wei")
    at.text_input[1].input("a long password")
    at.checkbox[0].check()
    at.button[0].click().run()
    assert not at.exception
    [welcome] = [s.value for s in at.success]
    with psycopg.connect(db_url) as conn:
        row = conn.execute("select policy_id from policies").fetchone()
        assert row is not None and row[0] in welcome
        user = authenticate(conn, str(row[0]).lower(), "a long password")
    assert user is not None and user.role == "policyholder" and user.policy_id == row[0]


def test_a_consent_to_an_unknown_purpose_is_named(db_url: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    consents = [{"purpose": "pricing", "granted": True}, {"purpose": "marketing", "granted": True}]
    assert main(["policies", "apply", "--json", _file(tmp_path, consents=consents)]) == 2
    assert "consents: no purpose marketing (one of pricing, care, research)" in \
        capsys.readouterr().err
    with psycopg.connect(db_url) as conn:
        assert conn.execute("select count(*) from policies").fetchone() == (0,)


def test_an_application_uploading_through_nightscout_gets_its_credentials(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from nightscout.credentials import credentials, key, sha1_hex
    from tests.helpers import TEST_SECRET

    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("GLUCOVER_API_URL", "https://ns.example.com")
    assert main(["policies", "apply", "--json", _file(tmp_path, device="nightscout",
                                                      product=None), "--output-json"]) == 0
    outcome = json.loads(capsys.readouterr().out)
    policy = outcome["policy_id"]
    creds = credentials(TEST_SECRET, policy, 1)
    assert outcome["device_id"] == creds.device_id
    assert outcome["nightscout"]["base_url"] == "https://ns.example.com"
    assert outcome["nightscout"]["api_secret"] == creds.api_secret
    with psycopg.connect(db_url) as conn:
        device = conn.execute("select d.model, d.kind, p.ruleset_name, pd.bound_from::date "
                              "from devices d join policy_devices pd using (device_id) "
                              "join policies p using (policy_id) where policy_id = %s",
                              (policy,)).fetchall()
        stored = conn.execute("select device_id, generation, secret_sha1_key from "
                              "nightscout_uploaders where policy_id = %s", (policy,)).fetchall()
    from datetime import date

    assert device == [("nightscout", "cgm", "cgm-default", date(2029, 12, 30))]
    assert stored == [(creds.device_id, 1, key(sha1_hex(creds.api_secret)))]
    # `nightscout enable` finds them made: the same credentials, nothing changed.
    assert main(["nightscout", "enable", "--policy", policy, "--json"]) == 0
    enabled = json.loads(capsys.readouterr().out)
    assert enabled["api_secret"] == creds.api_secret and enabled["changed"] is False
    # A Nightscout upload is a CGM's: the meter product refuses it.
    assert main(["policies", "apply", "--json", _file(tmp_path, device="nightscout")]) == 2
    assert "priced on the other kind of device, not a cgm" in capsys.readouterr().err


def test_the_dashboards_role_may_enrol_a_nightscout_application(db_url: str) -> None:
    from policies import enrolment
    from tests.helpers import TEST_SECRET

    app = enrolment.parse({**APPLICATION, "device": "nightscout", "product": None})
    with psycopg.connect(db_url) as conn:
        conn.execute("set role glucover_dashboard")
        outcome = enrolment.apply(conn, app, None, "signup", nightscout_key=TEST_SECRET)
        conn.commit()
    assert outcome.accepted and outcome.uploads is not None


def test_the_sign_up_page_offers_nightscout_uploads(db_url: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from dashboard.auth import create_user
    from nightscout.credentials import credentials
    from tests.helpers import PASSWORD, TEST_SECRET, signed_in

    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("GLUCOVER_API_URL", "https://ns.example.com")
    at = _signup_page("zh")
    at.text_input[0].input("王芳")
    at.text_input[1].input("a long password")
    device = next(s for s in at.selectbox if s.label == "设备")
    assert "我自己的 CGM 应用（Nightscout 上传）" in device.options
    device.set_value("nightscout")
    at.checkbox[0].check()
    at.button[0].click().run()
    assert not at.exception and at.success and not at.error
    assert any("API 密钥" in i.value for i in at.info)
    with psycopg.connect(db_url) as conn:
        row = conn.execute("select policy_id, ruleset_name from policies").fetchone()
        assert row is not None and row[1] == "cgm-default"
        create_user(conn, "holder_ns", PASSWORD, "policyholder", str(row[0]), rounds=4)
        conn.commit()
    creds = credentials(TEST_SECRET, str(row[0]), 1)
    page = signed_in("holder_ns")
    assert [c.value for c in page.code][:2] == ["https://ns.example.com", creds.api_secret]
