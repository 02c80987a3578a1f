"""Configuration from the environment: the one place that reads it.

Every setting has an embedded default so that `glucover up` runs with nothing set.

| variable                  | meaning                                                        |
|---------------------------|----------------------------------------------------------------|
| DATABASE_URL              | postgresql://... ; unset: a private cluster under GLUCOVER_HOME |
| MQTT_URL                  | mqtt://[user:pass@]host:port ; unset: a private Mosquitto       |
| GLUCOVER_HOME             | state directory (default ./.glucover)                          |
| GLUCOVER_SECRET           | secret that device and service passwords derive from           |
| GLUCOVER_TIMESCALE        | auto (default), on (fail without it) or off                    |
| GLUCOVER_COMPRESS_AFTER   | age after which TimescaleDB compresses readings (default 30 days) |
| GLUCOVER_BROKER_DIR       | broker password and ACL files (default GLUCOVER_HOME/mosquitto)  |
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
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
class Settings:
    home: Path
    database_url: str | None
    mqtt_url: str | None
    timescale: str
    compress_after: str
    broker_dir: Path

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("GLUCOVER_HOME", ".glucover")).absolute()
        timescale = os.environ.get("GLUCOVER_TIMESCALE", "auto").lower()
        if timescale not in ("auto", "on", "off"):
            raise ConfigError("GLUCOVER_TIMESCALE must be auto, on or off")
        return cls(
            home=home,
            database_url=os.environ.get("DATABASE_URL") or None,
            mqtt_url=os.environ.get("MQTT_URL") or None,
            timescale=timescale,
            compress_after=os.environ.get("GLUCOVER_COMPRESS_AFTER", "30 days"),
            broker_dir=Path(os.environ.get("GLUCOVER_BROKER_DIR", str(home / "mosquitto"))),
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

    def secret(self) -> str:
        """The deployment secret device and service passwords derive from.

        GLUCOVER_SECRET wins; otherwise one is generated once under GLUCOVER_HOME (mode 0600).
        """
        env = os.environ.get("GLUCOVER_SECRET")
        if env:
            return env
        path = self.home / "secrets" / "glucover.secret"
        if path.exists():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        value = secrets.token_hex(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value + "\n")
        return value
