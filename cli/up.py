"""`glucover up`: the whole system on embedded defaults.

Starts what is not configured (a private PostgreSQL cluster and Mosquitto broker under
GLUCOVER_HOME on free ports), migrates, gives each service its own least-privilege database
login, provisions a demo portfolio with meters and dashboard logins, then runs the simulator
(history fast, then live), an ingest worker, the alert service, the pricing engine and the
premium sweep on a schedule and the dashboard, until Ctrl-C stops them all.

Each service gets only its own credentials (config.SERVICE_CREDENTIALS): its database login,
its broker account in its MQTT_URL, the dashboard its session and pseudonym keys, the
simulator the device secret; none gets the deployment secret or the superuser's URL. Ingest
trusts a message's `sent_at` only while the simulator replays the history: a worker started
with --trust-sent-at takes the replay, and once the history is acknowledged a worker that
trusts nothing but its own clock takes over and the trusting one stops (a meter's `sent_at`
is whatever the meter says; trusting it live would let a meter date readings weeks back).
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
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO
from urllib.parse import urlsplit, urlunsplit

import psycopg

from glucover import broker
from glucover.config import MqttTarget, Settings, is_credential
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
        add_portfolio(conn, people, settings.key("device_secret"))
        logins: list[tuple[str, str, str | None]] = [
            ("actuary", "actuary", None), ("operations", "operations", None)]
        # Demo logins for policyholders with a meter and with a CGM, a few of each.
        for kind in ("bgm", "cgm"):
            logins += [(p.policy_id.lower(), "policyholder", p.policy_id)
                       for p in [p for p in people if p.kind == kind][:DEMO_POLICYHOLDERS]]
        logins.append(("clinician", "clinician", None))
        logins.append(("claims", "claims", None))  # the claims handler
        logins += [("reviewer", "reviewer", None), ("privacy", "privacy", None)]
        for username, role, policy in logins:
            # The demo clinician leads the care team: they publish the alert rules too.
            create_user(conn, username, DEMO_PASSWORD, role, policy, rounds=10,
                        care_lead=role == "clinician")
        # The demo clinician looks after the demo policyholders, meters and CGMs alike.
        add_to_panel(conn, "clinician", [p for _, role, p in logins if p is not None])
        conn.commit()
        sync_broker(conn, settings)
    cgm = {p.policy_id for p in people if p.kind == "cgm"}
    meters = [p.policy_id for p in people if p.kind == "bgm"]
    return {"staff": [u for u, role, _ in logins if role != "policyholder"],
            # Demo claims (policies/demo.py): the first on a demo policyholder's own policy.
            "claim_policies": meters[:1] + meters[DEMO_POLICYHOLDERS:DEMO_POLICYHOLDERS + 4],
            "meter": [u for u, _, p in logins if p is not None and p not in cgm],
            "cgm": [u for u, _, p in logins if p is not None and p in cgm]}


# The operator's settings no service takes from `up`'s own environment (each gets its own state
# directory; ingest trusts sent_at only for the history, by its flag).
OPERATOR_ONLY = ("GLUCOVER_HOME", "GLUCOVER_BROKER_DIR", "GLUCOVER_TRUST_SENT_AT")


@dataclass
class ServiceEnv:
    """What `up` hands each service: the environment without any credential, plus its own."""

    base: dict[str, str]
    home: str
    urls: dict[str, str]  # service -> its database URL
    target: MqttTarget

    def of(self, service: str, **own: str) -> dict[str, str]:
        # A state directory of its own: nothing of the operator's is found there.
        return {**self.base, "GLUCOVER_HOME": f"{self.home}/run/{service}", **own}


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
        target = _broker(stack, settings)
        # Provisioning rewrites the broker's files and signals it to reload (pid file).
        logins = provision_demo(admin_url, settings, args.policies, args.seed, args.days)
        env = ServiceEnv({k: v for k, v in os.environ.items() if not is_credential(k)
                          and k not in OPERATOR_ONLY}, str(settings.home), urls, target)
        try:
            history_done = _start_services(args, env, settings, children)
        except Exception as exc:  # noqa: BLE001 - reported, and everything is stopped below
            print(f"[up] the dashboard did not start: {exc}", flush=True)
            stop.set()
            history_done = threading.Event()
        _print_banner(args, admin_url, target, logins, settings)
        _supervise(args, env, settings, children, history_done, stop,
                   lambda after: _seed_claims(admin_url, logins["claim_policies"], after))
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


def _broker(stack: ExitStack, settings: Settings) -> MqttTarget:
    """MQTT_URL, or a private Mosquitto with the service accounts (no anonymous access)."""
    if settings.mqtt_url:
        print("[up] broker: MQTT_URL", flush=True)
        return settings.require_mqtt()
    mq = LocalMosquitto(settings.broker_dir)
    mq.write_config()
    files = broker.BrokerFiles(settings.broker_dir)
    broker.write_passwd(files.passwd, broker.service_entries(settings.secret(),
                                                             settings.mqtt_passwords))
    mq.start()
    stack.callback(mq.stop)
    print(f"[up] broker: private Mosquitto on port {mq.port} (no anonymous access)", flush=True)
    return MqttTarget("127.0.0.1", mq.port)


def _ingest(env: ServiceEnv, settings: Settings, trust_sent_at: bool
            ) -> tuple[Child, threading.Event]:
    """An ingest worker with its own logins; `trust_sent_at` for the history replay only.
    The event is set once it is connected to the broker."""
    mqtt = broker.service_target(env.target, settings, "ingest").url()
    name, args = ("ingest-history", ["--worker-name", "up-history", "--trust-sent-at"]
                  ) if trust_sent_at else ("ingest", ["--worker-name", "up-1"])
    return spawn(name, ["ingest", *args], env.of(
        "ingest", DATABASE_URL=env.urls["ingest"], MQTT_URL=mqtt), marker="connected to")


def _start_services(args: argparse.Namespace, env: ServiceEnv, settings: Settings,
                    children: list[Child]) -> threading.Event:
    """The history's ingest worker, the simulator, the alert service, the Nightscout API and the
    dashboard, each with only its own credentials; returns the event set when the simulator's
    history is acknowledged. Raises when the dashboard does not start."""
    child, _ = _ingest(env, settings, trust_sent_at=True)
    children.append(child)
    sim_args = ["simulate", "--policies", str(args.policies), "--days", str(args.days),
                "--seed", str(args.seed), "--no-provision"]
    if not args.no_live:
        sim_args += ["--live"]
    # The meters' accounts: the device secret, and no database.
    child, history_done = spawn("simulator", sim_args, env.of(
        "simulator", MQTT_URL=env.target.url(),
        GLUCOVER_DEVICE_SECRET=settings.key("device_secret")), marker="acknowledged")
    children.append(child)
    care_mqtt = broker.service_target(env.target, settings, "care").url()
    child, _ = spawn("alerts", ["alerts", "run"], env.of(
        "care", DATABASE_URL=env.urls["care"], MQTT_URL=care_mqtt))
    children.append(child)
    api_url = f"http://127.0.0.1:{args.api_port}"
    child, _ = spawn("api", ["api", "--host", "127.0.0.1", "--port", str(args.api_port)], env.of(
        "api", DATABASE_URL=env.urls["api"], GLUCOVER_API_URL=api_url,
        GLUCOVER_NIGHTSCOUT_KEY=settings.key("nightscout_key")))
    children.append(child)
    child, _ = spawn("dashboard", ["dashboard", "--port", str(args.dashboard_port)], env.of(
        "dashboard", DATABASE_URL=env.urls["dashboard"], GLUCOVER_DASHBOARD_ADDRESS="127.0.0.1",
        GLUCOVER_API_URL=api_url, GLUCOVER_SESSION_KEY=settings.key("session_key"),
        GLUCOVER_PSEUDONYM_KEY=settings.key("pseudonym_key"),
        GLUCOVER_NIGHTSCOUT_KEY=settings.key("nightscout_key")))
    children.append(child)
    wait_for_port(args.dashboard_port, DASHBOARD_START_TIMEOUT_S, child.proc)
    wait_for_port(args.api_port, DASHBOARD_START_TIMEOUT_S, children[-2].proc)
    return history_done


def _print_banner(args: argparse.Namespace, admin_url: str, target: MqttTarget,
                  logins: dict[str, list[str]], settings: Settings) -> None:
    print("\n".join([
        "", "glucover is up",
        f"  dashboard:  http://127.0.0.1:{args.dashboard_port}",
        f"  database:   {_without_password(admin_url)} (superuser; its password: "
        f"{_password_source(settings)})",
        f"  broker:     mqtt://{target.host}:{target.port}",
        f"nightscout: http://127.0.0.1:{args.api_port}/api/v1/ "
        "(`glucover nightscout enable --policy ID` gives an app its secret)",
        f"  logins (password {DEMO_PASSWORD!r}; names are not case-sensitive):",
        f"    staff:                    {', '.join(logins['staff'])}",
        f"    policyholders, a meter:   {', '.join(logins['meter'])}",
        f"    policyholders, a CGM:     {', '.join(logins['cgm'])}",
        f"  state:      {settings.home}",
        "  Ctrl-C stops everything.", ""]), flush=True)


def _seed_claims(admin_url: str, policy_ids: list[str], after: datetime) -> bool:
    """Demo claims in every state once a pricing run started `after` (the history stored) has
    reached yesterday; whether it is done."""
    from policies.demo import seed_claims

    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    with psycopg.connect(admin_url) as conn:
        row = conn.execute("select max(through) from pricing_runs where finished_at is not null "
                           "and started_at > %s", (after,)).fetchone()
        if row is None or row[0] is None or row[0] < yesterday:
            return False
        made = seed_claims(conn, policy_ids, "claims", yesterday + timedelta(days=1))
        conn.commit()
    print(f"[up] demo claims: {', '.join(f'{s} #{i}' for s, i in made.items()) or 'none'}",
          flush=True)
    return True


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}@{netloc}"))


def _password_source(settings: Settings) -> str:
    if settings.database_url:
        return "as in DATABASE_URL"
    return f"in {LocalPostgres(settings.home / 'postgres' / 'data').password_file}, mode 0600"


def _go_live(env: ServiceEnv, settings: Settings, children: list[Child]) -> None:
    """The history is in: a worker that trusts only its own clock takes over from the one that
    trusted the replay's sent_at, which then commits what it holds and stops."""
    live, connected = _ingest(env, settings, trust_sent_at=False)
    children.append(live)
    connected.wait(30)
    history = next(c for c in children if c.name == "ingest-history")
    history.proc.send_signal(signal.SIGTERM)
    try:
        history.proc.wait(60)
    except subprocess.TimeoutExpired:
        history.proc.kill()
    children.remove(history)
    print("[up] history replayed; ingest now trusts only its own clock", flush=True)


