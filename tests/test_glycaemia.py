"""Estimated HbA1c and time in range are defined once (pricing/glycaemia.py): the policyholder
page, the actuaries' workbench and the database's daily summary give the same figures for the
same policy."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import numpy as np
import psycopg
import pytest

from actuary import backtest
from dashboard.policyholder_data import load_summary
from kernel.vocabulary import Status
from pricing import glycaemia, meter_days, store
from pricing.evaluator import exclusion_codes
from pricing.ruleset import load_builtin
from tests.helpers import START, load_fleet

DAYS = 40


def test_glycaemia_helpers_follow_their_formulas() -> None:
    assert glycaemia.estimated_a1c(154 / 18.0156) == pytest.approx(7.0, abs=0.01)  # ADAG table
    assert list(glycaemia.in_range(np.array([3.89, 3.9, 10.0, 10.01]))) == [
        False, True, True, False]
    empty = glycaemia.summarise(np.empty(0))
    assert (empty.readings, empty.est_a1c, empty.time_in_range) == (0, None, None)


def test_dashboard_workbench_and_daily_summary_agree_on_each_policy(db_url: str) -> None:
    load_fleet(db_url, n=6, days=DAYS, seed=6)
    ruleset = load_builtin("default")
    through = START + timedelta(days=DAYS - 1)
    now = datetime.combine(through + timedelta(days=1), time(12), UTC)
    with psycopg.connect(db_url) as conn:
        # Meters whose battery ran low now and then: a harmless status under the ruleset.
        conn.execute("update readings set status = status | %s where seq %% 5 = 0",
                     (1 << Status.battery_low,))
        policies, bindings = store.load_policies(conn)
        meter_days.refresh(conn, list(policies["policy_id"]), ruleset, None)
        readings = store.load_readings(conn, sorted(set(bindings["device_id"])))
        bench = backtest.policy_glycaemia(policies, bindings, readings, ruleset, through)
        daily = dict(((str(p), (int(n), float(m), int(r))) for p, n, m, r in conn.execute(
            "select policy_id, sum(readings), sum(mean_mmol * readings) / sum(readings), "
            "sum(in_range_readings) from meter_days where day <= %s group by policy_id",
            (through,))))
        pages = {p: load_summary(conn, p, now=now) for p in policies["policy_id"]}

    # The data exercises the definition: readings that count only under the ruleset's validity
    # (battery_low alone is harmless) and readings it excludes.
    codes = exclusion_codes(readings, ruleset)
    battery_low_only = readings["status"].to_numpy() == 1 << Status.battery_low
    assert (battery_low_only & (codes == 0)).any()
    assert (codes != 0).any()

    for row in bench.itertuples():
        count, mean, in_range = daily[str(row.policy_id)]
        page = pages[row.policy_id]
        assert row.readings == count
        assert page.a1c_formula == "adag"
        assert page.a1c_estimate == pytest.approx(row.est_a1c)
        assert page.time_in_range == pytest.approx(row.time_in_range)
        assert float(glycaemia.estimated_a1c(mean)) == pytest.approx(row.est_a1c)
        assert in_range / count == pytest.approx(row.time_in_range)
