"""`glucover price run` against the real database, and `price evaluate` on CSV files."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from cli.main import main
from devices.wire import messages, topics
from kernel import units, vocabulary
from tests.helpers import (
    START,
    current_ledger,
    full_evaluation,
    late_reading,
    load_fleet,
    store_messages,
)


def export_csv(db_url: str, tmp_path: Path) -> tuple[Path, Path]:
    policies, readings = tmp_path / "policies.csv", tmp_path / "readings.csv"
    with psycopg.connect(db_url) as conn:
        with policies.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["policy_id", "device_id", "start_date", "base_sum_insured", "timezone"])
            w.writerows(conn.execute("select p.policy_id, d.device_id, p.start_date, "
                                     "p.base_sum_insured, p.timezone from policies p "
                                     "join policy_devices d using (policy_id)"))
        with readings.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["device_id", "seq", "measured_at", "received_at", "value", "unit",
                        "meal", "sample", "source", "status"])
            for row in conn.execute("select device_id, seq, measured_at, received_at, "
                                    "glucose_value(value_digits, value_exponent), unit, meal, "
                                    "sample, source, status from readings"):
                *head, bits = row
                head[2] = head[2].isoformat()
                head[3] = head[3].isoformat()
                w.writerow([*head, ";".join(vocabulary.status_names(int(str(bits))))])
    return policies, readings


def test_engine_and_csv_evaluator_agree_and_reruns_change_nothing(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    load_fleet(db_url)
    monkeypatch.setenv("DATABASE_URL", db_url)
    # The run prices 7 policies (41 days each) at a time (4 chunks); the CSV evaluator all 25
    # at once.
    monkeypatch.setattr("pricing.engine.CHUNK_POLICY_DAYS", 7 * 41)
    through = START + timedelta(days=40)
    assert main(["price", "run", "--through", through.isoformat(), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["policies_evaluated"] == 25 and first["rows_added"] == 25 * 41
    ledger = current_ledger(db_url)
    assert main(["price", "run", "--through", through.isoformat(), "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["rows_added"] == 0  # re-checked (fresh readings), nothing changed
    pd.testing.assert_frame_equal(current_ledger(db_url), ledger)

    policies, readings = export_csv(db_url, tmp_path)
    out = tmp_path / "ledger.csv"
    assert main(["price", "evaluate", "--policies", str(policies), "--readings", str(readings),
                 "--ruleset", "default", "--through", through.isoformat(), "--out",
                 str(out)]) == 0
    from_csv = pd.read_csv(out, dtype={"reading_seq": "Int64"})
    from_db = current_ledger(db_url)
    from_db["day"] = from_db["day"].astype(str)
    from_db["reading_seq"] = from_db["reading_seq"].astype("Int64")
    assert set(from_db["day_status"]) >= {"in_target", "missed", "high"}
    pd.testing.assert_frame_equal(from_csv, from_db, check_dtype=False)
    with psycopg.connect(db_url) as conn:
        versions = conn.execute("select distinct ruleset_name, ruleset_version from "
                                "sum_insured_ledger").fetchall()
    assert versions == [("default", 1)]


def test_late_reading_reopens_days_and_keeps_the_superseded_rows(db_url: str) -> None:
    from pricing.engine import run_pricing

    load_fleet(db_url, n=6, days=20, seed=8)
    with psycopg.connect(db_url) as conn:  # the fleet's readings arrived an hour ago
        conn.execute("update readings set ingested_at = ingested_at - interval '1 hour'")
        conn.commit()
    through = START + timedelta(days=19)
    run_pricing(db_url, through)
    before = current_ledger(db_url)
    window = before[(before["day_status"] == "missed") &
                    (before["day"] >= through - timedelta(days=5))]
    assert not window.empty
    policy, late_day = window.iloc[-1]["policy_id"], window.iloc[-1]["day"]
    late_reading(db_url, policy, late_day, 40000, timedelta(days=3))
    summary = run_pricing(db_url, through)
    assert summary.policies_evaluated == 1
    after = current_ledger(db_url)
    mine = after[(after["policy_id"] == policy) & (after["day"] == late_day)].iloc[0]
    assert mine["day_status"] == "in_target" and mine["reading_seq"] == 40000
    old = before.set_index(["policy_id", "day"])
    new = after.set_index(["policy_id", "day"])
    changed = (old["sum_insured"] != new["sum_insured"]) | (old["day_status"] !=
                                                            new["day_status"])
    assert {p for p, _ in changed[changed].index} == {policy}
    assert summary.rows_added == int(changed.sum())
    with psycopg.connect(db_url) as conn:
        history = conn.execute("select count(*) from sum_insured_ledger where policy_id = %s "
                               "and day = %s", (policy, late_day)).fetchone()
    assert history == (2,)

    # The incremental result is what a fresh evaluation of everything gives.
    fresh_db_ledger = full_evaluation(db_url, through)
    pd.testing.assert_frame_equal(after.reset_index(drop=True), fresh_db_ledger,
                                  check_dtype=False)


def test_advancing_day_by_day_equals_one_run(db_url: str) -> None:
    from pricing.engine import run_pricing

    load_fleet(db_url, n=8, days=30, seed=9)
    for day in range(10, 30, 4):
        run_pricing(db_url, START + timedelta(days=day))
    stepped = current_ledger(db_url)
    stepped["reading_seq"] = stepped["reading_seq"].astype("Int64")
    full = full_evaluation(db_url, START + timedelta(days=26))
    pd.testing.assert_frame_equal(stepped, full, check_dtype=False)


@pytest.mark.parametrize(("policies", "readings", "message"), [
    ("policy_id,device_id,start_date,base_sum_insured,timezone\nP1,D1,2026-13-01,100,UTC\n",
     None, "line 2, column start_date: '2026-13-01'"),
    ("policy_id,device_id,start_date,base_sum_insured,timezone\nP1,D1,2026-01-01,100,Mars/Base\n",
     None, "line 2, column timezone: 'Mars/Base'"),
    ("policy_id,device_id,start_date\nP1,D1,2026-01-01\n", None,
     "missing column(s) base_sum_insured, timezone"),
    (None, "device_id,seq,measured_at,received_at,value,unit,meal,sample,source,status\n"
     "D1,1,2026-01-01T07:00:00+08:00,2026-01-01T07:00:00+08:00,5.5,mmol/L,fasting,"
     "capillary_plasma,meter,\n"
     "D1,2,2026-01-02T07:00:00,2026-01-02T07:00:00+08:00,5.5,mmol/L,fasting,"
     "capillary_plasma,meter,\n", "line 3, column measured_at"),
    (None, "device_id,seq,measured_at,received_at,value,unit,meal,sample,source,status\n"
     "D1,1,2026-01-01T07:00:00+08:00,2026-01-01T07:00:00+08:00,5.5,mmol/L,fasting,"
     "capillary_plasma,meter,battery_low;bogus\n", "line 2, column status: 'bogus'"),
])
def test_price_evaluate_names_the_bad_line_and_column(
        tmp_path: Path, policies: str | None, readings: str | None, message: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    good_p = "policy_id,device_id,start_date,base_sum_insured,timezone\nP1,D1,2026-01-01,100,UTC\n"
    good_r = ("device_id,seq,measured_at,received_at,value,unit,meal,sample,source,status\n")
    (tmp_path / "p.csv").write_text(policies or good_p)
    (tmp_path / "r.csv").write_text(readings or good_r)
    code = main(["price", "evaluate", "--policies", str(tmp_path / "p.csv"), "--readings",
                 str(tmp_path / "r.csv"), "--through", "2026-01-03"])
    assert code == 2
    assert message in capsys.readouterr().err


def test_price_evaluate_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "p.csv").write_text("policy_id,device_id,start_date,base_sum_insured,timezone\n"
                                    "P1,D1,2026-01-01,1000,Asia/Shanghai\n")
    (tmp_path / "r.csv").write_text(
        "device_id,seq,measured_at,received_at,value,unit,meal,sample,source,status\n"
        "D1,1,2026-01-01T07:00:00+08:00,2026-01-01T07:00:05+08:00,99,mg/dL,fasting,"
        "capillary_plasma,meter,battery_low\n"
        "D1,1,2026-01-01T07:00:00+08:00,2026-01-01T07:00:05+08:00,250,mg/dL,fasting,"
        "capillary_plasma,meter,\n")
    assert main(["price", "evaluate", "--policies", str(tmp_path / "p.csv"), "--readings",
                 str(tmp_path / "r.csv"), "--through", "2026-01-02", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0] == {"policy_id": "P1", "day": "2026-01-01", "day_status": "in_target",
                       "reading_seq": 1, "delta": 100.0, "bonus": 100.0, "sum_insured": 1100.0}
    assert rows[1]["day_status"] == "missed"


def test_price_run_needs_a_database(settings: object, capsys: pytest.CaptureFixture[str]
                                    ) -> None:
    assert main(["price", "run"]) == 2
    assert "DATABASE_URL is not set" in capsys.readouterr().err



def test_readings_load_exactly_as_stored(db_url: str) -> None:
    from pricing import store

    measured = datetime(2026, 3, 5, 6, 59, 59, 123456).astimezone()
    payload = messages.ReadingsMessage("GM-Z", measured, (
        messages.Record(seq=65535, measured_at=measured, value=0.1 + 0.2),
        messages.Record(seq=0, measured_at=measured + timedelta(microseconds=1), value=123,
                    unit=vocabulary.Unit.MG_DL, status=("battery_low", "time_fault"),
                    sample=vocabulary.Sample.CONTROL_SOLUTION),
    )).encode()
    with psycopg.connect(db_url) as conn:
        conn.execute("insert into devices (device_id) values ('GM-Z')")
        conn.commit()
    received = measured + timedelta(seconds=7, microseconds=654321)
    store_messages(db_url, [(topics.readings_topic("GM-Z"), payload, received)])
    with psycopg.connect(db_url) as conn:
        frame = store.load_readings(conn, ["GM-Z"]).sort_values("seq")
        empty = store.load_readings(conn, ["nobody"])
        later = store.load_readings(conn, ["GM-Z"], since=measured + timedelta(microseconds=1))
    assert list(frame["seq"]) == [0, 65535]
    assert list(frame["measured_at"]) == [pd.Timestamp(measured + timedelta(microseconds=1)),
                                          pd.Timestamp(measured)]
    assert set(frame["received_at"]) == {pd.Timestamp(received)}
    assert list(frame["value_mmol"]) == [123 / units.MGDL_PER_MMOL, 0.1 + 0.2]
    assert list(frame["status"]) == [vocabulary.status_bits(["battery_low", "time_fault"]), 0]
    assert list(frame["sample"].astype(str)) == ["control_solution", "capillary_plasma"]
    assert empty.empty and list(empty.columns) == list(frame.columns)
    assert list(later["seq"]) == [0]
