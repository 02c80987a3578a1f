"""Small real-broker helpers for tests: a collecting subscriber and one-shot publishes."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from glucover import broker
from glucover.servers import LocalMosquitto
from tests.helpers import TEST_SECRET, wait_until


def add_accounts(server: LocalMosquitto, *device_ids: str) -> None:
    files = broker.BrokerFiles(server.confdir)
    entries = broker.service_entries(TEST_SECRET) + [
        (d, broker.hash_password(broker.derive_password(TEST_SECRET, d))) for d in device_ids]
    broker.write_passwd(files.passwd, entries)
    server.reload()
    if device_ids:  # the broker has re-read its files once it lets the last one in
        last = device_ids[-1]
        assert wait_until(lambda: broker_accepts(
            server, last, broker.derive_password(TEST_SECRET, last)), 10)


@dataclass
class Collector:
    """A persistent-session subscriber that records every message it gets."""

    server: LocalMosquitto
    topic: str
    client_id: str = "test-collector"
    account: str = broker.INGEST_ACCOUNT
    payloads: list[bytes] = field(default_factory=list)
    arrived_at: list[datetime] = field(default_factory=list)  # of each payload, UTC
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(self.account,
                                    broker.derive_password(TEST_SECRET, self.account))
        self.client.reconnect_delay_set(1, 2)
        self.subscribed = threading.Event()

        def on_connect(c: Any, u: Any, f: Any, reason: Any, p: Any) -> None:
            c.subscribe(self.topic, qos=1)

        def on_subscribe(c: Any, u: Any, mid: Any, reasons: Any, p: Any) -> None:
            self.subscribed.set()

        def on_message(c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
            with self.lock:
                self.payloads.append(bytes(msg.payload))
                self.arrived_at.append(datetime.now(UTC))

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", self.server.port, clean_start=False, properties=props)
        self.client.loop_start()
        assert self.subscribed.wait(10), "subscription not acknowledged"

    def wait_for(self, count: int, timeout: float = 30) -> list[bytes]:
        def arrived() -> bool:
            with self.lock:
                return len(self.payloads) >= count

        wait_until(arrived, timeout, 0.05)
        with self.lock:
            return list(self.payloads)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def broker_accepts(server: LocalMosquitto, username: str, password: str) -> bool:
    """Whether the broker lets this account connect now."""
    return try_publish(server, username, password, None, b"")[0] == "ok"


def try_publish(server: LocalMosquitto, username: str | None, password: str | None,
                topic: str | None, payload: bytes) -> tuple[str, str | None]:
    """(connect result, PUBACK result or None): 'ok' or the refusal; 'accepted' or the reason.
    With no topic, only connects."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{time.monotonic_ns()}",
                         protocol=mqtt.MQTTv5)
    if username is not None:
        client.username_pw_set(username, password)
    result: dict[str, Any] = {}
    done = threading.Event()

    def on_connect(c: Any, u: Any, f: Any, reason: Any, p: Any) -> None:
        result["connect"] = "ok" if not reason.is_failure else str(reason)
        done.set()

    def on_publish(c: Any, u: Any, mid: Any, reason: Any, p: Any) -> None:
        # v5 PUBACK: "No matching subscribers" is a success too.
        result["puback"] = "accepted" if not reason.is_failure else str(reason)
        done.set()

    client.on_connect = on_connect
    client.on_publish = on_publish
    client.connect("127.0.0.1", server.port)
    client.loop_start()
    try:
        assert done.wait(10)
        if result["connect"] != "ok" or topic is None:
            return result["connect"], None
        done.clear()
        client.publish(topic, payload, qos=1)
        assert done.wait(10)
        return "ok", result.get("puback")
    finally:
        client.disconnect()
        client.loop_stop()
