"""The `glucover` command line. Subcommands import their module only when run."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

from glucover.config import DEFAULT_API_PORT, Settings
from glucover.memory import fixed_mmap_threshold

Handler = Callable[[argparse.Namespace, Settings], int]


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-01-31") from None


def _zone(text: str) -> str:
    from zoneinfo import available_timezones

    if text not in available_timezones():
        raise argparse.ArgumentTypeError(f"{text!r} is not an IANA time zone like Asia/Shanghai")
    return text


# ------------------------------------------------------------------ handlers
# Each subcommand names its handler "module:function"; the function takes (args, settings) and
# returns the exit code. Modules load only when their command runs.


def _load(target: str) -> Handler:
    module, _, name = target.partition(":")
    handler: Handler = getattr(importlib.import_module(module), name)
    return handler


# ------------------------------------------------------------------ parser


def _add(parent: Any, name: str, handler: str | None, help: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = parent.add_parser(name, help=help, description=help)
    p.set_defaults(handler=handler)
    return p


def _subcommands(p: argparse.ArgumentParser, dest: str, metavar: str) -> Any:
    return p.add_subparsers(dest=dest, required=True, metavar=metavar)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glucover",
        description="Usage-based diabetes insurance: meters -> MQTT -> TimescaleDB -> pricing.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_commands in (
        _system_commands,
        _device_commands,
        _ingest_commands,
        _pricing_commands,
        _policy_commands,
        _cgm_commands,
        _export_commands,
        _care_commands,
        _actuary_commands,
        _privacy_commands,
        _bench_commands,
        _nightscout_commands,
    ):
        add_commands(sub)
    return parser


def _system_commands(sub: Any) -> None:
    """The whole system, the schema, health checks."""
    p = _add(
        sub,
        "up",
        "cli.up:up_cli",
        "run the whole system on embedded defaults (or DATABASE_URL/MQTT_URL)",
    )
    p.add_argument("--dashboard-port", type=int, default=8501)
    p.add_argument("--policies", type=int, default=300, help="demo portfolio size")
    p.add_argument("--days", type=int, default=100,
                   help="days of history to backfill (past the 90-day waiting period, so "
                   "the demo has approved and paid claims)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--price-every", type=float, default=60.0, help="seconds between pricing runs")
    p.add_argument("--no-live", action="store_true", help="stop publishing after the backfill")
    p.add_argument("--api-port", type=int, default=DEFAULT_API_PORT,
                   help="port of the Nightscout-compatible API")

    _add(sub, "migrate", "glucover.db:migrate_cli", "apply the database schema (idempotent)")
    p = _add(sub, "backup", "glucover.backup:backup_cli",
             "dump the database into a directory, with each table's row count and checksum")
    p.add_argument("--out", required=True, metavar="DIR", help="a new or empty directory")
    p = _add(sub, "restore", "glucover.backup:restore_cli",
             "restore a backup into an empty database and check every table against it")
    p.add_argument("--from", dest="source", required=True, metavar="DIR",
                   help="a `glucover backup` directory")
    p = _add(
        sub,
        "doctor",
        "cli.doctor:doctor_cli",
        "say which backend and features are active; check reachability",
    )
    p.add_argument("--json", action="store_true")


def _nightscout_commands(sub: Any) -> None:
    """The Nightscout-compatible upload API (docs/nightscout.md)."""
    p = _add(sub, "api", "nightscout.cli:api_cli",
             "serve the Nightscout-compatible upload API (xDrip+, AndroidAPS, ...)")
    p.add_argument("--port", type=int, default=DEFAULT_API_PORT)
    p.add_argument("--host", default="0.0.0.0",  # noqa: S104 - a server's, in a container
                   help="address to listen on")
    nightscout = _add(sub, "nightscout", None, "a policyholder's Nightscout uploads")
    nsub = _subcommands(nightscout, "nightscout_command", "ACTION")
    p = _add(nsub, "enable", "nightscout.cli:enable_cli",
             "create (or show, or with --rotate renew) a policy's upload credentials")
    p.add_argument("--policy", required=True, help="policy id")
    p.add_argument("--json", action="store_true")
    p.add_argument("--rotate", action="store_true",
                   help="new secret and token; the old ones stop working")


def _device_commands(sub: Any) -> None:
    """The simulated fleet and meter credentials."""
    p = _add(
        sub,
        "simulate",
        "devices.simulator_cli:simulate_cli",
        "publish a realistic glucose-meter fleet",
    )
    p.add_argument("--policies", type=int, default=50)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--gateway-share", type=float,
                   help="share of meters that are Bluetooth meters relayed by a gateway "
                   "(default 0.1, devices/fleet.py DEFAULT_GATEWAY_SHARE)")
    p.add_argument("--cgm-share", type=float,
                   help="share of policyholders who wear a continuous glucose monitor "
                   "(default 0.1, devices/fleet.py DEFAULT_CGM_SHARE)")
    p.add_argument("--start", type=_date, help="first day of history (default: today - days)")
    p.add_argument("--live", action="store_true", help="after the history, publish in real time")
    p.add_argument(
        "--speed", type=float, default=1.0, help="live mode: simulated seconds per real second"
    )
    p.add_argument("--dry-run", action="store_true", help="publish nothing; write --out")
    p.add_argument("--out", help="JSON lines file of the messages (with --dry-run)")
    p.add_argument(
        "--no-provision", action="store_true", help="assume policies and devices exist already"
    )
    p.add_argument(
        "--broker-ack",
        action="store_true",
        help="count a message delivered when the broker acknowledges it (default: when ingest "
        "says it is stored; needs an ingest worker)",
    )
    p.add_argument(
        "--provision-only",
        action="store_true",
        help="provision policies, meters and broker accounts, publish nothing",
    )

    devices = _add(sub, "devices", None, "manage meter credentials and broker ACLs")
    dsub = devices.add_subparsers(dest="devices_command", required=True, metavar="ACTION")
    p = _add(
        dsub,
        "provision",
        "devices.provisioning:provision_cli",
        "create N meters with broker accounts",
    )
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--prefix", default="meter")
    p.add_argument("--kind", default="bgm",
                   help="bgm (fingerstick blood glucose meter, default) or cgm (continuous "
                   "glucose monitor)")
    p = _add(dsub, "revoke", "devices.provisioning:revoke_cli", "revoke a meter's broker account")
    p.add_argument("device_id")
    _add(
        dsub,
        "sync-broker",
        "devices.provisioning:sync_cli",
        "rewrite the broker's password and ACL files from the database",
    )


def _ingest_commands(sub: Any) -> None:
    """The ingest worker."""
    p = _add(sub, "ingest", "ingest.worker:ingest_cli", "run an ingest worker (MQTT -> database)")
    p.add_argument(
        "--client-id",
        default=None,
        help="MQTT client id of the persistent session (default: glucover-WORKER_NAME)",
    )
    p.add_argument("--worker-name", default="ingest-1")
    p.add_argument("--batch-size", type=int, default=2000)
    p.add_argument(
        "--flush-ms",
        type=int,
        default=5,
        help="how long a batch waits for more messages after its first",
    )
    p.add_argument("--metrics-port", type=int, default=0, help="Prometheus port (0: off)")
    p.add_argument(
        "--no-acks",
        action="store_true",
        help="publish no end-to-end acknowledgements (meters then rely on the broker's PUBACK)",
    )
    p.add_argument(
        "--trust-sent-at",
        action="store_true",
        help="replays only: take the gateway's sent_at as the receive time",
    )


def _pricing_commands(sub: Any) -> None:
    """Pricing, claims and the dashboard."""
    price = _add(sub, "price", None, "the pricing engine")
    psub = price.add_subparsers(dest="price_command", required=True, metavar="ACTION")
    p = _add(psub, "evaluate", "pricing.cli:evaluate_cli", "evaluate CSV files, no database")
    p.add_argument("--policies", required=True)
    p.add_argument("--readings", required=True)
    p.add_argument("--ruleset", default="default", help="built-in name or TOML file")
    p.add_argument("--through", type=_date, required=True)
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    p.add_argument("--out", help="file (default: standard output)")
    _add(
        psub,
        "parameters",
        "pricing.cli:parameters_cli",
        "the ruleset parameters: unit, default, bounds, meaning (Markdown)",
    )
    p = _add(psub, "run", "pricing.cli:run_cli", "incremental, idempotent run against the database")
    p.add_argument("--through", type=_date, default=None, help="default: yesterday in UTC")
    p.add_argument("--ruleset", default=None, help="override every policy's ruleset (name)")
    p.add_argument(
        "--every",
        type=float,
        default=0.0,
        help="repeat every N seconds (through = yesterday each time); 0: once",
    )
    p.add_argument("--json", action="store_true")

    p = _add(sub, "dashboard", "dashboard.launch:dashboard_cli", "serve the Streamlit dashboard")
    p.add_argument("--port", type=int, default=8501)


def _policy_commands(sub: Any) -> None:
    """Claims and the policy's life (policies/)."""
    claims = _add(sub, "claims", None, "claims on severe complications (docs/claims.md)")
    csub = _subcommands(claims, "claims_command", "ACTION")
    p = _add(csub, "file", "policies.cli:file_cli",
             "file a claim; its basis (the sum insured of the day before) is frozen now")
    p.add_argument("--policy", required=True)
    p.add_argument("--event-date", type=_date, required=True)
    p.add_argument("--diagnosis", required=True, help="ICD-10 code: see `claims diagnoses`")
    p.add_argument("--document", action="append", metavar="FILE",
                   help="a PDF, PNG or JPEG (repeat for more)")
    p.add_argument("--json", action="store_true")
    p = _add(csub, "approve", "policies.cli:approve_cli",
             "approve: pays the frozen basis and ends the cover")
    p.add_argument("--claim", type=int, required=True)
    p.add_argument("--handler", dest="handler_name", required=True,
                   help="a dashboard user with the claims role")
    p.add_argument("--words", default="", help="the handler's note")
    p.add_argument("--json", action="store_true")
    p = _add(csub, "decline", "policies.cli:decline_cli", "decline with a reason code")
    p.add_argument("--claim", type=int, required=True)
    p.add_argument("--handler", dest="handler_name", required=True)
    p.add_argument("--reason", required=True, metavar="CODE",
                   help="waiting_period, not_covered_diagnosis, not_severe, "
                   "documents_insufficient, not_in_force, pre_existing, misrepresentation, "
                   "duplicate")
    p.add_argument("--words", default="", help="the handler's words to the policyholder")
    p.add_argument("--json", action="store_true")
    p = _add(csub, "ask", "policies.cli:ask_cli", "ask the policyholder for more documents")
    p.add_argument("--claim", type=int, required=True)
    p.add_argument("--handler", dest="handler_name", required=True)
    p.add_argument("--words", required=True, help="what is needed")
    p.add_argument("--json", action="store_true")
    p = _add(csub, "add-documents", "policies.cli:add_documents_cli",
             "add documents to an open claim (back to the queue)")
    p.add_argument("--claim", type=int, required=True)
    p.add_argument("--document", action="append", metavar="FILE", required=True)
    p.add_argument("--json", action="store_true")
    p = _add(csub, "pay", "policies.cli:pay_cli", "record that an approved payout went out")
    p.add_argument("--claim", type=int, required=True)
    p.add_argument("--handler", dest="handler_name", required=True)
    p.add_argument("--reference", default="", help="the payment's reference")
    p.add_argument("--json", action="store_true")
    p = _add(csub, "show", "policies.cli:show_cli", "a claim with its documents and events")
    p.add_argument("--claim", type=int, required=True)
    p.add_argument("--json", action="store_true")
    p = _add(csub, "list", "policies.cli:list_cli", "claims, newest first")
    p.add_argument("--policy")
    p.add_argument("--status", metavar="S",
                   help="filed, more_information, approved, declined or paid")
    p.add_argument("--json", action="store_true")
    p = _add(csub, "diagnoses", "policies.cli:diagnoses_cli",
             "the product's covered diagnoses (ICD-10)")
    p.add_argument("--product", default="default", help="the product (its ruleset's name)")
    p.add_argument("--json", action="store_true")

    policies = _add(sub, "policies", None, "policies: state, terms, enrolment")
    psub = _subcommands(policies, "policies_command", "ACTION")
    p = _add(psub, "show", "policies.cli:show_policy_cli",
             "a policy's state, its term's dates and its history")
    p.add_argument("--policy", required=True)
    p.add_argument("--json", action="store_true")
    p = _add(psub, "renew", "policies.cli:renew_cli",
             "the next term: opening bonus by the product's rule, the ledger's opening row")
    p.add_argument("--policy", required=True)
    p.add_argument("--frequency", choices=("monthly", "yearly"),
                   help="premiums of the new term (default: as the last)")
    p.add_argument("--json", action="store_true")
    p = _add(psub, "cancel", "policies.cli:cancel_cli",
             "cancel a policy: its ledger stops, no claim is covered from then")
    p.add_argument("--policy", required=True)
    p.add_argument("--reason", required=True)
    p.add_argument("--effective", type=_date, help="default: today (UTC)")
    p.add_argument("--json", action="store_true")
    p = _add(psub, "apply", "policies.cli:apply_cli",
             "enrol: an application checked against the product's eligibility")
    p.add_argument("--json", dest="json_file", required=True, metavar="FILE",
                   help="the application (docs/policies.md)")
    p.add_argument("--output-json", action="store_true", help="print the outcome as JSON")
    _add(psub, "parameters", "policies.cli:parameters_cli",
         "the product parameters: term, premiums, renewal, eligibility, claims (Markdown)")

    premiums = _add(sub, "premiums", None, "premiums: the table, payments, lapses")
    msub = _subcommands(premiums, "premiums_command", "ACTION")
    p = _add(msub, "record", "policies.cli:premiums_record_cli",
             "record a payment; it covers the term's instalments in order")
    p.add_argument("--policy", required=True)
    p.add_argument("--amount", type=float, required=True, help="RMB")
    p.add_argument("--paid-on", type=_date, help="default: today (UTC)")
    p.add_argument("--reference", default="", help="the payment's reference")
    p.add_argument("--json", action="store_true")
    p = _add(msub, "due", "policies.cli:premiums_due_cli",
             "a policy's premium account: paid, next due, the day it lapses")
    p.add_argument("--policy", required=True)
    p.add_argument("--as-of", type=_date, help="default: today (UTC)")
    p.add_argument("--json", action="store_true")
    p = _add(msub, "sweep", "policies.cli:premiums_sweep_cli",
             "lapse policies unpaid past the grace period, expire unrenewed ones")
    p.add_argument("--as-of", type=_date, help="default: today (UTC)")
    p.add_argument("--every", type=float, default=0.0,
                   help="repeat every N seconds (as of today each time), printing only what "
                   "changed; 0: once")
    p.add_argument("--json", action="store_true")
    p = _add(msub, "table", "policies.cli:premiums_table_cli",
             "the product's premiums by age band, yearly and monthly")
    p.add_argument("--product", default="default")
    p.add_argument("--json", action="store_true")


