"""Simulated CGMs (devices/cgm_sensor.py, devices/fleet.py) and their way through ingest,
pricing and the policyholder page: traces that look like CGM data, sensor sessions,
back-fills, and the cgm-default ruleset pricing them from the database as the evaluator does."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jsonschema
import numpy as np
import pandas as pd
import psycopg
import pytest

from devices import wire as wire_package
from devices.fleet import fleet_messages, meter_messages, portfolio
from devices.provisioning import add_portfolio
from devices.wire import decoding, topics
from devices.wire.messages import MAX_RECORDS
from pricing import cgm_metrics, store
from pricing.products import evaluate
from tests.helpers import START, TEST_SECRET, comparable, current_ledger, store_messages

SCHEMA = json.loads((Path(wire_package.__file__).parent / "wire_v1.schema.json").read_text())
DAYS = 30


@pytest.fixture(scope="module")
def wearers() -> tuple[list[Any], list[Any]]:
    people = portfolio(36, 12, START, cgm_share=1.0)
    return people, fleet_messages(people, 12, DAYS)


@pytest.fixture(scope="module")
def wearers_decoded(wearers: tuple[list[Any], list[Any]]
                    ) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    return decoded(wearers[1])


def decoded(messages: list[Any]) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Every reading (device, seq, measured_at, mg/dL, sent) and every sensor report."""
    rows, sensors = [], []
    for m in messages:
        device_id, kind = topics.topic_device(m.topic) or ("", "")
        if kind == "readings":
            for r in decoding.decode_readings(m.payload, device_id, m.at).readings:
                rows.append((device_id, r.seq, r.measured_at, r.value_mmol * 18.0156, m.at,
                             r.sample, r.meal))
        else:
            doc = decoding.decode_status(m.payload, device_id)
            sensors.append({"device_id": device_id, "at": m.at, **doc["sensor"]})
    frame = pd.DataFrame(rows, columns=["device_id", "seq", "measured_at", "mgdl", "sent_at",
                                        "sample", "meal"])
    return frame, sensors


def test_cgm_traces_look_like_cgm_data(
        wearers: tuple[list[Any], list[Any]],
        wearers_decoded: tuple[pd.DataFrame, list[dict[str, Any]]]) -> None:
    """Time in range spans about 30-95% across personas, some have hypoglycaemia, meals rise
    and fall (the median after dinner is above the median at 04:00), and readings come every
    five minutes while a sensor is worn."""
    people, _ = wearers
    readings, _ = wearers_decoded
    assert set(readings["sample"]) == {"interstitial_fluid"}
    assert set(readings["meal"]) == {"unknown"}
    persona = {p.device_id: p.cgm.name for p in people}
    zone = {p.device_id: p.timezone for p in people}
    local = pd.Series([t.astimezone(ZoneInfo(zone[d]))
                       for d, t in zip(readings["device_id"], readings["measured_at"],
                                       strict=True)])
    frame = pd.DataFrame({"device_id": readings["device_id"].map(persona),
                          "measured_at": pd.to_datetime(readings["measured_at"], utc=True),
                          "local_date": [t.date() for t in local],
                          "value_mgdl": readings["mgdl"]})
    by_persona = cgm_metrics.metrics(frame).set_index("device_id")
    tir = by_persona["tir_70_180"]
    assert tir.min() < 40 and tir.max() > 90, tir
    very_low = by_persona["tbr_below_54"].astype(float)
    assert very_low["cgm_hypo_prone"] > 0.3
    assert very_low["cgm_tight"] < very_low["cgm_hypo_prone"]
    hour = np.array([t.hour for t in local])
    assert np.median(frame["value_mgdl"][hour == 20]) > np.median(frame["value_mgdl"][hour == 4])
    gaps = readings.sort_values("measured_at").groupby("device_id")["measured_at"].diff()
    assert (gaps.dt.total_seconds().between(4 * 60, 6 * 60)).mean() > 0.9


def test_sensor_sessions_warm_up_end_and_sometimes_fail(
        wearers: tuple[list[Any], list[Any]],
        wearers_decoded: tuple[pd.DataFrame, list[dict[str, Any]]]) -> None:
    """Each session is reported when it starts, when its warm-up ends and when it ends; it
    lasts 10 or 14 days unless it fails early; no reading falls in a warm-up or between
    sessions."""
    people, _ = wearers
    readings, reports = wearers_decoded
    sessions: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
    for r in reports:
        sessions[(r["device_id"], r["sensor_id"])][r["state"]] = r
    states = Counter(s for session in sessions.values() for s in session)
    assert states["warming_up"] >= len(people) and states["failed"] > 0
    for (device_id, _), seen in sessions.items():
        first = next(iter(seen.values()))
        length = first["expected_end_at"] - first["started_at"]
        assert length in (timedelta(days=10), timedelta(days=14))
        assert first["warmup_ends_at"] - first["started_at"] in (timedelta(hours=1),
                                                                 timedelta(hours=2))
        if "ended" in seen:
            assert seen["ended"]["ended_at"] == first["expected_end_at"]
        mine = readings[readings["device_id"] == device_id]["measured_at"]
        in_warmup = (mine >= first["started_at"]) & (mine < first["warmup_ends_at"])
        assert not in_warmup.any()


