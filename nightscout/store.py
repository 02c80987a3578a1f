"""The Nightscout API's database side. Uploaded entries are stored by ingest's own store
(ingest/store.py write_batch): the same COPY, the same idempotent identity, the same
rejected_messages and the same alert_inbox row with its NOTIFY, so the alert service judges
them as it judges MQTT readings. The caller commits; the API answers only after the commit."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import orjson
import psycopg

from devices.wire.decoding import RejectReason
from ingest.store import (
    REJECT_PAYLOAD_CAP,
    STATUS_SQL,
    Batch,
    Origin,
    Rejection,
    StatusUpdate,
    content,
    write_batch,
)
from nightscout import credentials
from nightscout.mapping import (
    ENTRY_SEQ,
    EPOCH,
    Accepted,
    Entry,
    Ignored,
    SensorError,
    StoredEntry,
    map_entry,
)

Conn = psycopg.Connection[Any]
ENTRIES_TOPIC = "nightscout/entries"  # rejected_messages.topic of a refused entry, "#index" added
MAX_BATTERY = 100


@dataclass(frozen=True)
class Tenant:
    """Whose data a request reads and writes: decided by its credentials, nothing else."""

    policy_id: str
    device_id: str
    generation: int


_TENANT = "select policy_id, device_id, generation from nightscout_uploaders "


def tenant_by_secret(conn: Conn, sent_hash: str) -> Tenant | None:
    """The tenant whose secret's SHA-1 or SHA-512 hex is `sent_hash`."""
    k = credentials.key(sent_hash)
    row = conn.execute(_TENANT + "where secret_sha1_key = %s or secret_sha512_key = %s",
                       (k, k)).fetchone()
    return Tenant(str(row[0]), str(row[1]), int(str(row[2]))) if row else None


def tenant_by_token(conn: Conn, token: str) -> Tenant | None:
    row = conn.execute(_TENANT + "where token_key = %s", (credentials.token_key(token),)
                       ).fetchone()
    return Tenant(str(row[0]), str(row[1]), int(str(row[2]))) if row else None


def tenant_by_policy(conn: Conn, policy_id: str, generation: int) -> Tenant | None:
    """The tenant a JWT names, while its credentials are the ones it was issued for."""
    row = conn.execute(_TENANT + "where policy_id = %s and generation = %s",
                       (policy_id, generation)).fetchone()
    return Tenant(str(row[0]), str(row[1]), int(str(row[2]))) if row else None


# ---------------------------------------------------------------- entries in


@dataclass
class EntriesResult:
    stored: int = 0
    duplicates: int = 0
    sensor_errors: int = 0
    ignored: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)  # index, reason, detail
    accepted: list[Accepted] = field(default_factory=list)

    def answer(self) -> dict[str, Any]:
        return {"stored": self.stored, "duplicates": self.duplicates,
                "sensor_errors": self.sensor_errors, "ignored": self.ignored,
                "rejected": self.rejected}


def _payload(entry: Any) -> bytes:
    """A refused entry as it is kept: the fields we read, or the document as sent."""
    if isinstance(entry, Entry):
        return msgspec.json.encode(entry)[:REJECT_PAYLOAD_CAP]
    return orjson.dumps(entry)[:REJECT_PAYLOAD_CAP]


def _index(topic: str) -> int | None:
    head, _, index = topic.rpartition("#")
    return int(index) if head and index.isdigit() else None


# Arrays as binary parameters (%b): psycopg quotes every element of a text-format array with a
# regular expression, which cost 1.5 ms a column of 288 entries (measured).
ENTRY_EXTRAS_SQL = """
insert into nightscout_entries (device_id, seq, measured_at, direction, app_device)
select * from unnest(%b::text[], %b::int4[], %b::timestamptz[], %b::text[], %b::text[])
on conflict do nothing
"""
SENSOR_ERRORS_SQL = """
insert into sensor_errors (device_id, measured_at, code, meaning, received_at)
select * from unnest(%b::text[], %b::timestamptz[], %b::int4[], %b::text[], %b::timestamptz[])
on conflict do nothing
"""


@dataclass
class Upload:
    """One request's entries (mapping.decode_entries), to be written alone or in a group.
    `body`: the upload as sent, kept (capped) with a stored reading's conflicting copy, as
    ingest keeps a message's payload; each upload's own object, so its rejections are found."""

    tenant: Tenant
    entries: list[Any]
    received_at: datetime
    topic: str = ENTRIES_TOPIC
    body: bytes = b""