def _care_commands(sub: Any) -> None:
    """The care team's alerts (care/)."""
    alerts = _add(sub, "alerts", None, "glucose alerts for the care team")
    asub = _subcommands(alerts, "alerts_command", "ACTION")
    p = _add(asub, "run", "care.cli:run_cli",
             "the alert service: judge readings as ingest commits them, the time-based rules "
             "on a schedule, publish notices")
    p.add_argument("--sweep-every", type=float, default=900.0,
                   help="seconds between runs of the time-based rules (0: never)")
    p.add_argument("--no-notices", action="store_true", help="do not publish notices")
    p = _add(asub, "sweep", "care.cli:sweep_cli",
             "run the time-based rules (rising, lapsed, meter status) once, now")
    p = _add(asub, "list", "care.cli:list_cli", "alerts, the queue's order")
    p.add_argument("--policy", help="only this policy's")
    p.add_argument("--open", action="store_true", help="only open and acknowledged ones")
    p.add_argument("--json", action="store_true")
    rules = _add(asub, "rules", None, "the alert rules and their versions")
    rsub = _subcommands(rules, "rules_command", "ACTION")
    p = _add(rsub, "show", "care.cli:rules_show_cli", "the rules in force, as TOML")
    p = _add(rsub, "publish", "care.cli:rules_publish_cli",
             "publish a TOML file as the next version of the rules")
    p.add_argument("file")
    p.add_argument("--author", required=True)
    p.add_argument("--notes", default="")
    _add(rsub, "parameters", "care.cli:rules_parameters_cli",
         "the rule parameters as a Markdown table (the README's)")


