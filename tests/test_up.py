"""`glucover up` brings the whole system up on embedded defaults, and stops it cleanly."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import psycopg

from glucover.servers import free_port
from tests.helpers import state_dir, wait_until


def test_up_reaches_a_healthy_dashboard_with_data_flowing() -> None:
    home = state_dir("glucover-up-")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MQTT_URL",
                                                             "GLUCOVER_SECRET")}
    env["GLUCOVER_HOME"] = str(home / "state")
    log = home / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "up", "--policies", "20", "--days", "15",
             "--dashboard-port", str(port), "--price-every", "2"],
            env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        health = ""
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health",
                                                timeout=2).read().decode()
                if health == "ok" and "ledger rows added" in log.read_text():
                    break
            except OSError:
                pass
            time.sleep(0.5)
        text = log.read_text()
        assert health == "ok", text[-3000:]
        assert "glucover is up" in text
        url = next(line.split()[-1] for line in text.splitlines()
                   if line.strip().startswith("database:"))
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
        assert [r[0] for r in logins] == ["glucover_care_svc", "glucover_dashboard_svc",
                                          "glucover_ingest_svc", "glucover_pricing_svc"]
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
