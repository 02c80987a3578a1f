"""Builders the test modules share (no test module imports another): the one START of every
synthetic history, ways to load a fleet into a database without a broker, a headless
Chromium."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import psycopg

from devices.fleet import fleet_messages, portfolio
from devices.provisioning import add_portfolio
from ingest.batch import Received, decode
from ingest.store import prepare, write_batch
from pricing.evaluator import Ledger

TEST_SECRET = "test-secret-not-for-production"
START = date(2026, 3, 2)  # first day of every synthetic history in the tests
APP = str(Path(__file__).parent.parent / "dashboard" / "app.py")
PASSWORD = "correct horse"  # every dashboard user the tests create


def signed_in(username: str, query: dict[str, str] | None = None, timeout: float = 90
              ) -> Any:
    """The dashboard (AppTest) signed in as `username` (password PASSWORD), opened with
    `query`; no exception on the way."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=timeout)
    at.query_params.update(query or {})
    at.run()
    assert not at.exception, at.exception
    at.text_input[0].input(username)
    at.text_input[1].input(PASSWORD)
    at.button[0].click()
    at.run()
    assert not at.exception, at.exception
    return at


def store_messages(db_url: str, messages: list[tuple[str, bytes, datetime]]) -> None:
    """Messages through ingest's own decode and write (no broker), received when stated."""
    with psycopg.connect(db_url) as conn:
        prepare(conn)
        batch = decode([Received(t, p, i, 1, at) for i, (t, p, at) in enumerate(messages)],
                       trust_sent_at=False)
        write_batch(conn, batch)
        conn.commit()


def load_fleet(db_url: str, n: int = 25, days: int = 45, seed: int = 3) -> None:
    people = portfolio(n, seed, START)
    with psycopg.connect(db_url) as conn:
        add_portfolio(conn, people, TEST_SECRET)
        conn.commit()
    # Received when sent: a meter's gateway time stands in for the broker's here.
    store_messages(db_url, [(m.topic, m.payload, m.at) for m in fleet_messages(people, seed, days)
                            if m.topic.endswith("readings")])


# Zones without daylight saving, spread round the clock (no two more than 5 hours apart), so a
# window up to the real now never holds a clock change: the pinned NEW_YORK_SPRING window does.
DAYTIME_ZONES = ("Pacific/Honolulu", "America/Bogota", "America/Sao_Paulo", "Africa/Lagos",
                 "Asia/Dubai", "Asia/Kolkata", "Asia/Shanghai", "Pacific/Guadalcanal")
# Sent before noon (UTC) of 15 March 2026: New York's local days 2-14 March are whole and hold
# its spring change on 8 March (02:00 EST became 03:00 EDT).
NEW_YORK_SPRING = datetime(2026, 3, 15, 12, tzinfo=UTC)


def daytime_zone(now: datetime) -> str:
    """Of DAYTIME_ZONES, the one whose local time at `now` is nearest 14:00."""
    def off_afternoon(zone: str) -> float:
        local = now.astimezone(ZoneInfo(zone))
        return abs(local.hour + local.minute / 60 - 14)

    return min(DAYTIME_ZONES, key=off_afternoon)


def load_cgm_wearers(db_url: str, end: datetime, zone: str, n: int = 2, days: int = 21,
                     seed: int = 21) -> list[str]:
    """`n` CGM wearers living in `zone`, with the sensor data their phones sent before `end`
    over the `days` local days ending on `end`'s, priced through the local day before it;
    their policy ids. The caller fixes the window: a pinned `end` (NEW_YORK_SPRING) where the
    history must not depend on the day the suite runs, the real now only where a page reads
    the real clock ("today so far", "the last 14 days")."""
    from pricing.engine import run_pricing

    last = end.astimezone(ZoneInfo(zone)).date()
    people = [replace(p, timezone=zone) for p in
              portfolio(n, seed, last - timedelta(days=days - 1), cgm_share=1.0)]
    with psycopg.connect(db_url) as conn:
        add_portfolio(conn, people, TEST_SECRET)
        conn.commit()
    store_messages(db_url, [(m.topic, m.payload, m.at)
                            for m in fleet_messages(people, seed, days, until=end)])
    run_pricing(db_url, last - timedelta(days=1))
    return [p.policy_id for p in people]


