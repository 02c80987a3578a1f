"""`glucover bench simulate`: the simulator's memory and speed, streamed meter by meter beside
the whole-history approach it replaced, in the same run on the same fleet.

Each approach publishes the fleet's history in a process of its own, as `glucover simulate
--broker-ack` does (a message counts once the broker has it, so ingest's speed is not what is
measured), to a private Mosquitto. Figures per approach: peak resident memory of that process
(VmHWM), time from its start to the first message the broker hands a subscriber, messages per
second from its start to the end (drawing the history included, as a user waits for it)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.harness import emit, peak_rss_mb, private_root, progress
from devices.fleet import Outgoing, Policyholder, meter_history, meter_messages, portfolio
from devices.provisioning import acl_text
from devices.publisher import FleetResult, publish_fleet
from devices.wire.topics import TOPIC_ROOT
from glucover import broker
from glucover.config import MqttTarget, Settings
from glucover.memory import fixed_mmap_threshold
from glucover.servers import LocalMosquitto

APPROACHES = ("whole_history", "streamed")
FIRST_PUBLISH_TIMEOUT_S = 600.0


def whole_history_messages(people: list[Policyholder], seed: int, days: int,
                           until: datetime | None = None) -> list[Outgoing]:
    """The simulator before December 2026: every meter's whole history drawn into one list
    and sorted, then published (11 GB for 1,500 meters over 60 days). Kept as the baseline."""
    merged = [m for person in people for m in meter_messages(person, seed, days)
              if until is None or m.at < until]
    merged.sort(key=lambda m: (m.at, m.topic, m.order))
    return merged


def publish_whole_history(target: MqttTarget, secret: str, people: list[Policyholder],
                          seed: int, days: int, until: datetime) -> FleetResult:
    """The baseline: the history in memory, grouped by meter, then published."""
    by_device: dict[str, list[Outgoing]] = defaultdict(list)
    for m in whole_history_messages(people, seed, days, until):
        by_device[m.topic.split("/")[3]].append(m)
    return publish_fleet(target, secret, by_device)


def publish_streamed(target: MqttTarget, secret: str, people: list[Policyholder], seed: int,
                     days: int, until: datetime) -> FleetResult:
    """As `glucover simulate` publishes now: each meter's history drawn as it is sent."""
    return publish_fleet(target, secret, {p.device_id: meter_history(p, seed, days, until)
                                          for p in people})


def _fleet(args: argparse.Namespace) -> tuple[list[Policyholder], datetime]:
    first = date.fromisoformat(args.start)
    until = datetime.combine(first + timedelta(days=args.days), datetime.min.time(), UTC)
    return portfolio(args.policies, args.seed, first, args.gateway_share, args.cgm_share), until


