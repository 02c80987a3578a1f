"""`glucover doctor`: which backend and features are active, and can we reach everything."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from glucover.config import SERVICE_CREDENTIALS, Settings


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return all(c.ok for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {"healthy": self.healthy, **self.facts,
                "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail}
                           for c in self.checks], "warnings": self.warnings}

    def text(self) -> str:
        lines = [f"{k}: {v}" for k, v in self.facts.items()]
        lines += [f"[{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}" for c in self.checks]
        lines += [f"[WARN] {w}" for w in self.warnings]
        return "\n".join(lines)


def database_facts(url: str) -> dict[str, Any]:
    from glucover.db import active_backend, connect, timescale_available

    with connect(url) as conn:
        version = conn.execute("show server_version").fetchone()
        migrated = conn.execute("select to_regclass('schema_info') is not null").fetchone()
        backend = active_backend(conn) if migrated and migrated[0] else "unmigrated"
        facts: dict[str, Any] = {
            "postgresql": str(version[0]) if version else "?",
            "backend": backend,
            "timescaledb_available": timescale_available(conn),
        }
        if backend == "timescaledb":
            ext = conn.execute(
                "select extversion from pg_extension where extname = 'timescaledb'").fetchone()
            facts["timescaledb_version"] = str(ext[0]) if ext else None
            facts["readings_hypertable"] = bool(conn.execute(
                "select 1 from timescaledb_information.hypertables "
                "where hypertable_name = 'readings'").fetchone())
            facts["daily_summary"] = "continuous aggregate"
            jobs = conn.execute("select proc_name from timescaledb_information.jobs").fetchall()
            facts["policies"] = sorted({str(j[0]) for j in jobs})
        elif backend == "postgresql":
            facts["readings_hypertable"] = False
            facts["daily_summary"] = "materialized view (refreshed by the pricing engine)"
            facts["compression"] = False
        if backend != "unmigrated":
            applied = conn.execute("select max(version) from schema_migrations").fetchone()
            facts["schema_version"] = int(str(applied[0])) if applied and applied[0] else 0
            facts["devices"] = {str(kind): int(str(n)) for kind, n in conn.execute(
                "select kind, count(*) from devices where revoked_at is null group by kind "
                "order by kind")}
            if facts["schema_version"] >= ALERTS_SCHEMA:
                row = conn.execute(
                    "select (select count(*) from alerts where status <> 'resolved'), "
                    "count(*), coalesce(extract(epoch from clock_timestamp() - "
                    "min(committed_at)), 0)::float8 from alert_inbox").fetchone()
                assert row is not None
                facts["alerts"] = {"open": int(str(row[0])), "inbox_waiting": int(str(row[1])),
                                   "oldest_waiting_s": round(float(str(row[2])), 1)}
        return facts


ALERTS_SCHEMA = 19  # 0019_care_alerts.sql
ALERT_LAG_LIMIT_S = 60.0


BROKER_ACCOUNTS = {"glucover-ingest": "ingest", "glucover-care": "care"}  # glucover/broker.py


def services_of(settings: Settings) -> set[str]:
    """The services whose logins this environment's URLs hold (by their user names)."""
    found = set()
    if settings.database_url:
        user = urlsplit(settings.database_url).username or ""
        found |= {s for s in SERVICE_CREDENTIALS if user == f"glucover_{s}_svc"}
    if settings.mqtt_url:
        user = urlsplit(settings.mqtt_url).username or ""
        if user in BROKER_ACCOUNTS:
            found.add(BROKER_ACCOUNTS[user])
    if "GLUCOVER_DEVICE_SECRET" in settings.held and not settings.database_url:
        found.add("simulator")
    return found


def credential_warnings(settings: Settings) -> list[str]:
    """What a service's environment holds beyond its own credentials (config.SERVICE_CREDENTIALS):
    a process taken over would open other services' doors with it."""
    services = services_of(settings)
    if not services:
        return []  # the operator's own environment (up, migrate, provisioning) holds the lot
    warnings = []
    if len(services) > 1:
        warnings.append(f"this environment holds the logins of {', '.join(sorted(services))}: "
                        "give each service its own")
    own = {name for s in services for name in SERVICE_CREDENTIALS[s]}
    for name in sorted(settings.held - own):
        why = ("every service's password and key derives from it"
               if name == "GLUCOVER_SECRET" else "not this service's")
        warnings.append(f"{name} is set for the {'/'.join(sorted(services))} service: {why}; "
                        "remove it from this service's environment")
    if settings.trust_sent_at:
        warnings.append("GLUCOVER_TRUST_SENT_AT=1: ingest believes each meter's sent_at; a "
                        "meter could date readings weeks back. For replays of history only")
    return warnings


def run_doctor(settings: Settings) -> Report:
    report = Report(warnings=credential_warnings(settings))
    if settings.database_url:
        try:
            report.facts.update(database_facts(settings.database_url))
            backend = report.facts["backend"]
            report.checks.append(Check("database", backend != "unmigrated",
                                       f"reachable, backend {backend}"
                                       + ("; run `glucover migrate`" if backend == "unmigrated"
                                          else "")))
            if alerts := report.facts.get("alerts"):
                lag = alerts["oldest_waiting_s"]
                report.checks.append(Check(
                    "alerts", lag < ALERT_LAG_LIMIT_S,
                    f"{alerts['open']} open; the alert service keeps up with ingest"
                    if lag < ALERT_LAG_LIMIT_S else
                    f"{alerts['inbox_waiting']} ingest transactions waiting {lag:.0f} s for the "
                    "alert service: is `glucover alerts run` running?"))
        except Exception as exc:  # noqa: BLE001 - doctor reports any failure as a finding
            report.checks.append(Check("database", False, f"unreachable: {exc}"))
    else:
        report.checks.append(Check("database", False, "DATABASE_URL is not set (glucover up "
                                   "prints one)"))
    if settings.mqtt_url:
        report.checks.append(check_broker(settings))
    else:
        report.checks.append(Check("broker", False, "MQTT_URL is not set"))
    return report


def check_broker(settings: Settings) -> Check:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    target = settings.require_mqtt()
    try:
        socket.create_connection((target.host, target.port), 3).close()
    except OSError as exc:
        return Check("broker", False, f"{target.host}:{target.port} unreachable: {exc}")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="glucover-doctor",
                         protocol=mqtt.MQTTv5)
    if target.username:
        client.username_pw_set(target.username, target.password)
    result: dict[str, Any] = {}

    def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        result["reason"] = reason

    client.on_connect = on_connect
    try:
        client.connect(target.host, target.port, keepalive=10)
        client.loop_start()
        import time

        deadline = time.monotonic() + 5
        while "reason" not in result and time.monotonic() < deadline:
            time.sleep(0.05)
        client.disconnect()
        client.loop_stop()
    except OSError as exc:
        return Check("broker", False, str(exc))
    reason = result.get("reason")
    if reason is None:
        return Check("broker", False, "no CONNACK within 5 s")
    if reason.is_failure:
        return Check("broker", False, f"connection refused: {reason}")
    return Check("broker", True, f"{target.host}:{target.port} accepted "
                 f"{target.username or 'anonymous'}")


def doctor_cli(args: Any, settings: Settings) -> int:
    import json

    report = run_doctor(settings)
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.text())
    return 0 if report.healthy else 1
