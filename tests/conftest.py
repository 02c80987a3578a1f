"""Real servers for the tests: one PostgreSQL cluster and one Mosquitto broker per session, on
free loopback ports, run as ordinary users (PostgreSQL refuses root). Each test that needs a
database gets a fresh one (`fresh_db`) or a fresh migrated one (`db_url`).

GLUCOVER_TEST_DATABASE_URL points the tests at an existing server instead (it must allow
CREATE DATABASE), e.g. one with TimescaleDB to test that path.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from devices.provisioning import acl_text
from glucover import broker
from glucover.config import Settings
from glucover.db import migrate
from glucover.servers import LocalMosquitto, LocalPostgres
from tests.helpers import TEST_SECRET, state_dir


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    if url := os.environ.get("GLUCOVER_TEST_DATABASE_URL"):
        yield url
        return
    root = state_dir("glucover-test-pg-")
    server = LocalPostgres(root / "data").start()
    try:
        yield server.url("postgres")
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class PgHandle:
    server: LocalPostgres
    root: Path


@pytest.fixture
def own_pg() -> Iterator[LocalPostgres]:
    """A cluster of the test's own, for tests that restart or kill it."""
    root = state_dir("glucover-test-own-pg-")
    server = LocalPostgres(root / "data").start()
    try:
        yield server
    finally:
        server.stop(kill=True)
        shutil.rmtree(root, ignore_errors=True)


def _url_for(admin_url: str, dbname: str) -> str:
    return admin_url.rsplit("/", 1)[0] + "/" + dbname


@pytest.fixture
def fresh_db(pg_admin_url: str) -> Iterator[str]:
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        yield _url_for(pg_admin_url, name)
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(
                sql.Identifier(name)))


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("GLUCOVER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GLUCOVER_SECRET", TEST_SECRET)
    # The tests' meters take their passwords from TEST_SECRET (tests.helpers builders), and
    # their Nightscout upload secrets too.
    monkeypatch.setenv("GLUCOVER_DEVICE_SECRET", TEST_SECRET)
    monkeypatch.setenv("GLUCOVER_NIGHTSCOUT_KEY", TEST_SECRET)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("MQTT_URL", raising=False)
    return Settings.from_env()


@pytest.fixture
def db_url(fresh_db: str, settings: Settings) -> str:
    migrate(fresh_db, settings)
    return fresh_db


@pytest.fixture
def mosquitto() -> Iterator[LocalMosquitto]:
    """A broker with the service accounts; tests add devices through devices.provisioning."""
    root = state_dir("glucover-test-mqtt-")
    server = LocalMosquitto(root / "broker", acl=acl_text())
    server.write_config()
    broker.write_passwd(broker.BrokerFiles(server.confdir).passwd,
                        broker.service_entries(TEST_SECRET))
    server.start()
    try:
        yield server
    finally:
        server.stop(kill=True)
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Stack:
    """A migrated database and a broker whose accounts come from it, with env set to match."""

    db_url: str
    broker: LocalMosquitto
    settings: Settings

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.broker.port}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "DATABASE_URL": self.db_url, "MQTT_URL": self.mqtt_url,
                "GLUCOVER_SECRET": TEST_SECRET, "GLUCOVER_DEVICE_SECRET": TEST_SECRET,
                "GLUCOVER_NIGHTSCOUT_KEY": TEST_SECRET, "GLUCOVER_HOME": str(self.settings.home),
                "GLUCOVER_BROKER_DIR": str(self.broker.confdir)}


@pytest.fixture
def stack(db_url: str, mosquitto: LocalMosquitto, monkeypatch: pytest.MonkeyPatch,
          settings: Settings) -> Stack:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("MQTT_URL", f"mqtt://127.0.0.1:{mosquitto.port}")
    monkeypatch.setenv("GLUCOVER_BROKER_DIR", str(mosquitto.confdir))
    return Stack(db_url, mosquitto, Settings.from_env())