def current_ledger(db_url: str) -> pd.DataFrame:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("select policy_id, day, day_status, reading_seq, delta::float8, "
                            "bonus::float8, sum_insured::float8 from current_ledger "
                            "order by policy_id, day").fetchall()
    return pd.DataFrame(rows, columns=["policy_id", "day", "day_status", "reading_seq", "delta",
                                       "bonus", "sum_insured"])


def late_reading(db_url: str, policy: str, day: date, seq: int, synced_after: timedelta
                 ) -> None:
    """A fasting in-target 5.6 mmol/L of the policy's meter at 06:00 local time of `day`,
    received `synced_after` later (a meter that synced late)."""
    from devices.wire import messages, topics
    from kernel import vocabulary

    with psycopg.connect(db_url) as conn:
        row = conn.execute("select d.device_id, p.timezone from policy_devices d join policies "
                           "p using (policy_id) where policy_id = %s", (policy,)).fetchone()
    assert row is not None
    device, zone = str(row[0]), str(row[1])
    measured = pd.Timestamp(f"{day}T06:00", tz=zone).to_pydatetime()
    payload = messages.ReadingsMessage(device, measured, (messages.Record(
        seq=seq, measured_at=measured, value=5.6, meal=vocabulary.Meal.FASTING),)).encode()
    store_messages(db_url, [(topics.readings_topic(device), payload, measured + synced_after)])


def full_evaluation(db_url: str, through: date) -> pd.DataFrame:
    """The default ruleset's ledger of every stored policy through `through`, evaluated from
    scratch, in current_ledger()'s dtypes."""
    from pricing import store
    from pricing.products import evaluate
    from pricing.ruleset import load_builtin

    with psycopg.connect(db_url) as conn:
        policies, bindings = store.load_policies(conn)
        readings = store.load_readings(conn, sorted(set(bindings["device_id"])))
    return comparable(evaluate(policies, bindings, readings, load_builtin("default"), through))


def comparable(ledger: Ledger) -> pd.DataFrame:
    """The evaluator's ledger in the dtypes `current_ledger()` reads from the database."""
    frame = ledger.to_frame()
    frame["policy_id"] = frame["policy_id"].astype(str)
    frame["day_status"] = frame["day_status"].astype(str)
    frame["day"] = frame["day"].dt.date
    frame["reading_seq"] = frame["reading_seq"].astype("Int64")
    return frame


# The bad-input corpus: each case with the outcome ingest must give it (see its "about").
CORPUS = json.loads((Path(__file__).parent / "corpus" / "bad_input.json").read_text())


def _shift_seqs(payload: bytes, offset: int) -> bytes:
    """Give each case its own seq range so cases never collide on identity."""
    try:
        doc = json.loads(payload)
    except ValueError:
        return payload
    if isinstance(doc, dict) and isinstance(doc.get("records"), list):
        for r in doc["records"]:
            if isinstance(r, dict) and type(r.get("seq")) is int and 0 <= r["seq"] < 1000:
                r["seq"] += offset
        return json.dumps(doc).encode()
    return payload


def _materialise(text: str, me: str, other: str, now: datetime) -> bytes:
    return (text.replace("$SELF", me).replace("$OTHER", other).replace("$NOW", now.isoformat())
            .replace("$TOMORROW", (now + timedelta(days=1)).isoformat())
            .replace("$TEN_DAYS_AGO", (now - timedelta(days=10)).isoformat())).encode()


