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
