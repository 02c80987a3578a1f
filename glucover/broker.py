"""Broker credentials and access control: who may connect to Mosquitto and publish where.

Every meter has its own account whose username is its device_id; the ACL (written by
`devices.wire.topics.acl`, part of the wire format) lets it write only its own topics. Services
(ingest, care) have accounts of their own. A meter's password derives (HMAC) from the device
secret, which only provisioning and the simulator that plays the fleet hold; a service's is
given (GLUCOVER_MQTT_PASSWORD_<SERVICE>) or derives from the deployment secret, which no service
holds: each service gets only its own password, in its MQTT_URL. The broker holds only PBKDF2
hashes.

The password file uses Mosquitto 2's `$7$` format: PBKDF2-HMAC-SHA512, 101 iterations, a 12-byte
salt, salt and digest in base64, exactly what `mosquitto_passwd` writes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from glucover.config import MqttTarget, Settings

MOSQUITTO_ITERATIONS = 101
INGEST_ACCOUNT = "glucover-ingest"
CARE_ACCOUNT = "glucover-care"  # publishes notices to policyholders (care/notices.py)
SERVICE_ACCOUNTS = {"ingest": INGEST_ACCOUNT, "care": CARE_ACCOUNT}


@dataclass(frozen=True)
class BrokerFiles:
    directory: Path

    @property
    def passwd(self) -> Path:
        return self.directory / "passwd"

    @property
    def acl(self) -> Path:
        return self.directory / "acl"

    @property
    def pid(self) -> Path:
        return self.directory / "mosquitto.pid"


def derive_password(secret: str, account: str) -> str:
    """The broker password of a device or service account, from the deployment secret."""
    return hmac.new(secret.encode(), f"mqtt:{account}".encode(), hashlib.sha256).hexdigest()[:32]


def service_password(settings: Settings, service: str) -> str:
    """A service's broker password: as given, else derived from the deployment secret."""
    return (settings.mqtt_passwords.get(service)
            or derive_password(settings.secret(), SERVICE_ACCOUNTS[service]))


def service_target(target: MqttTarget, settings: Settings, service: str) -> MqttTarget:
    """MQTT_URL as a service uses it: the account the URL names (what a deployment gives each
    service); else the service's own, from its password or the deployment secret."""
    if target.username:
        return target
    return target.with_credentials(SERVICE_ACCOUNTS[service], service_password(settings, service))


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, MOSQUITTO_ITERATIONS)
    return (f"$7${MOSQUITTO_ITERATIONS}${base64.b64encode(salt).decode()}$"
            f"{base64.b64encode(digest).decode()}")


def write_passwd(path: Path, entries: Iterable[tuple[str, str]]) -> int:
    """Write `account:hash` lines atomically; returns how many accounts the file holds."""
    lines = [f"{account}:{encoded}\n" for account, encoded in entries]
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.writelines(lines)
    os.replace(tmp, path)
    _match_directory_owner(path)
    return len(lines)


def write_acl(path: Path, text: str) -> None:
    """Write the broker's ACL file atomically. What it says is the wire format's business
    (`devices.wire.topics.acl`); this module only knows how Mosquitto wants its files."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    _match_directory_owner(path)


def _match_directory_owner(path: Path) -> None:
    """The broker may run as another user that owns its directory: hand it the file."""
    st = path.parent.stat()
    if os.geteuid() == 0 and (st.st_uid, st.st_gid) != (0, 0):
        os.chown(path, st.st_uid, st.st_gid)


def service_entries(secret: str, given: Mapping[str, str] | None = None
                    ) -> list[tuple[str, str]]:
    """The service accounts' lines of the password file: each password as `given` (per
    service), else derived from the secret."""
    given = given or {}
    return [(account, hash_password(given.get(service) or derive_password(secret, account)))
            for service, account in SERVICE_ACCOUNTS.items()]


def signal_reload(files: BrokerFiles) -> bool:
    """Ask a broker we started (pid file beside its config) to re-read its files."""
    try:
        pid = int(files.pid.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return False
    return True