def case_payloads(case: dict[str, Any], index: int, me: str, other: str, now: datetime
                  ) -> list[bytes]:
    if "payload_hex" in case:
        first = bytes.fromhex(case["payload_hex"])
    elif "payload_repeat" in case:  # [text, count] pieces, concatenated
        first = b"".join(text.encode() * count for text, count in case["payload_repeat"])
    elif case.get("verbatim"):  # sent exactly as written (a rejected case stores nothing)
        first = _materialise(case["payload"], me, other, now)
    else:
        first = _shift_seqs(_materialise(case["payload"], me, other, now), 1000 * index)
    out = [first]
    if case.get("send_twice"):
        out.append(first)
    if "then" in case:
        out.append(_shift_seqs(_materialise(case["then"], me, other, now), 1000 * index))
    return out


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0, every_s: float = 0.1
               ) -> bool:
    """Poll `condition` until it holds or `timeout_s` passes; whether it held."""
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(every_s)


def state_dir(prefix: str) -> Path:
    """A new directory below /tmp (world-searchable), so the unprivileged users our servers run
    as can reach it."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o755)  # noqa: S103 - the server users must traverse it
    return path


@contextmanager
def chromium(width: int, height: int, downloads: Path | None = None) -> Iterator[Any]:
    """A headless Debian Chromium with a fresh profile, its viewport `width` x `height`,
    saving downloads into `downloads` when given."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="glucover-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(
        shutil.which("chromedriver") or "/usr/bin/chromedriver"))
    try:
        driver.set_window_size(width, height)
        if downloads is not None:
            driver.execute_cdp_cmd("Browser.setDownloadBehavior", {
                "behavior": "allow", "downloadPath": str(downloads)})
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@contextmanager
def dashboard_server(db_url: str) -> Iterator[int]:
    """The dashboard served as `glucover dashboard` serves it, on `db_url`, at a free port of
    127.0.0.1: the port; stopped on the way out."""
    import subprocess

    from dashboard.launch import command
    from glucover.servers import free_port, wait_for_port

    port = free_port()
    proc = subprocess.Popen(command(port, "127.0.0.1"), env={**os.environ, "DATABASE_URL": db_url},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, 60, proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(20)


def page_settled(driver: Any) -> bool:
    """Streamlit has finished the page's run: the app's script state is "notRunning" (the
    running indicator is off) and no element of an earlier run is left stale (greyed while a
    rerun replaces it), and every Vega-Lite chart has drawn its canvas or SVG."""
    return bool(driver.execute_script(
        "const app = document.querySelector(\"[data-testid='stApp']\");"
        "return app !== null && app.getAttribute('data-test-script-state') === 'notRunning'"
        " && !document.querySelector(\"[data-stale='true']\")"
        " && [...document.querySelectorAll(\"[data-testid='stVegaLiteChart']\")]"
        ".every(c => c.querySelector('canvas, svg'));"))


def settle(driver: Any, timeout_s: float = 60) -> None:
    """Wait until page_settled; fail if it does not within `timeout_s`."""
    assert wait_until(lambda: page_settled(driver), timeout_s), "the page did not settle"


def scroll_to(driver: Any, element: Any, block: str = "start") -> None:
    """Scroll `element` into view (`block` as scrollIntoView takes it) and wait until the page
    stands still with the element's box in the viewport."""
    driver.execute_script(f"arguments[0].scrollIntoView({{block: '{block}'}})", element)
    seen: list[float] = []

    def still_and_in_view() -> bool:
        top, y, height = driver.execute_script(
            "return [arguments[0].getBoundingClientRect().top, window.scrollY,"
            " window.innerHeight]", element)
        seen.append(y)
        return len(seen) > 1 and seen[-1] == seen[-2] and -1 <= top < height

    assert wait_until(still_and_in_view, 10, 0.05), "the element did not scroll into view"


def served_files(monkeypatch: Any) -> dict[str, bytes]:
    """What AppTest's download buttons offer, by file name, filled as each run adds them:
    Streamlit's in-memory media storage read through, not replaced."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    files: dict[str, bytes] = {}
    real = MemoryMediaFileStorage.load_and_get_id

    def keep(self: MemoryMediaFileStorage, path_or_data: str | bytes, mimetype: str,
             kind: Any, filename: str | None = None) -> str:
        file_id = real(self, path_or_data, mimetype, kind, filename)
        files[filename or file_id] = self.get_file(file_id).content
        return file_id

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", keep)
    return files
