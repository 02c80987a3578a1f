"""The dashboard's pages by URL (opened signed out, reloaded, shared), the language kept across
a reload, staff pages in Chinese, and sign-in names that are not case-sensitive."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from dashboard.auth import add_to_panel, create_user
from tests.helpers import (
    PASSWORD,
    START,
    chromium,
    dashboard_server,
    load_fleet,
    settle,
    signed_in,
    wait_until,
)

MINE, THEIRS, OTHER = "POL-003-000001", "POL-003-000002", "POL-003-000003"


@pytest.fixture
def small_db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Three priced policies; alice holds the first; an actuary, operations, a clinician
    with the second and third on the panel."""
    from pricing.engine import run_pricing

    load_fleet(db_url, n=3, days=12, seed=3)
    run_pricing(db_url, START + timedelta(days=10))
    with psycopg.connect(db_url) as conn:
        create_user(conn, "alice", PASSWORD, "policyholder", MINE, rounds=4)
        create_user(conn, "ann", PASSWORD, "actuary", rounds=4)
        create_user(conn, "otto", PASSWORD, "operations", rounds=4)
        create_user(conn, "dr_li", PASSWORD, "clinician", rounds=4)
        add_to_panel(conn, "dr_li", [THEIRS, OTHER])
        conn.commit()
    monkeypatch.setenv("DATABASE_URL", db_url)
    return db_url


def test_usernames_are_not_case_sensitive(small_db: str) -> None:
    at = signed_in("  ALICE ")
    assert not at.error
    assert MINE in at.title[0].value
    assert "**alice**" in at.sidebar.markdown[0].value  # the name as stored
    with psycopg.connect(small_db) as conn:
        assert conn.execute("select username from dashboard_sessions").fetchall() == [
            ("alice",)]
        with pytest.raises(ValueError, match="not case-sensitive"):
            create_user(conn, "Alice", "other", "actuary", rounds=4)


def test_staff_pages_in_chinese_say_the_role_and_the_figures_in_chinese(small_db: str) -> None:
    at = signed_in("otto", {"lang": "zh"})
    assert at.title[0].value == "运维"
    assert "（运维）" in at.sidebar.markdown[0].value or "(运维)" in at.sidebar.markdown[0].value
    labels = [m.label for m in at.metric] + [s.value for s in at.subheader]
    assert labels and not [text for text in labels if any("a" <= c.lower() <= "z"
                                                          for c in text)], labels
    refused = signed_in("alice", {"lang": "zh", "policy": THEIRS})
    assert [e.value for e in refused.error] == ["您只能查看自己的保单"]
    assert not refused.metric


# A real browser, for what only a URL shows: the address bar, a reload, the menu.

@pytest.fixture
def served(small_db: str) -> Iterator[str]:
    with dashboard_server(small_db) as port:
        yield f"http://127.0.0.1:{port}"


LABELS = {"en": ("Username", "Password", "Sign in"), "zh": ("用户名", "密码", "登录")}


def _sign_in_form(driver: Any, username: str, lang: str = "en") -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    user_label, password_label, button = LABELS[lang]
    WebDriverWait(driver, 60).until(ec.presence_of_element_located(
        (By.CSS_SELECTOR, f"input[aria-label='{user_label}']"))).send_keys(username)
    driver.find_element(By.CSS_SELECTOR, f"input[aria-label='{password_label}']"
                        ).send_keys(PASSWORD)
    driver.find_element(By.XPATH, f"//button[.//p[text()='{button}']]").click()


def _body(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.TAG_NAME, "body").text)


def _shows(driver: Any, text: str, timeout: float = 60) -> bool:
    return wait_until(lambda: text in _body(driver), timeout)


def _menu(driver: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text for e in driver.find_elements(
        By.CSS_SELECTOR, "[data-testid='stSidebarNav'] a, [data-testid='stSidebarNavLink']")
        if e.text]


@pytest.mark.browser
def test_a_page_opened_by_its_url_signed_out_is_the_page_after_signing_in(served: str) -> None:
    """A clinician's link to a policyholder (as the alert queue writes it), the actuary's
    policy page, and alice asking for someone else's policy: the URL shows the sign-in form
    (no "Page not found"), then the page asked for with its query, authorised per page."""
    with chromium(1280, 1000) as driver:
        driver.get(f"{served}/panel?policy={OTHER}")
        _sign_in_form(driver, "dr_li")
        assert _shows(driver, f"· {OTHER}"), _body(driver)
        assert "Page not found" not in _body(driver)
        driver.refresh()  # reloaded, or sent to a colleague signed in: the same page
        assert _shows(driver, f"· {OTHER}"), _body(driver)
        settle(driver)  # a "Page not found" would come with the run
        assert "Page not found" not in _body(driver)
        assert driver.current_url.split("?")[0].endswith("/panel")
    with chromium(1280, 1000) as driver:
        driver.get(f"{served}/policy?policy={OTHER}")
        _sign_in_form(driver, "ann")
        assert _shows(driver, f"· {OTHER}"), _body(driver)
        assert driver.current_url.split("?")[0].endswith("/policy")
        assert f"policy={OTHER}" in driver.current_url  # the URL to share
    with chromium(1280, 1000) as driver:
        driver.get(f"{served}/workbench")  # not a policyholder's page: their own instead
        _sign_in_form(driver, "alice")
        assert _shows(driver, f"· {MINE}"), _body(driver)
        assert "not open to your role" in _body(driver)
        assert "Page not found" not in _body(driver)
        assert driver.current_url.split("?")[0].endswith("/policy")
        driver.refresh()
        assert _shows(driver, f"· {MINE}"), _body(driver)
        settle(driver)
        assert "Page not found" not in _body(driver)
    with chromium(390, 900) as driver:
        driver.get(f"{served}/policy?policy={THEIRS}")
        _sign_in_form(driver, "alice")
        assert _shows(driver, "you can only see your own policy"), _body(driver)
        assert THEIRS not in _body(driver)
        assert "Page not found" not in _body(driver)