def _privacy_commands(sub: Any) -> None:
    """Consent per purpose, the policyholder's rights (privacy/, docs/privacy.md)."""
    from privacy.purposes import OPERATOR_CHANNELS, PURPOSES

    consent = _add(sub, "consent", None, "a policyholder's consent per purpose")
    csub = _subcommands(consent, "consent_command", "ACTION")
    for action, handler_help in (("give", "record a consent given (a form, a call)"),
                                 ("withdraw", "record a consent withdrawn"),
                                 ("show", "each purpose's standing choice")):
        p = _add(csub, action, "privacy.cli:consent_cli", handler_help)
        p.add_argument("--policy", required=True)
        p.add_argument("--purpose", choices=PURPOSES, required=action != "show",
                       default=None)
        if action != "show":
            p.add_argument("--channel", choices=OPERATOR_CHANNELS, default="paper",
                           help="how the policyholder told us (default: paper)")
            p.add_argument("--actor", help="who records it (default: the OS user)")
        p.add_argument("--json", action="store_true")

    privacy = _add(sub, "privacy", None, "the people's rights over their data; the access log")
    psub = _subcommands(privacy, "privacy_command", "ACTION")
    p = _add(psub, "access-log", "privacy.cli:access_log_cli",
             "who read whose health data, newest first")
    p.add_argument("--policy", help="only reads of this policy")
    p.add_argument("--user", help="only this staff member's reads")
    p.add_argument("--since", type=_date, help="first day (UTC)")
    p.add_argument("--until", type=_date, help="last day (UTC), inclusive")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true")
    out.add_argument("--csv", help="write the entries to this CSV file")
    p = _add(psub, "erase", "cli.erase:erase_cli",
             "erase a policyholder's data (but what a claim's legal hold keeps) and close "
             "their meters' broker accounts")
    p.add_argument("--policy", required=True)
    p.add_argument("--reason", required=True, help="why (a request, the end of retention); "
                   "kept in the record of erasures: do not name the person")
    p.add_argument("--actor", help="who decides (default: the OS user)")
    _add(psub, "requests", "privacy.cli:requests_cli", "erasure requests waiting for an operator")
    p = _add(psub, "retention", "privacy.cli:retention_cli",
             "drop raw readings older than an age (summaries and the ledger stay)")
    p.add_argument("--older-than", required=True, help="an age such as '730 days'")


