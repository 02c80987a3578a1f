"""Every per-day figure is over the policyholder's local days (kernel/days.py), wherever they
live: a CGM wearer's consensus figures on the policyholder page, in the AGP report and in the
FHIR summary, and a meter user's daily summary (meter_days), each against a computation written
here independently, reading by reading with zoneinfo, for wearers in Asia/Shanghai (+8),
America/New_York across the spring DST change (a 23-hour day) and Asia/Kolkata (+5:30)."""

from __future__ import annotations

import json
import math
import subprocess
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
import pytest

from cli.main import main
from dashboard.policyholder_data import load_summary
from devices.wire.messages import ReadingsMessage, Record
from kernel.vocabulary import Meal, Sample, Unit
from pricing import meter_days
from pricing.ruleset import load_builtin
from privacy import consent
from records.export import agp_pdf, policy_bundle, pseudonym_key
from tests.helpers import TEST_SECRET, store_messages

KEY = pseudonym_key(TEST_SECRET)
# (zone, the day after the 14-day window): New York's window holds 2026-03-08, 23 hours long.
WEARERS = (("Asia/Shanghai", date(2026, 5, 20)), ("America/New_York", date(2026, 3, 16)),
           ("Asia/Kolkata", date(2026, 7, 1)))


def _cgm_wearer(db_url: str, zone: str, today: date) -> list[tuple[datetime, float]]:
    """A CGM wearer in `zone`, readings every 5 minutes from two local days before the window
    to the middle of `today`, with gaps; returns (measured_at, mg/dL) of each reading."""
    tz = ZoneInfo(zone)
    first = today - timedelta(days=16)
    with psycopg.connect(db_url) as conn:
        conn.execute("insert into devices (device_id, kind) values ('CGM-Z', 'cgm')")
        conn.execute("insert into policies (policy_id, holder_name, base_sum_insured, timezone,"
                     " start_date, ruleset_name) values ('POL-Z', 'Z', 10000, %s, %s, "
                     "'cgm-default')", (zone, first))
        conn.execute("insert into policy_devices values ('POL-Z', 'CGM-Z', %s, null)",
                     (datetime.combine(first, time(), tz) - timedelta(days=1),))
        consent.record_all(conn, ['POL-Z'], actor="test", channel="provisioning")
        conn.commit()
    rng = np.random.default_rng(len(zone))
    start = datetime.combine(first, time(), tz).astimezone(UTC)
    end = datetime.combine(today, time(12), tz).astimezone(UTC)
    records, truth = [], []
    for i in range(int((end - start) / timedelta(minutes=5))):
        at = start + timedelta(minutes=5 * i)
        local = at.astimezone(tz)
        # Off at night on some days: the days' edges are where UTC and local days part.
        if local.day % 3 == 0 and local.hour < 9:
            continue
        mgdl = float(np.clip(rng.normal(165 + 40 * math.sin(local.hour / 4), 60), 40, 400))
        value = round(mgdl)
        records.append(Record(i % 65536, at, float(value), Unit.MG_DL, Meal.UNKNOWN,
                              Sample.INTERSTITIAL_FLUID))
        truth.append((at, float(value)))
    messages = [ReadingsMessage("CGM-Z", r.measured_at + timedelta(seconds=30), (r,))
                for r in records]
    store_messages(db_url, [(m.topic, m.encode(), m.sent_at) for m in messages])
    return truth


def _independent(truth: list[tuple[datetime, float]], zone: str, first: date, last: date
                 ) -> dict[str, Any]:
    """The consensus figures over the local days first..last, one reading at a time."""
    tz = ZoneInfo(zone)
    start = datetime.combine(first, time(), tz).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time(), tz).astimezone(UTC)
    inside = [(t, v) for t, v in truth if first <= t.astimezone(tz).date() <= last]
    values = [v for _, v in inside]
    n = len(values)
    slots = math.ceil((end - start) / timedelta(minutes=5))
    covered = {int((t - start) / timedelta(minutes=5)) for t, _ in inside}
    return {"readings": n, "days": len({t.astimezone(tz).date() for t, _ in inside}),
            "tir_70_180": 100 * sum(70 <= v <= 180 for v in values) / n,
            "tbr_below_70": 100 * sum(v < 70 for v in values) / n,
            "tbr_below_54": 100 * sum(v < 54 for v in values) / n,
            "tar_above_180": 100 * sum(v > 180 for v in values) / n,
            "tar_above_250": 100 * sum(v > 250 for v in values) / n,
            "mean_mgdl": sum(values) / n,
            "gmi": 3.31 + 0.02392 * sum(values) / n,
            "active_percent": 100 * len(covered) / slots}


