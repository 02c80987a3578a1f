"""`glucover up` as an attacker sees it: a meter of the fleet dating readings weeks back, a
service process taken over, the banner on a shared screen (issue 27)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devices.wire.messages import ReadingsMessage, Record
from glucover import broker
from glucover.config import Settings, derive_key
from glucover.db import with_credentials
from glucover.servers import free_port
from kernel.vocabulary import Meal
from tests.helpers import state_dir, wait_until


@dataclass
class Up:
    proc: subprocess.Popen[bytes]
    log: Path
    state: Path
    port: int

    def text(self) -> str:
        return self.log.read_text()

    @property
    def secret(self) -> str:
        return (self.state / "secrets" / "glucover.secret").read_text().strip()

    @property
    def admin_url(self) -> str:
        """The superuser's URL: the banner names the user; its password is in its file."""
        line = next(line for line in self.text().splitlines()
                    if line.strip().startswith("database:"))
        shown = line.split()[1]
        password = (self.state / "postgres" / "data.password").read_text().strip()
        parts = urlsplit(shown)
        return with_credentials(shown, str(parts.username), password)

    def broker_port(self) -> int:
        line = next(line for line in self.text().splitlines()
                    if line.strip().startswith("broker:") and "mqtt://" in line)
        return int(line.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def up() -> Iterator[Up]:
    home = state_dir("glucover-up-sec-")
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "MQTT_URL") and not k.startswith("GLUCOVER_")}
    env["GLUCOVER_HOME"] = str(home / "state")
    log = home / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "up", "--policies", "12", "--days", "15",
             "--dashboard-port", str(port), "--price-every", "2"],
            env=env, stdout=out, stderr=subprocess.STDOUT)
    handle = Up(proc, log, home / "state", port)
    try:
        # Up prices while the history arrives: wait until it is stored, ingest trusts only its
        # own clock, and a pricing run that started after that has finished (the ledger then
        # holds the whole history, and only a forgery could change it).
        assert wait_until(lambda: proc.poll() is None and "glucover is up" in handle.text()
                          and "ingest now trusts only its own clock" in handle.text(), 240,
                          0.5), handle.text()[-3000:]
        with psycopg.connect(handle.admin_url, autocommit=True) as conn:
            row = conn.execute("select coalesce(max(run_id), 0) from pricing_runs").fetchone()
            assert row is not None
            assert wait_until(lambda: conn.execute(
                "select count(*) from pricing_runs where run_id > %s and finished_at is not "
                "null", (row[0],)).fetchone() != (0,), 120, 0.5), handle.text()[-3000:]
        yield handle
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        shutil.rmtree(home, ignore_errors=True)


