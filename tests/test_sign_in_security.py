"""Signing in to the dashboard as an attacker would try it (issue 27): from a page on another
site, by guessing passwords, by timing unknown names, with odd tokens, from an old tab."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import bcrypt
import psycopg
import pytest

from dashboard import sessions, throttle
from dashboard.auth import User, authenticate, create_user
from glucover.config import derive_key
from glucover.servers import free_port
from tests.helpers import (
    APP,
    PASSWORD,
    TEST_SECRET,
    chromium,
    dashboard_server,
    settle,
    wait_until,
)

KEY = sessions.signing_key(derive_key(TEST_SECRET, "session_key"))


@pytest.fixture
def users_db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    with psycopg.connect(db_url) as conn:
        create_user(conn, "ann", PASSWORD, "actuary", rounds=4)
        create_user(conn, "otto", PASSWORD, "operations", rounds=4)
        conn.commit()
    monkeypatch.setenv("DATABASE_URL", db_url)
    return db_url


@pytest.fixture
def served(users_db: str) -> Iterator[tuple[str, int]]:
    with dashboard_server(users_db) as port:
        yield users_db, port


def _session(db_url: str, username: str = "ann") -> tuple[str, str]:
    """A session opened for `username` as the app opens it: (token, session id)."""
    with psycopg.connect(db_url) as conn:
        token, _ = sessions.open_session(conn, KEY, User(username, "actuary", None))
        conn.commit()
    session_id = sessions.verify(KEY, token, datetime.now(UTC))
    assert session_id is not None
    return token, session_id


def _post(port: int, path: str, body: str, headers: dict[str, str]
          ) -> tuple[int, str | None]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", path, body=body.encode(), headers=headers)
    response = conn.getresponse()
    response.read()
    return response.status, response.getheader("set-cookie")


def _session_exists(db_url: str, session_id: str) -> bool:
    with psycopg.connect(db_url) as conn:
        return conn.execute("select 1 from dashboard_sessions where session_id = %s",
                            (session_id,)).fetchone() is not None


FOREIGN = "http://attacker.example"


def test_another_site_cannot_set_or_clear_the_session_cookie(served: tuple[str, int]) -> None:
    """The attacker's own valid session, posted from another site's page as text/plain, as a
    form, or as JSON with a forged Origin: refused, no cookie. Clearing a victim's session
    from another site: refused, the session lives."""
    db_url, port = served
    token, session_id = _session(db_url)
    grant = sessions.grant_for(KEY, session_id, datetime.now(UTC))
    body = json.dumps({"token": token, "grant": grant})
    own = f"127.0.0.1:{port}"
    csrf = {sessions.CSRF_HEADER: sessions.csrf_token(KEY, session_id)}
    for headers, sent in [
            ({"Origin": FOREIGN, "Content-Type": "text/plain"}, body),
            ({"Origin": FOREIGN, "Content-Type": "application/x-www-form-urlencoded"},
             f"token={token}&grant={grant}"),
            ({"Origin": FOREIGN, "Content-Type": "application/json", **csrf}, body),
            ({"Content-Type": "text/plain"}, body),  # no Origin at all
            ({"Origin": f"http://{own}", "Content-Type": "text/plain", **csrf}, body),
            ({"Origin": f"http://{own}", "Content-Type": "application/json"}, body),  # no CSRF
    ]:
        status, cookie = _post(port, sessions.OPEN_PATH, sent, headers)
        assert status == 403 and cookie is None, headers
    status, _ = _post(port, sessions.CLOSE_PATH, "", {
        "Origin": FOREIGN, "Cookie": f"{sessions.COOKIE}={token}"})
    assert status == 403
    assert _session_exists(db_url, session_id)
    status, _ = _post(port, sessions.CLOSE_PATH, "", {
        "Origin": f"http://{own}", "Cookie": f"{sessions.COOKIE}={token}"})
    assert status == 403  # same origin, but without the session's CSRF token
    assert _session_exists(db_url, session_id)
    # The dashboard's own page: JSON, its origin, the CSRF token: the cookie, once.
    good = {"Origin": f"http://{own}", "Content-Type": "application/json", **csrf}
    status, cookie = _post(port, sessions.OPEN_PATH, body, good)
    assert status == 204 and cookie is not None and token in cookie and "HttpOnly" in cookie
    assert _post(port, sessions.OPEN_PATH, body, good)[0] == 403  # a grant is spent once
    status, _ = _post(port, sessions.CLOSE_PATH, "", {
        **good, "Cookie": f"{sessions.COOKIE}={token}"})
    assert status == 204 and not _session_exists(db_url, session_id)


def test_an_odd_character_in_a_token_is_a_refusal_not_an_error(
        served: tuple[str, int]) -> None:
    _, port = served
    own = {"Origin": f"http://127.0.0.1:{port}", "Content-Type": "application/json"}
    for odd in ("abc.123.\u00e9" + "0" * 63, "a\u0000b.1.2", "\u2028.1.x", "x.99999999999999999.y"):
        status, _ = _post(port, sessions.OPEN_PATH, json.dumps({"token": odd, "grant": odd}),
                          own)
        assert 400 <= status < 500, odd
        assert sessions.verify(KEY, odd, datetime.now(UTC)) is None


def test_pages_cannot_be_framed_by_another_site(served: tuple[str, int]) -> None:
    _, port = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/")
    response = conn.getresponse()
    response.read()
    assert response.status == 200
    assert response.getheader("x-frame-options") == "SAMEORIGIN"
    assert "frame-ancestors 'self'" in str(response.getheader("content-security-policy"))


class _Attacker(BaseHTTPRequestHandler):
    """A page on another origin that posts a login-CSRF form to the dashboard at once."""

    page = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.browser
def test_a_page_on_another_site_cannot_sign_the_browser_in(served: tuple[str, int]) -> None:
    """Headless Chromium visits the attacker's page (another origin), which submits a
    text/plain form and fires a no-cors fetch at the dashboard's session route carrying the
    attacker's own session: the browser ends up with no session cookie."""
    db_url, port = served
    token, session_id = _session(db_url, "otto")
    grant = sessions.grant_for(KEY, session_id, datetime.now(UTC))
    name = json.dumps({"token": token, "grant": grant, "x": ""})[:-2]  # ..."x": "
    fetched = json.dumps(json.dumps({"token": token, "grant": grant}))
    target = f"http://127.0.0.1:{port}{sessions.OPEN_PATH}"
    _Attacker.page = (
        f"<html><body><form id=f method=post enctype=text/plain action='{target}'>"
        f"<input name='{name}' value='\"}}'></form><script>"
        f"fetch('{target}', {{method: 'POST', mode: 'no-cors', credentials: 'include', "
        f"headers: {{'Content-Type': 'text/plain'}}, body: {fetched}}})"
        ".finally(() => document.getElementById('f').submit());</script></body></html>"
    ).encode()
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Attacker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with chromium(1200, 900) as driver:
            driver.get(f"http://localhost:{server.server_port}/")  # another origin
            # The fetch settled, then the form took the browser to the route: both were sent.
            assert wait_until(lambda: driver.current_url.startswith(target) and driver
                              .execute_script("return document.readyState") == "complete", 30)
            driver.get(f"http://127.0.0.1:{port}/")
            assert not [c for c in driver.get_cookies() if c["name"] == sessions.COOKIE]
    finally:
        server.shutdown()
    with psycopg.connect(db_url) as conn:
        issued = conn.execute("select cookie_issued_at from dashboard_sessions where "
                              "session_id = %s", (session_id,)).fetchone()
    assert issued == (None,)