def _pdf_text(pdf: bytes, tmp: Any) -> str:
    path = tmp / "agp.pdf"
    path.write_bytes(pdf)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True,
                          capture_output=True, text=True).stdout


@pytest.mark.parametrize(("zone", "today"), WEARERS, ids=[z for z, _ in WEARERS])
def test_cgm_figures_are_over_local_days_on_the_page_the_pdf_and_fhir(
        db_url: str, zone: str, today: date, tmp_path: Any) -> None:
    truth = _cgm_wearer(db_url, zone, today)
    first, last = today - timedelta(days=14), today - timedelta(days=1)
    want = _independent(truth, zone, first, last)
    utc_days = _independent(
        [(t, v) for t, v in truth if first <= t.astimezone(UTC).date() <= last], "UTC",
        first, last)
    assert want["tir_70_180"] != pytest.approx(utc_days["tir_70_180"], abs=1e-9)  # it matters
    noon = datetime.combine(today, time(12), ZoneInfo(zone))
    with psycopg.connect(db_url) as conn:
        page = load_summary(conn, "POL-Z", now=noon)
        bundle = policy_bundle(conn, "POL-Z", KEY, first, last, now=noon).document
        pdf = agp_pdf(conn, "POL-Z", last=last)
    # The policyholder page and the AGP report: the window's metrics, unrounded.
    assert page.cgm is not None
    shown = page.cgm.metrics
    for column in ("readings", "days", "tir_70_180", "tbr_below_70", "tbr_below_54",
                   "tar_above_180", "tar_above_250", "mean_mgdl", "gmi", "active_percent"):
        assert shown[column] == pytest.approx(want[column], rel=1e-12), column
    text = _pdf_text(pdf, tmp_path)
    for column in ("tir_70_180", "active_percent", "gmi"):
        assert f"{want[column]:.1f}%" in text, column
    # The FHIR summary of the same local days.
    observations = [e["resource"] for e in bundle["entry"]
                    if e["resource"]["resourceType"] == "Observation"]
    by_code = {o["code"]["coding"][0]["code"]: o for o in observations
               if "valueQuantity" in o or "component" in o}
    bands = {c["code"]["coding"][0]["code"]: c["valueQuantity"]["value"]
             for c in by_code["106793-3"]["component"]}
    assert bands["97510-2"] == pytest.approx(want["tir_70_180"], abs=0.005)
    assert bands["104639-0"] == pytest.approx(want["tar_above_250"], abs=0.005)
    assert by_code["104637-4"]["valueQuantity"]["value"] == pytest.approx(
        want["active_percent"], abs=0.005)
    assert by_code["104636-6"]["valueQuantity"]["value"] == want["days"]
    assert by_code["97506-0"]["valueQuantity"]["value"] == pytest.approx(want["gmi"], abs=0.005)


