"""The default ruleset, rule by rule, on the pure evaluator (no database)."""

from __future__ import annotations

from dataclasses import fields
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from bench.reference import evaluate_loop
from pricing.evaluator import EXCLUSION_REASONS, assign_readings, evaluate, policy_day_counts
from pricing.ruleset import (
    Ruleset,
    RulesetError,
    declaration,
    declared_fields,
    load_builtin,
    markdown_table,
)
from tests.pricing_helpers import policies, random_portfolio, reading, readings

DEFAULT = load_builtin("default")


def ledger(pol: tuple[pd.DataFrame, pd.DataFrame], rows: pd.DataFrame, through: str,
           ruleset: Ruleset = DEFAULT) -> pd.DataFrame:
    frame = evaluate(pol[0], pol[1], rows, ruleset, through).to_frame()
    frame["day"] = frame["day"].dt.date
    return frame


def day(frame: pd.DataFrame, which: str) -> pd.Series:
    return frame.loc[frame["day"] == date.fromisoformat(which)].iloc[0]


def test_default_ruleset_is_the_tangxiaobei_rules() -> None:
    assert (DEFAULT.delta_in_target, DEFAULT.delta_high) == (100, -100)
    assert (DEFAULT.bonus_min, DEFAULT.bonus_max) == (-5000, 20000)
    assert (DEFAULT.target_low, DEFAULT.target_high, DEFAULT.high_above) == (4.4, 7.0, 10.0)
    assert (DEFAULT.block_days, DEFAULT.min_measured_days, DEFAULT.adherence_penalty) == (
        7, 5, -200)
    assert Ruleset.from_toml(DEFAULT.to_toml()) == DEFAULT


@pytest.mark.parametrize(("value", "status", "delta"), [
    (4.4, "in_target", 100), (7.0, "in_target", 100), (5.5, "in_target", 100),
    (4.39, "out_of_target", 0), (7.01, "out_of_target", 0), (10.0, "out_of_target", 0),
    (10.01, "high", -100), (2.0, "out_of_target", 0),
])
def test_day_status_bands(value: float, status: str, delta: int) -> None:
    pol = policies({"policy_id": "P"})
    frame = ledger(pol, readings(reading("D-P", "2026-03-01T07:00:00+08:00", value)),
                   "2026-03-01")
    assert day(frame, "2026-03-01")["day_status"] == status
    assert day(frame, "2026-03-01")["delta"] == delta
    assert day(frame, "2026-03-01")["sum_insured"] == 10_000 + delta


def test_first_qualifying_reading_of_the_day_counts_and_retests_do_not() -> None:
    pol = policies({"policy_id": "P"})
    rows = readings(
        reading("D-P", "2026-03-01T12:00:00+08:00", 5.0, seq=3),             # later, good
        reading("D-P", "2026-03-01T07:00:00+08:00", 12.0, seq=2),            # first: high
        reading("D-P", "2026-03-01T06:00:00+08:00", 5.0, seq=1, meal="postprandial"),
    )
    frame = ledger(pol, rows, "2026-03-01")
    assert day(frame, "2026-03-01")["day_status"] == "high"
    assert day(frame, "2026-03-01")["reading_seq"] == 2


def test_ties_on_measured_at_go_to_the_lowest_seq() -> None:
    pol = policies({"policy_id": "P"})
    rows = readings(reading("D-P", "2026-03-01T07:00:00+08:00", 12.0, seq=9),
                    reading("D-P", "2026-03-01T07:00:00+08:00", 5.0, seq=4))
    assert day(ledger(pol, rows, "2026-03-01"), "2026-03-01")["reading_seq"] == 4


@pytest.mark.parametrize(("change", "reason"), [
    ({"sample": "control_solution"}, "excluded_sample"),
    ({"source": "manual"}, "excluded_source"),
    ({"status": ("strip_insertion_error",)}, "error_status"),
    ({"status": ("time_fault",)}, "error_status"),
    ({"value_mmol": 19.9 / 18.0156}, "outside_meter_range"),
    ({"value_mmol": 600.1 / 18.0156}, "outside_meter_range"),
    ({"received_at": "2026-03-01T06:54:59+08:00"}, "future_clock"),
    ({"received_at": "2026-03-08T07:00:01+08:00"}, "too_late"),
    ({"device_id": "someone-else"}, "not_bound_device"),
])
def test_each_exclusion_voids_the_reading(change: dict[str, object], reason: str) -> None:
    pol = policies({"policy_id": "P"})
    fields = {"seq": 1, **change}
    device = str(fields.pop("device_id", "D-P"))
    bad = reading(device, "2026-03-01T07:00:00+08:00", float(str(fields.pop("value_mmol", 5.5))),
                  **fields)  # type: ignore[arg-type]
    frame = ledger(pol, readings(bad), "2026-03-01")
    assert day(frame, "2026-03-01")["day_status"] == "missed"
    _, codes = assign_readings(pol[0], pol[1], readings(bad), DEFAULT,
                               policy_day_counts(pol[0], "2026-03-01"))
    assert EXCLUSION_REASONS[codes[0]] == reason


