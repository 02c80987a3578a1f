"""`glucover consent give|withdraw|show --policy ID --purpose P [--json]`: consents recorded
by an operator (a paper form, a call centre)."""

from __future__ import annotations

import argparse
import getpass
import json

import psycopg

from glucover.config import Settings
from privacy import consent


def consent_cli(args: argparse.Namespace, settings: Settings) -> int:
    with psycopg.connect(settings.require_database_url()) as conn:
        if args.consent_command in ("give", "withdraw"):
            given = args.consent_command == "give"
            event = consent.record(conn, args.policy, args.purpose, given,
                                   actor=args.actor or getpass.getuser(), channel=args.channel)
            conn.commit()
        else:
            event = None
        choices = [c for c in consent.state(conn, args.policy)
                   if args.purpose in (None, c.purpose)]
    if args.json:
        out = {"policy_id": args.policy, "consents": [c.as_dict() for c in choices]}
        if event is not None:
            out["event_id"] = event
        print(json.dumps(out, ensure_ascii=False, indent=1))
        return 0
    if event is not None:
        print(f"recorded event {event}: {args.purpose} "
              f"{'given' if args.consent_command == 'give' else 'withdrawn'} for {args.policy}")
    for c in choices:
        state = "given" if c.given else ("withdrawn" if c.at else "not given")
        when = f" {c.at:%Y-%m-%d %H:%M %Z} via {c.channel} by {c.actor}" if c.at else ""
        again = f"; asked to confirm text version {c.current_version}" \
            if c.needs_reconsent else ""
        print(f"{c.purpose:<9} {state:<10} text v{c.text_version}{when}{again}")
    return 0


def access_log_cli(args: argparse.Namespace, settings: Settings) -> int:
    """`glucover privacy access-log [--policy ID] [--user NAME] [--since D] [--until D]
    [--json | --csv FILE]`: the access log, newest first."""
    from datetime import UTC, datetime, time, timedelta

    from privacy import access_log

    since = datetime.combine(args.since, time(), UTC) if args.since else None
    until = datetime.combine(args.until + timedelta(days=1), time(), UTC) if args.until \
        else None
    with psycopg.connect(settings.require_database_url()) as conn:
        log = access_log.entries(conn, args.policy, args.user, since, until)
    if args.csv:
        log.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}: {len(log)} entries")
    elif args.json:
        print(log.to_json(orient="records", date_format="iso", indent=1))
    else:
        for r in log.itertuples():
            print(f"{r.at:%Y-%m-%d %H:%M:%S}  {r.username!s:<12} {r.role!s:<10} "
                  f"{r.policy_id or '(erased)'!s:<16} {r.what!s:<12} {r.purpose!s:<12} "
                  f"{r.detail!s}")
        print(f"{len(log)} entries")
    return 0


def requests_cli(args: argparse.Namespace, settings: Settings) -> int:
    from privacy import erasure

    with psycopg.connect(settings.require_database_url()) as conn:
        waiting = erasure.open_requests(conn)
    for request_id, policy_id, who, at in waiting:
        print(f"{request_id:>6}  {policy_id:<16} asked by {who} at {at:%Y-%m-%d %H:%M}: "
              f"glucover privacy erase --policy {policy_id} --reason 'request {request_id}'")
    print(f"{len(waiting)} request(s) waiting")
    return 0


def retention_cli(args: argparse.Namespace, settings: Settings) -> int:
    from privacy import retention

    with psycopg.connect(settings.require_database_url()) as conn:
        said = retention.apply(conn, args.older_than)
        conn.commit()
    print(said)
    return 0
