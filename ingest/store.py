"""Writing one batch of decoded messages in one transaction. Set-based: new readings are
copied straight into readings; a batch holding a re-sent one goes through a staging table and
INSERT ... ON CONFLICT DO NOTHING on the readings' identity (device_id, seq, measured_at), so a
re-delivered message changes nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Any

import psycopg

from devices.wire.decoding import Reading, RejectReason

REJECT_PAYLOAD_CAP = 65_536  # bytes of a refused payload kept for review

# A decoded Reading is a row of readings: its fields are the columns, in order.
READING_COLUMNS = Reading._fields
# A reading's identity, and the content two copies of one identity must share; anything else
# (the receive time) may differ between a reading and its re-sent copy.
IDENTITY_COLUMNS = ("device_id", "seq", "measured_at")
CONTENT_COLUMNS = ("value", "unit", "meal", "sample", "source", "status")
identity = attrgetter(*IDENTITY_COLUMNS)
content = attrgetter(*CONTENT_COLUMNS)
_COLS = ", ".join(READING_COLUMNS)

READING_TYPES = ("text", "int4", "timestamptz", "int2", "timestamptz", "float8", "text", "float8",
                 "text", "text", "text", "int4")
STAGING_TYPES = ("int4", *READING_TYPES)
STAGING_DDL = f"""
create temp table if not exists ingest_staging (
    item integer not null,
    device_id text, seq integer, measured_at timestamptz, utc_offset_min smallint,
    received_at timestamptz, value double precision, unit text, value_mmol double precision,
    meal text, sample text, source text, status integer
) on commit delete rows;
-- {_COLS}
"""

# A meter revoked a moment ago is refused, whatever the worker's cache of known meters says: each
# batch asks which of its meters are revoked (a partial index keeps the revoked few) and writes
# none of their readings, on either path below.
REVOKED_AMONG_SQL = """
select device_id from devices where revoked_at is not null and device_id = any(%s)
"""

# A batch of new readings, the usual case, is copied straight into readings: the database does
# 40% less work per row than through staging and INSERT ... ON CONFLICT (10.5 vs 17.7 us per row
# on a hypertable, 9.3 vs 15.8 on a plain table, backend CPU, measured). A re-sent reading makes
# that COPY fail on the identity's unique index; the batch then takes the slow path below, from a
# savepoint in the same transaction.
COPY_READINGS_SQL = f"copy readings ({_COLS}) from stdin (format binary)"

# The slow path.
INSERT_SQL = f"""
insert into readings ({_COLS})
select {_COLS} from ingest_staging
on conflict ({", ".join(IDENTITY_COLUMNS)}) do nothing
"""

# Run only when some staged rows were not inserted (re-sends, mostly): which of them carry
# other content than the row already stored under their identity (conflicting duplicates).
# Rows this transaction just inserted match themselves and drop out. Skipping this join when
# every row went in halves the database's work per batch on a hypertable (measured).
CONFLICTS_SQL = f"""
select s.item, {", ".join(f"r.{c}" for c in CONTENT_COLUMNS)}
from ingest_staging s
join readings r using ({", ".join(IDENTITY_COLUMNS)})
where ({", ".join(f"r.{c}" for c in CONTENT_COLUMNS)})
      is distinct from ({", ".join(f"s.{c}" for c in CONTENT_COLUMNS)})
"""

STATUS_SQL = """
insert into device_status (device_id, state, battery_pct, firmware, clock_offset_s, sent_at,
                           updated_at)
select %s, %s, %s, %s, %s, %s, now()
where not exists (select 1 from devices where device_id = %s and revoked_at is not null)
on conflict (device_id) do update set
    state = excluded.state,
    battery_pct = coalesce(excluded.battery_pct, device_status.battery_pct),
    firmware = coalesce(excluded.firmware, device_status.firmware),
    clock_offset_s = coalesce(excluded.clock_offset_s, device_status.clock_offset_s),
    sent_at = excluded.sent_at, updated_at = now()
