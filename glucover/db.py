"""Database access: connections, the migration runner and backend detection.

The schema itself lives in glucover/migrations/*.sql; this module only applies it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from importlib import resources
from typing import Any

import psycopg
from psycopg import postgres, sql
from psycopg.adapt import Buffer, Dumper

from glucover.config import ConfigError, Settings
from kernel import glucose, sequence, units

MIGRATION_LOCK_KEY = 0x6C7563  # advisory lock: one migrator at a time
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(timescale|plain))?\.sql$")


class TextArray(list[str]):
    """A list of str sent as one text[] literal joined at C speed: psycopg adapts a plain list
    element by element, a tenth of a second per 100,000 policy ids, and a pricing run sends
    its chunk's ids a dozen times."""


class DateArray(list[date]):
    """A list of dates sent as one date[] literal (see TextArray)."""


def _array_literal(items: Sequence[str]) -> bytes:
    if not items:
        return b"{}"
    if "\\" in (every := "".join(items)) or '"' in every:  # escaped one by one only then
        items = [s.replace("\\", "\\\\").replace('"', '\\"') for s in items]
    return ('{"' + '","'.join(items) + '"}').encode()


class _TextArrayDumper(Dumper):
    oid = postgres.types["text"].array_oid

    def dump(self, obj: Any) -> Buffer:
        return _array_literal(obj)


class _DateArrayDumper(Dumper):
    oid = postgres.types["date"].array_oid

    def dump(self, obj: Any) -> Buffer:
        return ("{" + ",".join(map(date.isoformat, obj)) + "}").encode()


psycopg.adapters.register_dumper(TextArray, _TextArrayDumper)
psycopg.adapters.register_dumper(DateArray, _DateArrayDumper)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    variant: str | None  # None: every backend
    text: str


def connect(url: str, **kwargs: object) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(url, connect_timeout=10, **kwargs)  # type: ignore[arg-type]


