"""Writing one batch of decoded messages in one transaction. Set-based: new readings are
copied straight into readings; a batch holding a re-sent one goes through a staging table and
INSERT ... ON CONFLICT DO NOTHING on the readings' identity (device_id, seq, measured_at), so a
re-delivered message changes nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby, pairwise
from operator import attrgetter
from typing import Any, NamedTuple

import psycopg

from devices.wire.decoding import Reading, RejectReason
from devices.wire.values import value_of
from kernel.sequence import SEQ_MODULO

REJECT_PAYLOAD_CAP = 65_536  # bytes of a refused payload kept for review

# A decoded Reading is a row of readings: its fields are the columns, in order.
READING_COLUMNS = Reading._fields
# A reading's identity, and the content two copies of one identity must share; anything else
# (the receive time) may differ between a reading and its re-sent copy.
IDENTITY_COLUMNS = ("device_id", "seq", "measured_at")
CONTENT_COLUMNS = ("value_digits", "value_exponent", "unit", "meal", "sample", "source", "status")
content = attrgetter(*CONTENT_COLUMNS)
_DEVICE_ID, _SEQ = attrgetter("device_id"), attrgetter("seq")
_COLS = ", ".join(READING_COLUMNS)

READING_TYPES = ("text", "int4", "timestamptz", "int2", "timestamptz", "int8", "int2", "text",
                 "text", "text", "text", "int4")
STAGING_TYPES = ("int4", *READING_TYPES)
STAGING_DDL = f"""
create temp table if not exists ingest_staging (
    item integer not null,
    device_id text, seq integer, measured_at timestamptz, utc_offset_min smallint,
    received_at timestamptz, value_digits bigint, value_exponent smallint, unit text,
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

# End-to-end acknowledgements: the batch's stored sequence numbers joined, per meter, to those
# stored before, among the ACK_WINDOW up to the newest (0013_device_acks.sql). One statement per
# batch, one row per meter, returning what to publish on each meter's ack topic: its stored
# ranges as arrays of first and last numbers (loading multiranges into Python objects cost the
# worker 0.65 us per reading of a 20-record batch, more than the statement itself, measured).
ACKS_SQL = """
insert into device_acks as a (device_id, stored, newest_seq)
select device_id, stored::int4multirange * ack_window(newest_seq), newest_seq
from unnest(%s::text[], %s::text[], %s::int4[]) as b(device_id, stored, newest_seq)
on conflict (device_id) do update set
    newest_seq = newer_seq(excluded.newest_seq, a.newest_seq),
    stored = (a.stored + excluded.stored)
             * ack_window(newer_seq(excluded.newest_seq, a.newest_seq)),
    updated_at = now()
returning device_id, array(select lower(r) from unnest(stored) r),
          array(select upper(r) - 1 from unnest(stored) r)
"""

STATUS_SQL = """
insert into device_status (device_id, state, battery_pct, firmware, clock_offset_s, sent_at,
                           updated_at)
values (%s, %s, %s, %s, %s, %s, now())
on conflict (device_id) do update set
    state = excluded.state,
    battery_pct = coalesce(excluded.battery_pct, device_status.battery_pct),
    firmware = coalesce(excluded.firmware, device_status.firmware),
    clock_offset_s = coalesce(excluded.clock_offset_s, device_status.clock_offset_s),
    sent_at = excluded.sent_at, updated_at = now()
where device_status.sent_at is null or excluded.sent_at >= device_status.sent_at
"""


# A later report of a session wins; a session's start and expected end are the sensor's own.
SENSOR_SQL = """
insert into sensor_sessions (device_id, sensor_id, state, started_at, warmup_ends_at,
                             expected_end_at, ended_at, sent_at)
values (%s, %s, %s, %s, %s, %s, %s, %s)
on conflict (device_id, sensor_id) do update set
    state = excluded.state, warmup_ends_at = excluded.warmup_ends_at,
    expected_end_at = excluded.expected_end_at, ended_at = excluded.ended_at,
    sent_at = excluded.sent_at
where excluded.sent_at >= sensor_sessions.sent_at
"""


# The care team's alert evaluator learns of stored readings from this (0019_care_alerts.sql):
# one row per transaction that stored readings, written last before the commit, and a wake-up
# delivered when it commits.
ALERT_INBOX_SQL = "insert into alert_inbox default values; notify glucover_readings"


@dataclass(frozen=True)
class Rejection:
    topic: str
    device_id: str | None
    reason: str
    detail: str
    payload: bytes
    received_at: datetime


class Origin(NamedTuple):
    """The message a reading came in (for a rejection's record): one per message, shared by
    its readings."""

    topic: str
    payload: bytes


class SensorUpdate(NamedTuple):
    """A CGM's sensor session from its status message, as sensor_sessions stores it."""

    device_id: str
    sensor_id: str
    state: str
    started_at: datetime
    warmup_ends_at: datetime
    expected_end_at: datetime
    ended_at: datetime | None
    sent_at: datetime


class StatusUpdate(NamedTuple):
    """A meter's status message, as device_status stores it."""

    device_id: str
    state: str
    battery_pct: int | None
    firmware: str | None
    clock_offset_s: float | None
    sent_at: datetime


@dataclass
class Batch:
    """What a batch of messages came to, before it is written."""

    # The readings to store, in arrival order, and origins[i] the message readings[i] came in
    # (two lists, not a tuple per reading: ingest adds hundreds of thousands a second).
    readings: list[Reading] = field(default_factory=list)
    origins: list[Origin] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    duplicates: int = 0
    sensors: list[SensorUpdate] = field(default_factory=list)
    # The meters whose readings or statuses are in the batch, kept as they are added (a set
    # built from the readings cost a tenth of a microsecond per reading, twice a batch).
    meters: set[str] = field(default_factory=set)

    def device_ids(self) -> set[str]:
        return self.meters | {s.device_id for s in self.statuses}

    def refuse_devices(self, refused: set[str], why: str) -> None:
        """Drop the readings and statuses of `refused` meters, recording each reading as an
        unknown_device rejection."""
        if not refused:
            return
        pairs = list(zip(self.readings, self.origins, strict=True))
        self.rejections += [Rejection(
            o.topic, r.device_id, RejectReason.UNKNOWN_DEVICE, f"device {r.device_id!r} {why}",
            o.payload, r.received_at) for r, o in pairs if r.device_id in refused]
        kept = [(r, o) for r, o in pairs if r.device_id not in refused]
        self.readings = [r for r, _ in kept]
        self.origins = [o for _, o in kept]
        self.meters -= refused
        self.statuses = [s for s in self.statuses if s.device_id not in refused]
        self.sensors = [s for s in self.sensors if s.device_id not in refused]

    def copy(self) -> Batch:
        return Batch(list(self.readings), list(self.origins), list(self.rejections),
                     list(self.statuses), self.duplicates, list(self.sensors), set(self.meters))


@dataclass(frozen=True)
class WriteResult:
    stored: int
    duplicates: int
    rejected: dict[str, int]
    merged: bool = False  # held an already-stored reading, so took the slow path
    # Per meter, its stored sequence numbers as inclusive ranges, to publish once committed.
    acks: dict[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    # Every record refused, as written to rejected_messages (the Nightscout API answers each).
    rejections: tuple[Rejection, ...] = ()


def prepare(conn: psycopg.Connection[Any]) -> None:
    conn.execute(STAGING_DDL)
    conn.commit()


def _copy_readings(conn: psycopg.Connection[Any], readings: list[Reading]) -> bool:
    """The fast path: COPY the readings straight into the table. False, with nothing
    written, when one of them is stored already."""
    with conn.cursor() as cur:
        cur.execute("savepoint copy_readings")
        try:
            with cur.copy(COPY_READINGS_SQL) as copy:
                copy.set_types(READING_TYPES)
                for reading in readings:
                    copy.write_row(reading)
        except psycopg.errors.UniqueViolation:
            cur.execute("rollback to savepoint copy_readings")
            return False
    return True


def _merge_readings(conn: psycopg.Connection[Any], readings: list[Reading]
                    ) -> tuple[int, list[tuple[Any, ...]]]:
    """The slow path, when some readings are re-sent: staging table, then INSERT ... ON
    CONFLICT DO NOTHING. Returns (stored, conflicting duplicates as (item index, stored
    content...))."""
    conflicts: list[tuple[Any, ...]] = []
    with conn.cursor() as cur:
        with cur.copy(f"copy ingest_staging (item, {_COLS}) from stdin (format binary)") as copy:
            copy.set_types(STAGING_TYPES)
            for i, reading in enumerate(readings):
                copy.write_row((i, *reading))
        stored = cur.execute(INSERT_SQL).rowcount
        if stored < len(readings):
            conflicts = cur.execute(CONFLICTS_SQL).fetchall()
    return stored, conflicts


def write_batch(conn: psycopg.Connection[Any], batch: Batch,
                known: set[str] | None = None, acks: bool = False) -> WriteResult:
    """One transaction: readings, conflicting duplicates, rejections, statuses. Caller commits.

    The one check of the batch's meters: those not in `known` (the worker's cache of
    provisioned meters, when it has one) and those revoked as of this transaction (a revocation
    counts from the moment it commits) are refused, readings and statuses alike."""
    batch = batch.copy()
    ids = batch.device_ids()
    unknown = ids - known if known is not None else set()
    revoked = {str(row[0]) for row in conn.execute(REVOKED_AMONG_SQL, ([*(ids - unknown)],))}
    batch.refuse_devices(unknown, "is not provisioned or was revoked")
    batch.refuse_devices(revoked, "was revoked")
    rejections = batch.rejections
    stored = 0
    conflicts: list[tuple[Any, ...]] = []
    merged = False
    if batch.readings:
        if _copy_readings(conn, batch.readings):
            stored = len(batch.readings)
        else:
            merged = True
            stored, conflicts = _merge_readings(conn, batch.readings)
        for index, digits, exponent, unit, meal, sample, source, status in conflicts:
            r, (topic, payload) = batch.readings[index], batch.origins[index]
            rejections.append(Rejection(
                topic, r.device_id, RejectReason.CONFLICTING_DUPLICATE,
                f"seq {r.seq} at {r.measured_at.isoformat()} is stored as "
                f"{value_of(digits, exponent)} {unit} "
                f"{meal}/{sample}/{source}/status {status}; this copy says {r.value} "
                f"{r.unit} {r.meal}/{r.sample}/{r.source}/status {r.status}",
                payload, r.received_at))
    if rejections:
        with conn.cursor() as cur:
            cur.executemany(
                "insert into rejected_messages (received_at, topic, device_id, reason, detail, "
                "payload, payload_size) values (%s, %s, %s, %s, %s, %s, %s)",
                [(j.received_at, j.topic, j.device_id, str(j.reason), j.detail[:2000],
                  j.payload[:REJECT_PAYLOAD_CAP], len(j.payload)) for j in rejections])
    if batch.statuses:
        with conn.cursor() as cur:
            cur.executemany(STATUS_SQL, batch.statuses)
    if batch.sensors:
        with conn.cursor() as cur:
            cur.executemany(SENSOR_SQL, batch.sensors)
    counts: dict[str, int] = {}
    for j in rejections:
        counts[str(j.reason)] = counts.get(str(j.reason), 0) + 1
    duplicates = batch.duplicates + len(batch.readings) - stored - len(conflicts)
    acked = _acknowledge(conn, batch.readings) if acks and batch.readings else {}
    if stored:
        conn.execute(ALERT_INBOX_SQL)
    return WriteResult(stored, duplicates, counts, merged, acked, tuple(rejections))


def newest_seq(seqs: set[int]) -> int:
    """The sequence number furthest ahead on the uint16 circle: a meter numbers its records in
    order, so after 65535 comes 0 (its clock may say otherwise; the numbers do not lie). The
    same rule as the database's newer_seq (0013_device_acks.sql), over one batch."""
    newest = next(iter(seqs))
    for seq in seqs:
        if 0 < (seq - newest) % SEQ_MODULO < SEQ_MODULO // 2:
            newest = seq
    return newest


def _multirange(seqs: set[int]) -> str:
    """Sequence numbers as an int4multirange literal of inclusive runs: {[3,5],[9,9]}."""
    ordered = sorted(seqs)
    runs, start = [], ordered[0]
    for previous, current in pairwise(ordered):
        if current != previous + 1:
            runs.append(f"[{start},{previous}]")
            start = current
    runs.append(f"[{start},{ordered[-1]}]")
    return "{" + ",".join(runs) + "}"


def _acknowledge(conn: psycopg.Connection[Any], readings: list[Reading]
                 ) -> dict[str, tuple[tuple[int, int], ...]]:
    """Record the batch's readings (stored now, or stored before: re-sends and conflicting
    copies are settled too) in device_acks; each meter's stored ranges, inclusive."""
    seqs: dict[str, set[int]] = {}
    for device_id, run in groupby(readings, _DEVICE_ID):  # a message's readings are together
        seqs.setdefault(device_id, set()).update(map(_SEQ, run))
    devices = list(seqs)
    rows = conn.execute(ACKS_SQL, (
        devices, [_multirange(seqs[d]) for d in devices],
        [newest_seq(seqs[d]) for d in devices])).fetchall()
    return {device: tuple(zip(firsts, lasts, strict=True)) for device, firsts, lasts in rows}