@pytest.mark.parametrize(("zone", "today"), WEARERS, ids=[z for z, _ in WEARERS])
def test_the_meter_daily_summary_is_per_local_day(db_url: str, zone: str, today: date) -> None:
    """A 07:00 reading in Shanghai is on its local day (23:00 UTC the day before), as the
    ledger has it; each day's count, mean and in-range readings equal a reading-by-reading
    computation over local days."""
    tz = ZoneInfo(zone)
    first = today - timedelta(days=10)
    with psycopg.connect(db_url) as conn:
        conn.execute("insert into devices (device_id) values ('BGM-Z')")
        conn.execute("insert into policies (policy_id, holder_name, base_sum_insured, timezone,"
                     " start_date) values ('POL-M', 'M', 10000, %s, %s)", (zone, first))
        conn.execute("insert into policy_devices values ('POL-M', 'BGM-Z', %s, null)",
                     (datetime.combine(first, time(), tz) - timedelta(days=1),))
        consent.record_all(conn, ['POL-M'], actor="test", channel="provisioning")
        conn.commit()
    rng = np.random.default_rng(7)
    records, truth = [], []
    seq = 0
    for d in range(10):
        day = first + timedelta(days=d)
        for hour, meal in ((0, Meal.CASUAL), (7, Meal.FASTING), (12, Meal.PREPRANDIAL),
                           (23, Meal.BEDTIME)):
            at = datetime.combine(day, time(hour, 30 if hour in (0, 23) else 0), tz)
            mmol = round(float(rng.uniform(3.0, 12.0)), 1)
            records.append(Record(seq, at.astimezone(UTC), mmol, Unit.MMOL_L, meal,
                                  Sample.CAPILLARY_PLASMA))
            truth.append((at, mmol, meal))
            seq += 1
    messages = [ReadingsMessage("BGM-Z", r.measured_at + timedelta(seconds=30), (r,))
                for r in records]
    store_messages(db_url, [(m.topic, m.encode(), m.sent_at) for m in messages])
    with psycopg.connect(db_url) as conn:
        meter_days.refresh(conn, ["POL-M"], load_builtin("default"), None)
        rows = {d: (n, pre, mean, inr) for d, n, pre, mean, inr in conn.execute(
            "select day, readings, pre_meal_readings, mean_mmol, in_range_readings "
            "from meter_days where policy_id = 'POL-M'").fetchall()}
    per_day: dict[date, list[tuple[float, Meal]]] = {}
    for at, mmol, meal in truth:
        per_day.setdefault(at.astimezone(tz).date(), []).append((mmol, meal))
    assert set(rows) == set(per_day)
    for day, values in per_day.items():
        n, pre, mean, in_range = rows[day]
        assert n == 4 and pre == 2
        assert mean == pytest.approx(sum(v for v, _ in values) / 4, rel=1e-12)
        assert in_range == sum(3.9 <= v <= 10.0 for v, _ in values)
    assert Counter(a.astimezone(UTC).date() for a, _, _ in truth) != Counter(
        {d: 4 for d in per_day})  # UTC days would have put them elsewhere


def test_cgm_metrics_cli_counts_local_days_of_the_zone_named(
        tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """`glucover cgm metrics --timezone`: the window's days are the zone's; figures unrounded,
    so 0.98% below 54 mg/dL is not printed as 1.0 (which reads as missing the < 1% target)."""
    rows = ["device_id,measured_at,value,unit"]
    start = datetime(2026, 5, 1, 16, 0, tzinfo=UTC)  # midnight in Shanghai
    n = 14 * 288
    low = set(range(0, n, 102))  # 40 of 4032 readings below 54: 0.992%
    for i in range(n):
        at = start + timedelta(minutes=5 * i)
        rows.append(f"CGM-1,{at.isoformat()},{50 if i in low else 120},mg/dL")
    path = tmp_path / "r.csv"
    path.write_text("\n".join(rows) + "\n")
    assert main(["cgm", "metrics", "--readings", str(path), "--from", "2026-05-02",
                 "--to", "2026-05-15", "--timezone", "Asia/Shanghai", "--format", "json"]) == 0
    out = capsys.readouterr()
    (row,) = json.loads(out.out)
    assert row["readings"] == n and row["days"] == 14 and row["active_percent"] == 100.0
    assert row["tbr_below_54"] == pytest.approx(100 * len(low) / n, rel=1e-15)
    assert row["tbr_below_54"] < 1.0 and f"{row['tbr_below_54']:.1f}" == "1.0"
    assert "Asia/Shanghai" in out.err
    assert main(["cgm", "metrics", "--readings", str(path), "--from", "2026-05-02",
                 "--to", "2026-05-15", "--format", "json"]) == 0
    (utc,) = json.loads(capsys.readouterr().out)
    assert utc["active_percent"] < 100.0  # in UTC days the trace starts 16 hours late
