"""Bluetooth Glucose Service records decoded from their bytes (devices/wire/gls.py), values
built by hand from the byte layouts, and decoded through to stored v1 readings."""

from __future__ import annotations

import base64
import struct
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.wire import gls
from devices.wire.decoding import normalise_record
from kernel.units import MGDL_PER_MMOL
from kernel.vocabulary import Meal, Sample, Unit

SENT_AT = datetime(2026, 3, 2, 0, 0, 30, tzinfo=UTC)
METER_TIME = datetime(2026, 3, 2, 8, 2, 0)  # the meter runs on Shanghai time, 2 minutes fast


def measurement(seq: int, concentration: int | None, *, offset: int | None = None,
                mol: bool = False, type_location: int = 0x11, status: int | None = None,
                context: bool = False, when: datetime = datetime(2026, 3, 2, 7, 30)) -> bytes:
    flags = ((0x01 if offset is not None else 0) | (0x02 if concentration is not None else 0)
             | (0x04 if mol else 0) | (0x08 if status is not None else 0)
             | (0x10 if context else 0))
    out = struct.pack("<BHHBBBBB", flags, seq, when.year, when.month, when.day, when.hour,
                      when.minute, when.second)
    if offset is not None:
        out += struct.pack("<h", offset)
    if concentration is not None:
        out += struct.pack("<HB", concentration, type_location)
    if status is not None:
        out += struct.pack("<H", status)
    return out


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_sfloat_follows_ieee_11073() -> None:
    assert gls.sfloat(0xB078) == pytest.approx(0.00120)  # 120 x 10^-5 kg/L = 120 mg/dL
    assert gls.sfloat(0x0064) == 100.0
    assert gls.sfloat(0xF03F) == pytest.approx(6.3)  # 63 x 10^-1
    assert gls.sfloat(0x0FFF) == -1.0  # mantissa two's complement
    for special in (0x07FF, 0x0800, 0x07FE, 0x0802, 0x0801):
        with pytest.raises(gls.GlsError) as refused:
            gls.sfloat(special)
        assert refused.value.reason == "gls_special_value"


def test_a_measurement_in_kg_per_litre() -> None:
    m = gls.measurement(measurement(412, 0xB078, offset=-30, status=0x0001))
    assert (m.seq, m.unit, m.sample) == (412, Unit.MG_DL, Sample.CAPILLARY_WHOLE_BLOOD)
    assert m.value == pytest.approx(120.0)
    assert m.local_time == datetime(2026, 3, 2, 7, 0)  # base time + offset
    assert m.status == 1 and not m.context_follows


def test_a_measurement_in_mol_per_litre_with_its_sample() -> None:
    # 6.3 mmol/L = 0.0063 mol/L = 63 x 10^-4: exponent -4 (0xC), mantissa 63.
    m = gls.measurement(measurement(7, 0xC03F, mol=True, type_location=0x12))
    assert (m.unit, m.sample) == (Unit.MMOL_L, Sample.CAPILLARY_PLASMA)
    assert m.value == pytest.approx(6.3)
    assert gls.measurement(measurement(7, 0xC03F, type_location=0x4A)).sample == \
        Sample.CONTROL_SOLUTION  # type 10
    assert gls.measurement(measurement(7, 0xC03F, type_location=0x41)).sample == \
        Sample.CONTROL_SOLUTION  # location 4
    assert gls.measurement(measurement(7, 0xC03F, type_location=0x15)).sample == \
        Sample.ARTERIAL_WHOLE_BLOOD


def test_a_context_is_read_past_the_fields_before_the_meal() -> None:
    # extended flags, carbohydrate, meal (fasting), tester/health, exercise, medication, HbA1c
    ctx = struct.pack("<BHB", 0xDF, 412, 0) + struct.pack("<BH", 1, 0xB032) + bytes([3]) + \
        bytes([0x11]) + struct.pack("<HB", 1800, 60) + struct.pack("<BH", 2, 0xD00A) + \
        struct.pack("<H", 0xF041)
    assert gls.context(ctx) == gls.Context(412, Meal.FASTING)
    assert gls.context(struct.pack("<BH", 0x00, 9)) == gls.Context(9, None)
    with pytest.raises(gls.GlsError) as short:
        gls.context(ctx[:-1])
    assert short.value.reason == "gls_truncated"
    with pytest.raises(gls.GlsError) as long:
        gls.context(ctx + b"\x00")
    assert long.value.reason == "gls_trailing_bytes"


