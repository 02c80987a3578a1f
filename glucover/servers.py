"""Private PostgreSQL and Mosquitto servers, for `glucover up`, the tests and the benchmarks.

Both run from the system's binaries on free loopback ports with their state in a directory of
ours. PostgreSQL refuses to run as root, so when we are root both servers run as an ordinary
system user (`postgres` / `mosquitto` where they exist, else `nobody`) that owns their directory.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from glucover import broker
from glucover.config import Settings
from glucover.errors import UserError
from kernel.sequence import MAX_PACKET_BYTES

# How long a server may take to accept connections before we call start-up failed.
STARTUP_TIMEOUT_S = 30.0
# How long a server gets to stop on SIGTERM (PostgreSQL: fast shutdown) before SIGKILL.
SHUTDOWN_TIMEOUT_S = 15.0


class ServerError(UserError):
    """A local server could not be started; the message says what to install or fix."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = STARTUP_TIMEOUT_S, proc: subprocess.Popen[bytes] |
                  None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServerError(f"server exited with code {proc.returncode} before accepting")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise ServerError(f"nothing accepted connections on port {port} within {timeout:.0f}s")


def timescale_installed(bindir: Path | None = None) -> bool:
    """Whether the TimescaleDB extension is installed for these server binaries."""
    bindir = bindir or postgres_bindir()
    result = subprocess.run([str(bindir / "pg_config"), "--sharedir"], capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        return False
    return (Path(result.stdout.strip()) / "extension" / "timescaledb.control").exists()


def terminate(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM,
              timeout: float = SHUTDOWN_TIMEOUT_S) -> None:
    """Ask a process to stop with `sig`; SIGKILL it if it has not within `timeout`."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def postgres_bindir() -> Path:
    """Where initdb/pg_ctl/postgres live: GLUCOVER_PG_BIN, the newest Debian cluster, or PATH."""
    if chosen := Settings.from_env().pg_bin:
        if not (chosen / "initdb").exists():
            raise ServerError(f"GLUCOVER_PG_BIN={chosen} holds no initdb: point it at the "
                              "directory holding initdb and postgres, or unset it")
        return chosen
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit()
        else 0,
    )
    if candidates:
        return Path(candidates[-1]).parent
    if found := shutil.which("initdb"):
        return Path(found).parent
    raise ServerError(
        "PostgreSQL server binaries not found: `apt-get install postgresql` (or set "
        "GLUCOVER_PG_BIN to the directory holding initdb), or set DATABASE_URL"
    )


@dataclass
class RunAs:
    """The ordinary user a server runs as when we are root (None: run as ourselves)."""

    uid: int | None = None
    gid: int | None = None
    name: str = ""

    @classmethod
    def for_service(cls, preferred: str) -> RunAs:
        if os.geteuid() != 0:
            return cls()
        for name in (preferred, "nobody"):
            try:
                pw = pwd.getpwnam(name)
            except KeyError:
                continue
            return cls(pw.pw_uid, pw.pw_gid, name)
        raise ServerError("running as root and no unprivileged user exists to run servers as")

    def own(self, path: Path) -> None:
        if self.uid is None or self.gid is None:
            return
        for root, dirs, files in os.walk(path):
            os.chown(root, self.uid, self.gid)
            for name in dirs + files:
                os.chown(os.path.join(root, name), self.uid, self.gid, follow_symlinks=False)

    @property
    def extra_groups(self) -> list[int] | None:
        return None if self.uid is None else []


def _check_traversable(path: Path, user: RunAs) -> None:
    """A server user must reach its directory; root-only parents (0700) would stop it."""
    if user.uid is None:
        return
    for parent in path.absolute().parents:
        mode = parent.stat().st_mode
        if parent.stat().st_uid != user.uid and not mode & 0o001:
            raise ServerError(
                f"{parent} is not searchable by user {user.name!r} that runs the server; "
                f"use a state directory below a world-searchable path (e.g. /tmp or /srv)"
            )


@dataclass
class LocalPostgres:
    """A PostgreSQL cluster of our own. `start()` initialises it on first use."""

    datadir: Path
    port: int = 0
    superuser: str = "glucover_admin"
    database: str = "glucover"
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    run_as: RunAs = field(default_factory=lambda: RunAs.for_service("postgres"))
    # Preload TimescaleDB: None = when it is installed (GLUCOVER_TIMESCALE=off says no).
    timescale: bool | None = None

    @property
    def password_file(self) -> Path:
        return self.datadir.parent / (self.datadir.name + ".password")

    @property
    def password(self) -> str:
        return self.password_file.read_text().strip()

    def url(self, database: str | None = None) -> str:
        return (f"postgresql://{self.superuser}:{self.password}@127.0.0.1:{self.port}/"
                f"{database or self.database}")

    def _run(self, *args: str) -> None:
        result = subprocess.run(args, capture_output=True, text=True, check=False,
                                user=self.run_as.uid, group=self.run_as.gid,
                                extra_groups=self.run_as.extra_groups)
        if result.returncode != 0:
            raise ServerError(f"{' '.join(args)} failed:\n{result.stdout}{result.stderr}")

    def init(self) -> None:
        bindir = postgres_bindir()
        self.datadir.parent.mkdir(parents=True, exist_ok=True)
        _check_traversable(self.datadir.parent, self.run_as)
        if (self.datadir / "PG_VERSION").exists():
            return
        self.datadir.mkdir(parents=True, exist_ok=True)
        if not self.password_file.exists():
            fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(16) + "\n")
        pwfile = self.datadir.parent / (self.datadir.name + ".initpw")
        pwfile.write_text(self.password + "\n")
        os.chmod(self.datadir, 0o700)
        self.run_as.own(self.datadir)
        self.run_as.own(pwfile)
        try:
            self._run(str(bindir / "initdb"), "-D", str(self.datadir), "-U", self.superuser,
                      "--pwfile", str(pwfile), "--auth=scram-sha-256", "--encoding=UTF8",
                      "--locale=C.UTF-8")
        finally:
            pwfile.unlink(missing_ok=True)
        with (self.datadir / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# glucover: private cluster on loopback only\n"
                "listen_addresses = '127.0.0.1'\n"
                "unix_socket_directories = ''\n"
                "fsync = on\nsynchronous_commit = on\n"
                "shared_buffers = 256MB\nmax_connections = 200\n"
                "max_wal_size = 2GB\n"
                "track_commit_timestamp = on\n"  # benchmarks read exact commit times
            )
            if self._want_timescale(bindir):
                conf.write("shared_preload_libraries = 'timescaledb'\n"
                           "timescaledb.telemetry_level = off\n")

    def _want_timescale(self, bindir: Path) -> bool:
        if self.timescale is not None:
            return self.timescale
        if Settings.from_env().timescale == "off":
            return False
        return timescale_installed(bindir)

    def start(self) -> LocalPostgres:
        self.init()
        if self.port == 0:
            self.port = free_port()
        bindir = postgres_bindir()
        log = self.datadir.parent / (self.datadir.name + ".log")
        self.run_as.own(self.datadir)
        logf = log.open("ab")
        self.proc = subprocess.Popen(
            [str(bindir / "postgres"), "-D", str(self.datadir), "-p", str(self.port)],
            stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
            user=self.run_as.uid, group=self.run_as.gid, extra_groups=self.run_as.extra_groups,
        )
        logf.close()
        try:
            wait_for_port(self.port, proc=self.proc)
            self._wait_ready()
        except ServerError as exc:
            tail = log.read_text(errors="replace")[-2000:]
            self.stop()
            raise ServerError(f"PostgreSQL did not start: {exc}; its log is {log}\n{tail}") from exc
        self._ensure_database()
        return self

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _ensure_database(self) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s",
                                  (self.database,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(self.database)))

    def stop(self, kill: bool = False) -> None:
        # SIGINT is PostgreSQL's fast shutdown.
        terminate(self.proc, signal.SIGKILL if kill else signal.SIGINT)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


# What ingest may hold unacknowledged, in bytes: junk in large messages cannot swell a worker.
MAX_INFLIGHT_BYTES = 64 * 1_048_576


@dataclass
class LocalMosquitto:
    """A Mosquitto broker of our own: persistence on, password file and ACLs, no anonymous."""

    confdir: Path
    port: int = 0
    allow_anonymous: bool = False
    # The ACL written when there is none yet. Which topics an account may use is the wire
    # format's business (devices.wire.topics.acl); until someone writes it, nobody may use any.
    acl: str = "# no access until the ACL is written\n"
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    run_as: RunAs = field(default_factory=lambda: RunAs.for_service("mosquitto"))
    # Mosquitto's own queue limits (max_queued_messages 1000, max_inflight_messages 20), as an
    # operator's broker may have them, instead of ours: a broker that drops messages to a busy
    # subscriber (tests/test_backlog.py).
    stock_limits: bool = False

    @property
    def pid_file(self) -> Path:
        return self.confdir / "mosquitto.pid"

    def write_config(self) -> Path:
        self.confdir.mkdir(parents=True, exist_ok=True)
        _check_traversable(self.confdir, self.run_as)
        (self.confdir / "data").mkdir(exist_ok=True)
        files = broker.BrokerFiles(self.confdir)
        if not files.passwd.exists():
            files.passwd.write_text("")
        if not files.acl.exists():
            broker.write_acl(files.acl, self.acl)
        conf = self.confdir / "mosquitto.conf"
        conf.write_text(
            "# generated by glucover: edit the source, not this file\n"
            "per_listener_settings false\n"
            f"listener {self.port} 127.0.0.1\n"
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}\n"
            f"password_file {files.passwd}\n"
            f"acl_file {files.acl}\n"
            "persistence true\n"
            f"persistence_location {self.confdir / 'data'}/\n"
            "autosave_interval 1\n"
            + ("" if self.stock_limits else  # Mosquitto's own queue limits, or ours
               "max_queued_messages 1000000\n"
               "max_inflight_messages 20000\n")  # bounds what ingest holds unacknowledged
            + f"max_inflight_bytes {MAX_INFLIGHT_BYTES}\n"  # ... and its bytes
            f"max_packet_size {MAX_PACKET_BYTES}\n"
            "log_dest stdout\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
        )
        self.run_as.own(self.confdir)
        return conf

    def start(self) -> LocalMosquitto:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.path.exists(binary):
            raise ServerError("mosquitto not found: `apt-get install mosquitto`, or set MQTT_URL")
        if self.port == 0:
            self.port = free_port()
        conf = self.write_config()
        logf = (self.confdir / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=logf, stderr=subprocess.STDOUT,
            start_new_session=True, user=self.run_as.uid, group=self.run_as.gid,
            extra_groups=self.run_as.extra_groups,
        )
        logf.close()
        self.pid_file.write_text(f"{self.proc.pid}\n")
        try:
            wait_for_port(self.port, proc=self.proc)
        except ServerError as exc:
            tail = (self.confdir / "mosquitto.log").read_text(errors="replace")[-2000:]
            self.stop()
            raise ServerError(f"Mosquitto did not start: {exc}; its log is "
                              f"{self.confdir / 'mosquitto.log'}\n{tail}") from exc
        return self

    def reload(self) -> None:
        """Re-read password and ACL files (SIGHUP), handing them to the unprivileged user first."""
        self.run_as.own(self.confdir)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGHUP)

    def stop(self, kill: bool = False) -> None:
        terminate(self.proc, signal.SIGKILL if kill else signal.SIGTERM)
        self.proc = None
        self.pid_file.unlink(missing_ok=True)

    def restart(self) -> None:
        self.stop()
        self.start()