@dataclass
class _Mapped:
    result: EntriesResult
    kept: bytes  # the payload of its readings' origins
    readings: int = 0  # readings of this upload in the batch (new to it)
    refusals: list[Rejection] = field(default_factory=list)
    errors: list[SensorError] = field(default_factory=list)


def _map_upload(u: Upload, batch: Batch, seen: dict[tuple[str, int, datetime], int],
                extras: list[tuple[str, Accepted]]) -> _Mapped:
    """Add an upload's readings to `batch`; its refusals and sensor errors aside."""
    kept = u.body[:REJECT_PAYLOAD_CAP]
    out = _Mapped(EntriesResult(), kept)
    device = u.tenant.device_id
    for i, entry in enumerate(u.entries):
        mapped = map_entry(entry, i, device, u.received_at)
        if isinstance(mapped, Accepted):
            reading = mapped.reading
            k = (device, reading.seq, reading.measured_at)
            first = seen.get(k)
            if first is None:
                seen[k] = len(batch.readings)
                batch.readings.append(reading)
                batch.origins.append(Origin(f"{u.topic}#{i}", kept))
                extras.append((device, mapped))
                out.result.accepted.append(mapped)
                out.readings += 1
            elif content(batch.readings[first]) == content(reading):
                out.result.duplicates += 1
            else:
                out.refusals.append(Rejection(
                    f"{u.topic}#{i}", device, RejectReason.CONFLICTING_DUPLICATE,
                    f"$[{i}]: an entry uploaded with it has the same time and type and "
                    "another value", _payload(entry), u.received_at))
        elif isinstance(mapped, SensorError):
            out.errors.append(mapped)
        elif isinstance(mapped, Ignored):
            out.result.ignored += 1
        else:
            out.refusals.append(Rejection(f"{u.topic}#{i}", device, mapped.reason,
                                          mapped.detail, _payload(entry), u.received_at))
    if out.readings:
        batch.meters.add(device)
    return out


def _answer(rejections: list[Rejection]) -> list[dict[str, Any]]:
    return [{"index": _index(r.topic), "reason": str(r.reason), "detail": r.detail}
            for r in rejections]


def store_uploads(conn: Conn, uploads: list[Upload], merge: bool = True
                  ) -> list[EntriesResult] | None:
    """Map, validate and write uploads in one transaction (the caller's): each bad entry is
    refused alone (in its upload's result and in rejected_messages), the rest stored once.

    A batch holding a reading stored before takes ingest's slow path, which counts what it
    stored for the whole batch only: with `merge` false that returns None, and the caller
    rolls back and writes the uploads one by one."""
    batch = Batch()
    seen: dict[tuple[str, int, datetime], int] = {}
    extras: list[tuple[str, Accepted]] = []
    mapped = [_map_upload(u, batch, seen, extras) for u in uploads]
    for m in mapped:
        batch.rejections += m.refusals
    written = write_batch(conn, batch)
    if written.merged and not merge:
        return None
    refused = {r.device_id for r in written.rejections
               if r.reason == RejectReason.UNKNOWN_DEVICE}
    for u, m in zip(uploads, mapped, strict=True):
        mine = {id(r) for r in m.refusals}
        m.result.rejected = _answer([r for r in written.rejections
                                     if id(r) in mine or r.payload is m.kept])
        ok = u.tenant.device_id not in refused
        if len(uploads) == 1:
            m.result.stored = written.stored
            m.result.duplicates += written.duplicates
        elif ok:
            m.result.stored = m.readings  # the fast path stored every reading of the batch
        m.result.sensor_errors = len(m.errors) if ok else 0
        if not ok:
            m.result.accepted = []
    fresh = [(d, a) for d, a in extras if d not in refused]
    if fresh:
        conn.execute(ENTRY_EXTRAS_SQL, (
            [d for d, _ in fresh], [a.reading.seq for _, a in fresh],
            [a.reading.measured_at for _, a in fresh], [a.direction for _, a in fresh],
            [a.app_device for _, a in fresh]))
    errors = [(u, e) for u, m in zip(uploads, mapped, strict=True) for e in m.errors
              if u.tenant.device_id not in refused]
    if errors:
        conn.execute(SENSOR_ERRORS_SQL, (
            [u.tenant.device_id for u, _ in errors], [e.measured_at for _, e in errors],
            [e.code for _, e in errors], [e.meaning for _, e in errors],
            [u.received_at for u, _ in errors]))
    changed = sorted({u.tenant.policy_id for u, m in zip(uploads, mapped, strict=True)
                      if m.result.stored})
    if changed:
        conn.execute("update nightscout_uploaders set entries_modified_at = now() "
                     "where policy_id = any(%s)", (changed,))
    return [m.result for m in mapped]


