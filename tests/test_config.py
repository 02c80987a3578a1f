"""Settings come from one typed object that the README documents exactly, and every failure a
user can cause through the command line prints one line saying what to do and exits 2."""

from __future__ import annotations

import re
import shutil
import socket
from pathlib import Path

import pytest

from cli.main import main
from glucover.config import VARIABLES, Settings, markdown_table
from tests.helpers import state_dir

ROOT = Path(__file__).parent.parent
PRODUCT = ("glucover", "ingest", "pricing", "dashboard", "devices")


def test_readme_lists_exactly_the_settings() -> None:
    readme = (ROOT / "README.md").read_text()
    assert markdown_table() in readme, "README's settings table: paste glucover.config's"
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", readme, re.M))
    assert documented == {v.name for v in VARIABLES}


def test_only_the_config_module_reads_the_environment() -> None:
    reads = re.compile(r"os\.environ\.get\(|os\.getenv\(|os\.environ\[[^\]]+\](?!\s*=)")
    offenders = [str(path.relative_to(ROOT)) for package in PRODUCT
                 for path in (ROOT / package).rglob("*.py")
                 if path.name != "config.py" and reads.search(path.read_text())]
    assert offenders == []


def test_settings_read_every_variable() -> None:
    env = {"GLUCOVER_HOME": "/srv/g", "GLUCOVER_PG_BIN": "/opt/pg/bin",
           "GLUCOVER_TRUST_SENT_AT": "1", "GLUCOVER_DASHBOARD_ADDRESS": "127.0.0.1",
           "GLUCOVER_DB_PASSWORD_PRICING": "pw", "GLUCOVER_SECRET": "s"}
    settings = Settings.from_env(env)
    assert settings.home == Path("/srv/g") and settings.broker_dir == Path("/srv/g/mosquitto")
    assert settings.pg_bin == Path("/opt/pg/bin") and settings.trust_sent_at
    assert settings.dashboard_address == "127.0.0.1"
    assert settings.db_passwords == {"pricing": "pw"} and settings.secret() == "s"
    assert Settings.from_env({}).trust_sent_at is False


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CASES = [
    ("bad timescale", {"GLUCOVER_TIMESCALE": "maybe"}, ["doctor"], "GLUCOVER_TIMESCALE must be"),
    ("bad trust flag", {"GLUCOVER_TRUST_SENT_AT": "yes"}, ["doctor"],
     "GLUCOVER_TRUST_SENT_AT must be 0 or 1"),
    ("no database", {}, ["migrate"], "DATABASE_URL is not set"),
    ("bad broker url", {"DATABASE_URL": "postgresql://x@127.0.0.1:1/x",
                        "MQTT_URL": "http://broker"}, ["ingest"], "MQTT_URL must look like"),
    ("unreachable database", {"DATABASE_URL": "postgresql://u@127.0.0.1:{port}/db"},
     ["migrate"], "cannot reach the database"),
    ("no postgres binaries", {"GLUCOVER_PG_BIN": "/nonexistent/bin"}, ["up", "--no-live"],
     "GLUCOVER_PG_BIN=/nonexistent/bin holds no initdb"),
    ("missing ruleset file", {}, ["price", "evaluate", "--policies", "p.csv", "--readings",
                                  "r.csv", "--ruleset", "nope.toml", "--through", "2026-01-01"],
     "ruleset file nope.toml does not exist"),
]


@pytest.mark.parametrize(("env", "argv", "says"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_a_user_error_is_one_line_and_exit_2(env: dict[str, str], argv: list[str], says: str,
                                             tmp_path: Path, request: pytest.FixtureRequest,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("DATABASE_URL", "MQTT_URL", *(v.name for v in VARIABLES)):
        monkeypatch.delenv(name, raising=False)
    home = state_dir("glucover-test-home-")
    request.addfinalizer(lambda: shutil.rmtree(home, ignore_errors=True))
    monkeypatch.setenv("GLUCOVER_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value.replace("{port}", str(_closed_port())))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("glucover: ") and says in err
    assert err.count("\n") == 1, err
