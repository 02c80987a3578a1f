"""The dashboard: every page and role through Streamlit's AppTest, and one real browser."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from dashboard.auth import create_user
from pricing import glycaemia, store
from pricing.portfolio_figures import TIR_WINDOW_DAYS
from pricing.ruleset import load_builtin
from tests.helpers import (
    APP,
    PASSWORD,
    START,
    chromium,
    dashboard_server,
    load_fleet,
    scroll_to,
    settle,
    signed_in,
    wait_until,
)


@pytest.fixture
def dashboard_db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    from pricing.engine import run_pricing

    load_fleet(db_url, n=6, days=40, seed=6)
    run_pricing(db_url, START + timedelta(days=38))
    with psycopg.connect(db_url) as conn:
        create_user(conn, "alice", PASSWORD, "policyholder", "POL-006-000001", rounds=4)
        create_user(conn, "bob", PASSWORD, "policyholder", "POL-006-000002", rounds=4)
        create_user(conn, "ann", PASSWORD, "actuary", rounds=4)
        create_user(conn, "otto", PASSWORD, "operations", rounds=4)
        conn.execute("insert into rejected_messages (topic, device_id, reason, detail, payload, "
                     "payload_size) values ('glucover/v1/devices/x/readings', 'x', "
                     "'invalid_json', 'bad', 'nope', 4), ('glucover/v1/devices/x/readings', "
                     "'x', 'invalid_utf8', 'bad bytes', '\\xfffe7b', 3)")
        conn.commit()
    monkeypatch.setenv("DATABASE_URL", db_url)
    return db_url


def sum_insured_from_ledger(db_url: str, policy: str) -> float:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("select sum_insured::float8 from current_ledger where policy_id = %s "
                           "order by day desc limit 1", (policy,)).fetchone()
    assert row is not None
    return float(str(row[0]))


def test_wrong_password_is_refused(dashboard_db: str) -> None:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.text_input[0].input("alice")
    at.text_input[1].input("guess")
    at.button[0].click()
    at.run()
    assert [e.value for e in at.error] == ["Wrong username or password."]
    assert not at.metric


def test_policyholder_sees_their_own_policy(dashboard_db: str) -> None:
    at = signed_in("alice")
    assert "POL-006-000001" in at.title[0].value
    headline = at.metric[0]
    assert headline.label == "Sum insured"
    # Amounts carry their currency.
    assert headline.value == f"RMB {sum_insured_from_ledger(dashboard_db, 'POL-006-000001'):,.0f}"
    labels = {m.label for m in at.metric}
    assert {"This week", "A claim today would pay", "Estimated HbA1c", "Time in range",
            "In-target streak"} <= labels
    assert at.info[0].value.startswith("Measure before breakfast today to earn RMB 100")
    ledger = at.table[0].value
    assert len(ledger) > 30
    assert list(ledger.columns) == ["What happened", "Change (RMB)", "Sum insured (RMB)"]
    change = ledger["Change (RMB)"].str.replace(",", "").astype(float)
    # Each line in words; a day that earned its step names the reading that earned it.
    earned = ledger[change == 100]
    assert len(earned) > 0
    assert earned["What happened"].str.contains(
        r"\d\d:\d\d fasting reading .* mmol/L: in target").all()
    missed = ledger[ledger["What happened"] == "no pre-meal reading"]
    assert (change[missed.index] <= 0).all()
    with psycopg.connect(dashboard_db) as conn:
        assert conn.execute("select count(*) from dashboard_sessions where username = 'alice'"
                            ).fetchone() == (1,)


def test_policyholder_cannot_open_another_policy(dashboard_db: str) -> None:
    at = signed_in("alice", {"policy": "POL-006-000002"})
    assert [e.value for e in at.error] == ["you can only see your own policy"]
    assert not at.metric
    assert all("POL-006-000002" not in t.value for t in at.title)


def test_policyholder_page_in_chinese(dashboard_db: str) -> None:
    at = signed_in("bob")
    at.selectbox(key="lang_sidebar").set_value("zh")
    at.run()
    assert at.metric[0].label == "保额"
    assert "早餐前" in at.info[0].value


def test_actuary_workbench_editor_backtest_and_glm(dashboard_db: str) -> None:
    at = signed_in("ann")
    assert at.title[0].value == "Actuary workbench"
    assert at.metric[0].value == "6"
    # The portfolio's time in range from the daily summary, as the glycaemia module has it.
    with psycopg.connect(dashboard_db) as conn:
        readings = store.load_readings(conn, [str(d) for (d,) in conn.execute(
            "select device_id from devices")])
        row = conn.execute("select max(day) from sum_insured_ledger").fetchone()
    assert row is not None
    day = readings["measured_at"].dt.floor("D").dt.tz_localize(None)
    window = readings[day > pd.Timestamp(row[0]) - pd.Timedelta(days=TIR_WINDOW_DAYS)]
    tir = glycaemia.of_readings(window, load_builtin("default")).time_in_range
    assert tir is not None
    assert f"last {TIR_WINDOW_DAYS} days of readings: {tir:.1%}" in at.caption[0].value
    assert at.caption[1].value == "CGMs: no CGM policies priced yet"
    at.number_input(key="rs:default:v1:delta_in_target").set_value(150.0)
    at.button(key="FormSubmitter:ruleset-Validate").click()
    at.run()
    assert not at.exception
    assert "Valid." in [s.value for s in at.success]
    diff = at.dataframe[0].value
    assert list(diff["Name in the file"]) == ["deltas.in_target"]  # as the TOML names it
    next(b for b in at.button if b.label == "Publish new version").click()
    at.run()
    assert any("Published default version 2" in s.value for s in at.success)
    next(b for b in at.button if b.label == "Run back-test").click()
    at.run()
    assert not at.exception
    assert "Total sum insured (RMB)" in {m.label for m in at.metric}
    next(b for b in at.button if b.label == "Fit GLM").click()
    at.run()
    assert not at.exception
    assert any("est_a1c" in list(d.value["term"]) for d in at.dataframe if "term" in d.value)
    with psycopg.connect(dashboard_db) as conn:
        assert conn.execute("select author, version from rulesets where version = 2"
                            ).fetchone() == ("ann", 2)


def test_actuary_rejects_an_invalid_ruleset(dashboard_db: str) -> None:
    at = signed_in("ann")
    at.number_input(key="rs:default:v1:target_low").set_value(9.0)
    at.button(key="FormSubmitter:ruleset-Validate").click()
    at.run()
    assert any("target_low" in e.value for e in at.error)


def test_operations_page(dashboard_db: str) -> None:
    at = signed_in("otto")
    assert at.title[0].value == "Operations"
    reasons = next(d.value for d in at.dataframe if "reason" in d.value)
    assert sorted(reasons["reason"]) == ["invalid_json", "invalid_utf8"]
    samples = next(d.value for d in at.dataframe if "payload start" in d.value)
    assert "\\377\\376{" in set(samples["payload start"])
    assert not at.exception


@pytest.fixture
def served_dashboard(dashboard_db: str) -> Iterator[str]:
    with dashboard_server(dashboard_db) as port:
        yield f"http://127.0.0.1:{port}"


def _metric_values(driver: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text for e in driver.find_elements(By.CSS_SELECTOR,
                                                  "[data-testid='stMetricValue']")]


def _shows_figures(driver: Any, figures: set[str]) -> bool:
    return figures <= set(_metric_values(driver))


SIGN_IN = {"en": ("Username", "Password", "Sign in", "Sum insured"),
           "zh": ("用户名", "密码", "登录", "保额")}
SCREENS = {"desktop": (1400, 1000), "phone": (390, 844)}


def sign_in_through_page(driver: Any, username: str, lang: str = "en") -> None:
    """Type the name and password into the sign-in page (in `lang`) and press the button, as a
    person would; the page must be loading or loaded."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    user_label, password_label, button, _ = SIGN_IN[lang]
    WebDriverWait(driver, 60).until(ec.presence_of_element_located(
        (By.CSS_SELECTOR, f"input[aria-label='{user_label}']"))).send_keys(username)
    driver.find_element(By.CSS_SELECTOR, f"input[aria-label='{password_label}']"
                        ).send_keys(PASSWORD)
    driver.find_element(By.XPATH, f"//button[.//p[text()='{button}']]").click()