@pytest.mark.browser
def test_the_language_survives_a_reload_and_staff_menus_are_chinese(served: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    with chromium(1280, 1000) as driver:
        driver.get(f"{served}/?lang=en")
        _sign_in_form(driver, "dr_li")
        assert _shows(driver, "Alert rules")
        settle(driver)  # the menu comes before the sidebar's picker
        assert _menu(driver) == ["Alerts", "My panel", "Alert rules"], _menu(driver)
        # Chinese chosen in the sidebar, then the page reloaded: still Chinese.
        picker = WebDriverWait(driver, 30).until(ec.element_to_be_clickable(
            (By.CSS_SELECTOR, "[data-testid='stSidebar'] [data-testid='stSelectbox'] input")))
        picker.click()
        picker.send_keys("简体中文", Keys.ENTER)
        assert _shows(driver, "预警规则")
        assert wait_until(lambda: "lang=zh" in driver.current_url, 10), driver.current_url
        driver.refresh()
        assert _shows(driver, "预警规则")
        settle(driver)
        assert _menu(driver) == ["预警", "我负责的成员", "预警规则"], _menu(driver)
        assert "医护人员" in _body(driver)  # the role tag
        assert "clinician)" not in _body(driver)


def test_operations_lists_silent_low_battery_and_drifting_meters(small_db: str) -> None:
    """Meters in trouble, each for one reason, beside a revoked one and a healthy one: the
    operations page lists each in its own table and no other."""
    with psycopg.connect(small_db) as conn:
        conn.execute("insert into devices (device_id, kind) values ('GM-QUIET', 'bgm'), "
                     "('GM-LOW', 'bgm'), ('GM-DRIFT', 'bgm'), ('GM-FINE', 'bgm'), "
                     "('GM-GONE', 'bgm')")
        conn.execute("update devices set revoked_at = now() where device_id = 'GM-GONE'")
        conn.execute(
            "insert into device_status (device_id, state, battery_pct, clock_offset_s, sent_at)"
            " values ('GM-QUIET', 'online', 80, 1, now() - interval '3 days'), "
            "('GM-LOW', 'online', 9, 1, now()), ('GM-DRIFT', 'online', 80, -601, now()), "
            "('GM-FINE', 'online', 80, 2, now()), "
            "('GM-GONE', 'offline', 80, 1, now() - interval '5 days')")
        conn.commit()
    at = signed_in("otto")
    assert not at.exception
    tables = [d.value for d in at.dataframe if "device" in d.value]
    battery = next(t for t in tables if "battery %" in t and "clock offset (s)" not in t)
    drift = next(t for t in tables if "clock offset (s)" in t)
    silent = next(t for t in tables if "last reading" in t)
    assert list(battery["device"]) == ["GM-LOW"] and list(battery["battery %"]) == [9]
    assert list(drift["device"]) == ["GM-DRIFT"] and list(drift["clock offset (s)"]) == [-601]
    quiet = set(silent["device"])
    assert "GM-QUIET" in quiet and not quiet & {"GM-LOW", "GM-DRIFT", "GM-FINE", "GM-GONE"}


@pytest.mark.browser
def test_the_care_lead_flag_comes_through_signing_in(served: str, small_db: str) -> None:
    """Signed in through the page, the lead of the care team gets the alert rules' editor and
    another clinician the rules to read, with who may change them."""
    with psycopg.connect(small_db) as conn:
        create_user(conn, "dr_lead", PASSWORD, "clinician", rounds=4, care_lead=True)
        conn.commit()
    for user, expected, absent in (
            ("dr_lead", "Check the changes", "The care team lead publishes changes to the rules."),
            ("dr_li", "The care team lead publishes changes to the rules.", "Check the changes")):
        with chromium(1280, 1000) as driver:
            driver.get(f"{served}/alert-rules")
            _sign_in_form(driver, user)
            assert _shows(driver, "Level 2 hypoglycaemia below"), _body(driver)
            assert _shows(driver, expected), (user, _body(driver))
            assert absent not in _body(driver), user