def record_unreadable(conn: Conn, tenant: Tenant, body: bytes, reason: str, detail: str,
                      received_at: datetime, topic: str = ENTRIES_TOPIC) -> None:
    """An upload that is no JSON (or no list of entries) at all, kept for operations."""
    conn.execute("insert into rejected_messages (received_at, topic, device_id, reason, detail, "
                 "payload, payload_size) values (%s, %s, %s, %s, %s, %s, %s)",
                 (received_at, topic, tenant.device_id, reason, detail[:2000],
                  body[:REJECT_PAYLOAD_CAP], len(body)))


# ---------------------------------------------------------------- entries out


_ENTRY_COLUMNS = """
select r.device_id, r.seq, r.measured_at, r.utc_offset_min,
       glucose_value(r.value_digits, r.value_exponent), r.ingested_at, e.direction, e.app_device
from readings r left join nightscout_entries e using (device_id, seq, measured_at)
"""


def _stored(rows: list[tuple[Any, ...]]) -> list[StoredEntry]:
    return [StoredEntry(str(d), int(s), m, int(o), float(v), i, dr, ad)
            for d, s, m, o, v, i, dr, ad in rows]


def read_entries(conn: Conn, tenant: Tenant, count: int, since: datetime | None = None,
                 until: datetime | None = None, kind: str | None = None) -> list[StoredEntry]:
    """The tenant's entries, newest first."""
    seq = ENTRY_SEQ.get(kind) if kind else None
    rows = conn.execute(
        _ENTRY_COLUMNS + "where r.device_id = %(d)s and (%(seq)s::int is null or r.seq = %(seq)s)"
        " and r.measured_at >= coalesce(%(since)s, '-infinity'::timestamptz)"
        " and r.measured_at <= coalesce(%(until)s, 'infinity'::timestamptz)"
        " order by r.measured_at desc, r.seq limit %(n)s",
        {"d": tenant.device_id, "seq": seq, "since": since, "until": until, "n": count}
    ).fetchall()
    return _stored(rows)


def entries_modified_since(conn: Conn, tenant: Tenant, since_ms: int, limit: int
                           ) -> list[StoredEntry]:
    """API v3 history: entries stored after `since_ms` (their srvModified is the storing
    transaction's time in whole ms, so `>= since + 1 ms` misses none and repeats none)."""
    after = EPOCH + timedelta(milliseconds=since_ms + 1)
    rows = conn.execute(
        _ENTRY_COLUMNS + "where r.device_id = %s and r.ingested_at >= %s "
        "order by r.ingested_at, r.measured_at, r.seq limit %s",
        (tenant.device_id, after, limit)).fetchall()
    return _stored(rows)


def last_modified(conn: Conn, tenant: Tenant) -> dict[str, int]:
    row = conn.execute("select entries_modified_at, treatments_modified_at, "
                       "devicestatus_modified_at from nightscout_uploaders where policy_id = %s",
                       (tenant.policy_id,)).fetchone()
    names = ("entries", "treatments", "devicestatus")
    if row is None:
        return dict.fromkeys(names, 0)
    return {n: (round(t.timestamp() * 1000) if t else 0) for n, t in zip(names, row, strict=True)}


# ---------------------------------------------------------------- treatments, device status


def _time(doc: dict[str, Any], fields: tuple[str, ...]) -> datetime | None:
    for name in fields:
        value = doc.get(name)
        if isinstance(value, str):
            try:
                ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                return EPOCH + timedelta(milliseconds=value)
            except OverflowError:
                continue
    return None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def _str(value: Any, cap: int = 2000) -> str | None:
    return value[:cap] if isinstance(value, str) else None


@dataclass
class DocsResult:
    stored: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)


