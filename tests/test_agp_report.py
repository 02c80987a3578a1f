"""The one-page AGP report (records/agp_report.py, `glucover export agp`): a PDF that renders,
with its headings and the figures of a trace worked out by hand, in English and Chinese."""

from __future__ import annotations

import subprocess
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from cli.main import main
from devices.wire.messages import ReadingsMessage, Record
from kernel.vocabulary import Meal, Sample, Unit
from records.export import agp_pdf
from tests.helpers import load_fleet, store_messages


def pdf_text(path: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True,
                          capture_output=True, text=True).stdout


NEW_YORK = ZoneInfo("America/New_York")
FIRST, LAST = date(2026, 3, 2), date(2026, 3, 15)  # 14 local days; clocks go forward on 8 March


def load_hand_built_trace(db_url: str) -> int:
    """A New York wearer's sensor every 5 minutes from local midnight on FIRST to local midnight
    after LAST: 335 hours (the day of the change has 23), so 4,020 readings; every fourth 200
    mg/dL, the others 120. By hand: time in range 75.0%, above 180 25.0%, mean 140 mg/dL, GMI
    3.31 + 0.02392 x 140 = 6.66%, sensor active 100.0% (not 4,020 / 4,032 = 99.7%)."""
    with psycopg.connect(db_url) as conn:
        conn.execute("insert into devices (device_id, kind) values ('CGM-NY', 'cgm')")
        conn.execute("insert into policies (policy_id, holder_name, base_sum_insured, timezone,"
                     " start_date, ruleset_name) values ('POL-NY', 'N', 10000, 'America/New_York', "
                     "%s, 'cgm-default')", (FIRST,))
        conn.execute("insert into policy_devices values ('POL-NY', 'CGM-NY', %s, null)",
                     (datetime(2026, 3, 1, tzinfo=UTC),))
        conn.commit()
    start = datetime.combine(FIRST, time(), NEW_YORK).astimezone(UTC)
    end = datetime.combine(LAST + timedelta(days=1), time(), NEW_YORK).astimezone(UTC)
    n = int((end - start) / timedelta(minutes=5))
    assert n == 4020
    records = [Record(i, start + timedelta(minutes=5 * i), 200 if i % 4 == 3 else 120,
                      Unit.MG_DL, Meal.UNKNOWN, Sample.INTERSTITIAL_FLUID) for i in range(n)]
    messages = [ReadingsMessage("CGM-NY", r.measured_at + timedelta(seconds=30), (r,))
                for r in records]
    store_messages(db_url, [(m.topic, m.encode(), m.sent_at) for m in messages])
    return n


def test_the_agp_report_renders_with_its_headings_and_figures(
        db_url: str, settings: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load_hand_built_trace(db_url)
    monkeypatch.setenv("DATABASE_URL", db_url)
    out = tmp_path / "agp.pdf"
    assert main(["export", "agp", "--policy", "POL-NY", "--to", str(LAST),
                 "--out", str(out)]) == 0
    assert out.read_bytes().startswith(b"%PDF")
    subprocess.run(["pdftoppm", "-png", "-r", "60", str(out), str(tmp_path / "page")],
                   check=True)
    pages = sorted(tmp_path.glob("page*.png"))
    assert len(pages) == 1 and pages[0].stat().st_size > 20_000  # one page, drawn
    text = pdf_text(out)
    for heading in ("AGP Report", "Glucose statistics and targets", "Time in ranges",
                    "Ambulatory glucose profile (AGP)", "Daily glucose profiles"):
        assert heading in text, heading
    assert "6.7%" in text and "75.0%" in text and "25.0%" in text  # GMI, in range, above
    assert "100.0%" in text and "99.7%" not in text  # the 23-hour day is not short of data
    assert f"{FIRST} to {LAST} (14 days)" in text
    # The report in mmol/L names its ranges in mmol/L (the consensus limits, converted).
    assert "Time in ranges (mmol/L)" in text and "3.9–10.0" in text and "<3.0" in text
    assert "mg/dL" not in text

    zh = tmp_path / "agp-zh.pdf"
    assert main(["export", "agp", "--policy", "POL-NY", "--to", str(LAST), "--lang", "zh",
                 "--unit", "mg/dL", "--out", str(zh)]) == 0
    assert "动态血糖图谱" in pdf_text(zh) and "70–180" in pdf_text(zh)
    assert "6.7%" in pdf_text(zh) and "75.0%" in pdf_text(zh)


def test_a_fingerstick_policy_has_no_agp_report(db_url: str) -> None:
    from glucover.errors import UserError

    load_fleet(db_url, n=2, days=5, seed=4)
    with psycopg.connect(db_url) as conn:
        policy_id = str(conn.execute("select min(policy_id) from policies").fetchone()[0])  # type: ignore[index]
        with pytest.raises(UserError, match="needs a CGM"):
            agp_pdf(conn, policy_id)