def load_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("glucover.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], match[3], entry.read_text()))
    return sorted(found, key=lambda m: (m.version, m.variant or ""))


def timescale_available(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    row = conn.execute(
        "select 1 from pg_available_extensions where name = 'timescaledb'").fetchone()
    if not row:
        return False
    preload = conn.execute("select current_setting('shared_preload_libraries')").fetchone()
    return bool(preload and "timescaledb" in str(preload[0]))


def active_backend(conn: psycopg.Connection[tuple[object, ...]]) -> str:
    row = conn.execute("select backend from schema_info").fetchone()
    return str(row[0]) if row else "unmigrated"


@dataclass(frozen=True)
class MigrateResult:
    backend: str
    applied: list[str]


def migrate(url: str, settings: Settings) -> MigrateResult:
    """Apply every migration not applied yet; idempotent and safe to run concurrently."""
    with connect(url, autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            return _migrate_locked(conn, settings)
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))


def _migrate_locked(conn: psycopg.Connection[tuple[object, ...]],
                    settings: Settings) -> MigrateResult:
    conn.execute("""
        create table if not exists schema_migrations (
            version integer primary key, name text not null, variant text,
            applied_at timestamptz not null default now())""")
    conn.execute("""
        create table if not exists schema_info (
            singleton boolean primary key default true check (singleton),
            backend text not null)""")
    backend = active_backend(conn)
    if backend == "unmigrated":
        want_ts = settings.timescale != "off" and timescale_available(conn)
        if settings.timescale == "on" and not want_ts:
            raise ConfigError("GLUCOVER_TIMESCALE=on but the timescaledb extension is not "
                              "installed and preloaded on this server: install it and add it "
                              "to shared_preload_libraries, or set GLUCOVER_TIMESCALE=auto")
        if want_ts:
            conn.execute("create extension if not exists timescaledb")
        backend = "timescaledb" if want_ts else "postgresql"
        conn.execute("insert into schema_info (backend) values (%s)", (backend,))
    variant = "timescale" if backend == "timescaledb" else "plain"
    done = {int(str(r[0])) for r in conn.execute("select version from schema_migrations")}
    applied = []
    for m in load_migrations():
        if m.version in done or (m.variant and m.variant != variant):
            continue
        text = _fill(m.text, backend, settings)
        with conn.transaction():
            conn.execute(text.encode())
            conn.execute("insert into schema_migrations (version, name, variant) values "
                         "(%s, %s, %s)", (m.version, m.name, m.variant))
        for statement in _AFTER_COMMIT.findall(text):  # what cannot run in a transaction
            execute_when_free(conn, statement)
        applied.append(f"{m.version:04d}_{m.name}" + (f".{m.variant}" if m.variant else ""))
    return MigrateResult(backend, applied)


# The two spellings of what differs between the backends, for a migration written once for both.
_SPELLINGS = {
    "timescaledb": {
        "{day_bucket}": "time_bucket(interval '1 day', measured_at)",
        "{continuous_aggregate}": "with (timescaledb.continuous, "
                                  "timescaledb.materialized_only = false)",
    },
    "postgresql": {
        "{day_bucket}": "date_bin(interval '1 day', measured_at, "
                        "timestamptz '2000-01-01 00:00+00')",
        "{continuous_aggregate}": "",
    },
}


# The kernel's values a migration names by placeholder: SQL never writes one as a literal.
KERNEL_VALUES = {
    "{mgdl_per_mmol}": repr(units.MGDL_PER_MMOL),
    "{seq_modulo}": str(sequence.SEQ_MODULO),
    "{ack_window}": str(sequence.ACK_WINDOW),
    "{error_status_mask}": str(glucose.ERROR_STATUS_MASK),
    "{fingerstick_low_mmol}": repr(glucose.FINGERSTICK_RANGE_MMOL[0]),
    "{fingerstick_high_mmol}": repr(glucose.FINGERSTICK_RANGE_MMOL[1]),
}


# TimescaleDB refuses to refresh a continuous aggregate while another refresh of an overlapping
# window runs (SQLSTATE 55P03), where PostgreSQL would wait: its refresh policy's job, which the
# scheduler starts as soon as the policy exists, say. Such a statement is tried again.
REFRESH_WAIT_S = 300.0


def execute_when_free(conn: psycopg.Connection[Any], statement: str,
                      wait_s: float = REFRESH_WAIT_S) -> None:
    """Run a statement outside a transaction (an autocommit connection), trying again while
    TimescaleDB refuses it for a concurrent refresh, for up to `wait_s` seconds."""
    deadline = time.monotonic() + wait_s
    delay = 0.05
    while True:
        try:
            conn.execute(statement.encode())
            return
        except psycopg.errors.LockNotAvailable:
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


# A migration's line `--! after commit: STATEMENT` runs once the migration has committed, for
# what PostgreSQL or TimescaleDB refuse inside a transaction.
_AFTER_COMMIT = re.compile(r"^--! after commit: (.+)$", re.MULTILINE)


def _fill(text: str, backend: str, settings: Settings) -> str:
    """A migration's placeholders filled in for this backend and these settings."""
    if "{compress_after}" in text:
        text = text.replace("{compress_after}", _interval(settings.compress_after))
    for placeholder, value in KERNEL_VALUES.items():
        text = text.replace(placeholder, value)
    for placeholder, spelling in _SPELLINGS[backend].items():
        text = text.replace(placeholder, spelling)
    return text


def _interval(text: str) -> str:
    if not re.fullmatch(r"\d+\s*(minutes?|hours?|days?|weeks?|months?)", text.strip()):
        raise ConfigError(f"GLUCOVER_COMPRESS_AFTER must look like '30 days', got {text!r}")
    return text.strip()


def ensure_login_role(admin_url: str, group: str, username: str, password: str) -> None:
    """A login user in one group role (used by `glucover up` to give each service its own)."""
    with connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_roles where rolname = %s", (username,)).fetchone()
        verb = "alter" if exists else "create"
        conn.execute(sql.SQL(verb + " role {} login password {}").format(
            sql.Identifier(username), sql.Literal(password)))
        conn.execute(sql.SQL("grant {} to {}").format(sql.Identifier(group),
                                                      sql.Identifier(username)))


def with_credentials(url: str, username: str, password: str) -> str:
    """The same server and database, another user."""
    from urllib.parse import quote, urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    netloc = f"{quote(username)}:{quote(password)}@{host}" + (
        f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


# Service logins made by `glucover migrate` when their password is in the environment
# (docker compose passes them from .env); `glucover up` derives its own.
def insert_version(conn: psycopg.Connection[Any], table: str, name: str, author: str,
                   notes: str, body: str) -> int:
    """Store `body` as the next version of `name` in a table of immutable versions (rulesets,
    alert_rules: name, version, author, notes, body); returns its number."""
    conn.execute("select pg_advisory_xact_lock(hashtext(%s || ':' || %s))", (table, name))
    row = conn.execute(sql.SQL("select coalesce(max(version), 0) + 1 from {} where name = %s"
                               ).format(sql.Identifier(table)), (name,)).fetchone()
    version = int(str(row[0])) if row else 1
    conn.execute(sql.SQL("insert into {} (name, version, author, notes, body) values "
                         "(%s, %s, %s, %s, %s)").format(sql.Identifier(table)),
                 (name, version, author, notes, body))
    return version


def read_version(conn: psycopg.Connection[Any], table: str, name: str,
                 version: int | None = None) -> tuple[str, int] | None:
    """(body, version) of `name` in a table of immutable versions: the latest, or the one
    named; None when there is none."""
    row = conn.execute(sql.SQL(
        "select body, version from {} where name = %s and (%s::int is null or version = %s) "
        "order by version desc limit 1").format(sql.Identifier(table)),
        (name, version, version)).fetchone()
    return None if row is None else (str(row[0]), int(str(row[1])))


SERVICE_LOGINS = {"ingest": "glucover_ingest", "pricing": "glucover_pricing",
                  "dashboard": "glucover_dashboard", "care": "glucover_care",
                  "api": "glucover_api"}


def login_name(service: str) -> str:
    return f"{SERVICE_LOGINS[service]}_svc"


def migrate_cli(args: object, settings: Settings) -> int:
    url = settings.require_database_url()
    result = migrate(url, settings)
    print(f"backend: {result.backend}")
    print("applied: " + (", ".join(result.applied) if result.applied else "nothing (up to date)"))
    for service, group in SERVICE_LOGINS.items():
        password = settings.db_passwords.get(service)
        if password:
            ensure_login_role(url, group, login_name(service), password)
            print(f"login {login_name(service)} in role {group}")
    return 0
