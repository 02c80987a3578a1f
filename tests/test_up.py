"""`glucover up` brings the whole system up on embedded defaults, and stops it cleanly."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import urllib.request

import psycopg

from glucover.db import with_credentials
from glucover.servers import free_port
from tests.helpers import state_dir, wait_until


def test_up_reaches_a_healthy_dashboard_with_data_flowing() -> None:
    home = state_dir("glucover-up-")
    port, api_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MQTT_URL",
                                                             "GLUCOVER_SECRET")}
    env["GLUCOVER_HOME"] = str(home / "state")
    log = home / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "up", "--policies", "20", "--days", "15",
             "--dashboard-port", str(port), "--api-port", str(api_port),
             "--price-every", "2"],
            env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        health = ""

        def priced_and_serving() -> bool:
            nonlocal health
            if proc.poll() is not None:
                return True  # gone: the asserts below say why
            try:
                health = urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health",
                                                timeout=2).read().decode()
            except OSError:
                return False
            return health == "ok" and "ledger rows added" in log.read_text()

        wait_until(priced_and_serving, 120, 0.5)
        text = log.read_text()
        assert health == "ok", text[-3000:]
        assert "glucover is up" in text
        shown = next(line.split()[1] for line in text.splitlines()
                     if line.strip().startswith("database:"))
        password = (home / "state" / "postgres" / "data.password").read_text().strip()
        url = with_credentials(shown, "glucover_admin", password)  # the banner shows no password
        with psycopg.connect(url) as conn:
            # Pricing starts with the banner; the simulator's readings follow.
            assert wait_until(lambda: conn.execute(
                "select count(*) > 100 from readings").fetchone() == (True,), 90)
            readings = conn.execute("select count(*) from readings").fetchone()
            ledger = conn.execute("select count(distinct policy_id) from current_ledger"
                                  ).fetchone()
            logins = conn.execute("select rolname from pg_roles where rolname like "
                                  "'glucover_%%_svc' order by 1").fetchall()
        assert readings is not None and readings[0] > 100
        assert ledger == (20,)
        assert [r[0] for r in logins] == ["glucover_api_svc", "glucover_care_svc",
                                          "glucover_dashboard_svc", "glucover_ingest_svc",
                                          "glucover_pricing_svc"]
        # The Nightscout-compatible API, at the URL up prints on a line of its own.
        api_url = next(line.split()[1] for line in text.splitlines()
                       if line.startswith("nightscout:"))
        assert api_url == f"http://127.0.0.1:{api_port}/api/v1/"
        status = urllib.request.urlopen(  # noqa: S310 - our own server
            api_url + "status.json", timeout=5).read()
        assert b'"status":"ok"' in status
        # Demo claims once pricing reached yesterday (a 15-day history: only those inside the
        # waiting period), and a claims handler's login.
        assert wait_until(lambda: "[up] demo claims:" in log.read_text(), 60), text[-3000:]
        with psycopg.connect(url) as conn:
            statuses = {r[0] for r in conn.execute("select status from claim_status")}
            handler = conn.execute("select role from dashboard_users where username = "
                                   "'claims'").fetchone()
        assert statuses == {"filed", "more_information", "declined"} and handler == ("claims",)
        # The alert service runs with its own login and takes ingest's inbox as it fills.
        assert "[alerts]" in text and "listening on glucover_readings" in text
        with psycopg.connect(url) as conn:
            assert wait_until(lambda: conn.execute(
                "select count(*) from alert_inbox where committed_at < clock_timestamp() "
                "- interval '5 seconds'").fetchone() == (0,), 20)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
        shutil.rmtree(home, ignore_errors=True)
    assert code == 0
    leftovers = subprocess.run(["pgrep", "-f", str(home)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", "servers or children left running"
    streamlit = subprocess.run(["pgrep", "-f", "--", f"--server.port {port} "],
                               capture_output=True,
                               text=True)
    assert streamlit.stdout.strip() == "", "the dashboard server was left running"
