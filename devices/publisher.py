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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices.fleet import Outgoing
from devices.wire.messages import Ack, DeviceStatus
from devices.wire.topics import READINGS_QOS, ack_topic
from glucover import broker
from glucover.config import MqttTarget
from kernel.sequence import SESSION_READINGS

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 3600  # the broker keeps a meter's session (and its in-flight messages) this long
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 5
MAX_INFLIGHT = 200  # QoS 1 messages a meter has out before it waits for PUBACKs
MAX_AHEAD = 1000  # messages a meter hands paho before their PUBACKs; it draws no more meanwhile
ACK_TIMEOUT_S = 300.0  # give up on a session after this long without progress (no new ack)


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
    puback_count: int = 0  # PUBACKs in all, re-sends' included
    sending: bool = True  # still handing the session's messages to the broker the first time
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


class Waiting(NamedTuple):
    """What a meter session is waiting for, said every WAIT_REPORT_S while nothing moves."""

    device_id: str
    what: str  # "broker": no connection yet; "ingest": readings not all stored yet
    stored: int  # this session's readings acknowledged so far
    readings: int  # this session's readings
    quiet_s: float  # seconds since the last progress


Watcher = Callable[[Waiting], None]


class Stopped(PublishError):
    """The user stopped the run (Ctrl-C): the meter keeps what no ack covers."""


