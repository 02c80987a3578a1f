"""The ingest worker: MQTT -> database, acknowledging each message only after its rows commit.

Threads: paho's network loop (ingest/subscriber.py: batched reads) appends messages to an inbox;
one writer thread takes batches off it (up to `batch_size` messages or `flush_ms` after the
first), decodes them, writes them in one transaction and then acknowledges them, in arrival
order, in one write. The broker sends a client at most `max_inflight_messages` unacknowledged
messages (20,000 in the configs glucover writes), which bounds the inbox: when the database is
slow or down, messages wait in the broker's persistent session for us, not in our memory.
"""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from devices.wire import decoding, topics
from devices.wire.messages import MAX_STATUS_BYTES, Ack
from glucover import broker
from glucover.config import MqttTarget, Settings
from ingest import metrics, rejects
from ingest.batch import Received, decode
from ingest.store import Batch, Rejection, WriteResult, prepare, write_batch
from ingest.subscriber import BatchingClient

log = logging.getLogger("glucover.ingest")

SHARE_GROUP = "ingest"
SUBSCRIPTIONS = (f"$share/{SHARE_GROUP}/{topics.TOPIC_ROOT}/+/readings",
                 f"$share/{SHARE_GROUP}/{topics.TOPIC_ROOT}/+/status")
KEEPALIVE_S = 30
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 30
DB_RETRY_MIN_S, DB_RETRY_MAX_S = 0.2, 10.0
DEVICE_CACHE_TTL_S = 60.0
LINGER_POLL_S = 0.002
# How long a batch waits for more messages after its first. Under load, batches fill while the
# previous one commits, so this only sets the latency floor at low rates (the paced run of
# `glucover bench ingest` measures it; figures in the README). 50 ms cost several times the
# latency at 10,000 readings/s offered and gained no flat-out throughput.
DEFAULT_FLUSH_MS = 5
GC_THRESHOLD = 200_000


@dataclass
class WorkerConfig:
    database_url: str
    mqtt: MqttTarget
    client_id: str
    batch_size: int = 2000
    flush_ms: int = DEFAULT_FLUSH_MS
    trust_sent_at: bool = False
    metrics_port: int = 0
    acks: bool = True  # publish end-to-end acknowledgements after each commit
    rejects_kept_per_minute: int = rejects.KEPT_PER_MINUTE  # per meter (ingest/rejects.py)


class Inbox:
    """Messages from the network thread to the writer, in arrival order. The network thread
    only appends (a deque append needs no lock); it signals the writer only when the writer
    has said it is waiting, so a busy stream costs no lock or wake-up per message."""

    def __init__(self) -> None:
        self.items: deque[Received] = deque()
        self.idle = False
        self.wake = threading.Event()

    def put(self, item: Received) -> None:
        self.items.append(item)
        if self.idle:
            self.wake.set()

    def __len__(self) -> int:
        return len(self.items)

    def take(self, limit: int, linger_s: float, timeout_s: float) -> list[Received]:
        """Up to `limit` messages: waits up to `timeout_s` for the first, then up to `linger_s`
        for the batch to fill. Empty when nothing came."""
        if not self.items:
            self.idle = True
            if not self.items:  # re-checked after declaring idleness: no lost wake-up
                self.wake.wait(timeout_s)
            self.idle = False
            self.wake.clear()
            if not self.items:
                return []
        deadline = time.monotonic() + linger_s
        while len(self.items) < limit:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(remaining, LINGER_POLL_S))
        popleft = self.items.popleft
        return [popleft() for _ in range(min(limit, len(self.items)))]


class DeviceRegistry:
    """Which meters exist and are not revoked; cached, re-read when a stranger shows up."""

    def __init__(self) -> None:
        self.known: set[str] = set()
        self.loaded_at = 0.0

    def refresh(self, conn: psycopg.Connection[Any]) -> None:
        rows = conn.execute("select device_id from devices where revoked_at is null").fetchall()
        self.known = {str(r[0]) for r in rows}
        self.loaded_at = time.monotonic()

    def check(self, conn: psycopg.Connection[Any], device_ids: set[str]) -> set[str]:
        """The subset of `device_ids` that are known."""
        age = time.monotonic() - self.loaded_at
        if (device_ids - self.known and age > 1.0) or age > DEVICE_CACHE_TTL_S:
            self.refresh(conn)
        return device_ids & self.known


def _combine(a: WriteResult, b: WriteResult) -> WriteResult:
    rejected = dict(a.rejected)
    for reason, count in b.rejected.items():
        rejected[reason] = rejected.get(reason, 0) + count
    return WriteResult(a.stored + b.stored, a.duplicates + b.duplicates, rejected,
                       a.merged or b.merged, {**a.acks, **b.acks})


