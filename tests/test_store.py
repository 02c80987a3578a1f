"""ingest/store.py against the real database: new readings take the COPY path, a batch holding
a re-sent reading the ON CONFLICT path, and both paths count and refuse alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from devices.wire import topics
from devices.wire.messages import ReadingsMessage, Record
from ingest.decode import Received, decode
from ingest.store import WriteResult, prepare, write_batch

NOW = datetime.now(UTC).replace(microsecond=0)


def _message(device: str, seq: int, value: float = 6.2) -> Received:
    payload = ReadingsMessage(device, NOW, (Record(
        seq=seq, measured_at=NOW - timedelta(minutes=seq), value=value),)).encode()
    return Received(topics.readings_topic(device), payload, seq + 1, 1, NOW)


def _write(db_url: str, messages: list[Received]) -> WriteResult:
    with psycopg.connect(db_url) as conn:
        prepare(conn)
        result = write_batch(conn, decode(messages, trust_sent_at=False))
        conn.commit()
    return result


def _stored(db_url: str) -> list[tuple[str, int, float]]:
    with psycopg.connect(db_url) as conn:
        return [(str(d), int(s), float(v)) for d, s, v in conn.execute(
            "select device_id, seq, value from readings order by device_id, seq")]


def _rejects(db_url: str) -> list[tuple[str, str]]:
    with psycopg.connect(db_url) as conn:
        return [(str(r), str(d)) for r, d in conn.execute(
            "select reason, device_id from rejected_messages order by id")]


def test_new_readings_are_copied_and_a_resent_batch_is_merged(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("insert into devices (device_id) values ('GM-A'), ('GM-B')")
    first = _write(db_url, [_message("GM-A", s) for s in range(5)])
    assert (first.stored, first.duplicates, first.merged) == (5, 0, False)

    # Two re-sends, one new reading and a copy of seq 0 that says something else.
    again = _write(db_url, [_message("GM-A", 1), _message("GM-A", 2), _message("GM-B", 1),
                            _message("GM-A", 0, value=9.9)])
    assert (again.stored, again.duplicates, again.merged) == (1, 2, True)
    assert again.rejected == {"conflicting_duplicate": 1}
    assert _stored(db_url) == [*[("GM-A", s, 6.2) for s in range(5)], ("GM-B", 1, 6.2)]
    assert _rejects(db_url) == [("conflicting_duplicate", "GM-A")]

    # A failed COPY leaves nothing behind: the next new batch is copied again.
    after = _write(db_url, [_message("GM-B", 2)])
    assert (after.stored, after.merged) == (1, False)


def test_a_revoked_meter_is_refused_on_either_path(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("insert into devices (device_id) values ('GM-A'), ('GM-B')")
    assert _write(db_url, [_message("GM-A", 1), _message("GM-B", 1)]).stored == 2
    with psycopg.connect(db_url) as conn:
        conn.execute("update devices set revoked_at = now() where device_id = 'GM-A'")

    copied = _write(db_url, [_message("GM-A", 2), _message("GM-B", 2)])
    assert (copied.stored, copied.merged, copied.rejected) == (1, False, {"unknown_device": 1})

    merged = _write(db_url, [_message("GM-B", 1), _message("GM-A", 3), _message("GM-B", 3)])
    assert (merged.stored, merged.duplicates, merged.merged) == (1, 1, True)
    assert merged.rejected == {"unknown_device": 1}

    assert _stored(db_url) == [("GM-A", 1, 6.2), ("GM-B", 1, 6.2), ("GM-B", 2, 6.2),
                               ("GM-B", 3, 6.2)]
    assert _rejects(db_url) == [("unknown_device", "GM-A")] * 2


def test_a_split_batch_is_merged_when_either_half_was() -> None:
    from ingest.worker import _combine

    halves = (WriteResult(3, 1, {"unknown_device": 1}, merged=True),
              WriteResult(2, 0, {"unknown_device": 2, "invalid_json": 1}))
    for a, b in (halves, halves[::-1]):
        assert _combine(a, b) == WriteResult(5, 1, {"unknown_device": 3, "invalid_json": 1},
                                             merged=True)
