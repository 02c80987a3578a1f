"""Publishing meters' messages to the broker, each meter on its own account.

A meter session connects as its device (MQTT v5, persistent session so the broker and paho
re-send unacknowledged QoS 1 messages after a broker restart), announces itself on the retained
status topic with an "offline" Last Will, publishes, waits until every message is acknowledged,
and disconnects.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices.fleet import Outgoing
from devices.wire.messages import DeviceStatus
from devices.wire.topics import READINGS_QOS
from glucover import broker
from glucover.config import MqttTarget

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 3600  # the broker keeps a meter's session (and its in-flight messages) this long
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 5
MAX_INFLIGHT = 200  # QoS 1 messages a meter has out before it waits for PUBACKs
ACK_TIMEOUT_S = 300.0  # give up on a session whose messages are not all acknowledged by then


class PublishError(RuntimeError):
    pass


@dataclass
class SessionStats:
    published: int = 0
    acknowledged: int = 0
    reconnects: int = 0


@dataclass
class _Session:
    connected: threading.Event = field(default_factory=threading.Event)
    refused: str | None = None
    connects: int = 0


def meter_session(target: MqttTarget, secret: str, device_id: str,
                  messages: Sequence[Outgoing], password: str | None = None,
                  timeout: float = ACK_TIMEOUT_S) -> SessionStats:
    """Publish `messages` as meter `device_id`; returns once all are acknowledged."""
    pending = _Session()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id,
                         protocol=mqtt.MQTTv5)
    client.username_pw_set(device_id, password or broker.derive_password(secret, device_id))
    will = DeviceStatus(device_id, datetime.now(UTC), "offline")
    client.will_set(will.topic, will.encode(), qos=1, retain=True)
    client.max_inflight_messages_set(MAX_INFLIGHT)
    client.max_queued_messages_set(0)
    client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)

    def on_connect(c: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            pending.refused = str(reason)
        else:
            pending.connects += 1
            pending.connected.set()

    client.on_connect = on_connect
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = SESSION_EXPIRY_S
    client.connect(target.host, target.port, keepalive=30, clean_start=False, properties=props)
    client.loop_start()
    try:
        deadline = time.monotonic() + timeout
        while not pending.connected.wait(0.05):
            if pending.refused:
                raise PublishError(f"broker refused meter {device_id}: {pending.refused}")
            if time.monotonic() > deadline:
                raise PublishError(f"meter {device_id}: no connection within {timeout:.0f}s")
        # paho keeps unacknowledged QoS 1 messages and re-sends them after a reconnect; its
        # MQTTMessageInfo says when the PUBACK came.
        infos = [client.publish(m.topic, m.payload, qos=READINGS_QOS, retain=m.retain)
                 for m in messages]
        while True:
            left = sum(not info.is_published() for info in infos)
            if not left:
                break
            if pending.refused:
                raise PublishError(f"broker refused meter {device_id}: {pending.refused}")
            if time.monotonic() > deadline:
                raise PublishError(f"meter {device_id}: {left} messages unacknowledged after "
                                   f"{timeout:.0f}s")
            time.sleep(0.01)
        bye = DeviceStatus(device_id, datetime.now(UTC), "offline")
        client.publish(bye.topic, bye.encode(), qos=1, retain=True).wait_for_publish(10)
        client.disconnect()
    finally:
        client.loop_stop()
    return SessionStats(len(messages), len(infos), max(pending.connects - 1, 0))


def publish_fleet(target: MqttTarget, secret: str, by_device: dict[str, list[Outgoing]],
                  concurrency: int = 8) -> SessionStats:
    """Each meter's messages in its own session, `concurrency` meters at a time."""
    total = SessionStats()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="meter") as pool:
        futures = [pool.submit(meter_session, target, secret, device_id, messages)
                   for device_id, messages in by_device.items() if messages]
        for future in futures:
            stats = future.result()
            total.published += stats.published
            total.acknowledged += stats.acknowledged
            total.reconnects += stats.reconnects
    return total