def test_relayed_entries_become_v1_records_in_utc() -> None:
    meal_ctx = struct.pack("<BHB", 0x02, 412, 1)  # preprandial
    entries = [
        {"measurement": b64(measurement(412, 0xB078, context=True)), "context": b64(meal_ctx)},
        {"measurement": b64(measurement(413, 0xC03F, mol=True))},  # no context: meal unknown
        {"measurement": b64(measurement(414, 0x07FF))},  # NaN
        {"measurement": b64(measurement(415, 0xB078)[:-1])},  # truncated
        {"measurement": "not base64!"},
        {"measurement": b64(measurement(416, 0xB078)),
         "context": b64(struct.pack("<BHB", 0x02, 999, 1))},  # context of another record
    ]
    out, refused = gls.records(entries, METER_TIME, SENT_AT)
    assert [(i, e.reason) for i, e in refused] == [
        (2, "gls_special_value"), (3, "gls_truncated"), (4, "gls_bad_base64"),
        (5, "gls_orphan_context")]
    assert [i for i, _ in out] == [0, 1]
    first, second = (record for _, record in out)
    # 07:30 on a clock reading 08:02 when the gateway's UTC clock read 00:00:30:
    # 32 minutes before 00:00:30 UTC.
    assert first["measured_at"] == (SENT_AT - timedelta(minutes=32)).isoformat()
    assert (first["seq"], first["unit"], first["meal"]) == (412, "mg/dL", "preprandial")
    assert (second["unit"], second["meal"]) == ("mmol/L", "unknown")
    reading = normalise_record(first, 0, "GM-1", SENT_AT)  # the one validation path
    assert reading.value_mmol == pytest.approx(120 / MGDL_PER_MMOL)
    assert reading.measured_at == SENT_AT - timedelta(minutes=32)


def test_a_meter_time_must_be_the_meters_clock_without_a_zone() -> None:
    assert gls.meter_clock("2026-03-02T08:02:00") == METER_TIME
    for bad in ("2026-03-02T08:02:00+08:00", "yesterday", None):
        with pytest.raises(gls.GlsError) as refused:
            gls.meter_clock(bad)
        assert refused.value.reason == "gls_meter_time"


def test_a_gateway_message_is_stored_and_its_bad_entries_refused(db_url: str) -> None:
    """Through ingest's own decoding and store: good entries stored (in UTC, in mmol/L as
    well), each bad entry refused with its own reason, the rest of the message kept."""
    import json

    import psycopg

    from devices.wire.topics import readings_topic
    from ingest.batch import Received, decode
    from ingest.store import prepare, write_batch

    with psycopg.connect(db_url) as conn:
        conn.execute("insert into devices (device_id) values ('GW-1')")
        conn.commit()
    message = json.dumps({
        "device_id": "GW-1", "sent_at": SENT_AT.isoformat(),
        "meter_time": METER_TIME.isoformat(),
        "gls": [
            {"measurement": b64(measurement(1, 0xB078, context=True)),
             "context": b64(struct.pack("<BHB", 0x02, 1, 3))},  # fasting
            {"measurement": b64(measurement(2, 0xC03F, mol=True, offset=60))},
            {"measurement": b64(measurement(3, 0x0800))},  # NRes
            {"measurement": b64(measurement(4, 0xB078) + b"\x00")},  # trailing byte
        ]}).encode()
    received = SENT_AT + timedelta(seconds=2)
    with psycopg.connect(db_url) as conn:
        prepare(conn)
        result = write_batch(conn, decode(
            [Received(readings_topic("GW-1"), message, 1, 1, received)], trust_sent_at=False))
        conn.commit()
        stored = conn.execute("select seq, measured_at, glucose_value(value_digits, "
                              "value_exponent), unit, glucose_mmol(value_digits, value_exponent,"
                              " unit), meal from readings order by seq").fetchall()
        rejects = conn.execute("select reason from rejected_messages order by id").fetchall()
    assert result.stored == 2
    assert [r[0] for r in rejects] == ["gls_special_value", "gls_trailing_bytes"]
    (s1, t1, v1, u1, mmol1, meal1), (s2, t2, v2, u2, mmol2, meal2) = stored
    assert (s1, u1, meal1) == (1, "mg/dL", "fasting") and v1 == pytest.approx(120.0)
    assert mmol1 == pytest.approx(120.0 / MGDL_PER_MMOL) and v2 == pytest.approx(6.3)
    assert t1 == SENT_AT - timedelta(minutes=32)
    assert (s2, u2, meal2) == (2, "mmol/L", "unknown") and mmol2 == pytest.approx(6.3)
    assert t2 == SENT_AT + timedelta(minutes=28)  # its time offset: +60 minutes


def test_a_gateway_message_with_an_unreadable_meter_clock_is_refused_whole() -> None:
    import json

    from devices.wire.decoding import RejectReason, WireError, decode_readings

    message = json.dumps({"device_id": "GW-1", "sent_at": SENT_AT.isoformat(),
                          "meter_time": "08:02", "gls": [
                              {"measurement": b64(measurement(1, 0xB078))}]}).encode()
    with pytest.raises(WireError) as refused:
        decode_readings(message, "GW-1", SENT_AT)
    assert refused.value.reason == RejectReason.GLS_METER_TIME