def test_harmless_status_and_tolerances_at_their_edges_still_count() -> None:
    pol = policies({"policy_id": "P"})
    rows = readings(
        reading("D-P", "2026-03-01T07:00:00+08:00", 5.5, status=("battery_low",),
                received_at="2026-03-01T06:55:00+08:00"),          # exactly 5 min ahead
        reading("D-P", "2026-03-02T07:00:00+08:00", 20 / 18.0156, seq=2,
                received_at="2026-03-09T07:00:00+08:00"),          # exactly 7 days late
    )
    frame = ledger(pol, rows, "2026-03-02")
    assert day(frame, "2026-03-01")["day_status"] == "in_target"
    assert day(frame, "2026-03-02")["day_status"] == "out_of_target"


def test_reading_before_start_date_is_ignored_and_ledger_starts_at_start_date() -> None:
    pol = policies({"policy_id": "P", "start_date": "2026-03-02"})
    rows = readings(reading("D-P", "2026-03-01T23:30:00+08:00", 5.5))
    frame = ledger(pol, rows, "2026-03-03")
    assert list(frame["day"]) == [date(2026, 3, 2), date(2026, 3, 3)]
    assert set(frame["day_status"]) == {"missed"}


def test_policy_day_is_the_local_calendar_day() -> None:
    # 23:30 UTC on 1 March is 07:30 on 2 March in Shanghai and 18:30 on 1 March in New York.
    pol = policies({"policy_id": "SH", "device_id": "D1"},
                   {"policy_id": "NY", "device_id": "D2", "timezone": "America/New_York"})
    rows = readings(reading("D1", "2026-03-01T23:30:00+00:00", 5.5),
                    reading("D2", "2026-03-01T23:30:00+00:00", 5.5))
    frame = ledger(pol, rows, "2026-03-02")
    sh = frame[frame["policy_id"] == "SH"]
    ny = frame[frame["policy_id"] == "NY"]
    assert day(sh, "2026-03-02")["day_status"] == "in_target"
    assert day(ny, "2026-03-01")["day_status"] == "in_target"


def test_dst_transition_days_in_new_york() -> None:
    # 8 March 2026: clocks jump 02:00 -> 03:00 in New York (UTC-5 -> UTC-4).
    # 1 Nov 2026: back from UTC-4 to UTC-5. 04:30 UTC is 23:30 on the evening before in both
    # halves of the year, but 00:30 on the day itself after the November change.
    pol = policies({"policy_id": "NY", "timezone": "America/New_York",
                    "start_date": "2026-03-07"})
    rows = readings(
        reading("D-NY", "2026-03-08T06:59:00+00:00", 5.5, seq=1),   # 01:59 EST, 8 March
        reading("D-NY", "2026-03-09T03:59:00+00:00", 5.5, seq=2),   # 23:59 EDT, 8 March
        reading("D-NY", "2026-11-01T04:30:00+00:00", 5.5, seq=3),   # 00:30 EDT, 1 Nov
        reading("D-NY", "2026-11-02T04:30:00+00:00", 12.0, seq=4),  # 23:30 EST, 1 Nov
    )
    frame = ledger(pol, rows, "2026-11-02")
    assert day(frame, "2026-03-08")["reading_seq"] == 1
    assert day(frame, "2026-03-09")["day_status"] == "missed"
    assert day(frame, "2026-11-01")["reading_seq"] == 3
    assert day(frame, "2026-11-02")["day_status"] == "missed"


def test_bonus_is_clamped_at_the_cap_and_the_floor() -> None:
    rules = DEFAULT.with_parameters(bonus_max=250.0, bonus_min=-150.0, min_measured_days=0)
    pol = policies({"policy_id": "UP", "device_id": "U"}, {"policy_id": "DN", "device_id": "X"})
    rows = readings(*[reading("U", f"2026-03-0{d}T07:00:00+08:00", 5.5, seq=d)
                      for d in range(1, 5)],
                    *[reading("X", f"2026-03-0{d}T07:00:00+08:00", 15.0, seq=d)
                      for d in range(1, 4)],
                    reading("X", "2026-03-04T07:00:00+08:00", 5.5, seq=4))
    frame = ledger(pol, rows, "2026-03-04", rules)
    up = frame[frame["policy_id"] == "UP"]
    dn = frame[frame["policy_id"] == "DN"]
    assert list(up["bonus"]) == [100, 200, 250, 250]
    assert list(up["delta"]) == [100, 100, 50, 0]
    assert list(dn["bonus"]) == [-100, -150, -150, -50]
    assert list(dn["delta"]) == [-100, -50, 0, 100]