def _export_commands(sub: Any) -> None:
    """Records out, in standard form."""
    export = _add(sub, "export", None, "a policy's records in a standard form")
    esub = _subcommands(export, "export_command", "FORMAT")
    p = _add(
        esub,
        "fhir",
        "records.export:export_fhir_cli",
        "the policy's valid readings (and CGM summaries) as a FHIR R4 Bundle",
    )
    p.add_argument("--policy", required=True)
    _window(p, "first day, in the policy's timezone (default: its start date)",
            "last day, inclusive (default: today)")
    p.add_argument("--out", required=True, help="the JSON file to write")
    p = _add(esub, "csv", "records.csv_export:export_csv_cli",
             "the policy's readings or ledger as CSV (access and portability)")
    p.add_argument("--policy", required=True)
    p.add_argument("--table", choices=("readings", "ledger"), required=True)
    p.add_argument("--out", required=True, help="the CSV file to write")
    p = _add(
        esub,
        "agp",
        "records.export:export_agp_cli",
        "a CGM policy's one-page AGP report (PDF) over the 14 days through --to",
    )
    p.add_argument("--policy", required=True)
    p.add_argument("--to", dest="date_to", type=_date, default=None,
                   help="last day of the report (default: yesterday)")
    p.add_argument("--unit", choices=("mmol/L", "mg/dL"), default="mmol/L")
    p.add_argument("--lang", choices=("en", "zh"), default="en")
    p.add_argument("--out", required=True, help="the PDF file to write")


