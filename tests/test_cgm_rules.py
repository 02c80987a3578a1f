"""The CGM rules (pricing/cgm_rules.py): each day status at its edges, slots on days the
clocks change, the weekly block, and the vectorised rules equal to the per-policy loop."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from bench.reference import evaluate_cgm_loop
from kernel.units import MGDL_PER_MMOL
from pricing import cgm_rules
from pricing.products import evaluate
from pricing.ruleset import load_builtin

CGM = load_builtin("cgm-default")
START = date(2026, 3, 2)


def policy(zone: str = "UTC", start: date = START) -> tuple[pd.DataFrame, pd.DataFrame]:
    pol = pd.DataFrame({"policy_id": ["P"], "start_date": [pd.Timestamp(start)],
                        "base_sum_insured": [10_000.0], "timezone": [zone]})
    bindings = pd.DataFrame({"policy_id": ["P"], "device_id": ["C1"],
                             "bound_from": [pd.NaT], "bound_to": [pd.NaT]})
    return pol, bindings


def day_of(values: list[float], day: date = START, zone: str = "UTC", every_min: float = 5,
           first_slot: int = 0) -> pd.DataFrame:
    """CGM readings of one local day, one every `every_min` minutes from slot `first_slot`."""
    begin = datetime.combine(day, time(), ZoneInfo(zone)).astimezone(UTC)  # absolute time
    measured = pd.to_datetime([begin + timedelta(minutes=every_min * (first_slot + i))
                               for i in range(len(values))], utc=True)
    return pd.DataFrame({
        "device_id": "C1", "seq": np.arange(len(values)) + first_slot, "measured_at": measured,
        "received_at": measured + pd.Timedelta(seconds=30),
        "value_mgdl": np.asarray(values, dtype=float),
        "value_mmol": np.asarray(values, dtype=float) / MGDL_PER_MMOL,
        "meal": "unknown", "sample": "interstitial_fluid", "source": "meter", "status": 0})


def one_day(values: list[float], **kw: object) -> pd.Series:  # type: ignore[type-arg]
    """The ledger row of a day of `values` (300 of them: one every 4.8 minutes, so every
    slot is covered and 1% is a whole number of readings)."""
    kw.setdefault("every_min", 1440 / len(values))
    pol, bindings = policy()
    ledger = evaluate(pol, bindings, day_of(values, **kw), CGM, START).to_frame()  # type: ignore[arg-type]
    assert len(ledger) == 1
    return ledger.iloc[0]


def mix(n: int, **counts: int) -> list[float]:
    """n readings: counts of each kind, the rest 120 mg/dL (in range)."""
    kinds = {"low": 53.9, "edge_low": 54.0, "in_lo": 70.0, "in_hi": 180.0, "above": 180.1,
             "vh": 250.1, "edge_vh": 250.0, "below70": 69.9}
    out = [kinds[k] for k, c in counts.items() for _ in range(c)]
    return out + [120.0] * (n - len(out))


def test_coverage_edge() -> None:
    # 288 five-minute slots: 70% is 201.6, so 202 covered slots suffice and 201 do not.
    assert one_day(mix(202), every_min=5)["day_status"] == "in_target"
    row = one_day(mix(201), every_min=5)
    assert row["day_status"] == "insufficient" and row["delta"] == 0
    assert row["coverage"] == pytest.approx(100 * 201 / 288)
    # Six-minute slots: 240 a day, 70% is exactly 168, which is enough (not below 70%).
    six = CGM.with_parameters(slot_minutes=6)
    pol, bindings = policy()
    at = evaluate(pol, bindings, day_of(mix(168), every_min=6), six, START).to_frame().iloc[0]
    assert at["day_status"] == "in_target" and at["coverage"] == 70.0
    short = evaluate(pol, bindings, day_of(mix(167), every_min=6), six, START).to_frame()
    assert short.iloc[0]["day_status"] == "insufficient"


def test_two_readings_in_one_slot_cover_it_once() -> None:
    values = mix(201)
    doubled = pd.concat([day_of(values), day_of([120.0], every_min=5).assign(
        seq=999, measured_at=lambda f: f["measured_at"] + pd.Timedelta(minutes=2))])
    pol, bindings = policy()
    row = evaluate(pol, bindings, doubled, CGM, START).to_frame().iloc[0]
    assert row["day_status"] == "insufficient"  # 202 readings, still 201 slots


def test_hypoglycaemia_edge_and_its_band() -> None:
    # 1% of 300 readings is 3: three below 54 void the day, two do not; 54 itself is not below.
    row = one_day(mix(300, low=3))
    assert row["day_status"] == "hypo_risk" and row["delta"] == 0 and row["below"] == 1.0
    assert one_day(mix(300, low=2))["day_status"] == "in_target"
    assert one_day(mix(300, low=2, edge_low=5))["day_status"] == "in_target"


def test_time_in_range_edge_and_inclusive_band() -> None:
    # 70% of 300 is 210 in range; 70 and 180 mg/dL are in range, 69.9 and 180.1 are not.
    assert one_day(mix(300, above=90))["day_status"] == "in_target"
    assert one_day(mix(300, above=91))["day_status"] == "out_of_target"
    edges = one_day(mix(300, in_lo=105, in_hi=105, above=90))
    assert edges["day_status"] == "in_target" and edges["time_in_range"] == 70.0
    assert one_day(mix(300, below70=91))["day_status"] == "out_of_target"


def test_very_high_edge() -> None:
    # 25% of 300 is 75 above 250; 250 itself is not above.
    row = one_day(mix(300, vh=75, above=16))
    assert row["day_status"] == "high" and row["delta"] == -100 and row["very_high"] == 25.0
    assert one_day(mix(300, vh=74, above=17))["day_status"] == "out_of_target"
    assert one_day(mix(300, edge_vh=75, above=16))["day_status"] == "out_of_target"


def test_hypoglycaemia_wins_over_a_high_day() -> None:
    assert one_day(mix(300, vh=150, low=3))["day_status"] == "hypo_risk"


@pytest.mark.parametrize(("day", "slots"), [(date(2026, 3, 29), 276),
                                             (date(2026, 10, 25), 300),
                                             (date(2026, 6, 1), 288)])
def test_a_day_the_clocks_change_has_its_own_slots(day: date, slots: int) -> None:
    """London: 23 hours on 29 March 2026, 25 on 25 October; a reading every 5 minutes of the
    local day covers each of its slots."""
    pol, bindings = policy("Europe/London", start=day)
    begin = datetime.combine(day, time(), ZoneInfo("Europe/London"))
    readings = day_of([120.0] * slots, day=day, zone="Europe/London")
    assert readings["measured_at"].iloc[-1] < pd.Timestamp(
        datetime.combine(day + timedelta(days=1), time(), ZoneInfo("Europe/London")))
    assert readings["measured_at"].iloc[0] == pd.Timestamp(begin)
    row = evaluate(pol, bindings, readings, CGM, day).to_frame().iloc[0]
    assert row["coverage"] == 100.0 and row["day_status"] == "in_target"
    fewer = evaluate(pol, bindings, readings.iloc[: int(0.7 * slots)], CGM, day).to_frame()
    assert fewer.iloc[0]["coverage"] == pytest.approx(100 * int(0.7 * slots) / slots)


def test_the_weekly_block_counts_worn_days_and_the_bonus_is_clamped() -> None:
    """Week 1: four good days, three without the sensor -> +400 - 200. Week 2: five good days,
    two insufficient -> +500. A low cap clamps."""
    pol, bindings = policy()
    good = [0, 1, 2, 3, 7, 8, 9, 10, 11]
    frames = []
    for d in good:
        frame = day_of(mix(288), day=START + timedelta(days=d))
        frames.append(frame.assign(seq=frame["seq"] + 300 * d))
    readings = pd.concat(frames)
    ledger = evaluate(pol, bindings, readings, CGM, START + timedelta(days=13)).to_frame()
    assert list(ledger["bonus"])[6] == 200 and list(ledger["delta"])[6] == -200
    assert list(ledger["bonus"])[13] == 700
    capped = evaluate(pol, bindings, readings, CGM.with_parameters(bonus_max=250),
                      START + timedelta(days=13)).to_frame()
    assert capped["bonus"].max() == 250 and list(capped["bonus"])[6] == 50


def test_the_value_in_mgdl_undoes_the_unit_conversion() -> None:
    sent_mgdl = np.array([54.0, 70.0, 180.0, 250.0, 39.99, 120.5])
    frame = pd.DataFrame({"value_mmol": np.concatenate([sent_mgdl / MGDL_PER_MMOL,
                                                        [3.9, 10.0]])})
    got = cgm_rules.value_mgdl(frame)
    assert list(got[:6]) == list(sent_mgdl)  # exactly, so the band edges hold
    assert list(got[6:]) == [3.9 * MGDL_PER_MMOL, 10.0 * MGDL_PER_MMOL]


def random_cgm_portfolio(seed: int, n_policies: int = 6, days: int = 16
                         ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Sensors in several zones (clock changes included) with gaps, doubles, late and early
    clocks, other samples and error statuses, values on and around every band edge."""
    rng = np.random.default_rng(seed)
    zones = ["Europe/London", "America/New_York", "Australia/Lord_Howe", "Asia/Shanghai", "UTC"]
    pol = pd.DataFrame({
        "policy_id": [f"P{i}" for i in range(n_policies)],
        "start_date": pd.Timestamp("2026-03-24") + pd.to_timedelta(
            rng.integers(0, 4, n_policies), "D"),
        "base_sum_insured": 10_000.0, "timezone": rng.choice(zones, n_policies)})
    bindings = pd.DataFrame({"policy_id": pol["policy_id"],
                             "device_id": [f"C{i}" for i in range(n_policies)],
                             "bound_from": [pd.NaT] * n_policies,
                             "bound_to": [pd.NaT] * n_policies})
    frames = []
    for i in range(n_policies):
        worn = rng.random(days * 288) < rng.uniform(0.55, 1.0)
        minutes = np.flatnonzero(worn) * 5 + rng.integers(0, 5, worn.sum())
        measured = pd.Timestamp("2026-03-23", tz="UTC") + pd.to_timedelta(minutes, "min")
        level = rng.uniform(90, 270)
        mgdl = np.clip(rng.normal(level, rng.uniform(10, 60), len(minutes)), 55, 400).round()
        edges = rng.random(len(minutes)) < rng.choice([0.0, 0.004, 0.05])
        mgdl[edges] = rng.choice([53.0, 54.0, 69.0, 70.0, 180.0, 181.0, 250.0, 251.0],
                                 edges.sum())
        lag = rng.choice([30, 400, -400, 8 * 86400], len(minutes), p=[.94, .02, .02, .02])
        frames.append(pd.DataFrame({
            "device_id": f"C{i}", "seq": np.arange(len(minutes)) % 65536,
            "measured_at": measured, "received_at": measured + pd.to_timedelta(lag, "s"),
            "value_mgdl": mgdl, "value_mmol": mgdl / MGDL_PER_MMOL, "meal": "unknown",
            "sample": rng.choice(["interstitial_fluid", "capillary_plasma"], len(minutes),
                                 p=[.98, .02]),
            "source": "meter",
            "status": rng.choice([0, 1 << 1, 1], len(minutes), p=[.97, .02, .01])}))
    return pol, bindings, pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_cgm_rules_equal_the_loop(seed: int) -> None:
    pol, bindings, readings = random_cgm_portfolio(seed)
    through = date(2026, 4, 6)
    fast = evaluate(pol, bindings, readings, CGM, through).to_frame()
    fast["policy_id"] = fast["policy_id"].astype(str)
    fast["day_status"] = fast["day_status"].astype(str)
    fast["day"] = fast["day"].dt.date
    slow = evaluate_cgm_loop(pol, bindings, readings, CGM, through)
    slow["reading_seq"] = slow["reading_seq"].astype("Int32")
    assert len(set(fast["day_status"])) >= 3, set(fast["day_status"])
    pd.testing.assert_frame_equal(fast.reset_index(drop=True), slow, check_dtype=False)


def test_pricing_from_summaries_equals_pricing_from_readings() -> None:
    pol, bindings, readings = random_cgm_portfolio(11)
    through = date(2026, 4, 6)
    summaries = cgm_rules.day_summaries(pol, bindings, readings, CGM, through)
    assert list(summaries.columns) == list(cgm_rules.SUMMARY_COLUMNS)
    direct = evaluate(pol, bindings, readings, CGM, through).to_frame()
    from_rows = cgm_rules.evaluate_days(pol, summaries, CGM, through).to_frame()
    pd.testing.assert_frame_equal(direct, from_rows)