def _sign_in(driver: Any, port: int, username: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"http://127.0.0.1:{port}/")
    WebDriverWait(driver, 60).until(ec.presence_of_element_located(
        (By.CSS_SELECTOR, "input[aria-label='Username']"))).send_keys(username)
    driver.find_element(By.CSS_SELECTOR, "input[aria-label='Password']").send_keys(PASSWORD)
    driver.find_element(By.XPATH, "//button[.//p[text()='Sign in']]").click()


def _page_text(driver: Any) -> str:
    """The page's DOM and every frame's, as HTML."""
    from selenium.webdriver.common.by import By

    texts = [driver.page_source]
    for frame in driver.find_elements(By.TAG_NAME, "iframe"):
        driver.switch_to.frame(frame)
        texts.append(driver.page_source)
        driver.switch_to.default_content()
    return "\n".join(texts)


def _signed_in_tab(driver: Any) -> bool:
    from selenium.webdriver.common.by import By

    return bool(driver.find_elements(By.XPATH, "//button[.//p[text()='Sign out']]"))


def _sign_in_form(driver: Any) -> bool:
    from selenium.webdriver.common.by import By

    return bool(driver.find_elements(By.CSS_SELECTOR, "input[aria-label='Password']"))


@pytest.mark.browser
def test_no_token_in_the_page_and_signing_out_reaches_open_tabs(
        served: tuple[str, int]) -> None:
    """Signed in through the page: the HttpOnly cookie is set, yet its token is nowhere in the
    page's DOM. A second tab resumes the session; signing out in the first signs the second
    out too, without anyone touching it."""
    db_url, port = served
    with chromium(1200, 900) as driver:
        _sign_in(driver, port, "otto")
        assert wait_until(lambda: any(c["name"] == sessions.COOKIE
                                      for c in driver.get_cookies()), 60, 0.5)
        assert wait_until(lambda: _signed_in_tab(driver), 60, 0.5)
        token = next(c["value"] for c in driver.get_cookies() if c["name"] == sessions.COOKIE)
        settle(driver)  # the page's run done: all it will show is there
        assert token not in _page_text(driver)
        first = driver.current_window_handle
        driver.switch_to.new_window("tab")
        driver.get(f"http://127.0.0.1:{port}/")
        assert wait_until(lambda: _signed_in_tab(driver), 60, 0.5)  # resumed by the cookie
        second = driver.current_window_handle
        driver.switch_to.window(first)
        from selenium.webdriver.common.by import By

        driver.find_element(By.XPATH, "//button[.//p[text()='Sign out']]").click()
        assert wait_until(lambda: _sign_in_form(driver), 30, 0.5)
        driver.switch_to.window(second)
        assert wait_until(lambda: _sign_in_form(driver) and not _signed_in_tab(driver),
                          40, 1.0), "the open tab still shows the signed-in page"
    with psycopg.connect(db_url) as conn:
        assert conn.execute("select count(*) from dashboard_sessions").fetchone() == (0,)


