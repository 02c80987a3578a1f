"""`glucover simulate`: provision a fleet, publish its history as fast as the broker takes it,
then (with --live) keep publishing in real time."""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

from devices.fleet import (
    DEFAULT_CGM_SHARE,
    DEFAULT_GATEWAY_SHARE,
    Outgoing,
    Policyholder,
    fleet_messages,
    meter_messages,
    portfolio,
)
from devices.publisher import PublishError, meter_session, publish_fleet
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


def write_dry_run(path: str, messages: list[Outgoing]) -> None:
    with open(path, "w") as f:
        for m in messages:
            f.write(json.dumps({"topic": m.topic, "payload": json.loads(m.payload),
                                "retain": m.retain}, separators=(",", ":")) + "\n")


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


def simulate_cli(args: argparse.Namespace, settings: Settings) -> int:
    if args.policies < 1:
        raise UserError("--policies must be at least 1")
    now = datetime.now(UTC)
    first, history_end = history_window(args.start, args.days, now)
    people = portfolio(args.policies, args.seed, first, *shares(args))
    if args.dry_run:
        if not args.out:
            raise UserError("--dry-run needs --out FILE")
        messages = fleet_messages(people, args.seed, args.days, until=history_end)
        write_dry_run(args.out, messages)
        print(f"wrote {len(messages)} messages from {len(people)} meters to {args.out}")
        return 0
    if not args.no_provision:
        provision(settings, people)
    if args.provision_only:
        return 0
    target = settings.require_mqtt()
    started = time.monotonic()
    messages = fleet_messages(people, args.seed, args.days, until=history_end)
    by_device: dict[str, list[Outgoing]] = defaultdict(list)
    for m in messages:
        by_device[m.topic.split("/")[3]].append(m)
    end_to_end = not args.broker_ack
    device_secret = settings.key("device_secret")
    stats = publish_fleet(target, device_secret, by_device, end_to_end=end_to_end)
    elapsed = time.monotonic() - started
    print(f"history {first} .. {history_end:%Y-%m-%d %H:%M}Z: {stats.published} messages from "
          f"{len(by_device)} meters, {stats.acknowledged} acknowledged "
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
