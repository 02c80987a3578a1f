"""The FHIR R4 export (records/): every resource validates with fhir.resources' R4B models, the
observations are exactly the readings pricing counts, with the database's values and times, and
a CGM's summary carries the consensus metrics under the CGM guide's codes."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta
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
from kernel.vocabulary import Meal, Sample, Unit
from pricing import cgm_metrics, store
from pricing.evaluator import assign_readings
from records import fhir
from records.export import policy_bundle, pseudonym_key
from tests.helpers import START, TEST_SECRET, load_fleet, store_messages

KEY = pseudonym_key(TEST_SECRET)
LAST = START + timedelta(days=44)


def resources(document: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in document["entry"] if e["resource"]["resourceType"] == kind]


def valid_readings(conn: psycopg.Connection[Any], policy_id: str) -> pd.DataFrame:
    """The readings pricing counts for the policy through LAST, straight from the evaluator."""
    policies, bindings = store.load_policies(conn, [policy_id])
    readings = store.load_readings(conn, list(bindings["device_id"]))
    ruleset = store.in_force(conn, "default")
    days = np.array([(LAST - START).days + 1])
    assigned, _ = assign_readings(policies, bindings, readings, ruleset, days)
    return readings.iloc[assigned.row]


def test_a_policys_bundle_validates_and_holds_exactly_its_valid_readings(db_url: str) -> None:
    load_fleet(db_url, n=30, days=45, seed=3)
    with psycopg.connect(db_url) as conn:
        segments: dict[str, str] = dict(conn.execute(  # type: ignore[arg-type]
            "select policy_id, segment from policies").fetchall())
        # A policy whose meter also sent control solution or typed-in values, which pricing
        # does not count: they must not become observations.
        policy_id = next(p for p, s in sorted(segments.items())
                         if s in ("gamer_control_solution", "gamer_manual"))
        export = policy_bundle(conn, policy_id, KEY, last=LAST)
        expected = valid_readings(conn, policy_id)
        stored = {(str(d), int(s), t): (float(v), str(u), int(o), str(m)) for d, s, t, v, u, o, m
                  in conn.execute("select device_id, seq, measured_at, "
                                  "glucose_value(value_digits, value_exponent), unit, "
                                  "utc_offset_min, meal from readings").fetchall()}
        everything = conn.execute(
            "select count(*) from readings r join policy_devices b using (device_id) "
            "where b.policy_id = %s", (policy_id,)).fetchone()
    doc = json.loads(export.to_json())
    Bundle.model_validate(doc)  # every entry parses as its R4B resource
    assert doc["type"] == "collection"
    observations = resources(doc, "Observation")
    assert len(observations) == len(expected) == export.observations
    assert everything is not None and everything[0] > len(expected)  # some were left out
    (patient,) = resources(doc, "Patient")
    assert "name" not in patient and policy_id not in json.dumps(patient)
    assert patient["identifier"][0]["value"] == fhir.pseudonym(KEY, policy_id)
    (device,) = resources(doc, "Device")
    device_id = device["identifier"][0]["value"]
    expected_keys = {(device_id, int(s), t) for s, t in zip(
        expected["seq"], expected["measured_at"].dt.to_pydatetime(), strict=True)}
    seen = set()
    for o in observations:
        assert o["status"] == "final" and o["category"][0]["coding"][0]["code"] == "laboratory"
        assert o["device"]["reference"] == f"urn:uuid:{device['id']}"
        dev, seq, _ = o["identifier"][0]["value"].split("/", 2)
        when = datetime.fromisoformat(o["effectiveDateTime"])
        key = (dev, int(seq), when.astimezone(UTC))
        value, unit, offset, meal = stored[key]
        assert when.utcoffset() == timedelta(minutes=offset)  # the offset the meter was on
        q = o["valueQuantity"]
        assert (q["value"], q["unit"], q["code"], q["system"]) == (
            value, unit, unit, "http://unitsofmeasure.org")
        code = o["code"]["coding"][0]
        assert code["system"] == "http://loinc.org"
        assert code["code"] == {"mg/dL": "41653-7", "mmol/L": "14743-9"}[unit]
        assert ("note" in o) == (meal != "unknown")
        seen.add(key)
    assert seen == expected_keys


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
