"""The nightly run re-rates only what changed and still prices every late reading; `glucover
bench nightly` runs end to end (tiny here; its figures are printed, never asserted as
timings)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pandas as pd
import psycopg
import pytest

from cli.main import main
from pricing.engine import STEPS, run_pricing
from tests.helpers import START, current_ledger, full_evaluation, late_reading, load_fleet

THROUGH = START + timedelta(days=19)


def _missed_day(db_url: str) -> tuple[str, Any]:
    ledger = current_ledger(db_url)
    missed = ledger[(ledger["day_status"] == "missed") &
                    (ledger["day"] >= THROUGH - timedelta(days=6))]
    assert not missed.empty
    return str(missed.iloc[-1]["policy_id"]), missed.iloc[-1]["day"]


def test_runs_rerate_only_the_policies_whose_readings_changed(db_url: str) -> None:
    # The readings arrive just before the first run, as the demo's history does.
    load_fleet(db_url, n=8, days=20, seed=8)
    first = run_pricing(db_url, THROUGH)
    assert first.policies_evaluated == 8
    # Nothing new: nothing re-rated (a look-back of minutes re-rated all eight again).
    assert run_pricing(db_url, THROUGH).policies_evaluated == 0

    policy, day = _missed_day(db_url)
    late_reading(db_url, policy, day, 40000, timedelta(days=2))
    late = run_pricing(db_url, THROUGH)
    assert late.policies_evaluated == 1
    assert late.policy_days == (THROUGH - day).days + 1  # from the late reading's day on
    mine = current_ledger(db_url).set_index(["policy_id", "day"]).loc[(policy, day)]
    assert mine["day_status"] == "in_target" and mine["reading_seq"] == 40000
    assert run_pricing(db_url, THROUGH).policies_evaluated == 0
    # The next day re-rates every policy, for that day only.
    nxt = run_pricing(db_url, THROUGH + timedelta(days=1))
    assert (nxt.policies_evaluated, nxt.policy_days) == (8, 8)
    pd.testing.assert_frame_equal(current_ledger(db_url).reset_index(drop=True),
                                  full_evaluation(db_url, THROUGH + timedelta(days=1)),
                                  check_dtype=False)


def test_a_reading_committed_after_a_run_looked_is_priced_by_the_next(db_url: str) -> None:
    load_fleet(db_url, n=4, days=20, seed=5)
    run_pricing(db_url, THROUGH)
    policy, day = _missed_day(db_url)
    with psycopg.connect(db_url) as conn:
        row = conn.execute("select device_id from policy_devices where policy_id = %s",
                           (policy,)).fetchone()
    assert row is not None
    # An ingest transaction stamps its readings with its start and commits after a run has
    # looked: the run does not see it; the next one must.
    with psycopg.connect(db_url) as ingest:
        with psycopg.connect(db_url) as conn:
            zone = str(conn.execute("select timezone from policies where policy_id = %s",
                                    (policy,)).fetchone()[0])  # type: ignore[index]
        measured = pd.Timestamp(f"{day}T06:00", tz=zone).to_pydatetime()
        ingest.execute(
            "insert into readings (device_id, seq, measured_at, utc_offset_min, received_at, "
            "value_digits, value_exponent, unit, meal, sample, source, status) values "
            "(%s, 41000, %s, 0, %s, 56, -1, 'mmol/L', 'fasting', 'capillary_whole_blood', "
            "'meter', 0)", (row[0], measured, measured + timedelta(minutes=1)))
        assert run_pricing(db_url, THROUGH).policies_evaluated == 0
        ingest.commit()
    assert run_pricing(db_url, THROUGH).policies_evaluated == 1
    mine = current_ledger(db_url).set_index(["policy_id", "day"]).loc[(policy, day)]
    assert mine["day_status"] == "in_target" and mine["reading_seq"] == 41000


def test_bench_nightly_tiny(settings: object, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "nightly", "--policies", "20", "--days", "4", "--new-day-policies",
                 "50", "--history-days", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key, policies, days in (("a", 20, 20 * 4), ("b", 50, 50), ("c", 1, 2)):
        run = report[key]
        assert set(run["steps_s"]) == set(STEPS)
        assert all(v >= 0 for v in run["steps_s"].values())
        assert run["seconds"] >= sum(run["steps_s"].values()) * 0.99
        assert run["cpu_s"] > 0 and run["goal_s"] > 0 and isinstance(run["within_goal"], bool)
        assert run["policies_rerated"] == policies and run["policy_days"] == days
        assert run["policy_days_per_s"] > 0 and run["evaluator_policy_days_per_s"] > 0
        assert run["readings"] > 0
    assert report["a"]["ledger_rows_added"] == 20 * 4
    assert report["c"]["policies_touched"] == 1