@pytest.mark.parametrize(("lang", "message"), [
    ("en", "Too many failed sign-ins"), ("zh", "登录失败次数过多")])
def test_guessing_a_password_is_throttled(users_db: str, lang: str, message: str) -> None:
    """Five wrong passwords for one name: the right one is then refused too, with a message
    that says why and for how long, in the page's language."""
    from streamlit.testing.v1 import AppTest

    def attempt(password: str) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=60)
        at.query_params["lang"] = lang
        at.run()
        at.text_input[0].input("ANN")  # the name is not case-sensitive, nor is its count
        at.text_input[1].input(password)
        at.button[0].click()
        at.run()
        return at

    for i in range(throttle.MAX_PER_NAME):
        at = attempt(f"guess {i}")
        assert not any(message in str(e.value) for e in at.error)
    at = attempt(PASSWORD)
    assert [e.value for e in at.error if message in str(e.value)], [e.value for e in at.error]
    assert "user" not in at.session_state
    assert "15" in str(at.error[0].value)  # minutes to wait


def test_one_address_guessing_many_names_is_throttled(users_db: str) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(users_db) as conn:
        for i in range(throttle.MAX_PER_ADDRESS):
            assert throttle.refused(conn, f"user{i}", "203.0.113.9", now) is None
            throttle.record_failure(conn, f"user{i}", "203.0.113.9", now)
        refusal = throttle.refused(conn, "ann", "203.0.113.9", now)
        assert refusal is not None and refusal.minutes == 15
        assert throttle.refused(conn, "ann", "198.51.100.1", now) is None  # another address
        assert throttle.refused(conn, "ann", "203.0.113.9", now + throttle.WINDOW) is None


