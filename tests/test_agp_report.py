"""The one-page AGP report (records/agp_report.py, `glucover export agp`): a PDF that renders,
with its headings and the wearer's own figures, in English and Chinese."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
import pytest

from cli.main import main
from records.export import agp_pdf
from tests.helpers import load_cgm_wearers, load_fleet


def pdf_text(path: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True,
                          capture_output=True, text=True).stdout


def test_the_agp_report_renders_with_its_headings_and_figures(
        db_url: str, settings: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    from pricing import cgm_metrics, store

    policy_id = load_cgm_wearers(db_url)[0]
    monkeypatch.setenv("DATABASE_URL", db_url)
    out = tmp_path / "agp.pdf"
    assert main(["export", "agp", "--policy", policy_id, "--out", str(out)]) == 0
    assert out.read_bytes().startswith(b"%PDF")
    subprocess.run(["pdftoppm", "-png", "-r", "60", str(out), str(tmp_path / "page")],
                   check=True)
    pages = sorted(tmp_path.glob("page*.png"))
    assert len(pages) == 1 and pages[0].stat().st_size > 20_000  # one page, drawn
    text = pdf_text(out)
    for heading in ("AGP Report", "Glucose statistics and targets", "Time in ranges",
                    "Ambulatory glucose profile (AGP)", "Daily glucose profiles"):
        assert heading in text, heading
    with psycopg.connect(db_url) as conn:
        policies, bindings = store.load_policies(conn, [policy_id])
        zone = ZoneInfo(str(policies["timezone"].iloc[0]))
        readings = store.load_readings(conn, list(bindings["device_id"]))
        rules = store.in_force(conn, "cgm-default")
    today = datetime.now(UTC).astimezone(zone).date()
    m = cgm_metrics.window(readings, rules, zone, today).metrics
    assert f"{m['gmi']:.1f}%" in text and f"{m['tir_70_180']:.1f}%" in text
    assert f"{m['active_percent']:.1f}%" in text
    assert f"{today - timedelta(days=14)} to {today - timedelta(days=1)} (14 days)" in text
    # The report in mmol/L names its ranges in mmol/L (the consensus limits, converted).
    assert "Time in ranges (mmol/L)" in text and "3.9–10.0" in text and "<3.0" in text
    assert "mg/dL" not in text

    zh = tmp_path / "agp-zh.pdf"
    assert main(["export", "agp", "--policy", policy_id, "--lang", "zh", "--unit", "mg/dL",
                 "--out", str(zh)]) == 0
    assert "动态血糖图谱" in pdf_text(zh) and "70–180" in pdf_text(zh)


def test_a_fingerstick_policy_has_no_agp_report(db_url: str) -> None:
    from glucover.errors import UserError

    load_fleet(db_url, n=2, days=5, seed=4)
    with psycopg.connect(db_url) as conn:
        policy_id = str(conn.execute("select min(policy_id) from policies").fetchone()[0])  # type: ignore[index]
        with pytest.raises(UserError, match="needs a CGM"):
            agp_pdf(conn, policy_id)
