"""A reading's value stored as the decimal the meter sent (devices/wire/values.py): exact both
ways, in Python and in SQL, and the migration that moved stored doubles to decimals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.wire.values import mmol_of, stored_decimal, stored_decimals, value_of
from glucover import db
from glucover.config import Settings
from kernel.units import MGDL_PER_MMOL, UNIT_DECIMALS
from kernel.vocabulary import Unit

# What a reading can hold (ingest refuses the rest): above zero, up to 100 mmol/L.
values = st.floats(min_value=1e-30, max_value=1801.0, allow_nan=False, allow_infinity=False)
units = st.sampled_from(list(Unit))
# Values devices send: a few decimals.
sent = st.builds(lambda n, d: n / 10 ** d, st.integers(1, 18_010_000), st.integers(0, 4))
# Values nobody sends but a reading may carry: their decimals run to the double's last digit.
TRICKY = [0.1 + 0.2, 1e-30, 5.550744909966918, 120 / MGDL_PER_MMOL, 2.5, 0.05, 1801.0,
          9007199254740993 / 10**15, 1 / 3, 123.456789012345]


@settings(max_examples=500, deadline=None)
@given(value=values | sent, unit=units)
def test_a_stored_decimal_reads_back_as_the_value(value: float, unit: Unit) -> None:
    digits, exponent = stored_decimal(value, unit)
    assert value_of(digits, exponent) == value
    assert exponent <= -UNIT_DECIMALS[unit]  # at least the unit's decimals
    assert abs(digits) < 10**17  # a bigint, always
    assert mmol_of(digits, exponent, unit) == (value / MGDL_PER_MMOL if unit == Unit.MG_DL
                                               else value)


def test_usual_values_keep_the_units_decimals() -> None:
    assert stored_decimal(5.6, Unit.MMOL_L) == (56, -1)
    assert stored_decimal(5.0, Unit.MMOL_L) == (50, -1)
    assert stored_decimal(5.65, Unit.MMOL_L) == (565, -2)
    assert stored_decimal(101.0, Unit.MG_DL) == (101, 0)
    assert stored_decimal(101.5, Unit.MG_DL) == (1015, -1)
    assert stored_decimal(0.1 + 0.2, Unit.MMOL_L) == (30000000000000004, -17)


@settings(max_examples=100, deadline=None)
@given(many=st.lists(values | sent, max_size=50), unit=units)
def test_bulk_decimals_are_the_ones_of_each_value(many: list[float], unit: Unit) -> None:
    digits, exponent = stored_decimals(np.array(many, dtype=np.float64), unit)
    assert list(zip(digits.tolist(), exponent.tolist(), strict=True)) == [
        stored_decimal(v, unit) for v in many]


def test_sql_reads_a_decimal_back_as_python_does(db_url: str) -> None:
    rng = np.random.default_rng(7)
    cases = [(v, u) for v in [*TRICKY, *rng.uniform(0.5, 40, 300).tolist(),
                              *np.round(rng.uniform(1, 35, 300), 1).tolist()]
             for u in Unit]
    decimals = [(*stored_decimal(v, u), str(u)) for v, u in cases]
    with psycopg.connect(db_url) as conn:
        got = conn.execute(
            "select glucose_value(d, e::smallint), glucose_mmol(d, e::smallint, u) "
            "from unnest(%s::bigint[], %s::int[], %s::text[]) with ordinality as t(d, e, u, i) "
            "order by i",
            ([d for d, _, _ in decimals], [e for _, e, _ in decimals],
             [u for _, _, u in decimals])).fetchall()
    assert [(float(a), float(b)) for a, b in got] == [
        (v, v / MGDL_PER_MMOL if u == Unit.MG_DL else v) for v, u in cases]


def test_migrating_stored_doubles_keeps_every_value(fresh_db: str, settings: Settings,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A database from before the decimal (its readings two doubles, compressed chunks on
    TimescaleDB) migrates to the same values exactly, its daily summary made again and
    filled, compression on again."""
    every = db.load_migrations()
    monkeypatch.setattr(db, "load_migrations", lambda: [m for m in every if m.version < 23])
    backend = db.migrate(fresh_db, settings).backend
    start = datetime(2026, 1, 5, tzinfo=UTC)
    rows = [(f"M-{i % 3}", i, start + timedelta(hours=i), v, u)
            for i, (v, u) in enumerate((v, u) for v in TRICKY for u in Unit)]
    with psycopg.connect(fresh_db) as conn:
        for device, seq, at, value, unit in rows:
            conn.execute(
                "insert into readings (device_id, seq, measured_at, utc_offset_min, received_at,"
                " value, unit, value_mmol, meal, sample, source) values (%s, %s, %s, 0, %s, %s,"
                " %s, %s, 'fasting', 'capillary_plasma', 'meter')",
                (device, seq, at, at, value, unit,
                 value / MGDL_PER_MMOL if unit == Unit.MG_DL else value))
        if backend == "timescaledb":
            conn.execute("select compress_chunk(c) from show_chunks('readings') c")
        conn.commit()
    monkeypatch.setattr(db, "load_migrations", lambda: every)
    applied = db.migrate(fresh_db, settings).applied
    assert any(name.startswith("0024_readings_decimal_value") for name in applied)
    with psycopg.connect(fresh_db) as conn:
        stored = conn.execute(
            "select seq, value_digits, value_exponent, glucose_value(value_digits, "
            "value_exponent), glucose_mmol(value_digits, value_exponent, unit) from readings "
            "order by seq").fetchall()
        columns = {str(c) for (c,) in conn.execute(
            "select column_name from information_schema.columns where table_name = 'readings'")}
        compressed = conn.execute(
            "select compression_enabled from timescaledb_information.hypertables "
            "where hypertable_name = 'readings'").fetchone() if backend == "timescaledb" else None
    assert [(seq, d, e) for seq, d, e, _, _ in stored] == [
        (seq, *stored_decimal(v, u)) for _, seq, _, v, u in rows]
    assert [(v, m) for *_, v, m in stored] == [
        (v, v / MGDL_PER_MMOL if u == Unit.MG_DL else v) for *_, v, u in rows]
    assert not {"value", "value_mmol"} & columns
    assert compressed is None or compressed[0] is True
