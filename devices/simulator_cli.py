"""`glucover simulate`: provision a fleet, publish its history as fast as the broker takes it,
then (with --live) keep publishing in real time."""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import os
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TextIO

from devices.fleet import (
    DEFAULT_CGM_SHARE,
    DEFAULT_GATEWAY_SHARE,
    Outgoing,
    Policyholder,
    fleet_stream,
    meter_history,
    meter_messages,
    portfolio,
)
from devices.publisher import (
    FleetProgress,
    PublishError,
    Waiting,
    meter_session,
    publish_fleet,
)
from glucover.config import MqttTarget, Settings
from glucover.db import connect
from glucover.errors import UserError


def history_window(start: date | None, days: int, now: datetime) -> tuple[date, datetime]:
    """First day of history, and the instant history ends (live mode takes over there)."""
    if days < 1:
        raise UserError("--days must be at least 1")
    first = start or (now.astimezone(UTC).date() - timedelta(days=days - 1))
    end = datetime.combine(first + timedelta(days=days), datetime.min.time(), UTC)
    return first, min(end, now)


def write_dry_run(path: str, messages: Iterable[Outgoing]) -> int:
    """The messages as JSON lines, written as they come into a file beside `path` that takes
    its name only once complete (an interrupted run leaves no half-written file); how many."""
    target = Path(path)
    partial = target.with_name(f".{target.name}.partial")
    count = 0
    try:
        with partial.open("w") as f:
            for m in messages:
                f.write(json.dumps({"topic": m.topic, "payload": json.loads(m.payload),
                                    "retain": m.retain}, separators=(",", ":")) + "\n")
                count += 1
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return count


def provision(settings: Settings, people: list[Policyholder]) -> None:
    from devices.provisioning import add_portfolio, sync_broker

    with connect(settings.require_database_url()) as conn:
        created = add_portfolio(conn, people, settings.key("device_secret"))
        conn.commit()
        result = sync_broker(conn, settings)
    print(f"provisioned {len(people)} policyholders ({created} new) with one meter each; "
          f"broker accounts: {result.accounts}" + (", reloaded" if result.reloaded else ""))


LIVE_SESSION_TIMEOUT_S = 15.0  # a live meter gives up this session and retries with the next


def _device(message: Outgoing) -> str:
    return message.topic.split("/")[3]


def live(people: list[Policyholder], seed: int, after: datetime, speed: float,
         target: MqttTarget, secret: str, end_to_end: bool,
         stop: threading.Event | None = None) -> None:
    """Publish the meters' messages from `after` (where the history ended) on, until `stop`.

    Replaying the history took time: the messages the meters sent meanwhile are published
    first, as syncs, until none is left before the real now. Live mode then takes over at the
    real now: each message is sent at its own time (at `speed`, from that moment on), so a live
    reading's sent_at is when it is really sent and ingest's lag is the real one."""
    stop = stop or threading.Event()
    streams: list[Iterator[Outgoing]] = [
        (m for m in meter_messages(p, seed) if m.at >= after) for p in people]
    merged = heapq.merge(*streams, key=lambda m: (m.at, m.topic, m.order))
    upcoming = next(merged, None)
    undelivered: dict[str, list[Outgoing]] = {}  # kept by a meter until its next session
    while upcoming is not None and not stop.is_set():  # catch up with the real now
        now = datetime.now(UTC)
        behind: dict[str, list[Outgoing]] = defaultdict(list)
        while upcoming is not None and upcoming.at < now:
            behind[_device(upcoming)].append(upcoming)
            upcoming = next(merged, None)
        if not behind:
            break
        result = publish_fleet(target, secret, behind, timeout=LIVE_SESSION_TIMEOUT_S,
                               end_to_end=end_to_end)
        for device in result.failed:
            undelivered[device] = behind[device]
        print(f"live: {sum(map(len, behind.values()))} messages sent while the history was "
              f"replayed caught up ({len(result.failed)} meters keep theirs for later)",
              flush=True)
    started, origin = datetime.now(UTC), time.monotonic()
    batch: list[Outgoing] = []
    messages = itertools.chain([upcoming] if upcoming is not None else [], merged)
    for message in messages:
        if stop.is_set():
            return
        due = origin + (message.at - started).total_seconds() / speed
        if batch and (_device(message) != _device(batch[0]) or message.at != batch[0].at):
            device = _device(batch[0])
            batch = undelivered.pop(device, []) + batch
            try:
                meter_session(target, secret, device, batch, timeout=LIVE_SESSION_TIMEOUT_S,
                              end_to_end=end_to_end)
            except PublishError as exc:
                print(f"live: meter {device} keeps {len(batch)} messages for later: {exc}",
                      flush=True)
                undelivered[device] = batch
            batch = []
        delay = due - time.monotonic()
        if delay > 0 and stop.wait(delay):
            return
        batch.append(message)


def shares(args: argparse.Namespace) -> tuple[float, float]:
    """(gateway share, CGM share) of a portfolio, from --gateway-share and --cgm-share."""
    out = []
    for flag, given, default in (("--gateway-share", args.gateway_share, DEFAULT_GATEWAY_SHARE),
                                 ("--cgm-share", args.cgm_share, DEFAULT_CGM_SHARE)):
        value = default if given is None else given
        if not 0 <= value <= 1:
            raise UserError(f"{flag} must be between 0 and 1")
        out.append(value)
    return out[0], out[1]


