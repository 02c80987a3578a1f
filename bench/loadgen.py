"""A fast MQTT 3.1.1 QoS 1 publisher for benchmarks: pre-encoded PUBLISH packets written to a
raw socket, at most `window` unacknowledged, PUBACKs counted by a reader thread. It costs a few
percent of a core at tens of thousands of messages per second, so a benchmark measures ingest,
not the load generator."""

from __future__ import annotations

import itertools
import socket
import struct
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str | bytes) -> bytes:
    raw = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(raw)) + raw


def connect_packet(client_id: str, username: str, password: str) -> bytes:
    body = _str("MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 60)
    body += _str(client_id) + _str(username) + _str(password)
    return b"\x10" + _varint(len(body)) + body


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    body = _str(topic) + struct.pack("!H", packet_id) + payload
    return b"\x32" + _varint(len(body)) + body


@dataclass
class LoadResult:
    sent: int
    acked: int
    send_times: list[float]  # wall-clock time (epoch s) each message was written


def publish_raw(host: str, port: int, username: str, password: str,
                messages: Iterable[tuple[str, bytes]], window: int = 5000, chunk: int = 200,
                rate: float | None = None, stop: threading.Event | None = None) -> LoadResult:
    """Publish `messages` (QoS 1), as fast as the broker acknowledges them or, with `rate`,
    paced to that many messages per second. Packets are encoded chunk by chunk."""
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(connect_packet(f"loadgen-{time.monotonic_ns()}", username, password))
    connack = sock.recv(4)
    if len(connack) < 4 or connack[0] != 0x20 or connack[3] != 0:
        raise RuntimeError(f"broker refused the load generator: {connack!r}")
    acked = 0
    lock = threading.Condition()

    def reader() -> None:
        nonlocal acked
        pending = 0
        while True:
            try:
                data = sock.recv(65536)
            except OSError:  # closed by the sender when it is done
                return
            if not data:
                return
            pending += len(data)
            with lock:
                acked += pending // 4  # PUBACK is exactly 4 bytes
                pending %= 4
                lock.notify_all()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    send_times: list[float] = []
    source = iter(messages)
    began = time.monotonic()
    sent = 0
    if rate:  # paced: a chunk every 10 ms or so, not bursts
        chunk = max(1, min(chunk, int(rate // 100)))
    while stop is None or not stop.is_set():
        part = [publish_packet(t, p, (sent + k) % 65535 + 1)
                for k, (t, p) in enumerate(itertools.islice(source, chunk))]
        if not part:
            break
        with lock:
            while sent + len(part) - acked > window:
                lock.wait(1)
        if rate:
            ahead = (sent + len(part)) / rate - (time.monotonic() - began)
            if ahead > 0:
                time.sleep(ahead)
        now = time.time()
        sock.sendall(b"".join(part))
        send_times.extend([now] * len(part))
        sent += len(part)
    with lock:
        deadline = time.monotonic() + 120
        while acked < sent and time.monotonic() < deadline:
            lock.wait(1)
    sock.sendall(b"\xe0\x00")  # DISCONNECT
    sock.close()
    return LoadResult(sent, acked, send_times)
