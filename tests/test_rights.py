"""The person's rights over their data (docs/privacy.md): CSV of readings and ledger from the
command line and the page; erasure from the command line after a request on the page, which
leaves nothing of the person anywhere a query or the broker's files can find it, but what a
claim's legal hold keeps; retention of raw readings."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from psycopg import sql

from cli.main import main
from dashboard.auth import authenticate, create_user
from devices.provisioning import sync_broker
from devices.wire import topics
from glucover import broker
from glucover.config import Settings
from glucover.db import active_backend
from glucover.servers import LocalMosquitto
from policies.claims import file_claim
from policies.diagnoses import CODES
from pricing.engine import run_pricing
from privacy import access_log, consent, reviews
from records import fhir
from records.export import pseudonym_key
from tests.helpers import PASSWORD, START, TEST_SECRET, load_fleet, signed_in, wait_until

POLICY = "POL-006-000001"
THROUGH = START + timedelta(days=19)


@pytest.fixture
def people(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    load_fleet(db_url, n=6, days=20, seed=6)
    run_pricing(db_url, THROUGH)
    with psycopg.connect(db_url) as conn:
        create_user(conn, "alice", PASSWORD, "policyholder", POLICY, rounds=4)
        create_user(conn, "otto", PASSWORD, "operations", rounds=4)
        conn.commit()
    monkeypatch.setenv("DATABASE_URL", db_url)
    return db_url


def _device(conn: psycopg.Connection[tuple[object, ...]], policy: str) -> str:
    row = conn.execute("select device_id from policy_devices where policy_id = %s",
                       (policy,)).fetchone()
    assert row is not None
    return str(row[0])


def test_readings_and_ledger_as_csv_from_the_command_line(people: str, tmp_path: Path) -> None:
    with psycopg.connect(people) as conn:
        device = _device(conn, POLICY)
        stored = conn.execute("select count(*) from readings where device_id = %s",
                              (device,)).fetchone()
        ledger = conn.execute("select count(*) from sum_insured_ledger where policy_id = %s",
                              (POLICY,)).fetchone()
    for table, expected in (("readings", stored), ("ledger", ledger)):
        out = tmp_path / f"{table}.csv"
        assert main(["export", "csv", "--policy", POLICY, "--table", table, "--out",
                     str(out)]) == 0
        rows = list(csv.DictReader(io.StringIO(out.read_text())))
        assert expected is not None and len(rows) == expected[0] > 0
    assert main(["export", "csv", "--policy", "NOPE", "--table", "ledger", "--out",
                 str(tmp_path / "x.csv")]) == 2


@pytest.mark.parametrize(("lang", "labels"), [
    ("en", ["My readings (CSV)", "My sum insured, day by day (CSV)"]),
    ("zh", ["我的读数（CSV）", "我的保额明细（CSV）"])])
def test_the_policyholder_downloads_their_csv_and_asks_for_erasure(
        people: str, lang: str, labels: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    at = signed_in("alice", {"lang": lang})
    shown = [b.proto.label for b in at.get("download_button")]
    assert all(label in shown for label in labels)
    at.checkbox(key="erase_confirm").check().run()
    at.button(key="erase_ask").click().run()
    assert not at.exception
    with psycopg.connect(people) as conn:
        assert conn.execute("select policy_id, status from erasure_requests").fetchall() == [
            (POLICY, "open")]
    ops = signed_in("otto", {"lang": lang})
    assert any(POLICY in c.value for c in ops.code)
    assert main(["privacy", "requests"]) == 0
    assert f"--policy {POLICY}" in capsys.readouterr().out


def _everything(db_url: str) -> list[tuple[str, str]]:
    """Every (table, row as text) of every table the database holds, system catalogs aside."""
    found = []
    with psycopg.connect(db_url) as conn:
        tables = conn.execute(
            "select table_schema, table_name from information_schema.tables where "
            "table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', "
            "'information_schema')").fetchall()
        for schema, table in tables:
            rows = conn.execute(sql.SQL("select t::text from {}.{} t").format(
                sql.Identifier(str(schema)), sql.Identifier(str(table)))).fetchall()
            found += [(f"{schema}.{table}", str(r[0])) for r in rows]
    return found


def _broker_bytes(confdir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in confdir.rglob("*") if p.is_file())


def test_erasure_leaves_nothing_of_the_person_anywhere(
        people: str, mosquitto: LocalMosquitto, settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MQTT_URL", f"mqtt://127.0.0.1:{mosquitto.port}")
    monkeypatch.setenv("GLUCOVER_BROKER_DIR", str(mosquitto.confdir))
    broker_settings = Settings.from_env()
    with psycopg.connect(people) as conn:
        device = _device(conn, POLICY)
        name = str(conn.execute("select holder_name from policies where policy_id = %s",
                                (POLICY,)).fetchone()[0])  # type: ignore[index]
        sync_broker(conn, broker_settings)
        # Everything the person can have left behind: a withdrawal, a review, a staff read,
        # an alert with its notice, a session, an erasure request.
        consent.record(conn, POLICY, "research", False, "alice", "page")
        reviews.request(conn, POLICY, START + timedelta(days=3), "Please check.", "alice")
        access_log.record(conn, "dr_li", "clinician", POLICY, "policy_page")
        conn.execute("insert into alerts (policy_id, rule, severity, detail, rules_name, "
                     "rules_version) values (%s, 'lapsed', 'low', 'quiet', 'default', 0)",
                     (POLICY,))
        conn.execute("insert into notices (policy_id, device_id, kind, language, body) values "
                     "(%s, %s, 'lapsed', 'en', 'Please measure')", (POLICY, device))
        conn.execute("insert into device_status (device_id, state) values (%s, 'online') "
                     "on conflict do nothing", (device,))
        conn.execute("insert into erasure_requests (policy_id, requested_by) values (%s, "
                     "'alice')", (POLICY,))
        conn.commit()
    wait_until(lambda: device.encode() in (mosquitto.confdir / "passwd").read_bytes(), 10)
    # The meter's retained status in the broker's store.
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device, protocol=mqtt.MQTTv5)
    client.username_pw_set(device, broker.derive_password(TEST_SECRET, device))
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    client.publish(topics.status_topic(device), b'{"state":"online"}', qos=1,
                   retain=True).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()
    wait_until(lambda: device.encode() in _broker_bytes(mosquitto.confdir / "data"), 10)
    pseudonym = fhir.pseudonym(pseudonym_key(TEST_SECRET), POLICY)

    assert main(["privacy", "erase", "--policy", POLICY, "--reason", "request 1"]) == 0

    needles = (POLICY, device, name, pseudonym)
    left = [(table, row) for table, row in _everything(people)
            if any(n in row for n in needles)]
    assert left == []
    wait_until(lambda: not any(n.encode() in _broker_bytes(mosquitto.confdir)
                               for n in needles), 10)
    with psycopg.connect(people) as conn:
        assert authenticate(conn, "alice", PASSWORD) is None  # the login is closed
        assert conn.execute("select status, policy_id from erasure_requests").fetchall() == [
            ("erased", None)]
        assert conn.execute("select held, reason from erasures").fetchall() == [
            (False, "request 1")]
        # The access log keeps who looked, but no longer whose.
        assert access_log.entries(conn)["policy_id"].isna().all()
        other = conn.execute("select count(*) from readings").fetchone()
    assert other is not None and other[0] > 0  # the others' data stay


def test_a_claim_holds_the_claim_and_the_ledger_it_relied_on(people: str) -> None:
    with psycopg.connect(people) as conn:
        claim_id = file_claim(conn, POLICY, START + timedelta(days=10), CODES[0], [], "alice")
        conn.commit()
    assert main(["privacy", "erase", "--policy", POLICY, "--reason", "request 2"]) == 0
    with psycopg.connect(people) as conn:
        kept = conn.execute("select holder_name, birth_year from policies where policy_id = %s",
                            (POLICY,)).fetchone()
        assert kept == ("(erased)", None)
        basis = conn.execute("select basis_day from claims where claim_id = %s",
                             (claim_id,)).fetchone()
        assert basis == (START + timedelta(days=9),)
        days = [r[0] for r in conn.execute("select day from sum_insured_ledger where "
                                           "policy_id = %s", (POLICY,))]
        assert days and max(days) == basis[0]
        assert conn.execute("select count(*) from policy_devices where policy_id = %s",
                            (POLICY,)).fetchone() == (0,)
        assert conn.execute("select held from erasures").fetchall() == [(True,)]


def test_retention_drops_old_raw_readings_and_keeps_the_ledger(
        people: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["privacy", "retention", "--older-than", "7 days"]) == 2
    assert "at least 30 days" in capsys.readouterr().err
    with psycopg.connect(people) as conn:
        backend = active_backend(conn)
        ledger = conn.execute("select count(*) from sum_insured_ledger").fetchone()
        # Readings measured well over 30 days ago: the fleet's history started at START.
        age = (datetime.now(UTC).date() - START).days - 10
    assert main(["privacy", "retention", "--older-than", f"{age} days"]) == 0
    with psycopg.connect(people) as conn:
        if backend == "timescaledb":
            assert conn.execute("select count(*) from timescaledb_information.jobs where "
                                "proc_name = 'policy_retention' and hypertable_name = "
                                "'readings'").fetchone() == (1,)
        else:
            oldest = conn.execute("select min(measured_at) from readings").fetchone()
            assert oldest is not None and oldest[0] >= datetime.now(UTC) - timedelta(days=age)
        assert conn.execute("select count(*) from sum_insured_ledger").fetchone() == ledger
