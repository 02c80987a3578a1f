"""The FHIR R4 export (records/): every resource validates with fhir.resources' R4B models, the
observations are exactly the readings pricing counts, with the database's values and times, and
a CGM's summary carries the consensus metrics under the CGM guide's codes."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest
from fhir.resources.R4B.bundle import Bundle

from cli.main import main
from devices.wire.messages import ReadingsMessage, Record
from kernel.units import MGDL_PER_MMOL
from kernel.vocabulary import Meal, Sample, Source, Unit
from pricing import cgm_metrics
from records import fhir
from records.export import policy_bundle, pseudonym_key
from tests.helpers import START, TEST_SECRET, load_fleet, store_messages

KEY = pseudonym_key(TEST_SECRET)
LAST = START + timedelta(days=44)


def resources(document: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in document["entry"] if e["resource"]["resourceType"] == kind]


def test_a_fleet_policys_bundle_validates_and_leaves_out_what_pricing_does_not_count(
        db_url: str) -> None:
    """A simulated meter that also sent control solution or typed-in values: every observation
    is one of the policy meter's stored readings of real blood taken by the meter, none is
    control solution or typed in, and the bundle left some of the meter's readings out."""
    load_fleet(db_url, n=30, days=45, seed=3)
    with psycopg.connect(db_url) as conn:
        segments: dict[str, str] = dict(conn.execute(  # type: ignore[arg-type]
            "select policy_id, segment from policies").fetchall())
        policy_id = next(p for p, s in sorted(segments.items())
                         if s in ("gamer_control_solution", "gamer_manual"))
        export = policy_bundle(conn, policy_id, KEY, last=LAST)
        stored = {(str(d), int(s)): (str(sample), str(source)) for d, s, sample, source in
                  conn.execute("select r.device_id, r.seq, r.sample, r.source from readings r "
                               "join policy_devices b using (device_id) "
                               "where b.policy_id = %s", (policy_id,)).fetchall()}
    doc = json.loads(export.to_json())
    Bundle.model_validate(doc)  # every entry parses as its R4B resource
    assert doc["type"] == "collection"
    observations = resources(doc, "Observation")
    assert len(observations) == export.observations
    (patient,) = resources(doc, "Patient")
    assert "name" not in patient and policy_id not in json.dumps(patient)
    assert patient["identifier"][0]["value"] == fhir.pseudonym(KEY, policy_id)
    kinds: Counter[tuple[str, str]] = Counter()
    for o in observations:
        assert o["status"] == "final" and o["category"][0]["coding"][0]["code"] == "laboratory"
        device, seq, _ = o["identifier"][0]["value"].split("/", 2)
        kinds[stored[(device, int(seq))]] += 1
    assert set(kinds) == {("capillary_plasma", "meter")}
    left_out = Counter(stored.values()) - kinds
    assert left_out[("control_solution", "meter")] + left_out[("capillary_plasma", "manual")] > 0


KOLKATA = timezone(timedelta(hours=5, minutes=30))


def kolkata(day: int, hour: int, minute: int = 0) -> datetime:
    """An instant on a wall clock in Asia/Kolkata (+05:30, no DST), March 2026."""
    return datetime(2026, 3, day, hour, minute, tzinfo=KOLKATA)