def _supervise(args: argparse.Namespace, env: ServiceEnv, settings: Settings,
               children: list[Child], history_done: threading.Event,
               stop: threading.Event,
               seed_claims: Callable[[datetime], bool] | None = None) -> None:
    """Price, and sweep premiums (`premium_sweep`), at once and every --price-every seconds
    while the history arrives (each run
    re-rates only the policies whose readings arrived since the one before, from their
    earliest new day: the ledger is there within a minute of the banner, and complete soon
    after the history); once the history is in, go live, then seed the demo claims once a run
    that started after it has priced through yesterday; stop when asked or when a service
    dies."""
    child, _ = spawn("pricing", ["price", "run", "--every", str(args.price_every)],
                     env.of("pricing", DATABASE_URL=env.urls["pricing"]))
    children.append(child)
    child, _ = spawn("premiums", premium_sweep(args.price_every),
                     env.of("premiums", DATABASE_URL=env.urls["pricing"]))
    children.append(child)
    live_at: datetime | None = None
    claims_seeded = seed_claims is None
    checked = 0.0
    while not stop.wait(0.5):
        if live_at is None and history_done.is_set():
            _go_live(env, settings, children)
            live_at = datetime.now(UTC)
            print("[up] the history is stored; the next pricing run prices the last of it",
                  flush=True)
        if live_at is not None and not claims_seeded and time.monotonic() - checked > 5:
            checked = time.monotonic()
            assert seed_claims is not None
            claims_seeded = seed_claims(live_at)
        dead = [c for c in children if c.proc.poll() not in (None, 0)]
        if dead:
            print(f"[up] {dead[0].name} exited with {dead[0].proc.returncode}; stopping",
                  flush=True)
            break


def premium_sweep(every: float) -> list[str]:
    """The premium sweep beside pricing, on its schedule, with the pricing login: the lapses
    (which stop a ledger) and the expiries as of each day (docs/policies.md)."""
    return ["premiums", "sweep", "--every", str(every)]


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



