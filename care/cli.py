"""`glucover alerts ...`: the alert service, its schedule, the list, the rules."""

from __future__ import annotations

import argparse
import json
import logging
import signal
from typing import Any

import psycopg

from care import rules as alert_rules
from care import store, stream
from glucover import broker
from glucover.config import MqttTarget, Settings


def care_target(settings: Settings) -> MqttTarget:
    return broker.service_target(settings.require_mqtt(), settings, "care")


def run_cli(args: argparse.Namespace, settings: Settings) -> int:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    service = stream.AlertService(stream.ServiceConfig(
        settings.require_database_url(),
        None if args.no_notices else care_target(settings),
        sweep_every_s=args.sweep_every))

    def on_signal(signum: int, frame: Any) -> None:
        service.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    service.run()
    return 0


def sweep_cli(args: argparse.Namespace, settings: Settings) -> int:
    with psycopg.connect(settings.require_database_url()) as conn:
        raised = stream.sweep(conn, store.rules_in_force(conn))
    for r in raised:
        print(f"raised alert {r.alert_id}: {r.rule} for {r.policy_id}")
    print(f"{len(raised)} alert(s) raised")
    return 0


def list_cli(args: argparse.Namespace, settings: Settings) -> int:
    with psycopg.connect(settings.require_database_url()) as conn:
        found = store.list_alerts(conn, [args.policy] if args.policy else None, args.open)
    if args.json:
        rows = [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
                for row in found.astype(object).where(found.notna(), None).to_dict("records")]
        print(json.dumps(rows, ensure_ascii=False, indent=1))
        return 0
    if found.empty:
        print("no alerts")
        return 0
    for r in found.itertuples():
        print(f"{r.alert_id:>6}  {r.severity:<6}  {r.status:<12}  {r.policy_id:<12}  "
              f"{r.rule:<22}  {r.raised_at:%Y-%m-%d %H:%M}  {r.reading_count:>4} reading(s)  "
              f"{r.detail}")
    return 0


def rules_show_cli(args: argparse.Namespace, settings: Settings) -> int:
    with psycopg.connect(settings.require_database_url()) as conn:
        rules = store.rules_in_force(conn)
    print(f"# version {rules.version or 'shipped (not published)'}")
    print(rules.to_toml(), end="")
    return 0


def rules_publish_cli(args: argparse.Namespace, settings: Settings) -> int:
    rules = alert_rules.load(args.file)
    with psycopg.connect(settings.require_database_url()) as conn:
        published = store.publish_rules(conn, rules, args.author, args.notes)
    print(f"published alert rules {published.name} version {published.version}")
    return 0


def rules_parameters_cli(args: argparse.Namespace, settings: Settings) -> int:
    print(alert_rules.markdown_table(), end="")
    return 0
