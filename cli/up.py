"""`glucover up`: the whole system on embedded defaults.

Starts what is not configured (a private PostgreSQL cluster and Mosquitto broker under
GLUCOVER_HOME on free ports), migrates, gives each service its own least-privilege database
login, provisions a demo portfolio with meters and dashboard logins, then runs the simulator
(history fast, then live), an ingest worker, the alert service, the pricing engine on a
schedule and the dashboard, until Ctrl-C stops them all.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import signal
import subprocess
import sys
import threading
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO

import psycopg

from glucover import broker
from glucover.config import MqttTarget, Settings
from glucover.db import SERVICE_LOGINS, ensure_login_role, login_name, migrate, with_credentials
from glucover.servers import LocalMosquitto, LocalPostgres, wait_for_port

DEMO_PASSWORD = "demo"  # noqa: S105 - printed for the demo; real deployments create their own
DEMO_POLICYHOLDERS = 3
DASHBOARD_START_TIMEOUT_S = 60


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]


def _db_password(secret: str, role: str) -> str:
    return hmac.new(secret.encode(), f"db:{role}".encode(), hashlib.sha256).hexdigest()[:32]


def service_urls(admin_url: str, secret: str) -> dict[str, str]:
    """A login per service in its group role; the admin URL where roles cannot be made."""
    urls = {}
    for service, group in SERVICE_LOGINS.items():
        login = login_name(service)
        password = _db_password(secret, login)
        try:
            ensure_login_role(admin_url, group, login, password)
            urls[service] = with_credentials(admin_url, login, password)
        except psycopg.Error as exc:
            print(f"[up] cannot create a login for {service} ({exc}); it uses DATABASE_URL",
                  flush=True)
            urls[service] = admin_url
    return urls


def _pump(name: str, stream: IO[bytes], marker: str | None, seen: threading.Event) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").rstrip()
        print(f"[{name}] {line}", flush=True)
        if marker and marker in line:
            seen.set()


def spawn(name: str, args: list[str], env: dict[str, str], marker: str | None = None
          ) -> tuple[Child, threading.Event]:
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen = threading.Event()
    assert proc.stdout is not None
    threading.Thread(target=_pump, args=(name, proc.stdout, marker, seen), daemon=True).start()
    return Child(name, proc), seen


def provision_demo(admin_url: str, settings: Settings, policies: int, seed: int, days: int
                   ) -> dict[str, list[str]]:
    """The demo portfolio and its dashboard logins, by what they show: staff, policyholders
    with a meter, policyholders wearing a CGM."""
    from dashboard.auth import add_to_panel, create_user
    from devices.fleet import DEFAULT_CGM_SHARE, DEFAULT_GATEWAY_SHARE, portfolio
    from devices.provisioning import add_portfolio, sync_broker

    first = datetime.now(UTC).date() - timedelta(days=days - 1)
    people = portfolio(policies, seed, first, DEFAULT_GATEWAY_SHARE, DEFAULT_CGM_SHARE)
    with psycopg.connect(admin_url) as conn:
        add_portfolio(conn, people, settings.secret())
        logins: list[tuple[str, str, str | None]] = [
            ("actuary", "actuary", None), ("operations", "operations", None)]
        # Demo logins for policyholders with a meter and with a CGM, a few of each.
        for kind in ("bgm", "cgm"):
            logins += [(p.policy_id.lower(), "policyholder", p.policy_id)
                       for p in [p for p in people if p.kind == kind][:DEMO_POLICYHOLDERS]]
        logins.append(("clinician", "clinician", None))
        for username, role, policy in logins:
            # The demo clinician leads the care team: they publish the alert rules too.
            create_user(conn, username, DEMO_PASSWORD, role, policy, rounds=10,
                        care_lead=role == "clinician")
        # The demo clinician looks after the demo policyholders, meters and CGMs alike.
        add_to_panel(conn, "clinician", [p for _, role, p in logins if p is not None])
        conn.commit()
        sync_broker(conn, settings)
    cgm = {p.policy_id for p in people if p.kind == "cgm"}
    return {"staff": [u for u, role, _ in logins if role != "policyholder"],
            "meter": [u for u, _, p in logins if p is not None and p not in cgm],
            "cgm": [u for u, _, p in logins if p is not None and p in cgm]}


def up_cli(args: argparse.Namespace, settings: Settings) -> int:
    settings.home.mkdir(parents=True, exist_ok=True)
    secret = settings.secret()
    children: list[Child] = []
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with ExitStack() as stack:
        admin_url = _database(stack, settings)
        urls = service_urls(admin_url, secret)
        target = _broker(stack, settings, secret)
        # Provisioning rewrites the broker's files and signals it to reload (pid file).
        logins = provision_demo(admin_url, settings, args.policies, args.seed, args.days)
        env = {**os.environ, "GLUCOVER_SECRET": secret, "GLUCOVER_HOME": str(settings.home),
               "GLUCOVER_BROKER_DIR": str(settings.broker_dir)}
        try:
            history_done = _start_services(args, env, admin_url, urls, target, children)
        except Exception as exc:  # noqa: BLE001 - reported, and everything is stopped below
            print(f"[up] the dashboard did not start: {exc}", flush=True)
            stop.set()
            history_done = threading.Event()
        _print_banner(args, admin_url, target, logins, settings)
        _supervise(args, env, urls, children, history_done, stop)
        _stop_children(children)
    return 0


def _database(stack: ExitStack, settings: Settings) -> str:
    """DATABASE_URL, or a private PostgreSQL cluster; migrated. Its admin URL."""
    if settings.database_url:
        admin_url = settings.database_url
        print("[up] database: DATABASE_URL", flush=True)
    else:
        pg = LocalPostgres(settings.home / "postgres" / "data").start()
        stack.callback(pg.stop)
        admin_url = pg.url()
        print(f"[up] database: private PostgreSQL on port {pg.port}", flush=True)
    result = migrate(admin_url, settings)
    print(f"[up] schema: backend {result.backend}, applied "
          f"{', '.join(result.applied) or 'nothing new'}", flush=True)
    return admin_url


def _broker(stack: ExitStack, settings: Settings, secret: str) -> MqttTarget:
    """MQTT_URL, or a private Mosquitto with the service accounts (no anonymous access)."""
    if settings.mqtt_url:
        print("[up] broker: MQTT_URL", flush=True)
        return settings.require_mqtt()
    mq = LocalMosquitto(settings.broker_dir)
    mq.write_config()
    files = broker.BrokerFiles(settings.broker_dir)
    broker.write_passwd(files.passwd, broker.service_entries(secret))
    mq.start()
    stack.callback(mq.stop)
    print(f"[up] broker: private Mosquitto on port {mq.port} (no anonymous access)", flush=True)
    return MqttTarget("127.0.0.1", mq.port)


def _start_services(args: argparse.Namespace, env: dict[str, str], admin_url: str,
                    urls: dict[str, str], target: MqttTarget, children: list[Child]
                    ) -> threading.Event:
    """Ingest, the simulator, the alert service and the dashboard, each with its own login;
    returns the event set
    when the simulator's history is acknowledged. Raises when the dashboard does not start."""
    ingest_pw = broker.derive_password(env["GLUCOVER_SECRET"], broker.INGEST_ACCOUNT)
    ingest_mqtt = target.with_credentials(broker.INGEST_ACCOUNT, ingest_pw).url()
    child, _ = spawn("ingest", ["ingest", "--worker-name", "up-1", "--trust-sent-at"],
                     {**env, "DATABASE_URL": urls["ingest"], "MQTT_URL": ingest_mqtt})
    children.append(child)
    sim_args = ["simulate", "--policies", str(args.policies), "--days", str(args.days),
                "--seed", str(args.seed), "--no-provision"]
    if not args.no_live:
        sim_args += ["--live"]
    device_mqtt = MqttTarget(target.host, target.port).url()
    child, history_done = spawn("simulator", sim_args, {
        **env, "DATABASE_URL": admin_url, "MQTT_URL": device_mqtt}, marker="acknowledged")
    children.append(child)
    care_pw = broker.derive_password(env["GLUCOVER_SECRET"], broker.CARE_ACCOUNT)
    child, _ = spawn("alerts", ["alerts", "run"], {
        **env, "DATABASE_URL": urls["care"],
        "MQTT_URL": target.with_credentials(broker.CARE_ACCOUNT, care_pw).url()})
    children.append(child)
    child, _ = spawn("dashboard", ["dashboard", "--port", str(args.dashboard_port)], {
        **env, "DATABASE_URL": urls["dashboard"], "GLUCOVER_DASHBOARD_ADDRESS": "127.0.0.1"})
    children.append(child)
    wait_for_port(args.dashboard_port, DASHBOARD_START_TIMEOUT_S, child.proc)
    return history_done


