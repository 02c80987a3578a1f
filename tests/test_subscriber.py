"""ingest/subscriber.py's batched reads and acknowledgements, against a real Mosquitto."""

from __future__ import annotations

import inspect
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.matcher import MQTTMatcher

from bench.loadgen import publish_packet, publish_raw
from devices.wire import topics
from glucover import broker
from glucover.servers import LocalMosquitto
from ingest.subscriber import READ_CHUNK, BatchingClient
from tests.helpers import TEST_SECRET, wait_until
from tests.mqtt_helpers import Collector, add_accounts

METER = "GM-SUB-1"


def test_the_paho_internals_it_relies_on_are_there() -> None:
    """An upgrade of paho that renames or reshapes these must fail here, not in production."""
    assert list(inspect.signature(mqtt.Client._sock_recv).parameters) == ["self", "bufsize"]
    assert list(inspect.signature(mqtt.Client._packet_read).parameters) == ["self"]
    assert list(inspect.signature(mqtt.Client._packet_queue).parameters)[:5] == [
        "self", "command", "packet", "mid", "qos"]
    assert callable(mqtt.Client._loop_rc_handle)
    assert "_in_packet" in inspect.getsource(mqtt.Client.reconnect)
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    assert type(client._on_message_filtered) is MQTTMatcher
    assert client._on_message_filtered._root._children == {}
    assert "_on_message_filtered.iter_match" in inspect.getsource(mqtt.Client._handle_on_message)
    assert client._in_packet["command"] == 0 and client._protocol == mqtt.MQTTv311
    assert "self._last_bytes_received = time_func()" in inspect.getsource(
        mqtt.Client._packet_read)
    assert mqtt.time_func is time.monotonic
    # publish_all_retained: a queued packet of command 0 is written and nothing else.
    written = inspect.getsource(mqtt.Client._packet_write)
    assert "(packet['command'] & 0xF0) == PUBLISH and packet['qos'] == 0" in written
    assert "(packet['command'] & 0xF0) == DISCONNECT" in written
    assert client._sock is None


def test_raw_retained_publishes_are_well_formed_mqtt(mosquitto: LocalMosquitto) -> None:
    """The acks ingest writes as raw bytes arrive as retained messages, long payloads (a
    multi-byte remaining length) included, and a client subscribing later still gets them."""
    from ingest.subscriber import _publish_qos0_retained, _remaining_length

    assert [_remaining_length(n) for n in (0, 127, 128, 16_383, 16_384)] == [
        b"\x00", b"\x7f", b"\x80\x01", b"\xff\x7f", b"\x80\x80\x01"]
    assert _publish_qos0_retained("a/b", b"xy") == b"\x31\x07\x00\x03a/bxy"
    devices = [f"M-{i}" for i in range(1, 5)]
    add_accounts(mosquitto, *devices)
    sender = Receiver(mosquitto)
    acks = {d: b"{" + b"x" * (50 * i) + b"}" for i, d in enumerate(devices, 1)}
    sender.client.publish_all_retained((topics.ack_topic(d), p) for d, p in acks.items())
    sender.barrier()
    sender.close()
    for device, payload in acks.items():  # each meter reads its own ack, and only its own
        later = Collector(mosquitto, topics.ack_topic("+"), client_id=device, account=device)
        assert later.wait_for(1, 10) == [payload]
        later.close()


