"""The `glucover` command line. Subcommands import their module only when run."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

from glucover.config import Settings
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
        _cgm_commands,
        _export_commands,
        _care_commands,
        _actuary_commands,
        _bench_commands,
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
    p.add_argument("--days", type=int, default=90, help="days of history to backfill")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--price-every", type=float, default=60.0, help="seconds between pricing runs")
    p.add_argument("--no-live", action="store_true", help="stop publishing after the backfill")

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

    claims = _add(sub, "claims", None, "claims")
    csub = claims.add_subparsers(dest="claims_command", required=True, metavar="ACTION")
    p = _add(
        csub,
        "file",
        "pricing.cli:claim_cli",
        "record a claim; pays the sum insured of the day before",
    )
    p.add_argument("--policy", required=True)
    p.add_argument("--date", type=_date, required=True)
    p.add_argument("--reason", required=True)

    p = _add(sub, "dashboard", "dashboard.launch:dashboard_cli", "serve the Streamlit dashboard")
    p.add_argument("--port", type=int, default=8501)


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