def _print_banner(args: argparse.Namespace, admin_url: str, target: MqttTarget,
                  logins: dict[str, list[str]], settings: Settings) -> None:
    print("\n".join([
        "", "glucover is up",
        f"  dashboard:  http://127.0.0.1:{args.dashboard_port}",
        f"  database:   {admin_url}",
        f"  broker:     mqtt://{target.host}:{target.port}",
        f"  logins (password {DEMO_PASSWORD!r}; names are not case-sensitive):",
        f"    staff:                    {', '.join(logins['staff'])}",
        f"    policyholders, a meter:   {', '.join(logins['meter'])}",
        f"    policyholders, a CGM:     {', '.join(logins['cgm'])}",
        f"  state:      {settings.home}",
        "  Ctrl-C stops everything.", ""]), flush=True)


def _supervise(args: argparse.Namespace, env: dict[str, str], urls: dict[str, str],
               children: list[Child], history_done: threading.Event,
               stop: threading.Event) -> None:
    """Price at once and every --price-every seconds while the history arrives (each run
    re-rates only the policies whose readings arrived since the one before, from their
    earliest new day: the ledger is there within a minute of the banner, and complete soon
    after the history); stop when asked or when a service dies."""
    child, _ = spawn("pricing", ["price", "run", "--every", str(args.price_every)],
                     {**env, "DATABASE_URL": urls["pricing"]})
    children.append(child)
    announced = False
    while not stop.wait(0.5):
        if not announced and history_done.is_set():
            print("[up] the history is stored; the next pricing run prices the last of it",
                  flush=True)
            announced = True
        dead = [c for c in children if c.proc.poll() not in (None, 0)]
        if dead:
            print(f"[up] {dead[0].name} exited with {dead[0].proc.returncode}; stopping",
                  flush=True)
            break


def _stop_children(children: list[Child]) -> None:
    print("[up] stopping", flush=True)
    for c in reversed(children):
        if c.proc.poll() is None:
            c.proc.send_signal(signal.SIGTERM)
    for c in reversed(children):
        try:
            c.proc.wait(20)
        except subprocess.TimeoutExpired:
            c.proc.kill()