def test_weekly_adherence_penalty_on_the_seventh_day_only() -> None:
    pol = policies({"policy_id": "P"})
    four_days = [reading("D-P", f"2026-03-0{d}T07:00:00+08:00", 5.5, seq=d) for d in (1, 2, 3, 4)]
    frame = ledger(pol, readings(*four_days), "2026-03-10")
    assert list(frame["delta"])[:7] == [100, 100, 100, 100, 0, 0, -200]
    assert day(frame, "2026-03-07")["bonus"] == 200
    assert day(frame, "2026-03-10")["delta"] == 0  # second block not yet over
    five_days = [*four_days, reading("D-P", "2026-03-05T07:00:00+08:00", 12.0, seq=5)]
    frame = ledger(pol, readings(*five_days), "2026-03-07")
    assert list(frame["delta"]) == [100, 100, 100, 100, -100, 0, 0]


def test_weekly_penalty_is_clamped_too() -> None:
    rules = DEFAULT.with_parameters(bonus_min=-300.0)
    pol = policies({"policy_id": "P"})
    frame = ledger(pol, readings(), "2026-03-14", rules)
    assert day(frame, "2026-03-07")["bonus"] == -200
    assert day(frame, "2026-03-14")["bonus"] == -300
    assert day(frame, "2026-03-14")["delta"] == -100


def test_policy_that_starts_after_through_has_no_rows() -> None:
    pol = policies({"policy_id": "P", "start_date": "2026-04-01"})
    assert ledger(pol, readings(), "2026-03-31").empty


@pytest.mark.parametrize("seed", range(8))
def test_vectorised_evaluator_equals_the_loop(seed: int) -> None:
    pol, bindings, rows = random_portfolio(seed)
    fast = evaluate(pol, bindings, rows, DEFAULT, "2026-04-05").to_frame()
    fast["policy_id"] = fast["policy_id"].astype(str)
    fast["day_status"] = fast["day_status"].astype(str)
    fast["day"] = fast["day"].dt.date
    slow = evaluate_loop(pol, bindings, rows, DEFAULT, date(2026, 4, 5))
    slow["reading_seq"] = slow["reading_seq"].astype("Int32")
    assert (fast["day_status"] != "missed").sum() > 20  # the data exercises the rules
    pd.testing.assert_frame_equal(fast.reset_index(drop=True), slow, check_dtype=False)


def test_ruleset_validation_names_the_parameter() -> None:
    with pytest.raises(RulesetError, match=r"bands: need 0 < target_low"):
        DEFAULT.with_parameters(target_low=8.0)
    with pytest.raises(RulesetError, match=r"unknown parameters: bonus\.maximum"):
        Ruleset.from_toml('[ruleset]\nname = "x"\n[bonus]\nmaximum = 3\n')
    with pytest.raises(RulesetError, match=r"qualifying\.meals: 'lunch'"):
        Ruleset.from_toml('[ruleset]\nname = "x"\n[qualifying]\nmeals = ["lunch"]\n')
    with pytest.raises(RulesetError, match=r"adherence\.block_days must be <= 366"):
        DEFAULT.with_parameters(block_days=400)
    with pytest.raises(RulesetError, match=r"bonus\.max must be a number"):
        Ruleset.from_toml('[ruleset]\nname = "x"\n[bonus]\nmax = "lots"\n')


def test_every_parameter_is_declared_once_and_round_trips() -> None:
    """Reading, writing and the defaults come from the one declaration per parameter: each
    parameter survives TOML with a changed value, default.toml holds exactly the declared
    defaults, and a file that leaves a parameter out gets its declared default."""
    declared = declared_fields()
    assert {f.name for f in fields(Ruleset)} - {f.name for f in declared} == {"version"}
    changed: dict[str, object] = {}
    for f in declared:
        value = getattr(DEFAULT, f.name)
        if isinstance(value, tuple):
            changed[f.name] = tuple(declaration(f).choices[:1])
        elif isinstance(value, str) and declaration(f).choices:
            changed[f.name] = declaration(f).choices[-1]
        elif isinstance(value, str):
            changed[f.name] = value + "-changed"
    changed.update(delta_in_target=150.5, delta_missed=-3.0, late_tolerance_seconds=3600,
                   min_measured_days=4, target_high=7.5)
    rules = DEFAULT.with_parameters(**changed)
    assert Ruleset.from_toml(rules.to_toml()) == rules
    assert Ruleset(name="default", description=DEFAULT.description) == DEFAULT
    short = Ruleset.from_toml('[ruleset]\nname = "short"\n[bonus]\nmax = 500\n')
    assert (short.bonus_max, short.target_low) == (500.0, DEFAULT.target_low)


def test_readme_lists_the_declared_parameters() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert markdown_table() in readme, "README's parameter table: paste `glucover price parameters`"