def _publish(port: int, device: str, password: str, messages: list[ReadingsMessage]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"forger-{device}",
                         protocol=mqtt.MQTTv311)
    client.username_pw_set(device, password)
    connected = threading.Event()

    def on_connect(c: Any, u: Any, f: Any, reason: Any, p: Any) -> None:
        if not reason.is_failure:
            connected.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert connected.wait(10), "the broker refused the meter's own password"
        for m in messages:
            client.publish(m.topic, m.encode(), qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_meter_cannot_re_rate_past_days(up: Up) -> None:
    """Fasting readings in target, dated 8 to 14 days back with a sent_at a minute after each:
    stored (late), never priced; the ledger of those days stays as it was."""
    today = datetime.now(UTC).date()
    with psycopg.connect(up.admin_url) as conn:
        rows = conn.execute(
            "select l.policy_id, l.day, p.timezone, pd.device_id from current_ledger l "
            "join policies p using (policy_id) join policy_devices pd using (policy_id) "
            "join devices d using (device_id) where d.kind = 'bgm' and l.day between %s and %s "
            "and l.day_status <> 'in_target' order by l.policy_id, l.day",
            (today - timedelta(days=14), today - timedelta(days=8))).fetchall()
        assert rows, "the demo has no day a forger could improve"
        policy, _, zone, device = rows[0]
        days = [r[1] for r in rows if r[0] == policy]
        before = conn.execute("select day, day_status, delta, sum_insured from current_ledger "
                              "where policy_id = %s order by day", (policy,)).fetchall()
        runs = conn.execute("select max(run_id) from pricing_runs").fetchone()
    forged = []
    for i, day in enumerate(days):
        at = datetime.combine(day, datetime.min.time(), ZoneInfo(zone)) + timedelta(minutes=5)
        forged.append(ReadingsMessage(device, at + timedelta(minutes=1), (
            Record(60_000 + i, at, 5.5, meal=Meal.FASTING),)))
    password = broker.derive_password(derive_key(up.secret, "device_secret"), device)
    _publish(up.broker_port(), device, password, forged)
    with psycopg.connect(up.admin_url, autocommit=True) as conn:
        assert wait_until(lambda: conn.execute(
            "select count(*) from readings where device_id = %s and seq >= 60000",
            (device,)).fetchone() == (len(forged),), 30)
        # Two pricing runs after the forgery: the second surely saw it.
        assert runs is not None
        assert wait_until(lambda: conn.execute(
            "select count(*) from pricing_runs where run_id > %s and finished_at is not null",
            (runs[0],)).fetchone()[0] >= 2, 60, 0.5)  # type: ignore[index]
        after = conn.execute("select day, day_status, delta, sum_insured from current_ledger "
                             "where policy_id = %s and day <= %s order by day",
                             (policy, before[-1][0])).fetchall()
        received = conn.execute("select min(received_at) from readings where device_id = %s "
                                "and seq >= 60000", (device,)).fetchone()
    assert after == before
    # Stored as received now (the meter's sent_at was not believed): late beyond tolerance.
    assert received is not None and received[0] > datetime.now(UTC) - timedelta(minutes=5)


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def _dashboard_pid(port: int) -> int:
    found = subprocess.run(["pgrep", "-f", "--", f"--server.port {port} "], capture_output=True,
                           text=True).stdout.split()
    assert found, "the dashboard is not running"
    return int(found[0])


def _can_log_in(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.OperationalError:
        return False
    return True


def _broker_accepts(port: int, user: str, password: str) -> bool:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{time.monotonic_ns()}",
                         protocol=mqtt.MQTTv311)
    client.username_pw_set(user, password)
    result: dict[str, Any] = {}
    done = threading.Event()

    def on_connect(c: Any, u: Any, f: Any, reason: Any, p: Any) -> None:
        result["ok"] = not reason.is_failure
        done.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert done.wait(10)
    finally:
        client.disconnect()
        client.loop_stop()
    return bool(result["ok"])


def test_the_dashboards_environment_opens_only_the_dashboards_doors(
        up: Up, tmp_path: Path) -> None:
    """Everything the dashboard process holds, used as `up` would: it neither logs in as the
    pricing service (which writes the ledger) nor as a meter."""
    env = _environ(_dashboard_pid(up.port))
    assert not {"GLUCOVER_SECRET", "GLUCOVER_DEVICE_SECRET", "MQTT_URL"} & env.keys()
    assert not [k for k in env if k.startswith(("GLUCOVER_DB_PASSWORD", "GLUCOVER_MQTT_PASS"))]
    assert urlsplit(env["DATABASE_URL"]).username == "glucover_dashboard_svc"
    settings = Settings.from_env({**env, "GLUCOVER_HOME": str(tmp_path / "home")})
    with psycopg.connect(up.admin_url) as conn:
        device = conn.execute("select device_id from devices limit 1").fetchone()
    assert device is not None
    from cli.up import _db_password

    pricing = with_credentials(up.admin_url, "glucover_pricing_svc",
                               _db_password(settings.secret(), "glucover_pricing_svc"))
    assert not _can_log_in(pricing)
    meter_pw = broker.derive_password(settings.key("device_secret"), str(device[0]))
    assert not _broker_accepts(up.broker_port(), str(device[0]), meter_pw)
    # ... and what it holds is its own: its login works, and so does the meter's own password.
    assert _can_log_in(env["DATABASE_URL"])
    own = broker.derive_password(derive_key(up.secret, "device_secret"), str(device[0]))
    assert _broker_accepts(up.broker_port(), str(device[0]), own)


def test_no_service_holds_the_deployment_secret(up: Up) -> None:
    """Nor anything beyond its own credentials, as `glucover doctor` sees it."""
    from cli.doctor import credential_warnings, services_of

    children = subprocess.run(["pgrep", "-P", str(up.proc.pid)], capture_output=True,
                              text=True).stdout.split()
    seen = set()
    for pid in children:
        env = _environ(int(pid))
        assert "GLUCOVER_SECRET" not in env, pid
        assert up.secret not in "\n".join(env.values()), pid
        settings = Settings.from_env(env)
        seen |= services_of(settings)
        assert credential_warnings(settings) == [], pid
    assert seen == {"ingest", "pricing", "care", "dashboard", "api", "simulator"}


def test_the_banner_does_not_print_the_superusers_password(up: Up) -> None:
    password = (up.state / "postgres" / "data.password").read_text().strip()
    text = up.text()
    assert password not in text
    assert "data.password" in text  # it says where the password is
    assert urllib.request.urlopen(f"http://127.0.0.1:{up.port}/_stcore/health",
                                  timeout=5).read() == b"ok"
