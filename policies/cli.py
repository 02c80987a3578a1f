"""`glucover claims ...` and `glucover policies ...`: the claims process and the policy's life
from the command line. Each handler opens one transaction: all of a step or none of it."""

from __future__ import annotations

import argparse
import getpass
import json
from collections.abc import Callable
from typing import Any

import psycopg

from glucover.config import Settings
from policies import claims as claims_process
from policies import documents
from policies.diagnoses import BY_CODE


def _print_claim(conn: psycopg.Connection[Any], claim_id: int, as_json: bool) -> None:
    found = claims_process.claim(conn, claim_id)
    print(json.dumps(found.as_dict(), indent=2) if as_json else found.text())


def _operator() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except OSError:  # no user name in this environment
        return "cli"


def file_cli(args: argparse.Namespace, settings: Settings) -> int:
    docs = [documents.read(path) for path in args.document or []]
    with psycopg.connect(settings.require_database_url()) as conn:
        claim_id = claims_process.file_claim(conn, args.policy, args.event_date,
                                             args.diagnosis, docs, _operator())
        conn.commit()
        _print_claim(conn, claim_id, args.json)
    return 0


def _claim_step(args: argparse.Namespace, settings: Settings,
                step: Callable[[psycopg.Connection[Any]], object]) -> int:
    """One step of a claim in one transaction, then the claim as it stands."""
    with psycopg.connect(settings.require_database_url()) as conn:
        step(conn)
        conn.commit()
        _print_claim(conn, args.claim, args.json)
    return 0


def approve_cli(args: argparse.Namespace, settings: Settings) -> int:
    return _claim_step(args, settings, lambda conn: claims_process.approve(
        conn, args.claim, args.handler_name, args.words))


def decline_cli(args: argparse.Namespace, settings: Settings) -> int:
    return _claim_step(args, settings, lambda conn: claims_process.decline(
        conn, args.claim, args.handler_name, args.reason, args.words))


def ask_cli(args: argparse.Namespace, settings: Settings) -> int:
    return _claim_step(args, settings, lambda conn: claims_process.ask_for_information(
        conn, args.claim, args.handler_name, args.words))


def add_documents_cli(args: argparse.Namespace, settings: Settings) -> int:
    docs = [documents.read(path) for path in args.document]
    return _claim_step(args, settings, lambda conn: claims_process.add_documents(
        conn, args.claim, docs, _operator()))


def pay_cli(args: argparse.Namespace, settings: Settings) -> int:
    return _claim_step(args, settings, lambda conn: claims_process.record_payment(
        conn, args.claim, args.handler_name, args.reference))


def show_cli(args: argparse.Namespace, settings: Settings) -> int:
    with psycopg.connect(settings.require_database_url()) as conn:
        _print_claim(conn, args.claim, args.json)
    return 0


def list_cli(args: argparse.Namespace, settings: Settings) -> int:
    with psycopg.connect(settings.require_database_url()) as conn:
        found = claims_process.claims(conn, args.policy, args.status)
    if args.json:
        print(json.dumps([c.as_dict() for c in found], indent=2))
    else:
        for c in found:
            print(c.text())
        if not found:
            print("no claims")
    return 0


def diagnoses_cli(args: argparse.Namespace, settings: Settings) -> int:
    from policies.product import product_for

    covered = product_for(args.product).covered_diagnoses
    rows = [{"code": code, "name_en": BY_CODE[code].name_en, "name_zh": BY_CODE[code].name_zh,
             "treatment": BY_CODE[code].treatment} for code in covered]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        for r in rows:
            print(f"{r['code']:<8} {r['name_en']} / {r['name_zh']} (needs {r['treatment']})")
    return 0


def decline_reasons() -> list[str]:
    return list(claims_process.DECLINE_REASONS)


def show_policy_cli(args: argparse.Namespace, settings: Settings) -> int:
    from policies.terms import policy_summary

    with psycopg.connect(settings.require_database_url()) as conn:
        summary = policy_summary(conn, args.policy)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"policy {summary['policy_id']} ({summary['product']}): {summary['state']} since "
              f"{summary['state_since']}; term {summary['term_number']} from "
              f"{summary['term_start']} to {summary['term_end']}; covered from "
              f"{summary['waiting_period_ends']}")
    return 0


def _today() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC).date()


def renew_cli(args: argparse.Namespace, settings: Settings) -> int:
    from policies.terms import policy_summary, renew

    with psycopg.connect(settings.require_database_url()) as conn:
        term = renew(conn, args.policy, _operator(), args.frequency)
        conn.commit()
        summary = policy_summary(conn, args.policy, today=term.start)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"policy {args.policy}: term {term.number} from {term.start} to {term.end}, "
              f"opening bonus {term.opening_bonus:,.2f}, instalment {term.instalment:,.2f} "
              f"{term.frequency}")
    return 0


def parameters_cli(args: argparse.Namespace, settings: Settings) -> int:
    from policies.product import markdown_table

    print(markdown_table(), end="")
    return 0