where device_status.sent_at is null or excluded.sent_at >= device_status.sent_at
"""


@dataclass(frozen=True)
class Rejection:
    topic: str
    device_id: str | None
    reason: str
    detail: str
    payload: bytes
    received_at: datetime


@dataclass
class Batch:
    """What a batch of messages came to, before it is written."""

    readings: list[Reading] = field(default_factory=list)
    reading_topics: list[str] = field(default_factory=list)
    reading_payloads: list[bytes] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    statuses: list[tuple[Any, ...]] = field(default_factory=list)
    duplicates: int = 0


@dataclass(frozen=True)
class WriteResult:
    stored: int
    duplicates: int
    rejected: dict[str, int]
    merged: bool = False  # held an already-stored reading, so took the slow path


def prepare(conn: psycopg.Connection[Any]) -> None:
    conn.execute(STAGING_DDL)
    conn.commit()


def _copy_readings(conn: psycopg.Connection[Any], readings: list[Reading],
                   items: list[int]) -> bool:
    """The fast path: COPY readings[items] straight into readings. False, with nothing written,
    when one of them is stored already."""
    with conn.cursor() as cur:
        cur.execute("savepoint copy_readings")
        try:
            with cur.copy(COPY_READINGS_SQL) as copy:
                copy.set_types(READING_TYPES)
                for i in items:
                    copy.write_row(readings[i])
        except psycopg.errors.UniqueViolation:
            cur.execute("rollback to savepoint copy_readings")
            return False
    return True


def _merge_readings(conn: psycopg.Connection[Any], readings: list[Reading], items: list[int]
                    ) -> tuple[int, list[tuple[Any, ...]]]:
    """The slow path, for readings[items] when some are re-sent: staging table, then INSERT ...
    ON CONFLICT DO NOTHING. Returns (stored, conflicting duplicates)."""
    conflicts: list[tuple[Any, ...]] = []
    with conn.cursor() as cur:
        with cur.copy(f"copy ingest_staging (item, {_COLS}) from stdin (format binary)") as copy:
            copy.set_types(STAGING_TYPES)
            for i in items:
                copy.write_row((i, *readings[i]))
        stored = cur.execute(INSERT_SQL).rowcount
        if stored < len(items):
            conflicts = cur.execute(CONFLICTS_SQL).fetchall()
    return stored, conflicts


def write_batch(conn: psycopg.Connection[Any], batch: Batch) -> WriteResult:
    """One transaction: readings, conflicting duplicates, rejections, statuses. Caller commits."""
    rejections = list(batch.rejections)
    stored = 0
    conflicts: list[tuple[Any, ...]] = []
    revoked: set[int] = set()
    merged = False
    if batch.readings:
        revoked_ids = {str(row[0]) for row in conn.execute(
            REVOKED_AMONG_SQL, ([*{r.device_id for r in batch.readings}],))}
        revoked = {i for i, r in enumerate(batch.readings) if r.device_id in revoked_ids}
        items = [i for i in range(len(batch.readings)) if i not in revoked]
        if _copy_readings(conn, batch.readings, items):
            stored = len(items)
        else:
            merged = True
            stored, conflicts = _merge_readings(conn, batch.readings, items)
        for item in sorted(revoked):
            r = batch.readings[item]
            rejections.append(Rejection(
                batch.reading_topics[item], r.device_id, RejectReason.UNKNOWN_DEVICE,
                f"device {r.device_id!r} was revoked", batch.reading_payloads[item],
                r.received_at))
        for item, value, unit, meal, sample, source, status in conflicts:
            r = batch.readings[item]
            rejections.append(Rejection(
                batch.reading_topics[item], r.device_id,
                RejectReason.CONFLICTING_DUPLICATE,
                f"seq {r.seq} at {r.measured_at.isoformat()} is stored as {value} {unit} "
                f"{meal}/{sample}/{source}/status {status}; this copy says {r.value} "
                f"{r.unit} {r.meal}/{r.sample}/{r.source}/status {r.status}",
                batch.reading_payloads[item], r.received_at))
    if rejections:
        with conn.cursor() as cur:
            cur.executemany(
                "insert into rejected_messages (received_at, topic, device_id, reason, detail, "
                "payload, payload_size) values (%s, %s, %s, %s, %s, %s, %s)",
                [(j.received_at, j.topic, j.device_id, str(j.reason), j.detail[:2000],
                  j.payload[:REJECT_PAYLOAD_CAP], len(j.payload)) for j in rejections])
    if batch.statuses:
        with conn.cursor() as cur:
            cur.executemany(STATUS_SQL, [(*status, status[0]) for status in batch.statuses])
    counts: dict[str, int] = {}
    for j in rejections:
        counts[str(j.reason)] = counts.get(str(j.reason), 0) + 1
    duplicates = (batch.duplicates + len(batch.readings) - stored - len(conflicts)
                  - len(revoked))
    return WriteResult(stored, duplicates, counts, merged)