def test_an_unknown_name_costs_the_same_bcrypt_work(users_db: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """No timing oracle: an unknown name's password is checked against a real bcrypt hash of
    the users' cost, as a known name's is (the work done is counted, not timed)."""
    checked: list[tuple[str, bool]] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        try:
            result = real(password, hashed)
        except ValueError:
            checked.append((hashed.decode(errors="replace")[:7], False))
            raise
        checked.append((hashed.decode()[:7], True))
        return result

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    with psycopg.connect(users_db) as conn:
        assert authenticate(conn, "ann", "wrong") is None
        assert authenticate(conn, "nobody-here", "wrong") is None
    assert checked == [("$2b$04$", True), ("$2b$04$", True)]


def test_grants_expire_and_tokens_are_not_grants() -> None:
    now = datetime.now(UTC)
    token = sessions.token_for(KEY, "abc", now + timedelta(days=1))
    grant = sessions.grant_for(KEY, "abc", now)
    assert sessions.granted(KEY, grant, now) == "abc"
    assert sessions.granted(KEY, token, now) is None  # a token is not a grant
    assert sessions.verify(KEY, grant, now) is None  # nor a grant a token
    assert sessions.granted(KEY, grant, now + sessions.GRANT_TTL + timedelta(seconds=1)) is None


class _Pixel(BaseHTTPRequestHandler):
    """Counts what a browser fetches from it (an image a note links to)."""

    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.browser
def test_a_note_is_shown_as_typed_not_as_markdown(served: tuple[str, int]) -> None:
    """A clinician's note holding a Markdown image: the next viewer's browser shows the text
    and fetches nothing."""
    from care import store
    from tests.helpers import load_fleet

    db_url, port = served
    load_fleet(db_url, n=1, days=3, seed=44)
    pixel = ThreadingHTTPServer(("127.0.0.1", free_port()), _Pixel)
    threading.Thread(target=pixel.serve_forever, daemon=True).start()
    note = f"![seen](http://127.0.0.1:{pixel.server_port}/pixel.png) **bold**"
    with psycopg.connect(db_url) as conn:
        create_user(conn, "dr_li", PASSWORD, "clinician", rounds=4)
        (policy,) = conn.execute("select policy_id from policies").fetchone()  # type: ignore[misc]
        conn.execute("insert into care_panels (username, policy_id) values ('dr_li', %s)",
                     (policy,))
        (alert_id,) = conn.execute(  # type: ignore[misc]
            "insert into alerts (policy_id, rule, severity, detail, rules_name, rules_version) "
            "values (%s, 'lapsed', 'medium', 'no reading for 3 days', 'default', 0) "
            "returning alert_id", (policy,)).fetchone()
        store.act(conn, "dr_li", int(alert_id), "note", note, allowed=[str(policy)])
        conn.commit()
    try:
        with chromium(1400, 1000) as driver:
            _sign_in(driver, port, "dr_li")
            assert wait_until(lambda: "no reading for 3 days" in driver.page_source, 60, 0.5)
            settle(driver)  # the note is on the page, as text: an image would be asked for now
            assert _Pixel.hits == []
            assert not [img for img in driver.find_elements("tag name", "img")
                        if "pixel.png" in str(img.get_attribute("src"))]
    finally:
        pixel.shutdown()


@pytest.mark.browser
def test_a_forged_expired_closed_or_replayed_cookie_opens_nothing(
        served: tuple[str, int]) -> None:
    """A cookie set by hand in a fresh browser: a live session's token opens the page; one
    signed with another key, one past its expiry, one whose session was closed, and the live
    one replayed after signing out all show the sign-in form and nothing else."""
    db_url, port = served
    token, session_id = _session(db_url)
    now = datetime.now(UTC)
    forged = sessions.token_for(sessions.signing_key("not our key"), session_id,
                                now + timedelta(days=1))
    expired = sessions.token_for(KEY, session_id, now - timedelta(minutes=1))
    closed, closed_id = _session(db_url)
    with psycopg.connect(db_url) as conn:
        sessions.close_session(conn, KEY, closed)
        conn.commit()
    assert not _session_exists(db_url, closed_id)

    def opens(cookie: str) -> bool:
        with chromium(1200, 900) as driver:
            driver.get(f"http://127.0.0.1:{port}/_stcore/health")  # the cookie's site
            driver.add_cookie({"name": sessions.COOKIE, "value": cookie, "path": "/"})
            driver.get(f"http://127.0.0.1:{port}/")
            assert wait_until(lambda: _signed_in_tab(driver) or _sign_in_form(driver), 60, 0.5)
            # A form shown first would give way to the page within seconds if resumed.
            return wait_until(lambda: _signed_in_tab(driver) and not _sign_in_form(driver),
                              3, 0.5)

    assert opens(token)
    for cookie in (forged, expired, closed):
        assert not opens(cookie), cookie
    with psycopg.connect(db_url) as conn:  # signing out, as the page's button does
        sessions.close_session(conn, KEY, token)
        conn.commit()
    assert not opens(token)  # the copied cookie, replayed after signing out