def test_phones_back_fill_after_a_gap_in_batches_and_everything_is_v1(
        wearers: tuple[list[Any], list[Any]],
        wearers_decoded: tuple[pd.DataFrame, list[dict[str, Any]]]) -> None:
    _, messages = wearers
    validator = jsonschema.Draft202012Validator(SCHEMA)
    sizes: Counter[str] = Counter()
    for i, m in enumerate(messages):
        if i % 20 == 0 or not m.topic.endswith("/readings"):  # a sample: the schema is slow
            validator.validate(json.loads(m.payload))
        if m.topic.endswith("/readings"):
            n = len(json.loads(m.payload)["records"])
            assert n <= MAX_RECORDS
            sizes["live" if n == 1 else "backfill"] += 1
    assert sizes["live"] > 100 * sizes["backfill"] > 0
    readings, _ = wearers_decoded
    late = (pd.to_datetime(readings["sent_at"], utc=True)
            - pd.to_datetime(readings["measured_at"], utc=True)).dt.total_seconds()
    assert (late > 1800).any() and (late <= 8 * 3600 + 60).all()
    per_device = readings.groupby("device_id")["seq"].apply(lambda s: s.is_unique)
    assert per_device.all()


def test_same_seed_same_cgm_messages_whatever_the_length(
        wearers: tuple[list[Any], list[Any]]) -> None:
    people, _ = wearers
    cut = datetime.combine(START + timedelta(days=9), datetime.min.time(), UTC)
    short = [m.payload for m in meter_messages(people[3], 12, 10) if m.at < cut]
    long = [m.payload for m in meter_messages(people[3], 12, 24) if m.at < cut]
    assert short == long and len(short) > 1000


def test_cgm_policies_are_priced_from_the_database_as_the_evaluator_prices_them(
        db_url: str) -> None:
    """A mixed portfolio through ingest's own decode and store, priced by `price run`: CGM
    policies by cgm-default (with the day's figures on each ledger row), meters by default,
    each ledger equal to the evaluator on the stored readings; sensor sessions stored."""
    from pricing.engine import run_pricing

    people = portfolio(16, 13, START, cgm_share=0.4)
    assert 3 <= sum(p.kind == "cgm" for p in people) < len(people)
    with psycopg.connect(db_url) as conn:
        add_portfolio(conn, people, TEST_SECRET)
        conn.commit()
    messages = fleet_messages(people, 13, 15)
    store_messages(db_url, [(m.topic, m.payload, m.at) for m in messages])
    through = START + timedelta(days=14)
    run_pricing(db_url, through)
    stored = current_ledger(db_url)
    with psycopg.connect(db_url) as conn:
        policies, bindings = store.load_policies(conn)
        readings = store.load_readings(conn, list(bindings["device_id"]))
        figures = conn.execute("select day_status, coverage, time_in_range from current_ledger "
                               "where ruleset_name = 'cgm-default'").fetchall()
        sessions = conn.execute("select state, count(*) from sensor_sessions group by state"
                                ).fetchall()
        kinds = {str(k): int(str(n)) for k, n in conn.execute(
            "select ruleset_name, count(*) from policies group by 1")}
        rulesets = {name: store.in_force(conn, name) for name in kinds}
    assert kinds["cgm-default"] == sum(p.kind == "cgm" for p in people)
    for name, group in policies.groupby("ruleset_name"):
        rules = rulesets[str(name)]
        mine = bindings[bindings["policy_id"].isin(group["policy_id"])]
        expected = comparable(evaluate(group.reset_index(drop=True), mine, readings, rules,
                                       through))
        got = stored[stored["policy_id"].isin(group["policy_id"])].reset_index(drop=True)
        pd.testing.assert_frame_equal(got[expected.columns[:7]], expected[expected.columns[:7]],
                                      check_dtype=False)
    statuses = Counter(s for s, _, _ in figures)
    assert statuses["in_target"] > 0 and statuses["insufficient"] > 0
    assert all(c is not None for s, c, _ in figures)  # coverage on every CGM day
    by_state = {str(state): int(str(n)) for state, n in sessions}
    assert by_state.get("ended", 0) + by_state.get("failed", 0) > 0


def test_a_years_cgm_history_is_sent_in_sessions_that_never_reuse_a_sequence_number() -> None:
    """105,000 readings a year wrap the uint16 sequence number; a session that tells its
    readings apart by it must hold fewer than half of them."""
    from devices.publisher import split_sessions
    from kernel.sequence import SESSION_READINGS

    person = portfolio(1, 40, START, cgm_share=1.0)[0]
    messages = list(meter_messages(person, 40, 300))
    parts = [list(part) for part in split_sessions(iter(messages))]
    assert [m for part in parts for m in part] == messages
    assert len(parts) >= 2
    for part in parts:
        seqs = [s for m in part for s in m.seqs]
        assert len(seqs) <= SESSION_READINGS and len(set(seqs)) == len(seqs)
