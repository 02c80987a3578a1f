"""ingest/store.py against the real database: new readings take the COPY path, a batch holding
a re-sent reading the ON CONFLICT path, and both paths count and refuse alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from devices.wire import topics
from devices.wire.messages import ReadingsMessage, Record
from ingest.batch import Received, decode
from ingest.store import WriteResult, newest_seq, prepare, write_batch

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
            "select device_id, seq, glucose_value(value_digits, value_exponent) from readings "
            "order by device_id, seq")]


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


def _acked(db_url: str, device: str, seqs: list[int], minute: int) -> WriteResult:
    """Write readings of `device` with these seqs, measured one minute apart from `minute`
    (later seq, later time), acknowledgements on."""
    messages = [Received(topics.readings_topic(device), ReadingsMessage(device, NOW, (Record(
        seq=seq, measured_at=NOW - timedelta(days=1) + timedelta(minutes=minute + k),
        value=6.0),)).encode(), k + 1, 1, NOW) for k, seq in enumerate(seqs)]
    with psycopg.connect(db_url) as conn:
        prepare(conn)
        result = write_batch(conn, decode(messages, trust_sent_at=False), acks=True)
        conn.commit()
    return result


def test_acks_say_what_is_stored_across_batches_and_the_wrap(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("insert into devices (device_id) values ('GM-A'), ('GM-B')")
        conn.commit()
    assert _acked(db_url, "GM-A", [10, 11, 12], 0).acks == {"GM-A": ((10, 12),)}
    # Out of order and with a gap: ranges, joined to what was stored before.
    assert _acked(db_url, "GM-A", [15, 13], 3).acks == {"GM-A": ((10, 13), (15, 15))}
    # A re-sent reading is settled too, and the other meter's acks are its own.
    assert _acked(db_url, "GM-A", [14, 15], 4).acks == {"GM-A": ((10, 15),)}
    assert _acked(db_url, "GM-B", [7], 0).acks == {"GM-B": ((7, 7),)}
    # A reading far behind the newest is acknowledged while a session can still hold it
    # (the window was 4,096 numbers: a CGM's 30-day backlog never completed)...
    assert _acked(db_url, "GM-A", [10_000], 10).acks == {"GM-A": ((10, 15), (10_000, 10_000))}
    assert _acked(db_url, "GM-A", [30_000], 11).acks == {
        "GM-A": ((10, 15), (10_000, 10_000), (30_000, 30_000))}
    # ...and drops out once it is more than the window (half the circle) behind.
    assert _acked(db_url, "GM-A", [50_000], 12).acks == {
        "GM-A": ((30_000, 30_000), (50_000, 50_000))}
    # Across the wrap of uint16 the newest is 1, not 65535: an old 10 is never taken for a
    # reading the meter will number 10 after the wrap.
    assert _acked(db_url, "GM-A", [65534, 65535, 0, 1], 20).acks == {
        "GM-A": ((0, 1), (50_000, 50_000), (65534, 65535))}
    assert _acked(db_url, "GM-A", [2, 3], 30).acks == {
        "GM-A": ((0, 3), (50_000, 50_000), (65534, 65535))}
    assert _acked(db_url, "GM-A", [], 0).acks == {}
    assert newest_seq({65534, 65535, 0, 1}) == 1 and newest_seq({5, 3, 4}) == 5


def test_an_ack_says_how_far_back_it_speaks_and_reads_older_acks() -> None:
    from devices.wire.messages import Ack
    from kernel.sequence import ACK_WINDOW, LEGACY_ACK_WINDOW

    ack = Ack.decode(Ack("GM-A", NOW, ((3, 5),)).encode())
    assert ack.window == ACK_WINDOW and ack.stored == ((3, 5),)
    older = b'{"device_id": "GM-A", "sent_at": "2026-03-02T07:31:06+00:00", "stored": [[3, 5]]}'
    assert Ack.decode(older).window == LEGACY_ACK_WINDOW