def meter_session(target: MqttTarget, secret: str, device_id: str,
                  messages: Iterable[Outgoing], password: str | None = None,
                  timeout: float = ACK_TIMEOUT_S, end_to_end: bool = False,
                  watch: Watcher | None = None, stop: threading.Event | None = None
                  ) -> SessionStats:
    """Publish `messages` as meter `device_id`; returns once all are acknowledged: by the
    broker (its PUBACK), or with `end_to_end` by ingest, on the meter's ack topic, once the
    readings are stored (docs/wire-format.md#acknowledgements). `messages` may be a lazy
    stream: each is published as it comes, so the first goes out at once; together they hold
    at most SESSION_READINGS readings (split_sessions).

    The meter rides out broker restarts: it connects in the background (a broker that is down
    when the meter starts is retried), paho keeps every unacknowledged QoS 1 message and sends
    it again after reconnecting, and the goodbye status is best effort (the Last Will says the
    same). End to end, it also sends again every message holding a reading not yet stored,
    after a reconnect or RESEND_AFTER_S without news: a broker killed before it saved what it
    had acknowledged, or one that dropped messages from a full queue, loses nothing. While
    nothing moves, `watch` hears every WAIT_REPORT_S what the meter waits for. Raises
    PublishError when the broker refuses the meter or `timeout` seconds pass without progress,
    Stopped when `stop` is set."""
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
            if end_to_end:
                c.subscribe(ack_topic(device_id), qos=1)

    def on_disconnect(c: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                      props: Any) -> None:
        pending.connected.clear()

    def on_publish(c: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        pending.acked[mid] += 1
        pending.puback_count += 1
        if not end_to_end or pending.sending:  # end to end, only acks count once all is sent
            pending.last_progress = time.monotonic()

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
    waiter = _Waiter(pending, device_id, timeout, watch, stop)
    sent: list[Outgoing] = []
    try:
        waiter.wait(lambda: pending.connected.is_set(), "broker")
        # paho keeps unacknowledged QoS 1 messages, those published while the connection was
        # down included, and sends them again after a reconnect.
        mids: Counter[int] = Counter()
        for m in messages:
            # Draw no further ahead of the broker than MAX_AHEAD: paho would queue the whole
            # history (the messages, their packets) before sending much of it.
            if len(sent) - pending.puback_count >= MAX_AHEAD:
                waiter.wait(lambda: len(sent) - pending.puback_count < MAX_AHEAD, "broker")
            mids[client.publish(m.topic, m.payload, qos=READINGS_QOS, retain=m.retain).mid] += 1
            sent.append(m)
            if stop is not None and stop.is_set():
                raise Stopped(f"meter {device_id}: stopped")
        waiter.readings = len({n for m in sent for n in m.seqs})
        pending.sending = False
        pending.last_progress = time.monotonic()
        resent = 0
        if end_to_end:
            resent = _until_stored(client, sent, pending, waiter)
        else:
            waiter.wait(lambda: pending.all_acked(mids), "broker")
        _say_goodbye(client, device_id, pending, stop)
    finally:
        client.disconnect()
        client.loop_stop()
    return SessionStats(len(sent), len(sent), max(pending.connects - 1, 0), resent)


RESEND_AFTER_S = 5.0  # end to end: send the unstored again after this long without an ack
WAIT_REPORT_S = 10.0  # say what a meter waits for after this long without progress, and again


class _Waiter:
    """A session's patience: it gives up `timeout` seconds after the last progress (an ack
    that adds something, or a PUBACK), stops when asked, and says what it waits for while
    nothing moves."""

    def __init__(self, pending: _Session, device_id: str, timeout: float,
                 watch: Watcher | None, stop: threading.Event | None) -> None:
        self.pending, self.device_id, self.timeout = pending, device_id, timeout
        self.watch, self.stop = watch, stop
        self.readings = 0
        self.stored: Callable[[], int] = lambda: 0
        self.reported = time.monotonic()

    def check(self, what: str, detail: str) -> None:
        pending = self.pending
        if pending.refused:
            raise PublishError(f"broker refused meter {self.device_id}: {pending.refused}")
        if self.stop is not None and self.stop.is_set():
            raise Stopped(f"meter {self.device_id}: stopped")
        now = time.monotonic()
        quiet = now - pending.last_progress
        if quiet > self.timeout:
            raise PublishError(f"meter {self.device_id}: {detail} before the deadline "
                               f"({self.timeout:.0f}s without progress)")
        if self.watch is not None and quiet >= WAIT_REPORT_S \
                and now - self.reported >= WAIT_REPORT_S:
            self.reported = now
            self.watch(Waiting(self.device_id, what, self.stored(), self.readings, quiet))

    def wait(self, done: Callable[[], bool], what: str) -> None:
        while not done():
            self.check(what, "no connection" if what == "broker" and not
                       self.pending.connected.is_set() else "messages unacknowledged")
            time.sleep(0.01)


def _until_stored(client: mqtt.Client, messages: Sequence[Outgoing], pending: _Session,
                  waiter: _Waiter) -> int:
    """Wait until ingest has acknowledged every reading, sending again the messages whose
    readings it has not after a reconnect or a silence; how many messages were sent again."""
    resent = 0
    connects = pending.connects
    seqs = [m.seqs for m in messages]
    numbers = {n for ns in seqs for n in ns}
    waiter.stored = lambda: len(numbers & pending.stored)
    # What is stored only grows, so a message once covered stays covered: look again only at
    # the messages still missing, and only when an ack has added something. (Scanning all of
    # them every tick made a CGM's 26,000 messages of a quarter cost minutes.)
    missing = [i for i, ns in enumerate(seqs) if ns]
    seen = -1
    last_sent = time.monotonic()
    while True:
        if len(pending.stored) != seen:
            seen = len(pending.stored)
            missing = [i for i in missing if any(n not in pending.stored for n in seqs[i])]
        if not missing:
            return resent
        waiter.check("ingest", f"{len(missing)} messages not stored")
        now = time.monotonic()
        silent = now - max(pending.last_progress, last_sent) > RESEND_AFTER_S
        if pending.connected.is_set() and (silent or pending.connects != connects):
            connects = pending.connects
            for i in missing:
                client.publish(messages[i].topic, messages[i].payload, qos=READINGS_QOS)
            resent += len(missing)
            last_sent = time.monotonic()
        time.sleep(0.05)


GOODBYE_TIMEOUT_S = 10.0


def _say_goodbye(client: mqtt.Client, device_id: str, pending: _Session,
                 stop: threading.Event | None) -> None:
    """The retained "offline" status, best effort: when the broker is away for longer than
    GOODBYE_TIMEOUT_S, the Last Will it holds says the same."""
    bye = DeviceStatus(device_id, datetime.now(UTC), "offline")
    mids = Counter([client.publish(bye.topic, bye.encode(), qos=1, retain=True).mid])
    deadline = time.monotonic() + GOODBYE_TIMEOUT_S
    while not pending.all_acked(mids) and time.monotonic() < deadline and not pending.refused \
            and not (stop is not None and stop.is_set()):
        time.sleep(0.01)


@dataclass
class FleetResult(SessionStats):
    """What publishing a fleet came to: its sessions' totals, and the meters that could not
    deliver."""

    meters: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # device_id -> why
    stopped: bool = False  # the user stopped the run; `meters` counts those that finished


def split_sessions(messages: Iterable[Outgoing]) -> Iterator[Iterator[Outgoing]]:
    """Consecutive runs of `messages`, each holding at most SESSION_READINGS readings, lazily:
    each run is a stream to consume before asking for the next (a long history is never held
    whole)."""
    source = iter(messages)
    upcoming = [next(source, None)]

    def run() -> Iterator[Outgoing]:
        count = 0
        while (m := upcoming[0]) is not None:
            if count and count + len(m.seqs) > SESSION_READINGS:
                return
            count += len(m.seqs)
            yield m
            upcoming[0] = next(source, None)

    while upcoming[0] is not None:
        first = upcoming[0]
        yield run()
        if upcoming[0] is first:
            raise RuntimeError("split_sessions: consume each run before the next")


@dataclass
class FleetProgress:
    """How far a fleet's publishing has gone, for a progress display to read as it goes."""

    meters: int = 0  # meters in the fleet
    finished: int = 0  # meters done (delivered or given up)
    published: int = 0  # messages published so far (sent again not counted)


class _Counted:
    """An iterable that counts what was taken from it, here and in the fleet's progress."""

    def __init__(self, messages: Iterable[Outgoing], progress: FleetProgress) -> None:
        self.messages, self.progress, self.taken = messages, progress, 0

    def __iter__(self) -> Iterator[Outgoing]:
        for m in self.messages:
            self.taken += 1
            self.progress.published += 1
            yield m


def publish_fleet(target: MqttTarget, secret: str, by_device: Mapping[str, Iterable[Outgoing]],
                  concurrency: int = 8, timeout: float = ACK_TIMEOUT_S,
                  end_to_end: bool = False, watch: Watcher | None = None,
                  stop: threading.Event | None = None,
                  progress: FleetProgress | None = None) -> FleetResult:
    """Each meter's messages in its own sessions, `concurrency` meters at a time. A meter's
    messages may be a lazy stream (devices/fleet.py meter_messages): it is drawn as it is
    published, so memory holds `concurrency` sessions, whatever the fleet. One meter's failure
    is recorded and the others go on. Ctrl-C (or `stop`) ends every session at once: the
    result says `stopped`, and counts the meters that had finished."""
    total = FleetResult()
    stop = stop or threading.Event()
    progress = progress or FleetProgress()
    progress.meters = len(by_device)

    def sessions(device_id: str, messages: _Counted) -> SessionStats:
        """One meter's messages in sessions that each hold at most half the uint16 sequence
        numbers, so none sees a number come round again (a CGM sends 105,000 readings a
        year): a session tells its readings apart by sequence number, and an ack spans it."""
        stats = SessionStats()
        try:
            for part in split_sessions(messages):
                stats.add(meter_session(target, secret, device_id, part, timeout=timeout,
                                        end_to_end=end_to_end, watch=watch, stop=stop))
        finally:
            progress.finished += 1
        return stats

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="meter") as pool:
        counted = {device_id: _Counted(messages, progress)
                   for device_id, messages in by_device.items()}
        futures = {device_id: pool.submit(sessions, device_id, messages)
                   for device_id, messages in counted.items()}
        try:
            for device_id, future in futures.items():
                try:
                    stats = future.result()
                except Stopped:
                    break
                except (PublishError, OSError) as exc:
                    log.warning("meter %s could not deliver: %s", device_id, exc)
                    total.failed[device_id] = str(exc)
                    total.published += counted[device_id].taken
                else:
                    total.add(stats)
                if counted[device_id].taken:
                    total.meters += 1
        except KeyboardInterrupt:
            pass
        if stop.is_set() or not all(f.done() for f in futures.values()):
            total.stopped = True
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
    return total