TREATMENT_SQL = """
insert into nightscout_treatments (policy_id, treatment_key, created_at, event_type, carbs_g,
                                   insulin_u, notes, entered_by, doc)
values (%s, %s, %s, %s, %s, %s, %s, %s, %s)
on conflict (policy_id, treatment_key) do {action}
"""
_REPLACE = ("update set created_at = excluded.created_at, event_type = excluded.event_type, "
            "carbs_g = excluded.carbs_g, insulin_u = excluded.insulin_u, notes = excluded.notes, "
            "entered_by = excluded.entered_by, doc = excluded.doc, received_at = now()")


def treatment_key(doc: dict[str, Any], created_at: datetime) -> str:
    for name in ("identifier", "uuid", "_id"):
        if isinstance(doc.get(name), str) and doc[name]:
            return str(doc[name])[:128]
    basis = orjson.dumps([created_at.isoformat(), doc.get("eventType"), doc.get("carbs"),
                          doc.get("insulin")])
    return hashlib.sha1(basis).hexdigest()[:24]  # noqa: S324 - an id, not a secret


def store_treatments(conn: Conn, tenant: Tenant, docs: list[Any], replace: bool
                     ) -> DocsResult:
    """POST keeps the first copy of a treatment (by its app's id); PUT replaces it."""
    out = DocsResult()
    sql = TREATMENT_SQL.format(action=_REPLACE if replace else "nothing")
    rows = []
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict):
            out.rejected.append({"index": i, "reason": RejectReason.INVALID_RECORD,
                                 "detail": f"$[{i}]: must be an object"})
            continue
        at = _time(doc, ("created_at", "timestamp", "date", "mills"))
        if at is None:
            out.rejected.append({"index": i, "reason": RejectReason.INVALID_RECORD,
                                 "detail": f"$[{i}].created_at: needs a time"})
            continue
        key = treatment_key(doc, at)
        rows.append((tenant.policy_id, key, at, _str(doc.get("eventType"), 64),
                     _float(doc.get("carbs")), _float(doc.get("insulin")),
                     _str(doc.get("notes")), _str(doc.get("enteredBy"), 128),
                     orjson.dumps(doc).decode()))
        out.stored.append({**doc, "_id": key, "created_at": at.isoformat()})
    if rows:
        with conn.cursor() as cur:
            cur.executemany(sql, rows)
        conn.execute("update nightscout_uploaders set treatments_modified_at = now() "
                     "where policy_id = %s", (tenant.policy_id,))
    return out


def battery_of(doc: dict[str, Any]) -> int | None:
    """The uploader's battery, as xDrip+ (uploaderBattery) or AndroidAPS (uploader.battery)
    state it."""
    value = doc.get("uploaderBattery")
    uploader = doc.get("uploader")
    if value is None and isinstance(uploader, dict):
        value = uploader.get("battery")
    if isinstance(value, int | float) and not isinstance(value, bool) \
            and 0 <= value <= MAX_BATTERY:
        return int(value)
    return None


def store_devicestatus(conn: Conn, tenant: Tenant, docs: list[Any], received_at: datetime
                       ) -> DocsResult:
    """Kept as sent; the newest battery also goes to device_status, where the care team's
    sweep finds a low one (device_trouble)."""
    out = DocsResult()
    newest: tuple[datetime, int] | None = None
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict):
            out.rejected.append({"index": i, "reason": RejectReason.INVALID_RECORD,
                                 "detail": f"$[{i}]: must be an object"})
            continue
        at = _time(doc, ("created_at", "date", "mills")) or received_at
        battery = battery_of(doc)
        row = conn.execute(
            "insert into nightscout_devicestatus (policy_id, created_at, battery_pct, doc) "
            "values (%s, %s, %s, %s) returning id",
            (tenant.policy_id, at, battery, orjson.dumps(doc).decode())).fetchone()
        out.stored.append({**doc, "_id": f"{int(str(row[0])) if row else 0:024x}"})
        if battery is not None and (newest is None or at >= newest[0]):
            newest = (at, battery)
    if newest is not None:
        conn.execute(STATUS_SQL, StatusUpdate(tenant.device_id, "online", newest[1], None, None,
                                              min(newest[0], received_at)))
    if out.stored:
        conn.execute("update nightscout_uploaders set devicestatus_modified_at = now() "
                     "where policy_id = %s", (tenant.policy_id,))
    return out