def premiums_record_cli(args: argparse.Namespace, settings: Settings) -> int:
    from policies import premiums

    with psycopg.connect(settings.require_database_url()) as conn:
        acc, reinstated = premiums.record(conn, args.policy, args.amount,
                                          args.paid_on or _today(), _operator(),
                                          args.reference)
        conn.commit()
    _print_account(acc, args.json, reinstated)
    return 0


def premiums_due_cli(args: argparse.Namespace, settings: Settings) -> int:
    from policies import premiums

    with psycopg.connect(settings.require_database_url()) as conn:
        acc = premiums.account(conn, args.policy, args.as_of or _today())
    _print_account(acc, args.json)
    return 0


def _print_account(acc: Any, as_json: bool, reinstated: Any = None) -> None:
    d = acc.as_dict()
    d["reinstated_from"] = None if reinstated is None else reinstated.isoformat()
    if as_json:
        print(json.dumps(d, indent=2))
        return
    print(f"policy {d['policy_id']} term {d['term_number']}: {d['instalments_paid']} of "
          f"{d['instalments']} {d['frequency']} instalments of {d['instalment']:,.2f} paid "
          f"({d['paid']:,.2f}); next due {d['next_due'] or '—'}, lapses on "
          f"{d['lapses_on'] or '—'} if unpaid")
    if reinstated is not None:
        print(f"reinstated: active again from {d['reinstated_from']}")
    elif d["state"] == "lapsed":
        until = d["reinstatable_until"]
        print(f"lapsed: {d['arrears']:,.2f} in arrears; " + (
            f"paying them by {until} reinstates it" if until else "it cannot be reinstated"))


def premiums_sweep_cli(args: argparse.Namespace, settings: Settings) -> int:
    """Lapses and expiries as of --as-of (default: today each time); with --every, again every
    N seconds, printing only what changed (`glucover up` and the compose file's premiums
    service run it so, beside pricing: docs/policies.md)."""
    import time

    from policies import premiums

    url = settings.require_database_url()
    while True:
        with psycopg.connect(url) as conn:
            done = premiums.sweep(conn, args.as_of or _today(), _operator())
            conn.commit()
        if not args.every or done["lapsed"] or done["expired"]:
            print(json.dumps(done) if args.json else
                  f"lapsed: {', '.join(done['lapsed']) or 'none'}; expired: "
                  f"{', '.join(done['expired']) or 'none'}", flush=True)
        if not args.every:
            return 0
        time.sleep(args.every)


def premiums_table_cli(args: argparse.Namespace, settings: Settings) -> int:
    from policies.premiums import premium_table
    from policies.product import product_for

    rows = premium_table(product_for(args.product))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            ages = f"{r['age_from']}-{r['age_to']}" if r["age_to"] is not None else \
                f"{r['age_from']}+"
            print(f"{r['product']:<12} ages {ages:<7} yearly {r['yearly']:>9,.2f}  monthly "
                  f"{r['monthly']:>8,.2f}")
    return 0


def apply_cli(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from glucover.errors import UserError
    from policies import enrolment

    path = Path(args.json_file)
    if not path.is_file():
        raise UserError(f"application file {path} does not exist")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not JSON: {exc}") from None
    app = enrolment.parse(doc)
    with psycopg.connect(settings.require_database_url()) as conn:
        outcome = enrolment.apply(conn, app, settings.key("device_secret"), _operator(),
                                  nightscout_key=settings.key("nightscout_key"))
        conn.commit()
        if outcome.accepted:
            from devices.provisioning import sync_broker

            sync_broker(conn, settings)  # the new meter may connect
    if not outcome.accepted:
        raise UserError(f"application {outcome.application_id} refused: "
                        + "; ".join(outcome.reasons))
    d = outcome.as_dict()
    if outcome.uploads is not None:  # what the applicant's app is told (docs/nightscout.md)
        from nightscout.credentials import app_urls

        d["nightscout"] = {"api_secret": outcome.uploads.api_secret,
                           "token": outcome.uploads.token,
                           **app_urls(settings.api_url, outcome.uploads)}
    if args.output_json:
        print(json.dumps(d, indent=2))
    else:
        print(f"application {d['application_id']} accepted: policy {d['policy_id']}, device "
              f"{d['device_id']}, term {d['term_start']} to {d['term_end']}, "
              f"{d['frequency']} instalments of {d['instalment']:,.2f}")
        if "nightscout" in d:
            print(f"  Nightscout uploads: base URL {d['nightscout']['base_url']}, API secret "
                  f"{d['nightscout']['api_secret']}")
    return 0


def cancel_cli(args: argparse.Namespace, settings: Settings) -> int:
    from policies import states
    from policies.terms import policy_summary

    if not args.reason.strip():
        from glucover.errors import UserError

        raise UserError("--reason must say why the policy is cancelled")
    with psycopg.connect(settings.require_database_url()) as conn:
        states.record(conn, args.policy, "cancelled", args.effective or _today(), _operator(),
                      reason=args.reason.strip())
        conn.commit()
        summary = policy_summary(conn, args.policy)
    print(json.dumps(summary, indent=2) if args.json else
          f"policy {args.policy} cancelled from {summary['state_since']}")
    return 0