@pytest.mark.browser
@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("screen", ["desktop", "phone"])
def test_real_browser_policyholder_page(served_dashboard: str, dashboard_db: str,
                                        screen: str, lang: str) -> None:
    """Sign in through the page as a person would, at desktop and phone width, in both
    languages: the sum insured shows, no exception box, no developer toolbar, and on a phone
    nothing needs scrolling sideways. Screenshots land in the temporary directory."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    headline = SIGN_IN[lang][3]
    width, height = SCREENS[screen]
    with chromium(width, height) as driver:
        wait = WebDriverWait(driver, 60)
        driver.get(f"{served_dashboard}/?lang={lang}")
        sign_in_through_page(driver, "alice", lang)
        amount = f"{sum_insured_from_ledger(dashboard_db, 'POL-006-000001'):,.0f}"
        expected = f"RMB {amount}" if lang == "en" else f"{amount} 元"  # with its currency
        assert wait_until(lambda: expected in _metric_values(driver), 60), \
            _metric_values(driver)
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "[data-testid='stTable']")))
        settle(driver)  # the run done and its charts drawn before measuring and the screenshot
        assert headline in driver.page_source
        assert not driver.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")
        assert "Deploy" not in driver.find_element(By.TAG_NAME, "body").text
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{overflow} px to scroll sideways at {width} px"
        shots = Path(tempfile.gettempdir())
        driver.save_screenshot(str(shots / f"glucover-policyholder-{screen}-{lang}.png"))
        table = driver.find_element(By.CSS_SELECTOR, "[data-testid='stTable']")
        scroll_to(driver, table)
        driver.save_screenshot(str(shots / f"glucover-ledger-{screen}-{lang}.png"))


@pytest.mark.browser
def test_real_browser_every_role_page_renders(served_dashboard: str, dashboard_db: str
                                               ) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    with psycopg.connect(dashboard_db) as conn:
        policies = conn.execute("select count(*) from policies").fetchone()
        total = conn.execute("select sum(sum_insured)::float8 from (select distinct on "
                             "(policy_id) sum_insured from current_ledger "
                             "order by policy_id, day desc) s").fetchone()
    assert policies is not None and total is not None
    # The workbench counts the portfolio's policies and adds up their sums insured.
    for user, title, figures in (
            ("ann", "Actuary workbench", {f"{policies[0]:,}", f"RMB {total[0]:,.0f}"}),
            ("otto", "Operations", set())):
        with chromium(1400, 1000) as driver:
            wait = WebDriverWait(driver, 60)
            driver.get(served_dashboard)
            sign_in_through_page(driver, user)
            wait.until(ec.presence_of_element_located(
                (By.XPATH, f"//h1[contains(., '{title}')]")))
            assert wait_until(partial(_shows_figures, driver, figures), 60), (
                user, figures, _metric_values(driver))
            assert not driver.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")
            driver.save_screenshot(str(Path(tempfile.gettempdir()) / f"glucover-{user}.png"))


def test_sign_in_offers_the_language_and_keeps_it(dashboard_db: str) -> None:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["lang"] = "zh"
    at.run()
    assert at.radio(key="lang_signin").value == "zh"
    assert [i.label for i in at.text_input] == ["用户名", "密码"]
    at.radio(key="lang_signin").set_value("en").run()
    assert [i.label for i in at.text_input] == ["Username", "Password"]
    at.radio(key="lang_signin").set_value("zh").run()
    at.text_input[0].input("bob")
    at.text_input[1].input(PASSWORD)
    at.button[0].click()
    at.run()
    assert not at.exception
    assert at.metric[0].label == "保额"  # the choice made before signing in holds
    assert at.selectbox(key="lang_sidebar").value == "zh"
    assert list(at.table[0].value.columns) == ["说明", "变动（元）", "保额（元）"]


def test_operations_tells_ingest_lag_from_history_age(dashboard_db: str) -> None:
    at = signed_in("otto")
    metrics = {m.label: m.value for m in at.metric}
    # The fixture's readings are a replayed history: none was received in the last minutes,
    # so there is no live lag to show, and their age when stored is months.
    assert metrics["Ingest lag"] == "—"
    assert metrics["Reading age"].endswith(" d")
    with psycopg.connect(dashboard_db) as conn:  # a reading received a moment ago, stored now
        conn.execute("insert into readings (device_id, seq, measured_at, utc_offset_min, "
                     "received_at, ingested_at, value_digits, value_exponent, unit, meal, "
                     "sample, source) select device_id, 60000, now() - interval '1 minute', 0, "
                     "now() - interval '250 milliseconds', now(), 55, -1, 'mmol/L', "
                     "'fasting', 'capillary_plasma', 'meter' from devices limit 1")
        conn.commit()
    st.cache_data.clear()  # the page caches its figures for a few seconds
    at = signed_in("otto")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Ingest lag"] == "250 ms"
    assert metrics["Reading age"].endswith(" d")  # still the history's


def test_a_policy_below_its_base_shows_the_signed_bonus(dashboard_db: str) -> None:
    with psycopg.connect(dashboard_db) as conn:
        base = float(str(conn.execute(
            "select base_sum_insured from policies where policy_id = 'POL-006-000001'"
        ).fetchone()[0]))  # type: ignore[index]
        conn.execute(
            "insert into sum_insured_ledger (policy_id, day, day_status, delta, bonus, "
            "sum_insured, ruleset_name, ruleset_version, run_id) "
            "select policy_id, day + 1, 'high', -100, -300, %s - 300, ruleset_name, "
            "ruleset_version, run_id from sum_insured_ledger where policy_id = "
            "'POL-006-000001' order by day desc limit 1", (base,))
        conn.commit()
    at = signed_in("alice")
    assert not at.exception
    assert [w.value for w in at.warning] == [
        f"Bonus RMB -300: your sum insured is below its base of RMB {base:,.0f}. "
        "Good readings raise it again."]


@pytest.mark.browser
def test_real_browser_session_survives_a_reload_until_signed_out(served_dashboard: str,
                                                                 dashboard_db: str) -> None:
    """Signed in, a reload and a new tab keep the session (an HttpOnly, SameSite cookie the
    page's scripts cannot read); signing out revokes it, so a reload shows the sign-in page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    expected = f"RMB {sum_insured_from_ledger(dashboard_db, 'POL-006-000001'):,.0f}"

    def signed_in_page(driver: Any) -> bool:
        return wait_until(lambda: expected in _metric_values(driver), 30)

    with chromium(1400, 1000) as driver:
        wait = WebDriverWait(driver, 60)
        driver.get(served_dashboard)
        sign_in_through_page(driver, "alice")
        assert signed_in_page(driver)
        assert wait_until(lambda: driver.get_cookie("glucover_session") is not None, 10)
        cookie = driver.get_cookie("glucover_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert driver.execute_script("return document.cookie").find("glucover_session") < 0
        driver.refresh()
        assert signed_in_page(driver), "a reload signed the user out"
        driver.switch_to.new_window("tab")
        driver.get(served_dashboard)
        assert signed_in_page(driver), "a new tab is not signed in"
        driver.find_element(By.XPATH, "//button[.//p[text()='Sign out']]").click()
        wait.until(ec.presence_of_element_located(
            (By.CSS_SELECTOR, "input[aria-label='Username']")))
        with psycopg.connect(dashboard_db) as conn:
            assert conn.execute("select count(*) from dashboard_sessions where username = "
                                "'alice'").fetchone() == (0,)
        driver.refresh()
        wait.until(ec.presence_of_element_located(
            (By.CSS_SELECTOR, "input[aria-label='Username']")))
        assert not _metric_values(driver)


def test_ruleset_editor_labels_follow_the_language(dashboard_db: str) -> None:
    at = signed_in("ann")
    assert at.number_input(key="rs:default:v1:target_low").label == "In target from (mmol/L)"
    at.selectbox(key="lang_sidebar").set_value("zh").run()
    assert at.number_input(key="rs:default:v1:target_low").label == "达标下限 (mmol/L)"
    assert not at.exception


@pytest.mark.browser
def test_real_browser_policyholder_downloads_their_own_fhir_records(
        served_dashboard: str, dashboard_db: str, tmp_path: Path) -> None:
    """The download button on the phone: the file is a FHIR R4 Bundle that validates, about
    alice's own meter and pseudonym, with every reading pricing counted for her policy."""
    from fhir.resources.R4B.bundle import Bundle
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from glucover.config import derive_key
    from records import fhir
    from records.export import pseudonym_key
    from tests.helpers import TEST_SECRET

    with chromium(*SCREENS["phone"], downloads=tmp_path) as driver:
        wait = WebDriverWait(driver, 60)
        driver.get(served_dashboard)
        sign_in_through_page(driver, "alice")
        shown = "//button[.//p[starts-with(text(), 'Download my records')]]"
        wait.until(lambda d: any(b.is_displayed() for b in d.find_elements(By.XPATH, shown)))
        # Streamlit renders the button twice (with and without its tooltip); one is shown.
        button = next(b for b in driver.find_elements(By.XPATH, shown) if b.is_displayed())
        scroll_to(driver, button, "center")
        wait.until(ec.element_to_be_clickable(button)).click()
        assert wait_until(lambda: any(p.suffix == ".json" for p in tmp_path.iterdir()), 60)
    (saved,) = [p for p in tmp_path.iterdir() if p.suffix == ".json"]
    assert saved.name == "glucover-POL-006-000001.fhir.json"
    doc = json.loads(saved.read_text())
    Bundle.model_validate(doc)
    key = pseudonym_key(derive_key(TEST_SECRET, "pseudonym_key"))
    with psycopg.connect(dashboard_db) as conn:
        devices = conn.execute("select device_id from policy_devices where policy_id = %s",
                               ("POL-006-000001",)).fetchall()
        stored = {(str(d), int(s)): (float(v), str(sample), str(source)) for d, s, v, sample, source
                  in conn.execute(
                      "select r.device_id, r.seq, glucose_value(value_digits, value_exponent), "
                      "r.sample, r.source from readings r join policy_devices b using "
                      "(device_id) where b.policy_id = 'POL-006-000001'").fetchall()}
    patient = doc["entry"][0]["resource"]
    assert patient["identifier"][0]["value"] == fhir.pseudonym(key, "POL-006-000001")
    assert [e["resource"]["identifier"][0]["value"] for e in doc["entry"]
            if e["resource"]["resourceType"] == "Device"] == [str(d) for (d,) in devices]
    observations = [e["resource"] for e in doc["entry"]
                    if e["resource"]["resourceType"] == "Observation"]
    assert len(observations) > 0
    for o in observations:  # each one of alice's own stored readings of blood, as stored
        device, seq, _ = o["identifier"][0]["value"].split("/", 2)
        value, sample, source = stored[(device, int(seq))]
        assert o["valueQuantity"]["value"] == value
        assert (sample, source) == ("capillary_plasma", "meter")


@pytest.fixture
def cgm_dashboard_db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Two CGM wearers with sensor data up to now (the page reads the real clock), where it
    is afternoon now; carol is the first. Her policy id."""
    from datetime import UTC, datetime

    from tests.helpers import daytime_zone, load_cgm_wearers

    now = datetime.now(UTC)
    policy_id = load_cgm_wearers(db_url, now, daytime_zone(now))[0]
    with psycopg.connect(db_url) as conn:
        create_user(conn, "carol", PASSWORD, "policyholder", policy_id, rounds=4)
        conn.commit()
    monkeypatch.setenv("DATABASE_URL", db_url)
    return policy_id


def test_a_new_york_wearers_figures_on_a_pinned_day_hold_the_spring_change(db_url: str
                                                                            ) -> None:
    """The page's CGM figures for a New York wearer seen on 15 March 2026: the 14-day window
    (1-14 March) holds 8 March, a day of 23 hours. Each local day shows (less the few the
    ruleset refuses) the readings PostgreSQL dates by its own zone rules, and none of 8 March
    falls in the hour the clocks skipped (02:00-02:59), so that day holds at most 23 x 12
    five-minute readings."""
    from datetime import date

    from dashboard.policyholder_data import load_summary
    from tests.helpers import NEW_YORK_SPRING, load_cgm_wearers

    (policy_id,) = load_cgm_wearers(db_url, NEW_YORK_SPRING, "America/New_York", n=1, days=16)
    with psycopg.connect(db_url) as conn:
        summary = load_summary(conn, policy_id, now=NEW_YORK_SPRING)
        by_day: dict[date, int] = {d: int(n) for d, n in conn.execute(
            "select (measured_at at time zone 'America/New_York')::date, count(*) from readings"
            " join policy_devices using (device_id) where policy_id = %s group by 1",
            (policy_id,)).fetchall()}
    cgm = summary.cgm
    assert cgm is not None and summary.today == date(2026, 3, 15)
    assert (cgm.first, cgm.last) == (date(2026, 3, 1), date(2026, 3, 14))
    shown = cgm.days["measured_at"].dt.date.value_counts().to_dict()
    # Every day of the window, each with its stored readings less those the ruleset refuses.
    assert sorted(shown) == [cgm.first + timedelta(days=i) for i in range(14)]
    assert all(0.95 * by_day[d] <= n <= by_day[d] for d, n in shown.items()), (shown, by_day)
    spring = cgm.days["measured_at"][cgm.days["measured_at"].dt.date == date(2026, 3, 8)]
    assert 0 < len(spring) <= 23 * 12
    assert not (spring.dt.hour == 2).any()
    assert {1, 3} <= set(spring.dt.hour)  # the hours on either side of the jump are there


def test_cgm_policyholder_sees_time_in_range_agp_and_the_explained_ledger(
        cgm_dashboard_db: str) -> None:
    """A CGM wearer's page: GMI and time in range from the consensus metrics, the metrics
    against their targets, the time-in-ranges bar and the AGP, the ledger in CGM words."""
    from pricing.cgm_metrics import TARGETS

    at = signed_in("carol")
    assert cgm_dashboard_db in at.title[0].value
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["GMI (estimated HbA1c)"].endswith("%") and metrics["Time in range"] != "—"
    assert at.info[0].value.startswith("Keep your sensor on: a day with at least 70% of its "
                                       "time in range earns RMB 100.")
    # Today so far, counted here from the stored readings of today on the wearer's clock.
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from kernel.glucose import TARGET_RANGE_MGDL
    from kernel.units import MGDL_PER_MMOL

    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        zone = ZoneInfo(str(conn.execute("select timezone from policies where policy_id = %s",
                                         (cgm_dashboard_db,)).fetchone()[0]))  # type: ignore[index]
        today = datetime.now(UTC).astimezone(zone).date()
        mgdl = [float(v) * (MGDL_PER_MMOL if u == "mmol/L" else 1) for v, u, at_ in conn.execute(
            "select glucose_value(value_digits, value_exponent), unit, measured_at from readings "
            "join policy_devices using (device_id) where policy_id = %s",
            (cgm_dashboard_db,)).fetchall() if at_.astimezone(zone).date() == today]
    low, high = TARGET_RANGE_MGDL
    tir = 100 * sum(low <= v <= high for v in mgdl) / len(mgdl)
    assert f"Today so far: time in range {tir:.0f}%, sensor worn " in at.info[0].value
    subheaders = [s.value for s in at.subheader]
    assert {"Time in ranges (mmol/L), last 14 days", "Ambulatory glucose profile, last 14 days",
            "Your CGM figures against the consensus targets", "Daily profiles, last 14 days",
            "How your sum insured changed"} <= set(subheaders)
    assert "3.9 and 10.0 mmol/L" in at.caption[0].value
    figures, ledger = at.table[0].value, at.table[1].value
    assert len(figures) == 2 + len(TARGETS)
    assert figures["Target"].str.contains(r"(?:met|not met)$").sum() == len(TARGETS)
    worded = ledger["What happened"]
    # The page is in mmol/L: the ruleset's 54 mg/dL threshold is said in it.
    assert worded.str.contains(
        r"^time in range \d+%, below 3\.0 mmol/L \d+\.\d%, sensor worn \d+% of the day: "
    ).sum() > 5
    assert not worded.str.contains("mg/dL").any()
    assert worded.str.endswith(("in target", "outside the target", "too high",
                                "sensor not worn enough", "no reward today",
                                "no sensor readings")).all()
    buttons = [b.proto.label for b in at.get("download_button")]
    assert buttons == ["Download the AGP report (PDF, for your doctor)",
                       "Download my records (FHIR R4, for your doctor)", "My readings (CSV)",
                       "My sum insured, day by day (CSV)"]


def test_cgm_figures_follow_the_unit_and_the_language(cgm_dashboard_db: str) -> None:
    at = signed_in("carol")
    at.selectbox(key="unit_sidebar").set_value("mg/dL")
    at.run()
    assert "70 and 180 mg/dL" in at.caption[0].value
    assert str(at.table[0].value.iloc[0, 0]).endswith("mg/dL")  # mean glucose
    at.selectbox(key="lang_sidebar").set_value("zh")
    at.run()
    assert not at.exception
    assert any(m.label == "GMI（估算糖化血红蛋白）" for m in at.metric)
    assert "请坚持佩戴传感器" in at.info[0].value
    assert at.table[1].value.iloc[:, 0].str.contains("达标时间").any()
    assert "70 与 180 mg/dL" in at.caption[0].value  # the unit chosen stays


@pytest.mark.browser
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_real_browser_cgm_policyholder_page_on_a_phone(cgm_dashboard_db: str, db_url: str,
                                                       lang: str) -> None:
    """The CGM page on a 390 px phone: charts and tables render, no exception, nothing to
    scroll sideways; screenshots land in the temporary directory."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with dashboard_server(db_url) as port, chromium(*SCREENS["phone"]) as driver:
        driver.get(f"http://127.0.0.1:{port}/?lang={lang}")
        sign_in_through_page(driver, "carol", lang)
        WebDriverWait(driver, 60).until(lambda d: len(d.find_elements(
            By.CSS_SELECTOR, "[data-testid='stTable']")) >= 2)
        settle(driver)  # the run done and every chart drawn
        assert not driver.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")
        assert len(driver.find_elements(By.CSS_SELECTOR,
                                        "[data-testid='stVegaLiteChart']")) >= 4
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{overflow} px to scroll sideways"
        shots = Path(tempfile.gettempdir())
        driver.save_screenshot(str(shots / f"glucover-cgm-phone-{lang}.png"))
        parts = driver.find_elements(By.CSS_SELECTOR, "[data-testid='stVegaLiteChart'], "
                                                      "[data-testid='stTable']")
        for i, part in enumerate(parts):
            scroll_to(driver, part)
            driver.save_screenshot(str(shots / f"glucover-cgm-phone-{lang}-{i}.png"))


def test_the_editor_asks_for_a_reason_before_publishing_a_hypoglycaemic_band(
        dashboard_db: str) -> None:
    at = signed_in("ann")
    at.selectbox[0].set_value("default")
    at.run()
    at.number_input(key="rs:default:v1:target_low").set_value(3.6)
    at.button(key="FormSubmitter:ruleset-Validate").click()
    at.run()
    assert any("level 1 hypoglycaemia" in w.value for w in at.warning)
    publish = next(b for b in at.button if b.label == "Publish new version")
    assert publish.disabled
    at.text_input(key="rs:default:v1:hypo_reason").input("supervised pilot")
    at.run()
    publish = next(b for b in at.button if b.label == "Publish new version")
    assert not publish.disabled
    publish.click()
    at.run()
    assert any("Published" in s.value for s in at.success)
    with psycopg.connect(dashboard_db) as conn:
        notes = conn.execute("select notes from rulesets order by published_at desc limit 1"
                             ).fetchone()
    assert notes is not None and "supervised pilot" in str(notes[0])


def test_a_clinician_sees_only_the_panel_and_can_download_its_records(
        dashboard_db: str) -> None:
    from dashboard.auth import add_to_panel

    with psycopg.connect(dashboard_db) as conn:
        create_user(conn, "dr_li", PASSWORD, "clinician", rounds=4)
        add_to_panel(conn, "dr_li", ["POL-006-000002", "POL-006-000004"])
        conn.commit()
    at = signed_in("dr_li", {"policy": "POL-006-000002"})  # from an alert's link
    policies = next(s for s in at.selectbox if s.label == "Policy")
    assert policies.options == ["POL-006-000002", "POL-006-000004"]
    assert "POL-006-000002" in at.title[0].value
    buttons = [b.proto.label for b in at.get("download_button")]
    assert buttons == ["Download the records (FHIR R4)", "Readings (CSV)",
                       "Sum insured, day by day (CSV)"]
    # The page speaks about the policyholder to the care team, not to them.
    assert not at.info and "How the sum insured changed" in [s.value for s in at.subheader]
    off_panel = signed_in("dr_li", {"policy": "POL-006-000001"})
    assert [e.value for e in off_panel.error] == ["this policyholder is not on your panel"]
    assert not off_panel.metric


def test_the_workbench_shows_the_cgm_portfolio_from_its_day_summaries(
        cgm_dashboard_db: str) -> None:
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        create_user(conn, "ann", PASSWORD, "actuary", rounds=4)
        row = conn.execute(
            "select sum(in_range)::float8 / sum(readings) from cgm_days where day > "
            "(select max(day) from cgm_days) - 30").fetchone()
        worn = conn.execute(
            "select avg(coverage)::float8 / 100 from current_ledger where ruleset_name = "
            "'cgm-default' and time_in_range is not null").fetchone()
        conn.commit()
    at = signed_in("ann")
    assert row is not None and worn is not None
    assert at.caption[1].value.startswith(
        f"CGM portfolio (2 policies), last 30 days: time in range 70–180 mg/dL {row[0]:.1%}, "
        "below 54 mg/dL ")
    assert at.caption[1].value.endswith(f"sensor coverage on days worn {worn[0]:.0%}")


def test_a_clinician_works_the_alert_queue_of_the_panel_only(dashboard_db: str) -> None:
    from care import store as care_store
    from care.alerts import Finding
    from dashboard.auth import add_to_panel

    with psycopg.connect(dashboard_db) as conn:
        create_user(conn, "dr_li", PASSWORD, "clinician", rounds=4)
        add_to_panel(conn, "dr_li", ["POL-006-000002", "POL-006-000003"])
        rules = care_store.rules_in_force(conn)
        care_store.record(conn, [
            Finding("POL-006-000003", "lapsed", (), "no valid reading since 03-01", key="a"),
            Finding("POL-006-000002", "hypo_level2", (), "1 episode below 3 mmol/L", key="b"),
            Finding("POL-006-000001", "hyper_severe", (), "off the panel", key="c")], rules)
        conn.commit()
    at = signed_in("dr_li")
    assert at.title[0].value == "Alerts"
    queue = at.dataframe[0].value
    assert list(queue["Policyholder"]) == ["POL-006-000002", "POL-006-000003"]  # by severity
    assert list(queue["Severity"]) == ["URGENT", "medium"]
    assert at.selectbox[0].value is not None
    at.button(key="assign-2").click().run()
    assert at.button(key="assign-2").disabled  # done: not offered again
    at.button(key="ack-2").click().run()
    assert at.button(key="ack-2").disabled
    at.text_area[0].input("left a voicemail")
    at.button(key="FormSubmitter:note-2-Add note").click().run()
    outcome = next(s for s in at.selectbox if s.label == "Outcome")
    outcome.select("referred")
    at.button(key="FormSubmitter:resolve-2-Resolve").click().run()
    assert not at.exception
    with psycopg.connect(dashboard_db) as conn:
        status = conn.execute("select status, outcome, assigned_to from alerts "
                              "where alert_id = 2").fetchone()
        trail = conn.execute("select username, action, detail, outcome from alert_audit "
                             "order by audit_id").fetchall()
    assert status == ("resolved", "referred", "dr_li")
    # The clinician's own words, and the outcome as a code (said in the reader's language).
    assert trail == [("dr_li", "assign", "", None), ("dr_li", "acknowledge", "", None),
                     ("dr_li", "note", "left a voicemail", None),
                     ("dr_li", "resolve", "", "referred")]
    assert list(at.dataframe[0].value["Policyholder"]) == ["POL-006-000003"]
    at.session_state["lang"] = "zh"
    at.run()
    assert at.title[0].value == "预警"
    assert list(at.dataframe[0].value["预警"]) == ["停止测量"]
    at.button(key="FormSubmitter:note-1-添加备注").click().run()  # a note without text
    assert [e.value for e in at.error] == ["备注不能为空。"]  # refused, in the page's language


def test_every_refusal_of_an_action_is_said_in_both_languages() -> None:
    from care.store import REFUSALS
    from dashboard.i18n import TEXT

    for code in REFUSALS:
        assert set(TEXT[f"action_refused_{code}"]) == {"en", "zh"}, code


def test_an_audit_rows_outcome_is_said_in_the_pages_language() -> None:
    from dashboard.views.care import trail_note

    assert trail_note("referred", "left a voicemail", "zh") == "已转诊: left a voicemail"
    assert trail_note("no_action", "", "en") == "no action"
    assert trail_note(None, "left a voicemail", "zh") == "left a voicemail"
    # Rows written before the outcome had a column keep their words.
    assert trail_note(None, "referred: called twice", "zh") == "referred: called twice"


def test_a_policyholder_sees_the_notices_of_their_own_policy_only(dashboard_db: str) -> None:
    from care import store as care_store
    from care.alerts import Finding

    with psycopg.connect(dashboard_db) as conn:
        care_store.record(conn, [Finding("POL-006-000002", "hypo_level2", (), "low", key="x")],
                          care_store.rules_in_force(conn))
        conn.commit()
    bob = signed_in("bob")
    (notice,) = [str(w.value) for w in bob.warning if "fast sugar" in str(w.value)]
    assert notice.endswith("Your glucose was very low: eat 15 g of fast sugar (juice, glucose "
                           "tablets) and re-check in 15 minutes. Your care team will call you.")
    alice = signed_in("alice")
    assert not [w for w in alice.warning if "fast sugar" in str(w.value)]
    assert not [c for c in alice.caption if c.value == "Messages from your care team"]


def _alert_rules_page(username: str, lead: bool) -> None:
    from dashboard.auth import User
    from dashboard.views import care

    care.render_rules(User(username, "clinician", None, lead))


def test_the_care_team_lead_publishes_alert_rules_others_only_read_them(
        dashboard_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    # AppTest runs a function's page as __main__ from a temporary file and leaves it there:
    # a later spawned process (the benchmarks') would run that file again. Put it back after.
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])
    reader = AppTest.from_function(_alert_rules_page, args=("dr_wu", False), default_timeout=60)
    reader.run()
    assert not reader.exception
    assert [i.value for i in reader.info] == ["The care team lead publishes changes to the rules."]
    shown = reader.table[0].value
    assert "Level 2 hypoglycaemia below" in list(shown["Parameter"])
    assert not reader.number_input
    lead = AppTest.from_function(_alert_rules_page, args=("dr_li", True), default_timeout=60)
    lead.run()
    below = next(n for n in lead.number_input if n.label == "Level 2 hypoglycaemia below (mmol/L)")
    below.set_value(3.2)
    next(s for s in lead.selectbox if s.label.endswith("· Stopped measuring")).select("high")
    lead.button[0].click().run()  # check the changes, then publish them
    lead.text_input[0].input("pilot with the endocrinology team")
    next(b for b in lead.button if b.label == "Publish new version").click().run()
    assert not lead.exception
    assert lead.success[0].value.startswith("Published version 1")
    with psycopg.connect(dashboard_db) as conn:
        row = conn.execute("select version, author, notes, body from alert_rules").fetchone()
    assert row is not None and row[:3] == (1, "dr_li", "pilot with the endocrinology team")
    assert "below_mmol = 3.2" in row[3] and 'severity = "high"' in row[3]
    # An invalid change is refused with the parameter named; nothing is published.
    below = next(n for n in lead.number_input if n.label == "Level 2 hypoglycaemia below (mmol/L)")
    below.set_value(4.5)
    lead.button[0].click().run()
    assert "must not be above" in lead.error[0].value
    with psycopg.connect(dashboard_db) as conn:
        assert conn.execute("select count(*) from alert_rules").fetchone() == (1,)