PROGRESS_TTY_S = 0.5  # a progress bar on a terminal is redrawn this often
PROGRESS_LINE_S = 30.0  # ... elsewhere a line is printed this often
PROGRESS_AFTER_S = 3.0  # short histories finish without any


class Progress:
    """The fleet's progress while its history is published: a bar on a terminal, a line every
    PROGRESS_LINE_S otherwise; and what stalled meters wait for, a line at a time."""

    def __init__(self, fleet: FleetProgress, out: TextIO = sys.stderr) -> None:
        self.fleet, self.out = fleet, out
        self.tty = out.isatty()
        self.started = time.monotonic()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.drawn = False
        self.said_at = 0.0
        self.thread = threading.Thread(target=self._run, name="progress", daemon=True)

    def __enter__(self) -> Progress:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        with self.lock:
            self._clear()

    def line(self) -> str:
        f, elapsed = self.fleet, time.monotonic() - self.started
        return (f"{f.finished:,} of {f.meters:,} meters done, {f.published:,} messages "
                f"published, {f.published / max(elapsed, 1e-9):,.0f} msg/s, {elapsed:.0f}s")

    def _run(self) -> None:
        every = PROGRESS_TTY_S if self.tty else PROGRESS_LINE_S
        if self.stop.wait(PROGRESS_AFTER_S):
            return
        while True:
            with self.lock:
                if self.tty:
                    done = self.fleet.finished / max(self.fleet.meters, 1)
                    bar = "#" * int(done * 30)
                    self.out.write(f"\r[{bar:<30}] {self.line()}\x1b[K")
                    self.drawn = True
                else:
                    self.out.write(f"progress: {self.line()}\n")
                self.out.flush()
            if self.stop.wait(every):
                return

    def _clear(self) -> None:
        if self.drawn:
            self.out.write("\r\x1b[K")
            self.out.flush()
            self.drawn = False

    def waiting(self, w: Waiting) -> None:
        """A stalled meter: say what it waits for, at most once per PROGRESS_LINE_S / 3."""
        now = time.monotonic()
        with self.lock:
            if now - self.said_at < PROGRESS_LINE_S / 3:
                return
            self.said_at = now
            self._clear()
            if w.what == "broker":
                text = (f"meter {w.device_id}: no answer from the broker for {w.quiet_s:.0f}s: "
                        "is it running (MQTT_URL)?")
            else:
                text = (f"meter {w.device_id}: stored {w.stored} of {w.readings} readings, "
                        f"nothing new for {w.quiet_s:.0f}s: is an ingest worker running "
                        "(`glucover ingest`)?")
            self.out.write(f"{text} (Ctrl-C stops)\n")
            self.out.flush()


def simulate_cli(args: argparse.Namespace, settings: Settings) -> int:
    """`glucover simulate`; Ctrl-C stops it with a line saying where it stood, exit 130."""
    try:
        return _simulate(args, settings)
    except KeyboardInterrupt:
        print("\nglucover simulate: stopped (Ctrl-C); nothing half-written. Meters keep what "
              "ingest has not acknowledged: run the same command again to send it.",
              file=sys.stderr, flush=True)
        return 130


def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    if args.policies < 1:
        raise UserError("--policies must be at least 1")
    now = datetime.now(UTC)
    first, history_end = history_window(args.start, args.days, now)
    people = portfolio(args.policies, args.seed, first, *shares(args))
    if args.dry_run:
        if not args.out:
            raise UserError("--dry-run needs --out FILE")
        count = write_dry_run(args.out, fleet_stream(people, args.seed, args.days,
                                                     until=history_end))
        print(f"wrote {count} messages from {len(people)} meters to {args.out}")
        return 0
    if not args.no_provision:
        provision(settings, people)
    if args.provision_only:
        return 0
    target = settings.require_mqtt()
    started = time.monotonic()
    # Meter by meter, each history drawn as it is published: memory holds the meters being
    # published, not the fleet (docs/benchmarks.md#simulator).
    by_device = {p.device_id: meter_history(p, args.seed, args.days, until=history_end)
                 for p in people}
    end_to_end = not args.broker_ack
    device_secret = settings.key("device_secret")
    fleet = FleetProgress()
    with Progress(fleet) as progress:
        stats = publish_fleet(target, device_secret, by_device, end_to_end=end_to_end,
                              watch=progress.waiting, progress=fleet)
    if stats.stopped:
        raise KeyboardInterrupt
    elapsed = time.monotonic() - started
    print(f"history {first} .. {history_end:%Y-%m-%d %H:%M}Z: {stats.published} messages from "
          f"{stats.meters} meters, {stats.acknowledged} acknowledged "
          f"({'stored, end to end' if end_to_end else 'by the broker'}), {stats.resent} sent "
          f"again, {stats.reconnects} reconnects, {elapsed:.1f}s "
          f"({stats.published / max(elapsed, 1e-9):,.0f} msg/s)", flush=True)
    print(f"{len(stats.failed)} of {stats.meters} meters could not deliver"
          + "".join(f"\n  {device}: {why}" for device, why in sorted(stats.failed.items())),
          flush=True)
    if args.live:
        print(f"live: publishing in real time (x{args.speed:g}); Ctrl-C to stop", flush=True)
        live(people, args.seed, history_end, args.speed, target, device_secret, end_to_end)
    return 0 if not stats.failed and stats.acknowledged == stats.published else 1
