"""`glucover backup --out DIR` and `glucover restore --from DIR`: a logical backup of the
database that restores, checked table by table.

A backup is a directory: `glucover.dump` (pg_dump's custom format: every table, the schema,
the functions and grants) and `manifest.json` (per table its row count and an order-free
checksum of its rows, the backend, the group roles the grants name, the server's version).
Restoring into an empty database creates those roles when missing (without login: the
services' logins are made by `glucover migrate` from their passwords), runs pg_restore
(on TimescaleDB between the extension's timescaledb_pre_restore() and
timescaledb_post_restore(), as its documentation prescribes), then counts and checksums every
table again and fails unless each equals the manifest. Point-in-time recovery for production
(WAL archiving) is in docs/operations.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from glucover.config import Settings
from glucover.errors import UserError

DUMP = "glucover.dump"
MANIFEST = "manifest.json"
FORMAT = 1

# An order-free checksum of a table's rows: the sum of the first 60 bits of each row's md5 (as
# text), with the count beside it. Two tables with the same rows give the same figures
# whatever their physical order; a changed, missing or extra row changes them.
_CHECKSUM_SQL = ("select count(*), coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)"
                 "::bigint), 0)::text from {} t")


class BackupError(UserError):
    """A backup or restore that cannot go ahead; the message says what to do."""


@dataclass(frozen=True)
class TableFigures:
    rows: int
    checksum: str


@dataclass(frozen=True)
class Manifest:
    format: int
    created_at: str
    backend: str  # postgresql or timescaledb
    server_version: str
    roles: list[str]
    tables: dict[str, TableFigures]
    dump_sha256: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True) + "\n"

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        try:
            data = json.loads((directory / MANIFEST).read_text())
        except FileNotFoundError:
            raise BackupError(f"{directory}: no {MANIFEST}; is this a `glucover backup` "
                              "directory?") from None
        if data.get("format") != FORMAT:
            raise BackupError(f"{directory}: backup format {data.get('format')}, this glucover "
                              f"reads format {FORMAT}")
        data["tables"] = {k: TableFigures(**v) for k, v in data["tables"].items()}
        return cls(**data)


def _tool(name: str, settings: Settings) -> str:
    """pg_dump / pg_restore: beside GLUCOVER_PG_BIN's initdb, the newest Debian cluster's, or
    on PATH (the server's major version or newer)."""
    from glucover.servers import ServerError, postgres_bindir

    try:
        candidate = postgres_bindir() / name
        if candidate.exists():
            return str(candidate)
    except ServerError:
        pass
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} not found: `apt-get install postgresql-client` or set "
                          "GLUCOVER_PG_BIN")
    return found


def _run(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupError(f"{Path(args[0]).name} failed: {done.stderr.strip()[-2000:]}")


def table_figures(conn: psycopg.Connection[Any]) -> dict[str, TableFigures]:
    """Row count and checksum of every table of the public schema (a hypertable counts once,
    through its parent)."""
    names = [str(r[0]) for r in conn.execute(
        "select tablename from pg_tables where schemaname = 'public' order by tablename")]
    figures = {}
    for name in names:
        row = conn.execute(sql.SQL(_CHECKSUM_SQL).format(sql.Identifier(name))).fetchone()
        assert row is not None
        figures[name] = TableFigures(int(str(row[0])), str(row[1]))
    return figures


def _backend(conn: psycopg.Connection[Any]) -> str:
    found = conn.execute("select 1 from pg_extension where extname = 'timescaledb'").fetchone()
    return "timescaledb" if found else "postgresql"


def _grantee_roles(conn: psycopg.Connection[Any]) -> list[str]:
    """The roles the database's grants name, other than its owner and superusers."""
    rows = conn.execute(
        "select distinct grantee from information_schema.role_table_grants g "
        "join pg_roles r on r.rolname = g.grantee "
        "where g.table_schema = 'public' and not r.rolsuper and g.grantee <> current_user "
        "order by 1").fetchall()
    return [str(r[0]) for r in rows]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def backup(url: str, out: Path, settings: Settings) -> Manifest:
    """Dump the database at `url` into the directory `out` (made; it must be new or empty)."""
    if out.exists() and any(out.iterdir()):
        raise BackupError(f"{out} is not empty: give a new directory for the backup")
    out.mkdir(parents=True, exist_ok=True)
    with psycopg.connect(url) as conn:
        # The figures and the dump see one snapshot: the dump runs in this transaction's
        # exported snapshot.
        conn.execute("begin isolation level repeatable read read only")
        snapshot = conn.execute("select pg_export_snapshot()").fetchone()
        assert snapshot is not None
        _run([_tool("pg_dump", settings), "--format=custom", f"--snapshot={snapshot[0]}",
              f"--file={out / DUMP}", f"--dbname={url}"])
        manifest = Manifest(
            format=FORMAT, created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            backend=_backend(conn),
            server_version=str(conn.execute("show server_version").fetchone()[0]),  # type: ignore[index]
            roles=_grantee_roles(conn), tables=table_figures(conn),
            dump_sha256=_sha256(out / DUMP))
        conn.rollback()
    (out / MANIFEST).write_text(manifest.to_json())
    return manifest


def restore(url: str, source: Path, settings: Settings) -> dict[str, TableFigures]:
    """Restore the backup in `source` into the empty database at `url`; the figures of its
    tables, checked equal to the manifest's (BackupError naming the tables that differ)."""
    manifest = Manifest.read(source)
    dump = source / DUMP
    if not dump.exists() or _sha256(dump) != manifest.dump_sha256:
        raise BackupError(f"{dump} is missing or not the file the manifest describes")
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("select to_regclass('public.readings')").fetchone() != (None,):
            raise BackupError("the target database already holds glucover's tables: restore "
                              "into a new, empty database (createdb, then DATABASE_URL)")
        for role in manifest.roles:
            if not conn.execute("select 1 from pg_roles where rolname = %s",
                                (role,)).fetchone():
                conn.execute(sql.SQL("create role {} nologin").format(sql.Identifier(role)))
        timescale = manifest.backend == "timescaledb"
        if timescale:
            conn.execute("create extension if not exists timescaledb")
            conn.execute("select timescaledb_pre_restore()")
        try:
            _run([_tool("pg_restore", settings), "--no-owner", "--exit-on-error",
                  f"--dbname={url}", str(dump)])
        finally:
            if timescale:
                conn.execute("select timescaledb_post_restore()")
        figures = table_figures(conn)
    differ = sorted(name for name in manifest.tables.keys() | figures.keys()
                    if manifest.tables.get(name) != figures.get(name))
    if differ:
        raise BackupError(f"restored, but these tables differ from the backup: "
                          f"{', '.join(differ)}")
    return figures


def backup_cli(args: argparse.Namespace, settings: Settings) -> int:
    manifest = backup(settings.require_database_url(), Path(args.out), settings)
    rows = sum(t.rows for t in manifest.tables.values())
    print(f"backed up {len(manifest.tables)} tables ({rows:,} rows, {manifest.backend}) to "
          f"{args.out}")
    return 0


def restore_cli(args: argparse.Namespace, settings: Settings) -> int:
    figures = restore(settings.require_database_url(), Path(args.source), settings)
    rows = sum(t.rows for t in figures.values())
    print(f"restored {len(figures)} tables ({rows:,} rows), each equal to the backup's count "
          "and checksum; run `glucover migrate` to apply newer migrations and make the "
          "services' logins")
    return 0