def _window(p: argparse.ArgumentParser, first: str, last: str) -> None:
    """--from and --to: a window of whole days (args.date_from, args.date_to)."""
    p.add_argument("--from", dest="date_from", type=_date, default=None, help=first)
    p.add_argument("--to", dest="date_to", type=_date, default=None, help=last)


def _cgm_commands(sub: Any) -> None:
    """Continuous glucose monitoring."""
    cgm = _add(sub, "cgm", None, "continuous glucose monitoring")
    csub = _subcommands(cgm, "cgm_command", "ACTION")
    p = _add(
        csub,
        "metrics",
        "pricing.cli:cgm_metrics_cli",
        "consensus CGM metrics per device from a CSV file (no database)",
    )
    p.add_argument("--readings", required=True, help="CSV: device_id,measured_at,value,unit")
    _window(p, "first local day of the window (default: each device's first reading)",
            "last local day of the window, inclusive (default: each device's last)")
    p.add_argument("--timezone", type=_zone, default="UTC",
                   help="IANA time zone whose calendar days --from, --to and the days column "
                   "count (default: UTC; a policy's own zone for its figures)")
    p.add_argument("--format", choices=("csv", "json"), default="csv",
                   help="figures unrounded, for machines")


def _actuary_commands(sub: Any) -> None:
    """The actuaries' workbench."""
    actuary = _add(
        sub, "actuary", "actuary.cli:actuary_cli", "back-tests, GLMs and the gaming report"
    )
    asub = actuary.add_subparsers(dest="actuary_command", required=True, metavar="ACTION")
    p = _add(
        asub,
        "backtest",
        "actuary.cli:actuary_cli",
        "replay stored history under a candidate ruleset",
    )
    p.add_argument("--ruleset", required=True)
    p.add_argument("--baseline", default="default")
    p.add_argument("--through", type=_date, default=None)
    p.add_argument(
        "--synthetic",
        type=int,
        default=0,
        help="use a seeded synthetic portfolio of N policies instead of the database",
    )
    p.add_argument("--scheduler",
                   help="run partitions of the policies on dask.distributed: `local` (a cluster "
                   "of --workers processes here) or a scheduler's address, tcp://host:8786")
    p.add_argument("--workers", type=int, default=2, help="with --scheduler local")
    p.add_argument("--partitions", type=int, default=8,
                   help="with --scheduler: partitions of the policies (tasks)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", help="directory for CSV exports")
    p = _add(
        asub,
        "glm",
        "actuary.cli:actuary_cli",
        "claim frequency GLM (Poisson, log link, exposure)",
    )
    p.add_argument("--policies", type=int, default=20000, help="synthetic portfolio size")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--json", action="store_true")
    p = _add(
        asub,
        "gaming",
        "actuary.cli:actuary_cli",
        "what gaming personas would obtain; exclusions by reason",
    )
    p.add_argument("--ruleset", default=None,
                   help="a candidate (built-in name or TOML file) replacing its own product's "
                   "ruleset; the other policies keep their published one (default: none)")
    p.add_argument("--synthetic", type=int, default=0)
    p.add_argument("--through", type=_date, default=None)
    p.add_argument("--json", action="store_true")
    p = _add(asub, "credibility", "actuary.cli:actuary_cli",
             "Bühlmann–Straub credibility from a CSV file (group,period,weight,value), no "
             "database")
    p.add_argument("--input", required=True, help="CSV: group,period,weight,value (weight > 0)")
    p.add_argument("--json", action="store_true")
    p = _add(asub, "lift", "actuary.cli:actuary_cli",
             "lift by equal-exposure bins, Gini with a bootstrap 95%% interval, double lift, "
             "from a CSV file, no database")
    p.add_argument("--input", required=True,
                   help="CSV: policy_id,exposure,actual,predicted[,predicted_b]")
    p.add_argument("--bins", type=int, default=10)
    p.add_argument("--seed", type=int, default=1, help="of the bootstrap")
    p.add_argument("--json", action="store_true")
    p = _add(asub, "validate", "actuary.validation_cli:validate_cli",
             "the validation pack of a proposed ruleset against the one in force: holdout "
             "lift, Gini, double lift, credibility, the change's cost")
    p.add_argument("--ruleset", required=True, help="the proposed ruleset (TOML file or name)")
    p.add_argument("--holdout-from", type=_date, default=None,
                   help="first day of the out-of-time holdout (default: the last "
                   "90 days through yesterday)")
    p.add_argument("--through", type=_date, default=None, help="last day (default: yesterday)")
    p.add_argument("--synthetic", type=int, default=0,
                   help="a seeded synthetic portfolio of N policies instead of the database")
    p.add_argument("--json", action="store_true")
    p.add_argument("--pdf", help="write the pricing committee's PDF here")
    p.add_argument("--lang", choices=("en", "zh"), default="en", help="language of the PDF")


