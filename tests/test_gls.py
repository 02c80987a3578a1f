"""Bluetooth Glucose Service records decoded from their bytes (devices/wire/gls.py), values
built by hand from the byte layouts, and decoded through to stored v1 readings."""

from __future__ import annotations

import base64
import struct
from datetime import UTC, datetime, timedelta

import pytest

from devices.wire import gls
from devices.wire.decoding import normalise_record
from devices.wire.vocabulary import MGDL_PER_MMOL, Meal, Sample, Unit

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
    first, second = out
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
