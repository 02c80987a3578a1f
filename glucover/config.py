"""Configuration from the environment: the one place that reads it.

Every variable is declared once in VARIABLES (name, meaning, default); `Settings.from_env` reads
them into one typed object, and the README's table is generated from the declarations
(`markdown_table`, held to the README by tests/test_config.py). Every setting has an embedded
default so that `glucover up` runs with nothing set.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from glucover.errors import UserError


class ConfigError(UserError):
    """A setting a user gave is wrong; the message says how to fix it."""


@dataclass(frozen=True)
class MqttTarget:
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> MqttTarget:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "tcp"):
            raise ConfigError(f"MQTT_URL must look like mqtt://[user:pass@]host:port, got {url!r}")
        if not parts.hostname:
            raise ConfigError(f"MQTT_URL has no host: {url!r}")
        return cls(
            host=parts.hostname,
            port=parts.port or 1883,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def with_credentials(self, username: str, password: str) -> MqttTarget:
        return MqttTarget(self.host, self.port, username, password)

    def url(self) -> str:
        auth = f"{self.username}:{self.password}@" if self.username else ""
        return f"mqtt://{auth}{self.host}:{self.port}"


@dataclass(frozen=True)
class Variable:
    name: str
    meaning: str
    default: str


DEFAULT_API_PORT = 1337  # Nightscout's own default port

SERVICES = ("ingest", "pricing", "dashboard", "care", "api")  # with a database login of their own
BROKER_SERVICES = ("ingest", "care")  # services with a broker account of their own
# Settings that hold or open a credential (with GLUCOVER_DB_PASSWORD_* and
# GLUCOVER_MQTT_PASSWORD_*): `glucover up` hands each service only its own, and `glucover doctor`
# warns when a service's environment holds more.
CREDENTIALS = ("DATABASE_URL", "MQTT_URL", "GLUCOVER_SECRET", "GLUCOVER_DEVICE_SECRET",
               "GLUCOVER_SESSION_KEY", "GLUCOVER_PSEUDONYM_KEY", "GLUCOVER_NIGHTSCOUT_KEY")
PASSWORD_PREFIXES = ("GLUCOVER_DB_PASSWORD_", "GLUCOVER_MQTT_PASSWORD_")

# What each service holds, and nothing more (README's security section; `glucover doctor`
# warns when an environment holds more). The deployment secret stays with the operator
# (`glucover up`, `migrate`, provisioning, `nightscout enable`); every other key derives from it
# unless given. The Nightscout key makes each policy's upload secret and signs the API's JWTs:
# the API checks them, the dashboard shows a policyholder their own.
SERVICE_CREDENTIALS = {
    "ingest": ("DATABASE_URL", "MQTT_URL"),
    "pricing": ("DATABASE_URL",),
    "care": ("DATABASE_URL", "MQTT_URL"),
    "dashboard": ("DATABASE_URL", "GLUCOVER_SESSION_KEY", "GLUCOVER_PSEUDONYM_KEY",
                  "GLUCOVER_NIGHTSCOUT_KEY"),
    "api": ("DATABASE_URL", "GLUCOVER_NIGHTSCOUT_KEY"),
    "simulator": ("MQTT_URL", "GLUCOVER_DEVICE_SECRET"),
}

VARIABLES = (
    Variable("DATABASE_URL", "`postgresql://user:pass@host:port/db`",
             "a private cluster under `GLUCOVER_HOME`"),
    Variable("MQTT_URL", "`mqtt://[user:pass@]host:port`",
             "a private Mosquitto under `GLUCOVER_HOME`"),
    Variable("GLUCOVER_HOME", "state directory", "`./.glucover`"),
    Variable("GLUCOVER_SECRET", "the operator's secret every other key and service password "
             "derives from when not given; no service holds it",
             "generated once in `GLUCOVER_HOME/secrets`"),
    Variable("GLUCOVER_DEVICE_SECRET", "secret the meters' broker passwords derive from (the "
             "simulator holds it)", "derived from `GLUCOVER_SECRET`"),
    Variable("GLUCOVER_SESSION_KEY", "key that signs the dashboard's session tokens",
             "derived from `GLUCOVER_SECRET`"),
    Variable("GLUCOVER_PSEUDONYM_KEY", "key of the patient pseudonyms in FHIR exports",
             "derived from `GLUCOVER_SECRET`"),
    Variable("GLUCOVER_NIGHTSCOUT_KEY", "key of the policies' Nightscout upload secrets and of "
             "the API's JWTs", "derived from `GLUCOVER_SECRET`"),
    Variable("GLUCOVER_TIMESCALE", "`auto`, `on` (fail without TimescaleDB) or `off`", "`auto`"),
    Variable("GLUCOVER_COMPRESS_AFTER", "age after which TimescaleDB compresses readings",
             "`30 days`"),
    Variable("GLUCOVER_BROKER_DIR", "the broker's password and ACL files",
             "`GLUCOVER_HOME/mosquitto`"),
    Variable("GLUCOVER_PG_BIN", "directory of `initdb`/`postgres` for private clusters",
             "newest `/usr/lib/postgresql/*/bin`"),
    Variable("GLUCOVER_TRUST_SENT_AT", "`1`: ingest takes a message's `sent_at` as its receive "
             "time when earlier (replays of recorded or simulated history only)", "off"),
    Variable("GLUCOVER_DASHBOARD_ADDRESS", "address `glucover dashboard` listens on",
             "`0.0.0.0`"),
    Variable("GLUCOVER_API_URL", "the Nightscout API's address as apps reach it (what "
             "`glucover nightscout enable` and the policyholder's page give out)",
             f"`http://127.0.0.1:{DEFAULT_API_PORT}`"),
    *(Variable(f"GLUCOVER_DB_PASSWORD_{service.upper()}",
               f"`glucover migrate` creates the {service} service's database login with this "
               "password", "no login") for service in SERVICES),
    *(Variable(f"GLUCOVER_MQTT_PASSWORD_{service.upper()}",
               f"the {service} service's broker password (`devices sync-broker` writes its "
               "hash)", "derived from `GLUCOVER_SECRET`") for service in BROKER_SERVICES),
)


def is_credential(name: str) -> bool:
    """Whether a variable holds (or opens) a credential: a URL with a password, a secret, a
    key, a service's password."""
    return name in CREDENTIALS or name.startswith(PASSWORD_PREFIXES)