def test_a_hand_built_history_becomes_exactly_its_countable_readings(db_url: str) -> None:
    """A +05:30 policyholder's meter sends readings that pricing counts and readings it does
    not (control solution, typed in, an error status, before the start, weeks late, after the
    window, another meter's); the bundle holds the first kind only, each with the value, unit,
    LOINC code, wall-clock offset and meal note worked out here by hand."""
    with psycopg.connect(db_url) as conn:
        conn.execute("insert into devices (device_id, kind) values ('MTR-F', 'bgm'), "
                     "('MTR-X', 'bgm')")
        conn.execute("insert into policies (policy_id, holder_name, base_sum_insured, timezone,"
                     " start_date) values ('POL-F', 'A', 10000, 'Asia/Kolkata', '2026-03-02')")
        conn.execute("insert into policy_devices values ('POL-F', 'MTR-F', %s, null)",
                     (datetime(2026, 3, 1, tzinfo=UTC),))
        conn.commit()
    minute = timedelta(minutes=1)
    sent: list[tuple[str, Record, datetime]] = [  # (meter, record, received)
        # Counted: mmol/L before a meal; mg/dL after one; five past midnight, which is 3 March
        # in UTC but 4 March on the wall; six days late (inside the week's tolerance).
        ("MTR-F", Record(1, kolkata(2, 8), 6.2, Unit.MMOL_L, Meal.PREPRANDIAL), kolkata(2, 8, 1)),
        ("MTR-F", Record(2, kolkata(3, 20), 140, Unit.MG_DL, Meal.POSTPRANDIAL),
         kolkata(3, 20, 1)),
        ("MTR-F", Record(3, kolkata(4, 0, 5), 5.5), kolkata(4, 0, 6)),
        ("MTR-F", Record(4, kolkata(2, 21), 7.1), kolkata(8, 21)),
        # Not counted, each for one reason.
        ("MTR-F", Record(5, kolkata(3, 7), 5.0, sample=Sample.CONTROL_SOLUTION),
         kolkata(3, 7, 1)),
        ("MTR-F", Record(6, kolkata(3, 8), 5.1, source=Source.MANUAL), kolkata(3, 8, 1)),
        ("MTR-F", Record(7, kolkata(3, 9), 5.2, status=("strip_insertion_error",)),
         kolkata(3, 9, 1)),
        ("MTR-F", Record(8, kolkata(1, 23), 5.3), kolkata(1, 23, 1)),  # the day before start
        ("MTR-F", Record(9, kolkata(3, 10), 5.4), kolkata(11, 10, 1)),  # eight days late
        ("MTR-F", Record(10, kolkata(5, 0, 30), 5.6), kolkata(5, 0, 31)),  # after --to
        ("MTR-X", Record(1, kolkata(3, 11), 5.7), kolkata(3, 11, 1)),  # not the policy's meter
    ]
    store_messages(db_url, [(m.topic, m.encode(), received) for m, received in (
        (ReadingsMessage(device, received - minute, (record,)), received)
        for device, record, received in sent)])
    with psycopg.connect(db_url) as conn:
        doc = policy_bundle(conn, "POL-F", KEY, first=date(2026, 3, 2),
                            last=date(2026, 3, 4)).document
    Bundle.model_validate(doc)
    observations = {o["identifier"][0]["value"].rsplit("/", 1)[0]: o
                    for o in resources(doc, "Observation")}
    assert sorted(observations) == ["MTR-F/1", "MTR-F/2", "MTR-F/3", "MTR-F/4"]
    expected = {  # identifier: (wall clock, value, unit, LOINC, meal note)
        "MTR-F/1": ("2026-03-02T08:00:00+05:30", 6.2, "mmol/L", "14743-9", True),
        "MTR-F/2": ("2026-03-03T20:00:00+05:30", 140, "mg/dL", "41653-7", True),
        "MTR-F/3": ("2026-03-04T00:05:00+05:30", 5.5, "mmol/L", "14743-9", False),
        "MTR-F/4": ("2026-03-02T21:00:00+05:30", 7.1, "mmol/L", "14743-9", False),
    }
    for identifier, (wall, value, unit, loinc, noted) in expected.items():
        o = observations[identifier]
        when = datetime.fromisoformat(o["effectiveDateTime"])
        assert when == datetime.fromisoformat(wall), identifier
        assert when.utcoffset() == timedelta(hours=5, minutes=30), identifier
        q = o["valueQuantity"]
        assert (q["value"], q["unit"], q["code"]) == (value, unit, unit), identifier
        assert o["code"]["coding"][0]["code"] == loinc, identifier
        assert ("note" in o) is noted, identifier
    (device,) = resources(doc, "Device")
    assert device["identifier"][0]["value"] == "MTR-F"


