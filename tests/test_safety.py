"""The ruleset editor's hypoglycaemia guard (pricing/safety.py, pricing/store.py publish): a
ruleset whose in-target band starts below level 1 hypoglycaemia is published only with a
reason, which is kept with the version."""

from __future__ import annotations

import psycopg
import pytest

from pricing import safety, store
from pricing.ruleset import RulesetError, load_builtin

DEFAULT, CGM = load_builtin("default"), load_builtin("cgm-default")


def test_the_band_edges_of_the_guard() -> None:
    assert safety.hypoglycaemia_risk(DEFAULT) is None
    assert safety.hypoglycaemia_risk(DEFAULT.with_parameters(target_low=3.9)) is None
    assert "3.8 mmol/L" in str(safety.hypoglycaemia_risk(DEFAULT.with_parameters(
        target_low=3.8)))
    assert safety.hypoglycaemia_risk(CGM) is None
    assert "69 mg/dL" in str(safety.hypoglycaemia_risk(CGM.with_parameters(range_low_mgdl=69)))
    # A CGM ruleset's meter band is not its business, nor a meter ruleset's CGM band.
    assert safety.hypoglycaemia_risk(CGM.with_parameters(target_low=3.0)) is None
    assert safety.hypoglycaemia_risk(DEFAULT.with_parameters(range_low_mgdl=50)) is None


def test_publishing_a_risky_ruleset_needs_a_reason_kept_with_the_version(db_url: str) -> None:
    risky = DEFAULT.with_parameters(name="low-band", target_low=3.5)
    with psycopg.connect(db_url) as conn:
        with pytest.raises(RulesetError, match="level 1 hypoglycaemia"):
            store.publish(conn, risky, author="ann")
        with pytest.raises(RulesetError):
            store.publish(conn, risky, author="ann", hypoglycaemia_reason="   ")
        published = store.publish(conn, risky, author="ann",
                                  hypoglycaemia_reason="pilot under GP supervision")
        notes = conn.execute("select notes from rulesets where name = 'low-band' and version = %s",
                             (published.version,)).fetchone()
    assert published.version == 1
    assert notes is not None and "pilot under GP supervision" in str(notes[0])
    assert "bands.target_low is 3.5 mmol/L" in str(notes[0])


def test_back_tests_report_hypoglycaemia_exposure_beside_the_baseline() -> None:
    """Ten policy-days: valid readings below 3.9 mmol/L on two days (one of them also below 54
    mg/dL), a control-solution low that no ruleset counts, and a manual low that only a
    candidate allowing manual entries counts."""
    from datetime import date

    from actuary.backtest import backtest
    from tests.pricing_helpers import policies, reading, readings

    pol, bindings = policies({"policy_id": "P"})
    rows = readings(
        reading("D-P", "2026-03-01T07:00:00+08:00", 3.5, seq=1),
        reading("D-P", "2026-03-01T12:00:00+08:00", 6.0, seq=2),
        reading("D-P", "2026-03-02T07:00:00+08:00", 2.9, seq=3),
        reading("D-P", "2026-03-03T07:00:00+08:00", 54 / 18.0156, seq=4),  # 54 mg/dL: level 1
        reading("D-P", "2026-03-04T07:00:00+08:00", 2.0, seq=5, sample="control_solution"),
        reading("D-P", "2026-03-05T07:00:00+08:00", 2.5, seq=6, source="manual"),
        reading("D-P", "2026-03-06T07:00:00+08:00", 6.1, seq=7))
    loose = DEFAULT.with_parameters(name="loose", allowed_sources=("meter", "manual"))
    summary = backtest(pol, bindings, rows, loose, DEFAULT, date(2026, 3, 10)).summary()
    assert summary["hypo_days_below_3_9_percent_baseline"] == 30.0  # days 1, 2, 3
    assert summary["hypo_days_below_3_0_percent_baseline"] == 10.0  # day 2 only
    assert summary["hypo_readings_below_3_9_percent_baseline"] == 60.0  # 3 of 5 valid
    assert summary["hypo_days_below_3_9_percent"] == 40.0  # the manual low counts too
    assert summary["hypo_days_below_3_0_percent"] == 20.0
