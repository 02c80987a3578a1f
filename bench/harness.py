"""What the benchmarks share: private servers on free ports, spawning and stopping services,
the benchmark meters, timing helpers and the report's output (text or JSON)."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from devices.provisioning import acl_text
from glucover import broker
from glucover.config import Settings
from glucover.db import migrate
from glucover.servers import LocalMosquitto, LocalPostgres, terminate

LOADGEN_ACCOUNT = "glucover-bench-loadgen"
SPAWN_TIMEOUT_S = 30
STOP_TIMEOUT_S = 30


@dataclass
class Servers:
    db_url: str
    mqtt_port: int
    secret: str
    root: Path


def private_root(stack: ExitStack, prefix: str) -> Path:
    """A scratch directory the unprivileged server users can traverse, removed at the end."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(root, 0o755)  # noqa: S103 - the server users must traverse it
    stack.callback(shutil.rmtree, root, True)
    return root


def private_postgres(stack: ExitStack, root: Path, settings: Settings) -> str:
    """A migrated private PostgreSQL cluster; its admin URL."""
    pg = LocalPostgres(root / "pg").start()
    stack.callback(pg.stop)
    migrate(pg.url(), settings)
    return pg.url()


def private_servers(stack: ExitStack, settings: Settings) -> Servers:
    """A migrated PostgreSQL and a Mosquitto whose ACL lets the load generator write every
    meter's readings topic, with a fresh secret."""
    root = private_root(stack, "glucover-bench-")
    secret = "bench-" + os.urandom(8).hex()
    db_url = private_postgres(stack, root, settings)
    mq = LocalMosquitto(root / "mqtt")
    mq.write_config()
    files = broker.BrokerFiles(mq.confdir)
    broker.write_acl(files.acl, acl_text((LOADGEN_ACCOUNT,)))
    loadgen = broker.hash_password(broker.derive_password(secret, LOADGEN_ACCOUNT))
    broker.write_passwd(files.passwd, [*broker.service_entries(secret), (LOADGEN_ACCOUNT, loadgen)])
    mq.start()
    stack.callback(mq.stop)
    return Servers(db_url, mq.port, secret, root)


def loadgen_password(servers: Servers) -> str:
    return broker.derive_password(servers.secret, LOADGEN_ACCOUNT)


def recent_base() -> datetime:
    """Benchmarks measure live traffic: readings from the last day or so. (Months-old readings
    would also meet TimescaleDB's compression policy in the middle of a run.)"""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return now - timedelta(days=2)


def bench_device(i: int) -> str:
    return f"BENCH-{i:06d}"


def seed_devices(db_url: str, count: int) -> None:
    """The benchmark meters BENCH-000000.. exist in the database (ingest refuses strangers)."""
    with psycopg.connect(db_url) as conn, conn.cursor() as cur, cur.copy(
            "copy devices (device_id) from stdin") as copy:
        for i in range(count):
            copy.write_row((bench_device(i),))


def ingest_env(servers: Servers) -> dict[str, str]:
    """Environment for `glucover ingest` on the benchmark's private servers."""
    password = broker.derive_password(servers.secret, broker.INGEST_ACCOUNT)
    return {**os.environ, "DATABASE_URL": servers.db_url,
            "MQTT_URL": f"mqtt://{broker.INGEST_ACCOUNT}:{password}@127.0.0.1:{servers.mqtt_port}",
            "GLUCOVER_SECRET": servers.secret}


def spawn(args: list[str], env: dict[str, str], log: Path, ready: str
          ) -> subprocess.Popen[bytes]:
    """Start a process logging to `log`; return once the log says `ready` (in what this
    process wrote: a log is appended to by each process that uses it)."""
    out = log.open("ab")
    before = out.tell()
    proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    out.close()
    deadline = time.monotonic() + SPAWN_TIMEOUT_S
    while time.monotonic() < deadline:
        with log.open("rb") as written:
            written.seek(before)
            said = written.read().decode(errors="replace")
        if ready in said:
            time.sleep(0.3)
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"{args[2:4]} did not start:\n{log.read_text(errors='replace')[-2000:]}")


def spawn_glucover(args: list[str], env: dict[str, str], log: Path, ready: str
                   ) -> subprocess.Popen[bytes]:
    """`glucover ARGS...` in a process of its own, as an operator would run it."""
    return spawn([sys.executable, "-m", "cli.main", *args], env, log, ready)


def stop(proc: subprocess.Popen[bytes]) -> None:
    terminate(proc, signal.SIGTERM, STOP_TIMEOUT_S)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far: VmHWM where Linux gives it (ru_maxrss
    carries a parent's peak over fork and exec into a child), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rounds(repeat: int) -> Iterator[str]:
    """Labels of `repeat` rounds: " (round 2/3)", or "" for a single round."""
    for number in range(1, repeat + 1):
        yield f" (round {number}/{repeat})" if repeat > 1 else ""


def median_run(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run with the median `key` (the upper one of an even count)."""
    return sorted(runs, key=lambda r: r[key])[len(runs) // 2]


def progress(enabled: bool) -> Callable[[str], None]:
    """A function printing progress to standard error, or doing nothing."""
    def say(text: str) -> None:
        if enabled:
            print(text, file=sys.stderr, flush=True)
    return say


def emit(report: dict[str, Any], as_json: bool, text: Callable[[dict[str, Any]], None]) -> None:
    """Print the report as JSON, or as text by `text`."""
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        text(report)
