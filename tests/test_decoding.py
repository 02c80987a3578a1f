"""Ingest's decoding without a broker or database: every case of the bad-input corpus as its own
fast test (the same corpus runs end to end in tests/test_bad_input.py), and a property test that
the fast and the thorough record validators agree on any record."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.wire import decoding
from devices.wire.messages import RECORD_FIELDS
from devices.wire.topics import readings_topic
from ingest.batch import Received, decode
from kernel.vocabulary import Meal, Sample, Source, Status, Unit
from pricing.evaluator import EXCLUSION_REASONS, exclusion_codes
from pricing.ruleset import load_builtin
from tests.helpers import CORPUS

ME, OTHER = "meter-000001", "meter-000002"
# Reasons that need the database: the registry of meters, or a stored copy to conflict with.
NEEDS_DATABASE = {"unknown_device", "storage_error"}


def _decoded(case: dict[str, Any], now: datetime) -> tuple[list[str], pd.DataFrame]:
    from tests.helpers import case_payloads

    payloads = case_payloads(case, 0, ME, OTHER, now)
    batch = decode([Received(readings_topic(ME), p, i, 1, now) for i, p in enumerate(payloads)],
                   trust_sent_at=False)
    frame = pd.DataFrame([r._asdict() | {"value_mmol": r.value_mmol} for r in batch.readings])
    return [str(r.reason) for r in batch.rejections], frame


@pytest.mark.parametrize("case", CORPUS["cases"], ids=[c["name"] for c in CORPUS["cases"]])
def test_corpus_case_decodes_to_its_outcome(case: dict[str, Any]) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    reasons, stored = _decoded(case, now)
    expect = case["expect"]
    if expect.get("rejected") in NEEDS_DATABASE:
        pytest.skip("decided by the database: tests/test_bad_input.py")
    if "rejected" in expect:
        assert expect["rejected"] in reasons
    else:
        assert reasons == []
    if "stored" in expect:
        assert len(stored) > 0
        frame = stored.assign(measured_at=pd.to_datetime(stored["measured_at"], utc=True),
                              received_at=pd.to_datetime(stored["received_at"], utc=True))
        codes = exclusion_codes(frame, load_builtin("default"))
        assert {EXCLUSION_REASONS[c] for c in codes} == {expect["stored"]}
    else:
        assert stored.empty


def test_every_corpus_reason_is_a_reject_reason() -> None:
    known = {r.value for r in decoding.RejectReason}
    assert {c["expect"]["rejected"] for c in CORPUS["cases"] if "rejected" in c["expect"]} <= known


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                  max_size=3),
    max_leaves=6)


def _field(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(valid, valid, valid, json_values)  # mostly valid, sometimes anything


timestamps = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2040, 1, 1),
                          timezones=st.sampled_from([UTC, None]))
records = st.fixed_dictionaries({
    "seq": _field(st.integers(-5, 70_000)),
    "measured_at": _field(timestamps.map(lambda t: t.isoformat())
                          | st.sampled_from(["2026-01-02", "yesterday", "2026-13-01T00:00Z"])),
    "value": _field(st.floats(0.1, 700) | st.integers(1, 700)),
    "unit": _field(st.sampled_from([u.value for u in Unit] + ["mmol"])),
    "meal": _field(st.sampled_from([m.value for m in Meal])),
    "sample": _field(st.sampled_from([s.value for s in Sample])),
    "source": _field(st.sampled_from([s.value for s in Source])),
    "status": _field(st.lists(st.sampled_from([s.name for s in Status] + ["bogus"]),
                              max_size=3)),
}, optional={"extra": json_values})


@settings(max_examples=400, deadline=None)
@given(record=records, drop=st.sets(st.sampled_from(sorted(RECORD_FIELDS)), max_size=1))
def test_fast_and_thorough_validators_agree(record: dict[str, Any], drop: set[str]) -> None:
    raw = {k: v for k, v in record.items() if k not in drop}
    fast = decoding.check_fast(raw)
    verdict: decoding.WireError | tuple[Any, ...]
    try:
        verdict = decoding.check_thorough(raw, 0)
    except decoding.WireError as refused:
        verdict = refused
    if isinstance(verdict, decoding.WireError):
        assert fast is None, f"fast path accepted what the thorough check refuses: {verdict}"
        assert verdict.problems
        assert all(p.path.startswith("$.records[0]") for p in verdict.problems)
    else:
        assert fast == verdict


messages = st.fixed_dictionaries({
    "device_id": _field(st.sampled_from([ME, OTHER])),
    "sent_at": _field(timestamps.map(lambda t: t.isoformat())),
    "records": _field(st.lists(records, max_size=4)),
}, optional={"version": json_values, "extra": json_values})


def _outcome(decoded: decoding.Decoded | decoding.WireError) -> Any:
    if isinstance(decoded, decoding.WireError):
        return "refused", [(p.reason, p.path) for p in decoded.problems]
    return decoded.readings, [[(p.reason, p.path) for p in e.problems] for e in decoded.rejected]


@settings(max_examples=400, deadline=None)
@given(message=messages, trusted=st.booleans())
def test_typed_message_path_decodes_as_the_thorough_one(message: dict[str, Any],
                                                        trusted: bool) -> None:
    """A readings message the typed fast path (decode_valid) takes comes out exactly as the
    thorough path decodes it: the same readings, the same records refused for the same
    reasons; what the fast path declines, the thorough path refuses or finds a bad record in."""
    payload = json.dumps(message).encode()
    now = datetime(2026, 6, 1, tzinfo=UTC)
    fast = decoding.decode_valid(payload, ME, now, trusted)
    thorough: decoding.Decoded | decoding.WireError
    try:
        thorough = decoding.decode_thorough(payload, ME, now, trusted)
    except decoding.WireError as refused:
        thorough = refused
    if fast is not None:
        assert _outcome(fast) == _outcome(thorough)
    else:
        assert isinstance(thorough, decoding.WireError) or any(
            p.reason == decoding.RejectReason.INVALID_RECORD
            for e in thorough.rejected for p in e.problems), _outcome(thorough)


def _one_record(measured_at: str) -> bytes:
    return json.dumps({"device_id": ME, "sent_at": "2026-05-31T08:00:00+08:00", "records": [{
        "seq": 1, "measured_at": measured_at, "value": 5.5, "unit": "mmol/L", "meal": "fasting",
        "sample": "capillary_plasma", "source": "meter", "status": []}]}).encode()


@settings(max_examples=300, deadline=None)
@given(local=st.datetimes(min_value=datetime(2021, 1, 1), max_value=datetime(2026, 5, 1)),
       seconds=st.integers(-86_399, 86_399))
def test_a_reading_is_stored_in_utc_with_its_offset_in_whole_minutes(
        local: datetime, seconds: int) -> None:
    """Whatever offset a meter gives (seconds too, which Python's ISO times allow), the reading
    holds the instant in UTC and the offset's minutes rounded down, on both paths."""
    offset = timedelta(seconds=seconds)
    sent = local.replace(tzinfo=timezone(offset))
    now = datetime(2026, 6, 1, tzinfo=UTC)
    for decoded in (decoding.decode_valid(_one_record(sent.isoformat()), ME, now),
                    decoding.decode_thorough(_one_record(sent.isoformat()), ME, now)):
        assert decoded is not None and not decoded.rejected
        (reading,) = decoded.readings
        assert reading.measured_at == sent and reading.measured_at.tzinfo is UTC
        assert reading.utc_offset_min == offset // timedelta(minutes=1)


def test_offsets_past_the_remembered_ones_are_read_as_well() -> None:
    """Offsets' minutes are remembered by zone, up to a bound (an offset may carry seconds, so
    a sender could make any number of them): every one beyond it is still read right."""
    now = datetime(2026, 6, 1, tzinfo=UTC)
    for k in range(-1500, 1500, 2):  # 1,500 zones, more than the bound
        offset = timedelta(seconds=37 * k)
        sent = datetime(2026, 5, 1, 8, tzinfo=timezone(offset)).isoformat()
        decoded = decoding.decode_valid(_one_record(sent), ME, now)
        assert decoded is not None
        assert decoded.readings[0].utc_offset_min == offset // timedelta(minutes=1), sent


def test_typed_path_reads_repeated_keys_as_the_json_parser_does() -> None:
    """JSON lets a key repeat; both paths take the last value."""
    record = ('{"seq": 1, "seq": 7, "measured_at": "2026-05-31T08:00:00+08:00", "value": 5.5,'
              ' "unit": "mmol/L", "meal": "fasting", "sample": "capillary_plasma",'
              ' "source": "meter", "status": []}')
    payload = (f'{{"device_id": "{ME}", "sent_at": "2026-05-31T08:00:00+08:00",'
               f' "records": [{record}]}}').encode()
    now = datetime(2026, 6, 1, tzinfo=UTC)
    fast = decoding.decode_valid(payload, ME, now)
    assert fast is not None and [r.seq for r in fast.readings] == [7]
    assert _outcome(fast) == _outcome(decoding.decode_thorough(payload, ME, now))


def test_a_batch_keeps_one_of_each_reading_and_both_sides_of_a_seq_wrap() -> None:
    """Within one batch: a re-sent reading counts once, a different record under a stored
    identity is refused as a conflicting duplicate, and a seq the meter used again after its
    counter wrapped (another measured_at) is a reading of its own."""
    from devices.wire.messages import ReadingsMessage, Record

    at = datetime(2026, 5, 31, 8, tzinfo=UTC)
    later = datetime(2026, 5, 31, 9, tzinfo=UTC)
    first = ReadingsMessage(ME, at, (Record(7, at, 5.5), Record(8, at, 6.0)))
    resent = ReadingsMessage(ME, later, (Record(7, at, 5.5),))
    changed = ReadingsMessage(ME, later, (Record(8, at, 9.9),))
    wrapped = ReadingsMessage(ME, later, (Record(7, later, 4.4),))
    other = ReadingsMessage(OTHER, later, (Record(7, at, 5.5),))
    now = datetime(2026, 6, 1, tzinfo=UTC)
    batch = decode([Received(m.topic, m.encode(), i, 1, now)
                    for i, m in enumerate((first, resent, changed, wrapped, other))],
                   trust_sent_at=False)
    assert [(r.device_id, r.seq, r.value) for r in batch.readings] == [
        (ME, 7, 5.5), (ME, 8, 6.0), (ME, 7, 4.4), (OTHER, 7, 5.5)]
    assert batch.duplicates == 1
    assert [r.reason for r in batch.rejections] == [
        decoding.RejectReason.CONFLICTING_DUPLICATE]
    assert "6.0 vs 9.9" in batch.rejections[0].detail
