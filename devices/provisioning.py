"""Meter accounts: who may connect to the broker, and the portfolio records that bind meters to
policies. The database is the source of truth; the broker's password file is rebuilt from it.
"""

from __future__ import annotations

import argparse
import csv
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

import psycopg

from devices.fleet import Policyholder
from devices.wire import topics
from glucover import broker
from glucover.config import Settings
from glucover.db import connect
from glucover.errors import UserError
from kernel.vocabulary import NIGHTSCOUT_MODEL, DeviceKind
from pricing.ruleset import RULESET_OF_KIND
from privacy import consent


@dataclass(frozen=True)
class SyncResult:
    accounts: int
    reloaded: bool


def add_devices(conn: psycopg.Connection[tuple[object, ...]], device_ids: Iterable[str],
                secret: str | None, kind: DeviceKind = DeviceKind.BGM) -> int:
    """Create meters of one kind (bgm or cgm) that do not exist yet, each with its broker
    password hash made from the device secret; without the secret (the dashboard's sign-up
    holds none), without a hash: the next `sync_broker` by an operator gives them one."""
    rows = [(d, None if secret is None else broker.hash_password(broker.derive_password(secret, d)))
            for d in device_ids]
    existing = {str(r[0]) for r in conn.execute(
        "select device_id from devices where device_id = any(%s)", ([d for d, _ in rows],))}
    fresh = [r for r in rows if r[0] not in existing]
    with conn.cursor() as cur:
        cur.executemany("insert into devices (device_id, mqtt_password_hash, kind) values "
                        "(%s, %s, %s) on conflict (device_id) do nothing",
                        [(d, h, str(kind)) for d, h in fresh])
    return len(fresh)


def add_portfolio(conn: psycopg.Connection[tuple[object, ...]], people: list[Policyholder],
                  secret: str) -> int:
    """Policies, devices and bindings for simulated policyholders; idempotent."""
    for kind in DeviceKind:
        add_devices(conn, [p.device_id for p in people if p.kind == kind], secret, kind)
    with conn.cursor() as cur:
        cur.executemany(
            "insert into policies (policy_id, holder_name, birth_year, segment, base_sum_insured,"
            " timezone, start_date, ruleset_name) values (%s, %s, %s, %s, %s, %s, %s, %s)"
            " on conflict (policy_id) do nothing",
            [(p.policy_id, p.holder_name, p.birth_year, p.segment, p.base_sum_insured,
              p.timezone, p.start_date, RULESET_OF_KIND[p.kind]) for p in people])
        new = cur.rowcount
        cur.executemany(
            "insert into policy_devices (policy_id, device_id, bound_from) values (%s, %s, %s)"
            " on conflict do nothing",
            # Bound from two days early: the start date's local midnight may be the UTC day
            # before it.
            [(p.policy_id, p.device_id,
              datetime.combine(p.start_date - timedelta(days=2), time(), UTC)) for p in people])
    # Simulated policyholders consented to every purpose when their policy started
    # (docs/privacy.md "Existing and provisioned policies").
    consent.record_all(conn, [p.policy_id for p in people], actor="glucover provisioning",
                       channel="provisioning")
    return new


def sync_broker(conn: psycopg.Connection[tuple[object, ...]], settings: Settings) -> SyncResult:
    """Rewrite the broker's password and ACL files from the database and ask it to reload."""
    files = broker.BrokerFiles(settings.broker_dir)
    settings.broker_dir.mkdir(parents=True, exist_ok=True)
    waiting = [str(d) for (d,) in conn.execute(
        "select device_id from devices where revoked_at is null and mqtt_password_hash is null "
        "and model <> %s", (NIGHTSCOUT_MODEL,))]
    if waiting:  # meters enrolled where no device secret is held (the sign-up page)
        key = settings.key("device_secret")
        with conn.cursor() as cur:
            cur.executemany("update devices set mqtt_password_hash = %s where device_id = %s",
                            [(broker.hash_password(broker.derive_password(key, d)), d)
                             for d in waiting])
    devices = conn.execute("select device_id, mqtt_password_hash from devices "
                           "where revoked_at is null and mqtt_password_hash is not null "
                           "order by device_id").fetchall()
    entries = broker.service_entries(settings.secret(), settings.mqtt_passwords) + [
        (str(d), str(h)) for d, h in devices]
    count = broker.write_passwd(files.passwd, entries)
    broker.write_acl(files.acl, acl_text())
    return SyncResult(count, broker.signal_reload(files))


def revoke(conn: psycopg.Connection[tuple[object, ...]], device_id: str) -> None:
    row = conn.execute("update devices set revoked_at = now() where device_id = %s "
                       "and revoked_at is null returning device_id", (device_id,)).fetchone()
    if row is None:
        known = conn.execute("select revoked_at from devices where device_id = %s",
                             (device_id,)).fetchone()
        raise UserError(f"device {device_id!r} " + (
            "is already revoked" if known else "does not exist"))
    conn.execute("update policy_devices set bound_to = now() where device_id = %s "
                 "and (bound_to is null or bound_to > now())", (device_id,))


# ---------------------------------------------------------------- CLI


def provision_cli(args: argparse.Namespace, settings: Settings) -> int:
    if args.count < 1:
        raise UserError("--count must be at least 1")
    if args.kind not in set(DeviceKind):
        raise UserError(f"--kind must be one of {', '.join(DeviceKind)}, not {args.kind!r}")
    secret = settings.key("device_secret")
    with connect(settings.require_database_url()) as conn:
        taken = conn.execute("select count(*) from devices where device_id like %s",
                             (args.prefix + "-%",)).fetchone()
        first = int(str(taken[0])) + 1 if taken else 1
        ids = [f"{args.prefix}-{i:06d}" for i in range(first, first + args.count)]
        add_devices(conn, ids, secret, DeviceKind(args.kind))
        conn.commit()
        result = sync_broker(conn, settings)
    out = settings.home / "secrets" / f"devices-{datetime.now(UTC):%Y%m%dT%H%M%S.%f}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["device_id", "mqtt_username", "mqtt_password"])
        for device_id in ids:
            writer.writerow([device_id, device_id, broker.derive_password(secret, device_id)])
    print(f"provisioned {len(ids)} {args.kind} devices ({ids[0]} .. {ids[-1]}); credentials "
          f"in {out} (mode 0600); broker file holds {result.accounts} accounts"
          + ("" if result.reloaded else f"; reload the broker to apply ({settings.broker_dir})"))
    return 0


def revoke_cli(args: argparse.Namespace, settings: Settings) -> int:
    with connect(settings.require_database_url()) as conn:
        revoke(conn, args.device_id)
        conn.commit()
        result = sync_broker(conn, settings)
    print(f"revoked {args.device_id}; broker file holds {result.accounts} accounts"
          + ("" if result.reloaded else "; reload the broker to apply"))
    return 0


def sync_cli(args: argparse.Namespace, settings: Settings) -> int:
    with connect(settings.require_database_url()) as conn:
        result = sync_broker(conn, settings)
    print(f"wrote {settings.broker_dir}: {result.accounts} accounts"
          + (", broker reloaded" if result.reloaded else ""))
    return 0


def acl_text(load_generators: Iterable[str] = ()) -> str:
    """The ACL of a glucover broker: ingest reads readings and status and writes acks, the care
    service writes notices, each meter its own topics (devices.wire.topics.acl)."""
    return topics.acl((broker.INGEST_ACCOUNT,), load_generators, (broker.CARE_ACCOUNT,))
