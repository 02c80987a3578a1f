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
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices.fleet import Outgoing
from devices.wire.messages import Ack, DeviceStatus
from devices.wire.topics import READINGS_QOS, ack_topic
from glucover import broker
from glucover.config import MqttTarget
from kernel.sequence import SEQ_MODULO

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
    resent: int = 0

    def add(self, other: SessionStats) -> None:
        self.published += other.published
        self.acknowledged += other.acknowledged
        self.reconnects += other.reconnects
        self.resent += other.resent


@dataclass
class _Session:
    connected: threading.Event = field(default_factory=threading.Event)
    refused: str | None = None
    connects: int = 0
    # PUBACKs counted by message id, from on_publish: a message published while the connection
    # was down keeps its id and is sent after the reconnect, but its MQTTMessageInfo then raises
    # on is_published(), so delivery is tracked here. (Ids wrap at 65535; paho reuses one only
    # after its message is acknowledged, hence counts.)
    acked: Counter[int] = field(default_factory=Counter)
    # End to end: the sequence numbers ingest says it has stored (the union of its acks).
    stored: set[int] = field(default_factory=set)
    last_progress: float = field(default_factory=time.monotonic)

    def all_acked(self, mids: Counter[int]) -> bool:
        return all(self.acked[mid] >= n for mid, n in mids.items())

    def take_ack(self, ack: Ack) -> None:
        before = len(self.stored)
        for first, last in ack.stored:
            self.stored.update(range(first, last + 1))
        if len(self.stored) > before:
            self.last_progress = time.monotonic()