def test_the_gateway_message_and_the_ack_are_in_the_json_schema() -> None:
    import json
    from pathlib import Path

    import jsonschema

    from devices import wire
    from devices.wire.messages import Ack

    schema = json.loads((Path(wire.__file__).parent / "wire_v1.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    message = {"device_id": "GW-1", "sent_at": SENT_AT.isoformat(),
               "meter_time": METER_TIME.isoformat(),
               "gls": [{"measurement": b64(measurement(1, 0xB078))}]}
    validator.validate(message)
    validator.validate(json.loads(Ack("GW-1", SENT_AT, ((3, 5), (9, 9))).encode()))
    for bad in ({**message, "meter_time": "2026-03-02T08:02:00+08:00"},
                {k: v for k, v in message.items() if k != "meter_time"},
                {**message, "gls": []}):
        assert not validator.is_valid(bad)


@given(seq=st.integers(0, 65535), minutes=st.integers(0, 60 * 24 * 365),
       offset=st.sampled_from([0, -90, -60, 30, 60, 120]),
       value=st.one_of(st.integers(20, 600).map(float),
                       st.integers(11, 333).map(lambda tenths: tenths / 10)),
       sample=st.sampled_from(sorted(gls.SAMPLE_TYPE)), status=st.integers(0, 0x0FFF),
       meal=st.sampled_from([*gls.MEALS.values(), None]))
def test_what_a_meter_encodes_decodes_to_the_same_record(
        seq: int, minutes: int, offset: int, value: float, sample: Sample, status: int,
        meal: Meal | None) -> None:
    unit = Unit.MG_DL if value.is_integer() and value >= 20 else Unit.MMOL_L
    local = datetime(2026, 1, 1) + timedelta(minutes=minutes, seconds=seq % 60)
    sent = gls.Measurement(seq, local, value, unit, sample, status, meal is not None)
    back = gls.measurement(gls.encode_measurement(sent, offset))
    assert back.value == pytest.approx(value, abs=1e-9)
    assert back == replace(sent, value=back.value)
    assert gls.context(gls.encode_context(gls.Context(seq, meal))) == gls.Context(seq, meal)


def test_gateway_meters_send_what_their_v1_twins_send_with_the_clock_corrected() -> None:
    """The same policyholders' meters, once speaking v1 and once relayed as Bluetooth records:
    the same readings (seq, value, unit, sample, status), each at the meter's instant with the
    meter's clock error taken out, a meal only where the context came along."""
    from devices.fleet import Link, fleet_messages, portfolio
    from devices.wire.decoding import decode_readings
    from devices.wire.topics import topic_device

    def readings(share: float) -> dict[tuple[str, int], Any]:
        people = portfolio(60, 8, datetime(2026, 3, 2).date(), gateway_share=share)
        out = {}
        for m in fleet_messages(people, 8, 20):
            device, kind = topic_device(m.topic) or ("", "")
            if kind == "readings":
                for r in decode_readings(m.payload, device, m.at).readings:
                    out[(r.device_id, r.seq)] = r
        return out

    relayed_people = portfolio(60, 8, datetime(2026, 3, 2).date(), gateway_share=1.0)
    relayed_ids = {p.device_id for p in relayed_people if p.link == Link.GLS_GATEWAY}
    assert {p.unit for p in relayed_people if p.device_id in relayed_ids} == set(Unit)
    own, relayed = readings(0.0), readings(1.0)
    assert own.keys() == relayed.keys()
    meals_lost = 0
    for key, mine in own.items():
        theirs = relayed[key]
        if key[0] not in relayed_ids:
            assert theirs == mine
            continue
        assert (theirs.unit, theirs.sample, theirs.status, theirs.source) == (
            mine.unit, mine.sample, mine.status, mine.source)
        assert theirs.value == pytest.approx(mine.value)
        # A v1 record keeps the meter's clock error (tens of seconds, drifting); the gateway's
        # reading of the meter clock takes it out.
        assert abs((theirs.measured_at - mine.measured_at).total_seconds()) < 300
        assert theirs.meal in (mine.meal, Meal.UNKNOWN)
        meals_lost += theirs.meal != mine.meal
    assert 0 < meals_lost < len(own)


def test_gateway_meters_reach_the_database_through_the_broker(stack: Any) -> None:
    """Bluetooth meters' records, relayed by gateways through the real broker and the ingest
    worker, stored exactly as the decoder reads them and refused by nobody."""
    import psycopg

    from devices.fleet import Link
    from tests.ingest_helpers import (
        distinct_readings,
        history,
        provision,
        publish,
        start_worker,
        wait_for_rows,
    )

    people = provision(stack, 8, seed=31, gateway_share=1.0)
    messages = history(people, 31, 10)
    relayed = {p.device_id for p in people if p.link == Link.GLS_GATEWAY}
    assert relayed and all((b'"gls"' in m.payload) == (m.topic.split("/")[3] in relayed)
                           for m in messages if m.topic.endswith("readings"))
    expected = distinct_readings(messages)
    worker = start_worker(stack)
    try:
        publish(stack, messages)
        assert wait_for_rows(stack.db_url, len(expected)) == len(expected)
    finally:
        worker.stop()
    with psycopg.connect(stack.db_url) as conn:
        rows = {(str(d), int(s), t) for d, s, t in conn.execute(
            "select device_id, seq, measured_at from readings")}
        units = {u for (u,) in conn.execute("select distinct unit from readings")}
        rejects = conn.execute("select count(*) from rejected_messages").fetchone()
    assert rows == expected and rejects == (0,)
    assert units == {p.unit for p in people}
