"""paho's client, tuned for one job: receiving tens of thousands of small QoS 1 messages a second
and acknowledging them in batches after they commit.

Profiles of the ingest worker (py-spy, single-record messages) showed paho's receive path doing,
per message, a select() and three or four recv() system calls (command byte, each byte of the
remaining length, then the body), and the acknowledgements going out as one send() and one
wake-up of the network thread per PUBACK. This subclass changes only how bytes move:

- `loop_read` makes one recv() of up to READ_CHUNK bytes and handles every packet in it (paho's
  reads one packet per call, and the loop selects before each); paho's own packet state machine
  still parses, so a packet split across reads resumes as before;
- `ack_all` queues the PUBACKs of a committed batch as one write, in the order given;
- per-topic callbacks (`message_callback_add`) still work, but with none registered a message
  no longer walks paho's topic matcher (a twelfth of the worker's time in a profile);
- with `on_qos1_message` set (MQTT 3.1.1, no per-topic callbacks), each complete QoS 1 PUBLISH
  in the chunk is decoded in one pass and handed over as (topic, payload, message id), without
  paho's per-packet state, MQTTMessage, locks and logging; anything else, or a packet the read
  cut in two, goes through paho as before.

It relies on a few of paho's internals (`_sock_recv`, `_packet_read`, `_packet_queue`,
`_on_message_filtered`, `_in_packet`, `_protocol`, `_msgtime_mutex`, `_last_bytes_received`),
which is why pyproject pins paho-mqtt below 3 and tests/test_subscriber.py checks they exist: an
upgrade that renames them fails there, loudly, not in production.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.matcher import MQTTMatcher

READ_CHUNK = 262_144
PUBACK = 0x40
PUBLISH = 0x30
RAW_BYTES = 0x00  # a queued packet paho must only write (see publish_all_retained)
_PUBACK = struct.Struct("!BBH")
QOS1_PUBLISH = 0x32  # PUBLISH at QoS 1; its DUP (0x08) and RETAIN (0x01) bits may be set
_QOS_BITS_KEPT = 0xF6


class _Callbacks(MQTTMatcher):  # type: ignore[misc]
    """paho's matcher of per-topic callbacks, answering at once when none are registered."""

    def iter_match(self, topic: str) -> Iterator[Any]:
        if not self._root._children:
            return iter(())
        return super().iter_match(topic)  # type: ignore[no-any-return,no-untyped-call]


class BatchingClient(mqtt.Client):
    """A paho Client whose reads and acknowledgements are batched (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_message_filtered = _Callbacks()  # type: ignore[no-untyped-call]
        self._chunk = b""
        self._chunk_pos = 0
        self._recv_budget = 0
        # (topic, payload, message id) of each QoS 1 message, instead of on_message; see above.
        self.on_qos1_message: Callable[[str, bytes, int], None] | None = None

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._chunk_pos >= len(self._chunk):
            if self._recv_budget <= 0:
                raise BlockingIOError  # this loop_read has read its chunk: back to select()
            self._recv_budget -= 1
            data = super()._sock_recv(READ_CHUNK)
            if not data:
                return data  # the connection closed
            self._chunk, self._chunk_pos = data, 0
        start = self._chunk_pos
        self._chunk_pos = min(start + bufsize, len(self._chunk))
        return self._chunk[start:self._chunk_pos]

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Read once from the socket and handle every complete packet that came with it."""
        self._recv_budget = 1
        try:
            while True:
                if self._sock is None:
                    return MQTTErrorCode.MQTT_ERR_NO_CONN
                if (self.on_qos1_message is not None and self._in_packet["command"] == 0
                        and self._protocol != mqtt.MQTTv5
                        and not self._on_message_filtered._root._children):
                    self._take_publishes(self.on_qos1_message)
                rc = self._packet_read()
                if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                    return MQTTErrorCode.MQTT_ERR_SUCCESS
                if rc > 0:
                    self._drop_chunk()
                    return self._loop_rc_handle(rc)
        finally:
            self._recv_budget = 0

    def _take_publishes(self, deliver: Callable[[str, bytes, int], None]) -> None:
        """Deliver every complete, well-formed QoS 1 PUBLISH at the head of the chunk; stop at
        the first other packet, cut or odd one, which paho's state machine then reads."""
        chunk, pos, end = self._chunk, self._chunk_pos, len(self._chunk)
        taken = pos
        while pos + 1 < end and chunk[pos] & _QOS_BITS_KEPT == QOS1_PUBLISH:
            length, shift, i = 0, 0, pos + 1  # remaining length: up to 4 bytes, 7 bits each
            while True:
                if i >= end or shift > 21:
                    return self._taken(taken)
                byte = chunk[i]
                i += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if byte < 0x80:
                    break
            body_end = i + length
            if body_end > end or length < 4:
                break
            topic_end = i + 2 + (chunk[i] << 8 | chunk[i + 1])
            if topic_end == i + 2 or topic_end + 2 > body_end:
                break  # an empty or overlong topic: paho refuses the packet
            try:
                topic = chunk[i + 2:topic_end].decode()
            except UnicodeDecodeError:
                break
            mid = chunk[topic_end] << 8 | chunk[topic_end + 1]
            deliver(topic, chunk[topic_end + 2:body_end], mid)
            pos = taken = body_end
        return self._taken(taken)

    def _taken(self, pos: int) -> None:
        if pos != self._chunk_pos:
            self._chunk_pos = pos
            with self._msgtime_mutex:
                self._last_bytes_received = time.monotonic()  # paho's keepalive clock

    def reconnect(self) -> MQTTErrorCode:
        self._drop_chunk()  # bytes of the old connection mean nothing on the new one
        return super().reconnect()

    def _drop_chunk(self) -> None:
        self._chunk, self._chunk_pos = b"", 0

    def ack_all(self, mids: Iterable[int]) -> None:
        """Acknowledge QoS 1 messages (manual_ack mode), in the order given, in one write."""
        packet = b"".join([_PUBACK.pack(PUBACK, 2, mid) for mid in mids])
        if packet:
            self._packet_queue(PUBACK, packet, 0, 1)

    def publish_all_retained(self, messages: Iterable[tuple[str, bytes]]) -> None:
        """Publish (topic, payload) pairs retained at QoS 0, in one write: the end-to-end
        acknowledgements of a committed batch. paho's publish() per message cost a fifth of
        the single-record throughput (measured); QoS 0 needs none of its bookkeeping (no
        message id, no retry), only the bytes. Dropped, like any QoS 0 message, when the
        connection is down."""
        packet = b"".join([_publish_qos0_retained(topic, payload)
                           for topic, payload in messages])
        if packet and self._sock is not None:
            # Queued as raw bytes under command 0: paho's after-write bookkeeping for a QoS 0
            # PUBLISH (on_publish, a MessageInfo) has nothing to do with these.
            self._packet_queue(RAW_BYTES, packet, 0, 0)


def _remaining_length(n: int) -> bytes:
    """MQTT's variable-length encoding of a packet's remaining length."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def _publish_qos0_retained(topic: str, payload: bytes) -> bytes:
    """A complete MQTT 3.1.1 PUBLISH packet, QoS 0, retained (no message id)."""
    name = topic.encode()
    body = len(name).to_bytes(2, "big") + name + payload
    return bytes([PUBLISH | 0x01]) + _remaining_length(len(body)) + body
