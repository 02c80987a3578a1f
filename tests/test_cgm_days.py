"""CGM day summaries kept in the database (pricing/cgm_days.py) against the same rules run on
the raw readings (pricing/cgm_rules.py), through late, out-of-order and repeated arrivals,
and the engine pricing CGM policies from them day by day as in one run."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from devices.fleet import fleet_messages, portfolio
from devices.provisioning import add_portfolio
from pricing import cgm_days, cgm_rules, store
from pricing.ruleset import load_builtin
from tests.helpers import START, TEST_SECRET, current_ledger, store_messages

CGM = load_builtin("cgm-default")
THROUGH = START + timedelta(days=13)


def summaries_from_readings(conn: psycopg.Connection[tuple[object, ...]]) -> pd.DataFrame:
    policies, bindings = store.load_policies(conn)
    readings = store.load_readings(conn, list(bindings["device_id"]))
    frame = cgm_rules.day_summaries(policies, bindings, readings, CGM, THROUGH)
    frame["day"] = pd.to_datetime(frame["day"])
    return frame.sort_values(["policy_id", "day"]).reset_index(drop=True)


def test_summaries_equal_the_readings_after_late_and_out_of_order_arrivals(db_url: str) -> None:
    people = portfolio(8, 31, START, cgm_share=1.0)
    with psycopg.connect(db_url) as conn:
        add_portfolio(conn, people, TEST_SECRET)
        conn.commit()
    messages = [(m.topic, m.payload, m.at) for m in fleet_messages(people, 31, 14)
                if m.topic.endswith("/readings")]
    random.Random(5).shuffle(messages)  # out of order: days arrive in any order
    first, late = messages[: len(messages) // 2], messages[len(messages) // 2:]
    store_messages(db_url, first)
    ids = [p.policy_id for p in people]
    with psycopg.connect(db_url) as conn:
        cgm_days.refresh(conn, ids, CGM, None)
        conn.commit()
        between = datetime.now(UTC)
        partial = cgm_days.load(conn, ids, CGM)
        assert partial.equals(summaries_from_readings(conn).astype(partial.dtypes))
    store_messages(db_url, late + first[:500])  # the rest, later, with some sent again
    with psycopg.connect(db_url) as conn:
        touched = cgm_days.refresh(conn, ids, CGM, between)
        conn.commit()
        cgm_days.refresh(conn, ids, CGM, between)  # again: nothing changes
        conn.commit()
        stored = cgm_days.load(conn, ids, CGM)
        expected = summaries_from_readings(conn)
    assert touched > 0
    assert len(stored) == len(expected) > 8 * 10
    pd.testing.assert_frame_equal(stored, expected, check_dtype=False)


def test_summaries_made_under_other_parameters_are_made_again(db_url: str) -> None:
    people = portfolio(3, 32, START, cgm_share=1.0)
    with psycopg.connect(db_url) as conn:
        add_portfolio(conn, people, TEST_SECRET)
        conn.commit()
    store_messages(db_url, [(m.topic, m.payload, m.at) for m in fleet_messages(people, 32, 7)])
    ids = [p.policy_id for p in people]
    wider = CGM.with_parameters(range_high_mgdl=200.0)
    with psycopg.connect(db_url) as conn:
        cgm_days.refresh(conn, ids, CGM, None)
        before = cgm_days.load(conn, ids, CGM)
        cgm_days.refresh(conn, ids, wider, datetime.now(UTC))  # nothing new, other key
        assert cgm_days.load(conn, ids, CGM).empty
        after = cgm_days.load(conn, ids, wider)
    assert len(after) == len(before)
    assert (after["in_range"] >= before["in_range"]).all()
    assert (after["in_range"] > before["in_range"]).any()


def test_the_engine_prices_cgm_day_by_day_as_in_one_run(db_url: str) -> None:
    from pricing.engine import run_pricing

    people = portfolio(6, 33, START, cgm_share=1.0)
    with psycopg.connect(db_url) as conn:
        add_portfolio(conn, people, TEST_SECRET)
        conn.commit()
    messages = [(m.topic, m.payload, m.at) for m in fleet_messages(people, 33, 14)]
    for day in range(14):
        cut = datetime.combine(START + timedelta(days=day + 1), datetime.min.time(), UTC)
        store_messages(db_url, [m for m in messages
                                if cut - timedelta(days=1) <= m[2] < cut])
        run_pricing(db_url, START + timedelta(days=day))
    daily = current_ledger(db_url)

    with psycopg.connect(db_url) as conn:
        policies, bindings = store.load_policies(conn)
        readings = store.load_readings(conn, list(bindings["device_id"]))
    from tests.helpers import comparable

    one_run = comparable(cgm_rules.evaluate(policies, bindings, readings, CGM,
                                                START + timedelta(days=13)))
    pd.testing.assert_frame_equal(daily[one_run.columns[:7]], one_run[one_run.columns[:7]],
                                  check_dtype=False)
    assert set(daily["day_status"]) >= {"in_target", "insufficient"}


def test_a_cgm_ruleset_is_back_tested_on_the_cgm_policies(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`actuary backtest` of a looser CGM ruleset against cgm-default replays the CGM policies
    only, and rewards more; a CGM candidate against the meter ruleset is refused."""
    from cli.main import main
    from tests.helpers import NEW_YORK_SPRING, load_cgm_wearers, load_fleet

    load_fleet(db_url, n=4, days=10, seed=9)  # meter policies beside them
    # Two weeks of New York days holding its 23-hour 8 March.
    load_cgm_wearers(db_url, NEW_YORK_SPRING, "America/New_York", n=3, days=14, seed=22)
    monkeypatch.setenv("DATABASE_URL", db_url)
    loose = tmp_path / "loose.toml"
    loose.write_text(CGM.with_parameters(name="cgm-loose", in_range_min_percent=40.0).to_toml())
    assert main(["actuary", "backtest", "--ruleset", str(loose), "--baseline", "cgm-default",
                 "--through", "2026-03-14", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["policies"] == 3
    assert report["total_sum_insured"] > report["total_sum_insured_baseline"]
    assert main(["actuary", "backtest", "--ruleset", str(loose), "--json"]) == 2
    assert "compare rulesets of one kind" in capsys.readouterr().err


def test_a_new_york_wearers_days_across_both_clock_changes_count_their_own_slots(
        db_url: str) -> None:
    """A sensor read every 5 minutes without a gap around both of New York's 2026 clock
    changes: a local day has 288 five-minute slots, 8 March 276 (23 hours), 1 November 300
    (25 hours), counted by hand; the SQL summaries and the pandas rules both say so."""
    from datetime import date, time
    from zoneinfo import ZoneInfo

    from devices.wire.messages import ReadingsMessage, Record
    from kernel.vocabulary import Meal, Sample, Unit

    zone = ZoneInfo("America/New_York")
    with psycopg.connect(db_url) as conn:
        conn.execute("insert into devices (device_id, kind) values ('CGM-NY', 'cgm')")
        conn.execute("insert into policies (policy_id, holder_name, base_sum_insured, timezone,"
                     " start_date, ruleset_name) values ('POL-NY', 'N', 10000, "
                     "'America/New_York', '2026-03-07', 'cgm-default')")
        conn.execute("insert into policy_devices values ('POL-NY', 'CGM-NY', %s, null)",
                     (datetime(2026, 3, 1, tzinfo=UTC),))
        conn.commit()
    expected = {date(2026, 3, 7): 288, date(2026, 3, 8): 276, date(2026, 3, 9): 288,
                date(2026, 10, 31): 288, date(2026, 11, 1): 300, date(2026, 11, 2): 288}
    records: list[Record] = []
    for first in (date(2026, 3, 7), date(2026, 10, 31)):
        start = datetime.combine(first, time(), zone).astimezone(UTC)
        end = datetime.combine(first + timedelta(days=3), time(), zone).astimezone(UTC)
        at = start
        while at < end:
            records.append(Record(len(records), at, 120, Unit.MG_DL, Meal.UNKNOWN,
                                  Sample.INTERSTITIAL_FLUID))
            at += timedelta(minutes=5)
    assert len(records) == sum(expected.values())
    messages = [(m.topic, m.encode(), m.sent_at) for m in (
        ReadingsMessage("CGM-NY", r.measured_at + timedelta(seconds=30), (r,))
        for r in records)]
    # March first, summarised afresh; November later, as new arrivals: the days a UTC day's
    # readings fall on widen across its clock change (pricing/day_summaries.py).
    march = sum(1 for r in records if r.measured_at.month == 3)
    store_messages(db_url, messages[:march])
    with psycopg.connect(db_url) as conn:
        cgm_days.refresh(conn, ["POL-NY"], CGM, None)
        conn.commit()
        between = datetime.now(UTC)
    store_messages(db_url, messages[march:])
    with psycopg.connect(db_url) as conn:
        cgm_days.refresh(conn, ["POL-NY"], CGM, between)
        conn.commit()
        stored = cgm_days.load(conn, ["POL-NY"], CGM)
        policies, bindings = store.load_policies(conn, ["POL-NY"])
        readings = store.load_readings(conn, ["CGM-NY"])
    sql = {d.date(): (int(c), int(n)) for d, c, n in
           zip(stored["day"], stored["covered"], stored["readings"], strict=True)}
    assert sql == {d: (n, n) for d, n in expected.items()}
    frame = cgm_rules.day_summaries(policies, bindings, readings, CGM, date(2026, 11, 2))
    pandas = {pd.Timestamp(d).date(): int(c) for d, c in zip(frame["day"], frame["covered"],
                                                            strict=True)}
    assert pandas == expected