def child(argv: list[str]) -> int:
    """One approach in this process; prints its figures as JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("approach", choices=APPROACHES)
    for flag in ("--port", "--policies", "--days", "--seed"):
        parser.add_argument(flag, type=int, required=True)
    for flag in ("--gateway-share", "--cgm-share"):
        parser.add_argument(flag, type=float, required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--start", required=True)
    args = parser.parse_args(argv)
    fixed_mmap_threshold()  # as the `glucover` command does
    people, until = _fleet(args)
    target = MqttTarget("127.0.0.1", args.port)
    publish = publish_whole_history if args.approach == "whole_history" else publish_streamed
    started_wall, started = time.time(), time.monotonic()
    result = publish(target, args.secret, people, args.seed, args.days, until)
    elapsed = time.monotonic() - started
    print(json.dumps({"published": result.published, "failed": len(result.failed),
                      "publish_s": round(elapsed, 2), "peak_rss_mb": round(peak_rss_mb(), 1),
                      "started_at": started_wall}))
    return 0


class _FirstMessage:
    """A subscriber that notes when the broker hands it its first message, then lets go."""

    def __init__(self, port: int, secret: str) -> None:
        self.at: float | None = None  # wall clock: the publisher is another process
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-first")
        self.client.username_pw_set(broker.INGEST_ACCOUNT,
                                    broker.derive_password(secret, broker.INGEST_ACCOUNT))
        self.client.on_connect = lambda c, *a: c.subscribe(f"{TOPIC_ROOT}/+/readings", 0)
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self.ready.wait(10):
            raise RuntimeError("bench subscriber could not subscribe")

    def _message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self.at is None:
            self.at = time.time()
            client.unsubscribe(f"{TOPIC_ROOT}/+/readings")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run(args: argparse.Namespace, say: Any) -> dict[str, Any]:
    people, _ = _fleet(args)
    secret = "bench-" + os.urandom(8).hex()
    report: dict[str, Any] = {
        "policies": args.policies, "days": args.days, "cgm_share": args.cgm_share,
        "gateway_share": args.gateway_share, "approaches": {}}
    approaches = APPROACHES[1:] if args.no_baseline else APPROACHES
    with ExitStack() as stack:
        root = private_root(stack, "glucover-bench-simulate-")
        for approach in approaches:
            # A fresh broker per approach: neither finds the other's sessions or messages.
            mq = LocalMosquitto(root / approach, acl=acl_text())
            mq.write_config()
            broker.write_passwd(broker.BrokerFiles(mq.confdir).passwd, [
                *broker.service_entries(secret),
                *((p.device_id, broker.hash_password(broker.derive_password(
                    secret, p.device_id))) for p in people)])
            mq.start()
            say(f"{approach}: {args.policies} meters x {args.days} days ...")
            first = _FirstMessage(mq.port, secret)
            started, spawned = time.monotonic(), time.time()
            out = subprocess.run(
                [sys.executable, "-m", "bench.simulate", approach, "--port", str(mq.port),
                 "--policies", str(args.policies), "--days", str(args.days),
                 "--seed", str(args.seed), "--gateway-share", str(args.gateway_share),
                 "--cgm-share", str(args.cgm_share), "--secret", secret,
                 "--start", args.start], capture_output=True, text=True, check=False)
            total = time.monotonic() - started
            first.close()
            mq.stop()
            if out.returncode != 0:
                raise RuntimeError(f"{approach} failed:\n{out.stderr[-2000:]}")
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            figures["run_s"] = round(total, 2)
            # From the process's start (its imports included), and from the moment it began
            # to publish (what the simulator itself decides).
            figures["first_publish_s"] = (round(first.at - spawned, 2)
                                          if first.at is not None else None)
            figures["first_publish_after_start_s"] = (
                round(first.at - figures.pop("started_at"), 2) if first.at is not None
                else None)
            figures["messages_per_s"] = round(figures["published"] / total)
            report["approaches"][approach] = figures
            say(f"  {json.dumps(figures)}")
    return report


def print_report(report: dict[str, Any]) -> None:
    print(f"simulate {report['policies']:,} meters x {report['days']} days (CGM share "
          f"{report['cgm_share']:g}), published to the broker (PUBACK):")
    print(f"  {'approach':<14} {'messages':>10} {'peak RSS':>10} {'first publish':>14} "
          f"{'(of which publishing)':>22} {'msg/s':>9} {'run':>8}")
    for name, f in report["approaches"].items():
        first, after = (f"{f[k]:.2f} s" if f[k] is not None else "-"
                        for k in ("first_publish_s", "first_publish_after_start_s"))
        print(f"  {name:<14} {f['published']:>10,} {f['peak_rss_mb']:>7,.0f} MB "
              f"{first:>14} {after:>22} {f['messages_per_s']:>9,} {f['run_s']:>6.1f} s")


def bench_cli(args: argparse.Namespace, settings: Settings) -> int:
    args.start = args.start or (datetime.now(UTC).date() - timedelta(days=args.days + 1)
                                ).isoformat()
    report = run(args, progress(not args.json))
    emit(report, args.json, print_report)
    failed = sum(f["failed"] for f in report["approaches"].values())
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(child(sys.argv[1:]))
