"""`glucover simulate` streams meter by meter: its dry run writes the messages the
whole-history simulator wrote, byte for byte; without an ingest worker it says what it waits
for; Ctrl-C stops it with a clear line, exit 130 and no half-written file."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from bench.simulate import whole_history_messages
from devices.fleet import portfolio
from devices.simulator_cli import write_dry_run
from tests.conftest import Stack
from tests.helpers import wait_until
from tests.ingest_helpers import provision

# `glucover simulate --policies 40 --days 20 --seed 5 --start 2026-05-01 --dry-run` on main
# before the simulator streamed (0dd66d3): the file's SHA-256.
BEFORE_SHA256 = "e99d0443e3c4c987dc00fa28e50a5c87bce37d20bfa3469f22312f9e16b38aed"


def _glucover(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "cli.main", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_the_dry_run_writes_what_the_whole_history_simulator_wrote(tmp_path: Path) -> None:
    out = tmp_path / "fleet.jsonl"
    proc = _glucover("simulate", "--policies", "40", "--days", "20", "--seed", "5",
                     "--start", "2026-05-01", "--dry-run", "--out", str(out))
    said = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 0, said
    assert hashlib.sha256(out.read_bytes()).hexdigest() == BEFORE_SHA256
    # And beside the baseline kept in bench/ (CGM wearers and gateway meters included).
    people = portfolio(40, 5, date(2026, 5, 1), 0.1, 0.1)
    assert any(p.cgm for p in people)
    baseline = tmp_path / "baseline.jsonl"
    write_dry_run(str(baseline), whole_history_messages(
        people, 5, 20, until=datetime(2026, 5, 21, tzinfo=UTC)))
    assert baseline.read_bytes() == out.read_bytes()
    assert {p.name for p in tmp_path.iterdir()} == {"fleet.jsonl", "baseline.jsonl"}


def test_ctrl_c_during_a_dry_run_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "fleet.jsonl"
    proc = _glucover("simulate", "--policies", "2000", "--days", "60", "--dry-run",
                     "--out", str(out))
    partial = tmp_path / ".fleet.jsonl.partial"
    assert wait_until(lambda: partial.exists() and partial.stat().st_size > 0, 120)
    proc.send_signal(signal.SIGINT)
    said = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 130, said
    assert "stopped (Ctrl-C)" in said
    assert list(tmp_path.iterdir()) == []  # neither the file nor its partial


def test_without_an_ingest_worker_it_says_what_it_waits_for_and_stops_on_ctrl_c(
        stack: Stack, tmp_path: Path) -> None:
    provision(stack, 2, 71)
    log = tmp_path / "simulate.log"
    with log.open("wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "simulate", "--policies", "2", "--days", "5",
             "--seed", "71", "--cgm-share", "0", "--gateway-share", "0", "--no-provision"],
            env=stack.env(), stdout=f, stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: "is an ingest worker running" in log.read_text(), 60), \
            log.read_text()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    said = log.read_text()
    assert "stored 0 of " in said and " readings, nothing new for " in said, said
    assert "stopped (Ctrl-C)" in said
    assert "Traceback" not in said, said


def test_bench_simulate_measures_both_approaches_on_the_same_fleet(
        capsys: pytest.CaptureFixture[str]) -> None:
    from cli.main import main

    assert main(["bench", "simulate", "--policies", "6", "--days", "3", "--cgm-share", "0.5",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    runs = report["approaches"]
    assert set(runs) == {"whole_history", "streamed"}
    assert runs["whole_history"]["published"] == runs["streamed"]["published"] > 0
    for figures in runs.values():
        assert figures["failed"] == 0
        assert figures["peak_rss_mb"] > 0 and figures["messages_per_s"] > 0
        assert 0 <= figures["first_publish_after_start_s"] <= figures["first_publish_s"]


def test_off_a_terminal_progress_is_a_line_and_a_stalled_meter_says_what_it_waits_for(
        ) -> None:
    import io

    from devices.publisher import FleetProgress, Waiting
    from devices.simulator_cli import Progress

    out = io.StringIO()
    fleet = FleetProgress(meters=5, finished=2, published=1234)
    with Progress(fleet, out) as progress:
        assert wait_until(lambda: "progress:" in out.getvalue(), 20)
        progress.waiting(Waiting("CG-1", "ingest", 0, 48, 12.0))
        progress.waiting(Waiting("CG-2", "ingest", 3, 48, 12.0))  # too soon: not said
    said = out.getvalue()
    assert "progress: 2 of 5 meters done, 1,234 messages published" in said
    assert "\r" not in said  # no bar off a terminal
    assert ("meter CG-1: stored 0 of 48 readings, nothing new for 12s: is an ingest worker "
            "running (`glucover ingest`)? (Ctrl-C stops)") in said
    assert "CG-2" not in said