KEY_PURPOSES = ("device_secret", "session_key", "pseudonym_key", "nightscout_key")


def derive_key(secret: str, purpose: str) -> str:
    """A key for one purpose from the deployment secret (HMAC-SHA256): holding it tells
    nothing of the secret or of the keys for other purposes."""
    return hmac.new(secret.encode(), f"key:{purpose}".encode(), hashlib.sha256).hexdigest()


def markdown_table() -> str:
    """The README's table of settings, generated from VARIABLES."""
    rows = ["| variable | meaning | default |", "|---|---|---|"]
    rows += [f"| `{v.name}` | {v.meaning} | {v.default} |" for v in VARIABLES]
    return "\n".join(rows) + "\n"


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str | None
    mqtt_url: str | None
    timescale: str
    compress_after: str
    broker_dir: Path
    secret_value: str | None = None
    pg_bin: Path | None = None
    trust_sent_at: bool = False
    dashboard_address: str = "0.0.0.0"  # noqa: S104 - a server's, in a container
    db_passwords: dict[str, str] = field(default_factory=dict)  # service -> login password
    api_url: str = f"http://127.0.0.1:{DEFAULT_API_PORT}"
    mqtt_passwords: dict[str, str] = field(default_factory=dict)  # service -> broker password
    keys: dict[str, str] = field(default_factory=dict)  # purpose -> key given in the environment
    held: frozenset[str] = frozenset()  # the credential variables set (`glucover doctor`)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("GLUCOVER_HOME", ".glucover")).absolute()
        timescale = env.get("GLUCOVER_TIMESCALE", "auto").lower()
        if timescale not in ("auto", "on", "off"):
            raise ConfigError("GLUCOVER_TIMESCALE must be auto, on or off")
        trust = env.get("GLUCOVER_TRUST_SENT_AT", "0")
        if trust not in ("0", "1"):
            raise ConfigError("GLUCOVER_TRUST_SENT_AT must be 0 or 1")
        return cls(
            home=home,
            database_url=env.get("DATABASE_URL") or None,
            mqtt_url=env.get("MQTT_URL") or None,
            timescale=timescale,
            compress_after=env.get("GLUCOVER_COMPRESS_AFTER", "30 days"),
            broker_dir=Path(env.get("GLUCOVER_BROKER_DIR", str(home / "mosquitto"))),
            secret_value=env.get("GLUCOVER_SECRET") or None,
            pg_bin=Path(env["GLUCOVER_PG_BIN"]) if env.get("GLUCOVER_PG_BIN") else None,
            trust_sent_at=trust == "1",
            dashboard_address=env.get("GLUCOVER_DASHBOARD_ADDRESS", "0.0.0.0"),  # noqa: S104
            api_url=env.get("GLUCOVER_API_URL") or f"http://127.0.0.1:{DEFAULT_API_PORT}",
            db_passwords={s: pw for s in SERVICES
                          if (pw := env.get(f"GLUCOVER_DB_PASSWORD_{s.upper()}"))},
            mqtt_passwords={s: pw for s in BROKER_SERVICES
                            if (pw := env.get(f"GLUCOVER_MQTT_PASSWORD_{s.upper()}"))},
            keys={purpose: key for purpose in KEY_PURPOSES
                  if (key := env.get(f"GLUCOVER_{purpose.upper()}"))},
            held=frozenset(name for name, value in env.items() if value and is_credential(name)),
        )

    def require_database_url(self) -> str:
        if not self.database_url:
            raise ConfigError(
                "DATABASE_URL is not set: export DATABASE_URL=postgresql://user:pass@host:port/db "
                "or run `glucover up`, which starts a private database and prints its URL"
            )
        return self.database_url

    def require_mqtt(self) -> MqttTarget:
        if not self.mqtt_url:
            raise ConfigError(
                "MQTT_URL is not set: export MQTT_URL=mqtt://user:pass@host:port "
                "or run `glucover up`, which starts a private broker"
            )
        return MqttTarget.parse(self.mqtt_url)

    def key(self, purpose: str) -> str:
        """The key for one purpose (device_secret, session_key, pseudonym_key, nightscout_key):
        as given in the environment, else derived from the deployment secret."""
        assert purpose in KEY_PURPOSES, purpose
        return self.keys.get(purpose) or derive_key(self.secret(), purpose)

    def secret(self) -> str:
        """The deployment secret device and service passwords derive from.

        GLUCOVER_SECRET wins; otherwise one is generated once under GLUCOVER_HOME (mode 0600).
        """
        if self.secret_value:
            return self.secret_value
        path = self.home / "secrets" / "glucover.secret"
        if path.exists():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        value = secrets.token_hex(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value + "\n")
        return value