def _bench_commands(sub: Any) -> None:
    """The benchmarks."""
    bench = _add(sub, "bench", None, "benchmarks that print side-by-side figures")
    bsub = bench.add_subparsers(dest="bench_command", required=True, metavar="WHICH")
    p = _add(
        bsub, "pricing", "bench.pricing:bench_cli", "vectorised evaluator vs a per-policy loop"
    )
    p.add_argument("--policies", type=int, default=100_000)
    p.add_argument("--days", type=int, default=365)
    p.add_argument(
        "--loop-policies",
        type=int,
        default=1000,
        help="policies the loop baseline runs on (its rate is per policy-day)",
    )
    p.add_argument("--chunk-policies", type=int, default=10_000,
                   help="policies made and priced at a time")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the all-at-once run beside it (memory and speed baseline)")
    p.add_argument("--json", action="store_true")
    p = _add(
        bsub, "ingest", "bench.ingest:bench_cli", "end-to-end ingest throughput vs a naive bridge"
    )
    p.add_argument("--devices", type=int, default=2000)
    p.add_argument("--readings", type=int, default=1_000_000,
                   help="readings per flat-out scenario (default a million: a steady state)")
    p.add_argument(
        "--workers", type=int, default=2, help="ingest processes sharing the subscription"
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="rounds of each flat-out scenario; figures are the median round's",
    )
    p.add_argument(
        "--paced-rate", type=int, default=10_000, help="readings/s offered in the paced latency run"
    )
    p.add_argument("--json", action="store_true")
    p = _add(bsub, "cgm", "bench.cgm:bench_cli",
             "CGM ingest, bytes per reading, pricing from day summaries vs raw readings")
    p.add_argument("--sensors", type=int, default=200, help="simulated sensors for ingest")
    p.add_argument("--ingest-days", type=int, default=3)
    p.add_argument("--policies", type=int, default=100_000, help="CGM policies to price")
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--sample", type=int, default=40,
                   help="wearers whose raw readings are priced for the baseline")
    p.add_argument("--json", action="store_true")
    p = _add(bsub, "dashboard", "bench.dashboard:bench_cli", "server time per page, a year of data")
    p.add_argument("--policies", type=int, default=50)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--json", action="store_true")
    p = _add(bsub, "alerts", "bench.alerts:bench_cli",
             "commit -> alert latency at a sustained rate through broker and ingest, vs a "
             "nightly batch")
    p.add_argument("--rate", type=int, default=5000, help="readings per second offered")
    p.add_argument("--seconds", type=int, default=20)
    p.add_argument("--devices", type=int, default=20_000)
    p.add_argument("--danger-every", type=int, default=200,
                   help="one reading in this many is below 3.0 mmol/L")
    p.add_argument("--workers", type=int, default=2, help="ingest processes")
    p.add_argument("--json", action="store_true")
    p = _add(bsub, "api", "bench.api:bench_cli",
             "Nightscout API entries/s (posts of 1 and 288) beside MQTT ingest")
    p.add_argument("--entries", type=int, default=115_200, help="entries in posts of 288")
    p.add_argument("--singles", type=int, default=2_000, help="entries posted one a post")
    p.add_argument("--clients", type=int, default=4, help="concurrent uploading apps")
    p.add_argument("--readings", type=int, default=200_000, help="MQTT readings beside them")
    p.add_argument("--json", action="store_true")
    p = _add(bsub, "actuary", "bench.actuary:bench_cli",
             "the validation pack of a proposed ruleset on a synthetic portfolio (goal: "
             "100,000 policies x 365 days in under 60 s)")
    p.add_argument("--policies", type=int, default=100_000)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--chunk-policies", type=int, default=10_000,
                   help="policies made and replayed at a time")
    p.add_argument("--json", action="store_true")
    p = _add(bsub, "simulate", "bench.simulate:bench_cli",
             "the simulator streamed meter by meter vs the whole history in memory: peak RSS, "
             "time to first publish, messages/s")
    p.add_argument("--policies", type=int, default=300)
    p.add_argument("--days", type=int, default=60)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cgm-share", type=float, default=0.1)
    p.add_argument("--gateway-share", type=float, default=0.1)
    p.add_argument("--start", help="first day of history (default: days + 1 before today)")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the whole-history run beside it (it holds the fleet in memory)")
    p.add_argument("--json", action="store_true")
    p = _add(bsub, "nightly", "bench.nightly:bench_cli",
             "the nightly pricing run end to end from the database, each step apart")
    p.add_argument("--scenario", choices=("a", "b", "c", "all"), default="all",
                   help="a: first run over a backfilled portfolio; b or c: one new day, "
                        "then late readings on 1%% of its policy-days (c needs b's state: "
                        "either runs both)")
    p.add_argument("--policies", type=int, default=300, help="(a) policies")
    p.add_argument("--days", type=int, default=90, help="(a) days of history")
    p.add_argument("--new-day-policies", type=int, default=100_000, help="(b, c) policies")
    p.add_argument("--history-days", type=int, default=1,
                   help="(b, c) days priced before the new day")
    p.add_argument("--cgm-share", type=float, default=0.1, help="share of CGM wearers")
    p.add_argument("--json", action="store_true")
    p = _add(bsub, "soak", "bench.soak:soak_cli", "steady load; throughput and memory over time")
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--rate", type=int, default=2000, help="readings per second offered")
    p.add_argument("--json", action="store_true")


def main(argv: Sequence[str] | None = None) -> int:
    fixed_mmap_threshold()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        return _load(args.handler)(args, settings)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        message = user_message(exc)
        if message is None:
            raise  # our bug: the stack trace is for us
        print(f"glucover: {message}", file=sys.stderr)
        return 2


def user_message(exc: BaseException) -> str | None:
    """The one line to print for an error a user can cause (a bad file or setting, a server
    that cannot start or be reached), or None for our own bugs."""
    from psycopg import OperationalError

    from glucover.errors import UserError

    if isinstance(exc, OperationalError):
        return (
            f"cannot reach the database: {_first_line(exc)} (check DATABASE_URL, or run "
            "`glucover up` for a private one)"
        )
    if isinstance(exc, UserError):
        return _first_line(exc)  # a server's log tail, say, stays in its log file
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