def meter_session(target: MqttTarget, secret: str, device_id: str,
                  messages: Sequence[Outgoing], password: str | None = None,
                  timeout: float = ACK_TIMEOUT_S, end_to_end: bool = False) -> SessionStats:
    """Publish `messages` as meter `device_id`; returns once all are acknowledged: by the
    broker (its PUBACK), or with `end_to_end` by ingest, on the meter's ack topic, once the
    readings are stored (docs/wire-format.md#acknowledgements).

    The meter rides out broker restarts: it connects in the background (a broker that is down
    when the meter starts is retried), paho keeps every unacknowledged QoS 1 message and sends
    it again after reconnecting, and the goodbye status is best effort (the Last Will says the
    same). End to end, it also sends again every message holding a reading not yet stored,
    after a reconnect or RESEND_AFTER_S without news: a broker killed before it saved what it
    had acknowledged loses nothing. Raises PublishError when the broker refuses the meter or
    `timeout` passes."""
    pending = _Session()
    seqs = [m.seqs for m in messages]
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
            if end_to_end:
                c.subscribe(ack_topic(device_id), qos=1)

    def on_disconnect(c: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                      props: Any) -> None:
        pending.connected.clear()

    def on_publish(c: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        pending.acked[mid] += 1

    def on_message(c: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            pending.take_ack(Ack.decode(bytes(msg.payload)))
        except (ValueError, KeyError, TypeError):
            log.warning("meter %s: not an ack on %s", device_id, msg.topic)

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_publish = on_publish
    client.on_message = on_message
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = SESSION_EXPIRY_S
    client.connect_async(target.host, target.port, keepalive=30, clean_start=False,
                         properties=props)
    client.loop_start()
    deadline = time.monotonic() + timeout
    try:
        _wait(lambda: pending.connected.is_set(), pending, device_id, deadline,
              "no connection")
        # paho keeps unacknowledged QoS 1 messages, those published while the connection was
        # down included, and sends them again after a reconnect.
        mids = Counter(client.publish(m.topic, m.payload, qos=READINGS_QOS, retain=m.retain).mid
                       for m in messages)
        resent = 0
        if end_to_end:
            resent = _until_stored(client, messages, seqs, pending, device_id, deadline)
        else:
            _wait(lambda: pending.all_acked(mids), pending, device_id, deadline,
                  "messages unacknowledged")
        _say_goodbye(client, device_id, pending)
    finally:
        client.disconnect()
        client.loop_stop()
    return SessionStats(len(messages), len(messages), max(pending.connects - 1, 0), resent)


RESEND_AFTER_S = 5.0  # end to end: send the unstored again after this long without an ack


def _until_stored(client: mqtt.Client, messages: Sequence[Outgoing],
                  seqs: list[tuple[int, ...]], pending: _Session, device_id: str,
                  deadline: float) -> int:
    """Wait until ingest has acknowledged every reading, sending again the messages whose
    readings it has not after a reconnect or a silence; how many messages were sent again."""
    resent = 0
    connects = pending.connects
    # What is stored only grows, so a message once covered stays covered: look again only at
    # the messages still missing, and only when an ack has added something. (Scanning all of
    # them every tick made a CGM's 26,000 messages of a quarter cost minutes.)
    missing = [i for i, numbers in enumerate(seqs) if numbers]
    seen = -1
    while True:
        if len(pending.stored) != seen:
            seen = len(pending.stored)
            missing = [i for i in missing if any(n not in pending.stored for n in seqs[i])]
        if not missing:
            return resent
        _give_up_if_refused_or_late(pending, device_id, deadline,
                                    f"{len(missing)} messages not stored")
        silent = time.monotonic() - pending.last_progress > RESEND_AFTER_S
        if pending.connected.is_set() and (silent or pending.connects != connects):
            connects = pending.connects
            for i in missing:
                client.publish(messages[i].topic, messages[i].payload, qos=READINGS_QOS)
            resent += len(missing)
            pending.last_progress = time.monotonic()
        time.sleep(0.05)


GOODBYE_TIMEOUT_S = 10.0


def _wait(done: Callable[[], bool], pending: _Session, device_id: str, deadline: float,
          what: str) -> None:
    while not done():
        _give_up_if_refused_or_late(pending, device_id, deadline, what)
        time.sleep(0.01)


def _give_up_if_refused_or_late(pending: _Session, device_id: str, deadline: float,
                                what: str) -> None:
    if pending.refused:
        raise PublishError(f"broker refused meter {device_id}: {pending.refused}")
    if time.monotonic() > deadline:
        raise PublishError(f"meter {device_id}: {what} before the deadline")


def _say_goodbye(client: mqtt.Client, device_id: str, pending: _Session) -> None:
    """The retained "offline" status, best effort: when the broker is away for longer than
    GOODBYE_TIMEOUT_S, the Last Will it holds says the same."""
    bye = DeviceStatus(device_id, datetime.now(UTC), "offline")
    mids = Counter([client.publish(bye.topic, bye.encode(), qos=1, retain=True).mid])
    deadline = time.monotonic() + GOODBYE_TIMEOUT_S
    while not pending.all_acked(mids) and time.monotonic() < deadline and not pending.refused:
        time.sleep(0.01)


@dataclass
class FleetResult(SessionStats):
    """What publishing a fleet came to: its sessions' totals, and the meters that could not
    deliver."""

    meters: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # device_id -> why


SESSION_READINGS = SEQ_MODULO // 2


def split_sessions(messages: list[Outgoing]) -> list[list[Outgoing]]:
    """Consecutive runs of `messages` holding at most SESSION_READINGS readings each."""
    parts: list[list[Outgoing]] = [[]]
    count = 0
    for m in messages:
        if count + len(m.seqs) > SESSION_READINGS and parts[-1]:
            parts.append([])
            count = 0
        parts[-1].append(m)
        count += len(m.seqs)
    return parts


def publish_fleet(target: MqttTarget, secret: str, by_device: dict[str, list[Outgoing]],
                  concurrency: int = 8, timeout: float = ACK_TIMEOUT_S,
                  end_to_end: bool = False) -> FleetResult:
    """Each meter's messages in its own session, `concurrency` meters at a time. One meter's
    failure is recorded and the others go on."""
    total = FleetResult()

    def sessions(device_id: str, messages: list[Outgoing]) -> SessionStats:
        """One meter's messages in sessions that each hold fewer readings than half the
        uint16 sequence numbers, so none sees a number come round again (a CGM sends 105,000
        readings a year): a session tells its readings apart by sequence number."""
        stats = SessionStats()
        for part in split_sessions(messages):
            stats.add(meter_session(target, secret, device_id, part, timeout=timeout,
                                    end_to_end=end_to_end))
        return stats

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="meter") as pool:
        futures = {device_id: pool.submit(sessions, device_id, messages)
                   for device_id, messages in by_device.items() if messages}
        for device_id, future in futures.items():
            total.meters += 1
            try:
                stats = future.result()
            except (PublishError, OSError) as exc:
                log.warning("meter %s could not deliver: %s", device_id, exc)
                total.failed[device_id] = str(exc)
                total.published += len(by_device[device_id])
                continue
            total.add(stats)
    return total