class IngestWorker:
    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.inbox = Inbox()
        self.stopping = threading.Event()
        self.stopped = threading.Event()
        self.devices = DeviceRegistry()
        self.rejects = rejects.RejectBudget(config.rejects_kept_per_minute)
        self.pruned_at = float("-inf")
        self.conn: psycopg.Connection[Any] | None = None
        # MQTT 3.1.1 with a persistent session: paho parses no v5 properties per message (a
        # seventh of the worker's time in profiles); the broker's max_inflight_messages bounds
        # what is unacknowledged, as v5's Receive Maximum would.
        self.client = BatchingClient(CallbackAPIVersion.VERSION2, client_id=config.client_id,
                                     protocol=mqtt.MQTTv311, clean_session=False,
                                     manual_ack=True)
        self.client.username_pw_set(config.mqtt.username, config.mqtt.password)
        self.client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_qos1_message = self._on_qos1_message
        self.client.on_subscribe = self._on_subscribe
        self.connected = threading.Event()
        self.subscribed = threading.Event()  # the broker granted every subscription

    # ------------------------------------------------------------ MQTT side (network thread)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    props: Any) -> None:
        if reason.is_failure:
            log.error("broker refused the ingest account: %s", reason)
            return
        log.info("connected to %s:%s (session present: %s)", self.config.mqtt.host,
                 self.config.mqtt.port, flags.session_present)
        client.subscribe([(topic, 1) for topic in SUBSCRIPTIONS])
        self.connected.set()

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any,
                      props: Any) -> None:
        refused = [r for r in reasons if r.is_failure]
        if refused:
            log.error("broker refused a subscription of the ingest account: %s", refused)
            return
        log.info("subscribed to %d topic filters", len(reasons))
        self.subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       props: Any) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if not self.stopping.is_set():
            log.warning("broker connection lost (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # Hot path (paho's network thread, once per message): the queue-depth gauge is set by
        # the writer once per batch instead.
        self.inbox.put(Received(msg.topic, bytes(msg.payload), msg.mid, msg.qos, datetime.now(UTC)))

    def _on_qos1_message(self, topic: str, payload: bytes, mid: int) -> None:
        self.inbox.put(Received(topic, payload, mid, 1, datetime.now(UTC)))

    # ------------------------------------------------------------ database side (writer thread)

    def _connect_db(self) -> psycopg.Connection[Any]:
        delay = DB_RETRY_MIN_S
        while True:
            try:
                # No server-side prepared statements: the generic plan TimescaleDB gives the
                # batch insert is 2.8x slower than planning it afresh (about 0.5 ms a batch).
                conn = psycopg.connect(self.config.database_url, connect_timeout=5,
                                       prepare_threshold=None)
                prepare(conn)
                self.devices.refresh(conn)
                conn.commit()
                return conn
            except psycopg.OperationalError as exc:
                if self.stopping.is_set() and not self.inbox:
                    raise
                log.warning("database unreachable (%s); retrying in %.1fs", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, DB_RETRY_MAX_S)

    def _take_batch(self) -> list[Received]:
        return self.inbox.take(self.config.batch_size, self.config.flush_ms / 1000, 0.2)

    def _commit(self, decoded: Batch, size: int) -> WriteResult:
        """One transaction for a decoded batch, retried through database outages."""
        delay = DB_RETRY_MIN_S
        while True:
            try:
                if self.conn is None or self.conn.closed:
                    self.conn = self._connect_db()
                known = self.devices.check(self.conn, decoded.device_ids())
                result = write_batch(self.conn, decoded, known, acks=self.config.acks)
                self.conn.commit()
                return result
            except psycopg.OperationalError as exc:
                log.warning("database write failed (%s); batch of %d kept, retrying in %.1fs",
                            exc, size, delay)
                metrics.DB_ERRORS.inc()
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                time.sleep(delay)
                delay = min(delay * 2, DB_RETRY_MAX_S)

    def _store(self, messages: list[Received]) -> WriteResult:
        """Store a batch. One the database refuses for any reason but an outage is split in
        halves until the message it refuses is alone; that one is recorded as a storage_error
        and the rest are stored, so no message can stop the ones behind it."""
        decoded = decode(messages, self.config.trust_sent_at)
        decoded.rejections = self.rejects.admit(decoded.rejections, time.monotonic())
        try:
            return self._commit(decoded, len(messages))
        except psycopg.Error as exc:
            assert self.conn is not None
            self.conn.rollback()
            metrics.DB_ERRORS.inc()
            if len(messages) > 1:
                half = len(messages) // 2
                return _combine(self._store(messages[:half]), self._store(messages[half:]))
            msg = messages[0]
            log.error("database refused a message on %s: %s", msg.topic, exc)
            found = topics.topic_device(msg.topic)
            refused = Batch(rejections=[Rejection(
                msg.topic, found[0] if found else None, decoding.RejectReason.STORAGE_ERROR,
                f"{type(exc).__name__}: {exc}", msg.payload, msg.received_at)])
            return self._commit(refused, 1)

    def _write(self, messages: list[Received]) -> None:
        """Store a batch (see _store), then acknowledge it."""
        started = time.monotonic()
        result = self._store(messages)
        self.client.ack_all([m.mid for m in messages if m.qos == 1])  # in arrival order
        self._publish_acks(result.acks)
        self._clear_oversized_statuses(messages)
        metrics.MESSAGES.inc(len(messages))
        metrics.READINGS.inc(result.stored)
        metrics.DUPLICATES.inc(result.duplicates)
        if result.merged:
            metrics.MERGED_BATCHES.inc()
        for reason, count in result.rejected.items():
            metrics.REJECTS.labels(reason).inc(count)
        metrics.BATCH_SECONDS.observe(time.monotonic() - started)
        metrics.QUEUE_DEPTH.set(len(self.inbox))
        if messages:
            lag = (datetime.now(UTC) - messages[0].received_at).total_seconds()
            metrics.LAG_SECONDS.set(lag)

    def _publish_acks(self, acks: dict[str, tuple[tuple[int, int], ...]]) -> None:
        """Each meter's stored ranges, retained on its ack topic, after the commit. QoS 0: a
        lost ack costs only a re-send, which is harmless and brings the next one."""
        if not acks:
            return
        now = datetime.now(UTC)
        self.client.publish_all_retained(
            (ack.topic, ack.encode()) for ack in (Ack(device_id, now, stored)
                                                  for device_id, stored in acks.items()))
        metrics.ACKS.inc(len(acks))

    def _housekeeping(self) -> None:
        """When idle: the summaries of refused messages not kept whole (ingest/rejects.py),
        and, hourly, refused messages past their retention deleted."""
        now = time.monotonic()
        if summaries := self.rejects.flush(now):
            self._commit(Batch(rejections=summaries), 0)
        if now - self.pruned_at < rejects.PRUNE_EVERY_S:
            return
        self.pruned_at = now
        try:
            if self.conn is None or self.conn.closed:
                self.conn = self._connect_db()
            deleted = self.conn.execute(
                "delete from rejected_messages where received_at < now() - %s",
                (rejects.RETENTION,)).rowcount
            self.conn.commit()
            if deleted:
                log.info("deleted %d refused messages older than %s", deleted, rejects.RETENTION)
        except psycopg.Error as exc:
            if self.conn is not None and not self.conn.closed:
                self.conn.rollback()
            log.warning("cannot delete old refused messages (%s): run `glucover migrate`", exc)

    def _clear_oversized_statuses(self, messages: list[Received]) -> None:
        """A status too large to be one (refused above) is not left retained on the broker:
        an empty retained message in its place clears it."""
        oversized = {m.topic for m in messages if len(m.payload) > MAX_STATUS_BYTES
                     and m.topic.endswith("/status") and topics.topic_device(m.topic)}
        if oversized:
            self.client.publish_all_retained((topic, b"") for topic in sorted(oversized))

    def _writer(self) -> None:
        try:
            while not (self.stopping.is_set() and not self.inbox):
                messages = self._take_batch()
                if messages:
                    self._write(messages)
                else:
                    self._housekeeping()
        finally:
            self.stopped.set()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.client.connect_async(self.config.mqtt.host, self.config.mqtt.port,
                                  keepalive=KEEPALIVE_S)
        self.client.loop_start()
        self.writer = threading.Thread(target=self._writer, name="ingest-writer", daemon=True)
        self.writer.start()

    def stop(self) -> None:
        """Flush what was received, commit, acknowledge, disconnect."""
        self.client.unsubscribe(list(SUBSCRIPTIONS))
        time.sleep(0.1)
        self.stopping.set()
        self.stopped.wait(60)
        self.client.disconnect()
        self.client.loop_stop()
        if self.conn is not None:
            self.conn.close()


def ingest_target(settings: Settings) -> MqttTarget:
    return broker.service_target(settings.require_mqtt(), settings, "ingest")


def ingest_cli(args: argparse.Namespace, settings: Settings) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s "
                        "%(message)s")
    config = WorkerConfig(
        database_url=settings.require_database_url(),
        mqtt=ingest_target(settings),
        client_id=args.client_id or f"glucover-{args.worker_name}",
        batch_size=args.batch_size, flush_ms=args.flush_ms,
        trust_sent_at=args.trust_sent_at or settings.trust_sent_at,
        metrics_port=args.metrics_port,
        acks=not args.no_acks,
    )
    if config.metrics_port:
        metrics.serve(config.metrics_port)
    worker = IngestWorker(config)
    done = threading.Event()
    # The hot path makes no reference cycles; what a batch allocates is freed by reference
    # counting when the batch is done. The cyclic collector's default of a pass every 700
    # allocations re-walked every live batch object (a fifth of decoding time, measured), so it
    # runs rarely here, and never over what was loaded at start-up.
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD)

    def on_signal(signum: int, frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker.start()
    log.info("ingest worker %s on %s (%s); batch %d / %d ms", config.client_id,
             socket.gethostname(), ", ".join(SUBSCRIPTIONS), config.batch_size, config.flush_ms)
    done.wait()
    log.info("stopping: flushing %d queued messages", len(worker.inbox))
    worker.stop()
    return 0
