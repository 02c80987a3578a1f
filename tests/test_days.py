"""The policy-day is defined once in Python (kernel/days.py) and once in SQL (local_day,
local_midnight of migration 0029): the two agree on every day of a year in the zones our
policyholders live in, across DST changes, in half-hour and quarter-hour zones, and where the
clocks jump over midnight or go back over it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg
import pytest

from kernel import days

ZONES = ("UTC", "Asia/Shanghai", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu",
         "Australia/Lord_Howe",
         "America/Santiago",  # the clocks jump over midnight in September
         "America/Havana")  # and go back over it in November: midnight happens twice
FIRST = date(2026, 1, 1)
N_DAYS = 366


def test_midnight_that_happens_twice_is_its_first_and_a_skipped_one_the_jump() -> None:
    twice = days.midnight(date(2026, 11, 1), "America/Havana")
    assert twice == pd.Timestamp("2026-11-01 04:00", tz="UTC")  # 00:00 CDT, not 00:00 CST
    skipped = days.midnight(date(2026, 9, 6), "America/Santiago")
    assert skipped == pd.Timestamp("2026-09-06 04:00", tz="UTC")  # the jump to 01:00 -03
    assert days.local_day(skipped.to_pydatetime(), "America/Santiago") == date(2026, 9, 6)
    start, end = (days.midnight(date(2026, 3, d), "America/New_York") for d in (8, 9))
    assert end - start == pd.Timedelta(hours=23)  # the spring-forward day


def test_python_and_sql_agree_on_every_midnight_and_day(db_url: str) -> None:
    day_list = [FIRST + timedelta(days=i) for i in range(N_DAYS)]
    with psycopg.connect(db_url) as conn:
        for zone in ZONES:
            rows = conn.execute(
                "select d::date, local_midnight(d::date, %s) from unnest(%s::date[]) d",
                (zone, day_list)).fetchall()
            for day, instant in rows:
                assert pd.Timestamp(instant) == days.midnight(day, zone), (zone, day)
            # Every 20 minutes of the year, and each midnight and the instant before it.
            instants = [datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=20 * k)
                        for k in range(N_DAYS * 72)]
            instants += [instant for _, instant in rows]
            instants += [instant - timedelta(microseconds=1) for _, instant in rows]
            sql_days = [r[0] for r in conn.execute(
                "select local_day(i, %s) from unnest(%s::timestamptz[]) with ordinality u(i, n)"
                " order by n", (zone, instants)).fetchall()]
            ns = np.array([int(pd.Timestamp(i).value) for i in instants], dtype=np.int64)
            numbers = days.day_numbers(ns, zone)
            python_days = [days.local_day(i, zone) for i in instants]
            assert sql_days == python_days, zone
            assert list(numbers) == [days.day_number(d) for d in python_days], zone


@pytest.mark.parametrize("zone", ZONES)
def test_midnights_table_matches_midnight(zone: str) -> None:
    first = days.day_number(FIRST)
    table = days.midnights([zone], first, N_DAYS)[0]
    for i in range(N_DAYS + 1):
        assert table[i] == days.midnight(FIRST + timedelta(days=i), zone).value