class Receiver:
    """A persistent-session BatchingClient that records (mid, payload) and acks on request;
    `fast`: through on_qos1_message (counted in `fast_count`), else through on_message."""

    def __init__(self, server: LocalMosquitto, fast: bool = False) -> None:
        self.got: list[tuple[int, bytes]] = []
        self.fast_count = 0
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = BatchingClient(CallbackAPIVersion.VERSION2, client_id="sub-test",
                                     protocol=mqtt.MQTTv311, clean_session=False,
                                     manual_ack=True)
        account = broker.INGEST_ACCOUNT
        self.client.username_pw_set(account, broker.derive_password(TEST_SECRET, account))

        def on_connect(c: Any, u: Any, f: Any, reason: Any, p: Any) -> None:
            c.subscribe(topics.readings_topic("+"), qos=1)

        def on_subscribe(c: Any, u: Any, mid: Any, reasons: Any, p: Any) -> None:
            self.subscribed.set()

        def on_message(c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
            with self.lock:
                self.got.append((msg.mid, bytes(msg.payload)))

        def on_qos1_message(topic: str, payload: bytes, mid: int) -> None:
            assert topic == topics.readings_topic(METER)
            with self.lock:
                self.got.append((mid, payload))
                self.fast_count += 1

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        if fast:
            self.client.on_qos1_message = on_qos1_message
        self.client.connect("127.0.0.1", server.port)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def wait_for(self, count: int, timeout: float = 30) -> list[tuple[int, bytes]]:
        """What arrived once `count` messages have (or at the timeout), and anything the
        broker had sent before it answered a barrier after them."""
        def arrived() -> bool:
            with self.lock:
                return len(self.got) >= count

        wait_until(arrived, timeout, 0.05)
        self.barrier()
        with self.lock:
            return list(self.got)

    def barrier(self, timeout: float = 10) -> None:
        """Return once the broker has handled every packet this client sent before (PUBACKs,
        raw publishes): it answers a SUBSCRIBE after them, on the same connection, in order.
        Subscribing again to the same filter replaces the subscription without a gap."""
        self.subscribed.clear()
        self.client.subscribe(topics.readings_topic("+"), qos=1)
        assert self.subscribed.wait(timeout), "the broker did not answer the barrier"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.parametrize("fast", [False, True], ids=["on_message", "on_qos1_message"])
def test_batched_reads_deliver_every_message_and_ack_all_settles_them(
        mosquitto: LocalMosquitto, fast: bool) -> None:
    add_accounts(mosquitto, METER)
    topic = topics.readings_topic(METER)
    # Thousands of small messages (many per read) around a few larger than one read.
    payloads = [f"reading {i}".encode() for i in range(3000)]
    for i in (10, 1500, 2999):
        payloads[i] = bytes([65 + i % 26]) * (READ_CHUNK * 2 + 17)
    receiver = Receiver(mosquitto, fast)
    try:
        load = publish_raw("127.0.0.1", mosquitto.port, METER,
                           broker.derive_password(TEST_SECRET, METER),
                           [(topic, p) for p in payloads])
        assert load.acked == len(payloads)
        got = receiver.wait_for(len(payloads))
        assert [p for _, p in got] == payloads  # all, whole, once, in order
        # Packets cut by a read (the large ones, at least) go through paho's on_message.
        assert (0 < receiver.fast_count < len(payloads) - 2) if fast else \
            receiver.fast_count == 0
        keep = 100
        receiver.client.ack_all(mid for mid, _ in got[:-keep])
        receiver.barrier()  # the broker has the acknowledgements
    finally:
        receiver.close()
    # The session resumes: the broker re-sends exactly what was not acknowledged.
    again = Receiver(mosquitto, fast)
    try:
        redelivered = again.wait_for(keep, timeout=10)
        again.client.ack_all(mid for mid, _ in redelivered)
        again.barrier()
    finally:
        again.close()
    assert [p for _, p in redelivered] == payloads[-keep:]


def test_one_pass_decoding_takes_whole_qos1_publishes_and_leaves_the_rest_to_paho() -> None:
    client = BatchingClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    got: list[tuple[str, bytes, int]] = []
    long_payload = b"x" * 300  # a remaining length of two bytes
    packets = [
        publish_packet("gm/GM-1/readings", b"first", 1),
        bytes([0x3B]) + publish_packet("gm/GM-2/readings", long_payload, 65535)[1:],  # DUP, RETAIN
        publish_packet("gm/GM-3/readings", b"", 7),  # an empty payload is a message too
        b"\x32\x07\x00\x03\xff\xfe\xfd\x00\x09",  # a topic that is not UTF-8: paho's case
        publish_packet("gm/GM-4/readings", b"after", 8),
    ]
    client._chunk = b"".join(packets)
    client._take_publishes(lambda topic, payload, mid: got.append((topic, payload, mid)))
    assert got == [("gm/GM-1/readings", b"first", 1), ("gm/GM-2/readings", long_payload, 65535),
                   ("gm/GM-3/readings", b"", 7)]
    assert client._chunk_pos == sum(map(len, packets[:3]))

    # A packet the read cut in two, or any other packet type, is left where it starts.
    whole = publish_packet("gm/GM-5/readings", b"cut", 9)
    for chunk in (whole[:-1], whole[:1], b"\xd0\x00" + whole):  # the last leads with PINGRESP
        got.clear()
        client._chunk, client._chunk_pos = chunk, 0
        client._take_publishes(lambda topic, payload, mid: got.append((topic, payload, mid)))
        assert (got, client._chunk_pos) == ([], 0)


def test_per_topic_callbacks_still_work(mosquitto: LocalMosquitto) -> None:
    add_accounts(mosquitto, METER)
    receiver = Receiver(mosquitto, fast=True)
    routed: list[bytes] = []
    receiver.client.message_callback_add(topics.readings_topic(METER),
                                         lambda c, u, msg: routed.append(bytes(msg.payload)))
    try:
        load = publish_raw("127.0.0.1", mosquitto.port, METER,
                           broker.derive_password(TEST_SECRET, METER),
                           [(topics.readings_topic(METER), b"routed")])
        assert load.acked == 1
        wait_until(lambda: bool(routed), 10, 0.05)
    finally:
        receiver.close()
    assert routed == [b"routed"]
    assert receiver.got == []  # paho's rule: a matching per-topic callback replaces on_message