def test_a_cgm_gets_its_codes_and_the_guides_summary(db_url: str) -> None:
    """A CGM bound to a policy: readings coded 99504-3 / 105272-9 by the unit sent, and the
    time-in-ranges panel and single figures equal to pricing/cgm_metrics.py's metrics."""
    start = date(2026, 3, 2)
    with psycopg.connect(db_url) as conn:
        conn.execute("insert into devices (device_id, kind) values ('CGM-1', 'cgm')")
        conn.execute("insert into policies (policy_id, holder_name, base_sum_insured, timezone,"
                     " start_date) values ('POL-CGM', 'A', 10000, 'UTC', %s)", (start,))
        conn.execute("insert into policy_devices values ('POL-CGM', 'CGM-1', %s, null)",
                     (datetime(2026, 3, 1, tzinfo=UTC),))
        conn.commit()
    rng = np.random.default_rng(4)
    first = datetime(2026, 3, 2, tzinfo=UTC)
    records = []
    for i in range(3 * 288):
        if 400 <= i < 460:  # an hour's gap: the sensor out of range
            continue
        mgdl = float(np.clip(rng.normal(150, 55), 40, 400))
        unit = Unit.MMOL_L if i % 2 else Unit.MG_DL
        value = round(mgdl / MGDL_PER_MMOL, 1) if unit == Unit.MMOL_L else round(mgdl)
        records.append(Record(i, first + timedelta(minutes=5 * i), value, unit, Meal.UNKNOWN,
                              Sample.INTERSTITIAL_FLUID))
    messages = [ReadingsMessage("CGM-1", r.measured_at + timedelta(seconds=30), (r,))
                for r in records]
    store_messages(db_url, [(m.topic, m.encode(), m.sent_at) for m in messages])
    last = date(2026, 3, 4)
    with psycopg.connect(db_url) as conn:
        doc = policy_bundle(conn, "POL-CGM", KEY, last=last).document
    Bundle.model_validate(doc)
    codes = Counter(o["code"]["coding"][0]["code"] for o in resources(doc, "Observation"))
    assert codes["99504-3"] + codes["105272-9"] == len(records)
    assert codes["99504-3"] == sum(r.unit == Unit.MG_DL for r in records)
    (device,) = resources(doc, "Device")
    assert device["type"]["coding"][0]["code"] == "cgm"
    frame = pd.DataFrame({"device_id": "CGM-1",
                          "measured_at": pd.to_datetime([r.measured_at for r in records]),
                          "local_date": [r.measured_at.date() for r in records],
                          "value_mgdl": [r.value * (MGDL_PER_MMOL if r.unit == Unit.MMOL_L
                                                    else 1) for r in records]})
    m = cgm_metrics.metrics(frame, start, last).iloc[0]
    by_code = {o["code"]["coding"][0]["code"]: o for o in resources(doc, "Observation")}
    panel = by_code["106793-3"]
    assert panel["effectivePeriod"] == {"start": "2026-03-02", "end": "2026-03-04"}
    bands = {c["code"]["coding"][0]["code"]: c["valueQuantity"]["value"]
             for c in panel["component"]}
    assert bands["97510-2"] == pytest.approx(m["tir_70_180"], abs=0.005)
    assert bands["104642-4"] == pytest.approx(m["tbr_below_54"], abs=0.005)
    assert bands["104641-6"] == pytest.approx(m["tbr_below_70"] - m["tbr_below_54"], abs=0.005)
    assert bands["104639-0"] == pytest.approx(m["tar_above_250"], abs=0.005)
    assert sum(bands.values()) == pytest.approx(100, abs=0.05)
    assert by_code["97506-0"]["valueQuantity"]["value"] == pytest.approx(m["gmi"], abs=0.005)
    assert by_code["97507-8"]["valueQuantity"]["unit"] == "mg/dL"
    assert by_code["104636-6"]["valueQuantity"]["value"] == 3
    active = by_code["104637-4"]["valueQuantity"]["value"]
    assert active == pytest.approx(100 * len(records) / (3 * 288), abs=0.01)


def test_export_fhir_writes_the_file_and_refuses_an_unknown_policy(
        db_url: str, settings: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    load_fleet(db_url, n=3, days=10, seed=5)
    out = tmp_path / "bundle.json"
    with psycopg.connect(db_url) as conn:
        policy_id = str(conn.execute("select min(policy_id) from policies").fetchone()[0])  # type: ignore[index]
    assert main(["export", "fhir", "--policy", policy_id, "--from", str(START),
                 "--to", str(START + timedelta(days=9)), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    Bundle.model_validate(doc)
    assert f"{len(resources(doc, 'Observation'))} observations" in capsys.readouterr().out
    assert main(["export", "fhir", "--policy", "POL-NOBODY", "--out", str(out)]) == 2
    assert "no policy POL-NOBODY" in capsys.readouterr().err
