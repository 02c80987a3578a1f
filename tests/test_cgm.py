"""Consensus CGM metrics (pricing/cgm_metrics.py) on traces whose figures are worked out by
hand, and `glucover cgm metrics` on CSV files, bad ones included."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cli.main import main
from kernel.units import MGDL_PER_MMOL
from pricing import cgm_metrics

START = datetime(2026, 3, 2, tzinfo=UTC)


def trace(values: Sequence[float], every_min: int = 5, device: str = "CGM-1",
          skip: set[int] | None = None) -> pd.DataFrame:
    """Readings every `every_min` minutes from START (mg/dL), leaving out positions `skip`."""
    keep = [i for i in range(len(values)) if i not in (skip or set())]
    times = pd.to_datetime([START + timedelta(minutes=every_min * i) for i in keep], utc=True)
    return pd.DataFrame({"device_id": device, "measured_at": times,
                         "local_date": [t.date() for t in times],
                         "value_mgdl": [float(values[i]) for i in keep]})


def test_a_steady_fortnight_is_all_in_range_and_sufficient() -> None:
    row = cgm_metrics.metrics(trace([100.0] * (14 * 288))).iloc[0]
    assert (row["readings"], row["days"]) == (14 * 288, 14)
    assert row["active_percent"] == pytest.approx(100.0)
    assert row["mean_mgdl"] == 100.0 and row["sd_mgdl"] == 0.0 and row["cv"] == 0.0
    assert row["gmi"] == pytest.approx(3.31 + 2.392)  # Bergenstal: 5.702%
    assert row["tir_70_180"] == 100.0 and row["tbr_below_70"] == 0.0
    assert row["sufficient"]


def test_the_bands_have_the_consensus_edges() -> None:
    # 70 and 180 are in range; 54 is not below 54; 250 is not above 250.
    values = [53, 54, 69, 70, 180, 181, 250, 251, 120, 120]
    row = cgm_metrics.metrics(trace(values)).iloc[0]
    assert row["tbr_below_54"] == pytest.approx(10.0)  # 53
    assert row["tbr_below_70"] == pytest.approx(30.0)  # 53, 54, 69
    assert row["tir_70_180"] == pytest.approx(40.0)  # 70, 180, 120, 120
    assert row["tar_above_180"] == pytest.approx(30.0)  # 181, 250, 251
    assert row["tar_above_250"] == pytest.approx(10.0)  # 251
    assert row["mean_mgdl"] == pytest.approx(np.mean(values))
    assert row["sd_mgdl"] == pytest.approx(np.std(values, ddof=1))  # sample SD
    assert row["cv"] == pytest.approx(100 * np.std(values, ddof=1) / np.mean(values))
    assert not row["sufficient"]  # less than 14 days


def test_gaps_lower_the_active_time_and_sufficiency() -> None:
    n = 14 * 288
    # Every fourth reading missing: 75% active, still sufficient; every third: 66.7%, not.
    three_quarters = cgm_metrics.metrics(trace([110.0] * n, skip=set(range(1, n, 4)))).iloc[0]
    assert three_quarters["active_percent"] == pytest.approx(75.0, abs=0.1)
    assert three_quarters["sufficient"]
    two_thirds = cgm_metrics.metrics(trace([110.0] * n, skip=set(range(1, n, 3)))).iloc[0]
    assert two_thirds["active_percent"] == pytest.approx(66.7, abs=0.1)
    assert not two_thirds["sufficient"]


def test_a_fifteen_minute_sensor_is_judged_by_its_own_interval() -> None:
    row = cgm_metrics.metrics(trace([140.0] * (14 * 96), every_min=15)).iloc[0]
    assert row["active_percent"] == pytest.approx(100.0) and row["sufficient"]


def test_a_window_counts_the_time_without_readings_too() -> None:
    readings = trace([100.0] * 288)  # one day of data
    # a two-day window
    row = cgm_metrics.metrics(readings, date(2026, 3, 2), date(2026, 3, 3)).iloc[0]
    assert row["active_percent"] == pytest.approx(50.0)
    assert cgm_metrics.metrics(readings, date(2026, 4, 1), date(2026, 4, 2)).empty  # nothing inside


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(40, 400), min_size=2, max_size=300))
def test_below_in_and_above_range_add_up_to_all_readings(values: list[float]) -> None:
    row = cgm_metrics.metrics(trace(values)).iloc[0]
    assert row["tbr_below_70"] + row["tir_70_180"] + row["tar_above_180"] == pytest.approx(100)
    assert row["tbr_below_54"] <= row["tbr_below_70"]
    assert row["tar_above_250"] <= row["tar_above_180"]
    assert row["gmi"] == pytest.approx(3.31 + 0.02392 * row["mean_mgdl"])


def _csv(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "cgm.csv"
    path.write_text("\n".join(["device_id,measured_at,value,unit", *lines]) + "\n")
    return path


def test_cgm_metrics_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [f"A,2026-03-02T{h:02d}:{m:02d}:00+08:00,{v},mg/dL"
             for h in range(0, 2) for m, v in zip(range(0, 60, 5), [100] * 6 + [200] * 6,
                                                  strict=True)]
    lines += ["B,2026-03-02T08:00:00Z,5.5,mmol/L", "B,2026-03-02T08:05:00Z,11.0,mmol/L"]
    path = _csv(tmp_path, lines)
    assert main(["cgm", "metrics", "--readings", str(path)]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(table.columns) == list(cgm_metrics.COLUMNS)
    a, b = table.iloc[0], table.iloc[1]
    assert (a["device_id"], a["readings"], a["days"]) == ("A", 24, 1)
    assert a["tar_above_180"] == 50.0 and a["mean_mgdl"] == 150.0
    assert b["mean_mgdl"] == pytest.approx(8.25 * MGDL_PER_MMOL, rel=1e-12)  # unrounded
    assert main(["cgm", "metrics", "--readings", str(path), "--format", "json"]) == 0
    assert [r["device_id"] for r in json.loads(capsys.readouterr().out)] == ["A", "B"]


@pytest.mark.parametrize(("lines", "says"), [
    (["A,2026-03-02T08:00:00,100,mg/dL"], "line 2, column measured_at"),
    (["A,2026-03-02T08:00:00Z,-4,mg/dL"], "line 2, column value"),
    (["A,2026-03-02T08:00:00Z,100,mg/dl"], "line 2, column unit"),
])
def test_cgm_metrics_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               lines: list[str], says: str) -> None:
    assert main(["cgm", "metrics", "--readings", str(_csv(tmp_path, lines))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("glucover: ") and says in err and err.count("\n") == 1
    assert main(["cgm", "metrics", "--readings", str(tmp_path / "none.csv")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_agp_percentiles_on_a_known_trace() -> None:
    """Fourteen days where the reading at minute m of day d is d + 1 (mg/dL, plus m // 15 x
    100 to tell the bins apart): each bin holds days 1..14 three times over, so its
    percentiles are numpy's on 1..14, repeated."""
    from pricing.cgm_metrics import AGP_PERCENTILES, agp

    minutes = np.array([m for _ in range(14) for m in range(0, 1440, 5)])
    days = np.repeat(np.arange(14), 288)
    values = days + 1 + (minutes // 15) * 100
    profile = agp(minutes, values)
    assert len(profile) == 96 and list(profile["minute"][:3]) == [0, 15, 30]
    assert (profile["readings"] == 42).all()
    sample = np.repeat(np.arange(1, 15), 3).astype(float)
    for p in AGP_PERCENTILES:
        expected = np.percentile(sample, p) + profile["minute"] // 15 * 100
        assert np.allclose(profile[f"p{p}"], expected), p
    assert profile["p50"].iloc[0] == 7.5


def test_a_metric_meets_its_consensus_target_strictly_or_not() -> None:
    from pricing.cgm_metrics import meets

    assert meets("tir_70_180", 70.1) and not meets("tir_70_180", 70.0)
    assert meets("tbr_below_54", 0.99) and not meets("tbr_below_54", 1.0)
    assert meets("cv", 36.0) and not meets("cv", 36.1)
    assert meets("mean_mgdl", 150.0) is None
