"""Each service holds only its own credentials, in docker compose as in `glucover up` (issue
27), and `glucover doctor` says when an environment holds more."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from cli.doctor import credential_warnings
from glucover.config import Settings

ROOT = Path(__file__).parent.parent
SERVICES = {"ingest-1": "ingest", "ingest-2": "ingest", "pricing": "pricing", "alerts": "care",
            "dashboard": "dashboard", "simulator": "simulator", "premiums": "pricing"}


def compose() -> dict[str, Any]:
    text = subprocess.run(["docker-compose", "-f", "docker-compose.yml", "--profile", "demo",
                           "config"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return dict(yaml.safe_load(text)["services"])


def test_compose_hands_each_service_only_its_own_credentials() -> None:
    services = compose()
    for name in SERVICES:
        env = {k: str(v) for k, v in (services[name].get("environment") or {}).items()}
        assert "GLUCOVER_SECRET" not in env, name
        assert credential_warnings(Settings.from_env(env)) == [], name
    setup = services["setup"]["environment"]
    assert "GLUCOVER_SECRET" in setup  # the operator's one-off job holds the lot
    # The broker passwords setup writes are the ones the services connect with.
    assert setup["GLUCOVER_MQTT_PASSWORD_INGEST"] in services["ingest-1"]["environment"][
        "MQTT_URL"]
    assert setup["GLUCOVER_MQTT_PASSWORD_CARE"] in services["alerts"]["environment"]["MQTT_URL"]
    assert setup["GLUCOVER_DEVICE_SECRET"] == services["simulator"]["environment"][
        "GLUCOVER_DEVICE_SECRET"]


DASHBOARD = {"DATABASE_URL": "postgresql://glucover_dashboard_svc:pw@127.0.0.1:1/glucover",
             "GLUCOVER_SESSION_KEY": "k1", "GLUCOVER_PSEUDONYM_KEY": "k2"}


@pytest.mark.parametrize(("extra", "named"), [
    ({"GLUCOVER_SECRET": "s"}, "GLUCOVER_SECRET"),
    ({"GLUCOVER_DEVICE_SECRET": "d"}, "GLUCOVER_DEVICE_SECRET"),
    ({"GLUCOVER_DB_PASSWORD_PRICING": "p"}, "GLUCOVER_DB_PASSWORD_PRICING"),
    ({"MQTT_URL": "mqtt://glucover-ingest:pw@127.0.0.1:1"}, "ingest"),
    ({"GLUCOVER_TRUST_SENT_AT": "1"}, "GLUCOVER_TRUST_SENT_AT"),
])
def test_doctor_warns_when_a_service_holds_more_than_its_own(extra: dict[str, str],
                                                             named: str) -> None:
    assert credential_warnings(Settings.from_env(DASHBOARD)) == []
    warnings = credential_warnings(Settings.from_env({**DASHBOARD, **extra}))
    assert warnings and named in " ".join(warnings)


def test_the_doctor_command_prints_the_warning(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "GLUCOVER_HOME": str(tmp_path), **DASHBOARD,
           "GLUCOVER_SECRET": "s"}
    out = subprocess.run([sys.executable, "-m", "cli.main", "doctor"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60).stdout
    assert "[WARN] GLUCOVER_SECRET is set for the dashboard service" in out
