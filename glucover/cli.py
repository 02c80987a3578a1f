"""The `glucover` command line. Subcommands import their module only when run."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

from glucover.config import ConfigError, Settings

Handler = Callable[[argparse.Namespace, Settings], int]


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-01-31") from None


# ------------------------------------------------------------------ handlers
# Each subcommand names its handler "module:function"; the function takes (args, settings) and
# returns the exit code. Modules load only when their command runs.


def _load(target: str) -> Handler:
    module, _, name = target.partition(":")
    handler: Handler = getattr(importlib.import_module(module), name)
    return handler


# ------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glucover",
        description="Usage-based diabetes insurance: meters -> MQTT -> TimescaleDB -> pricing.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, handler: str | None, help: str, parent: Any = sub
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        return p

    p = add(
        "up",
        "glucover.up:up_cli",
        "run the whole system on embedded defaults (or DATABASE_URL/MQTT_URL)",
    )
    p.add_argument("--dashboard-port", type=int, default=8501)
    p.add_argument("--policies", type=int, default=300, help="demo portfolio size")
    p.add_argument("--days", type=int, default=90, help="days of history to backfill")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--price-every", type=float, default=60.0, help="seconds between pricing runs")
    p.add_argument("--no-live", action="store_true", help="stop publishing after the backfill")

    add("migrate", "glucover.db:migrate_cli", "apply the database schema (idempotent)")
    p = add(
        "doctor",
        "glucover.doctor:doctor_cli",
        "say which backend and features are active; check reachability",
    )
    p.add_argument("--json", action="store_true")

    p = add(
        "simulate", "devices.simulator_cli:simulate_cli", "publish a realistic glucose-meter fleet"
    )
    p.add_argument("--policies", type=int, default=50)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--seed", type=int, default=1)
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
        "--provision-only",
        action="store_true",
        help="provision policies, meters and broker accounts, publish nothing",
    )

    devices = add("devices", None, "manage meter credentials and broker ACLs")
    dsub = devices.add_subparsers(dest="devices_command", required=True, metavar="ACTION")
    p = add(
        "provision",
        "devices.provisioning:provision_cli",
        "create N meters with broker accounts",
        dsub,
    )
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--prefix", default="meter")
    p = add("revoke", "devices.provisioning:revoke_cli", "revoke a meter's broker account", dsub)
    p.add_argument("device_id")
    add(
        "sync-broker",
        "devices.provisioning:sync_cli",
        "rewrite the broker's password and ACL files from the database",
        dsub,
    )

    p = add("ingest", "ingest.worker:ingest_cli", "run an ingest worker (MQTT -> database)")
    p.add_argument(
        "--client-id",
        default=None,
        help="persistent session id (default: host-pid based, stable per --worker-name)",
    )
    p.add_argument("--worker-name", default="ingest-1")
    p.add_argument("--batch-size", type=int, default=2000)
    p.add_argument("--flush-ms", type=int, default=5,
                   help="how long a batch waits for more messages after its first")
    p.add_argument("--metrics-port", type=int, default=0, help="Prometheus port (0: off)")
    p.add_argument("--trust-sent-at", action="store_true",
                   help="replays only: take the gateway's sent_at as the receive time")

    price = add("price", None, "the pricing engine")
    psub = price.add_subparsers(dest="price_command", required=True, metavar="ACTION")
    p = add("evaluate", "pricing.cli:evaluate_cli", "evaluate CSV files, no database", psub)
    p.add_argument("--policies", required=True)
    p.add_argument("--readings", required=True)
    p.add_argument("--ruleset", default="default", help="built-in name or TOML file")
    p.add_argument("--through", type=_date, required=True)
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    p.add_argument("--out", help="file (default: standard output)")
    p = add("run", "pricing.cli:run_cli", "incremental, idempotent run against the database", psub)
    p.add_argument("--through", type=_date, default=None, help="default: yesterday in UTC")
    p.add_argument("--ruleset", default=None, help="override every policy's ruleset (name)")
    p.add_argument(
        "--every",
        type=float,
        default=0.0,
        help="repeat every N seconds (through = yesterday each time); 0: once",
    )
    p.add_argument("--json", action="store_true")

    claims = add("claims", None, "claims")
    csub = claims.add_subparsers(dest="claims_command", required=True, metavar="ACTION")
    p = add(
        "file",
        "pricing.cli:claim_cli",
        "record a claim; pays the sum insured of the day before",
        csub,
    )
    p.add_argument("--policy", required=True)
    p.add_argument("--date", type=_date, required=True)
    p.add_argument("--reason", required=True)

    p = add("dashboard", "dashboard.launch:dashboard_cli", "serve the Streamlit dashboard")
    p.add_argument("--port", type=int, default=8501)

    actuary = add(
        "actuary", "pricing.actuary_cli:actuary_cli", "back-tests, GLMs and the gaming report"
    )
    asub = actuary.add_subparsers(dest="actuary_command", required=True, metavar="ACTION")
    p = add(
        "backtest",
        "pricing.actuary_cli:actuary_cli",
        "replay stored history under a candidate ruleset",
        asub,
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
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", help="directory for CSV exports")
    p = add(
        "glm",
        "pricing.actuary_cli:actuary_cli",
        "claim frequency GLM (Poisson, log link, exposure)",
        asub,
    )
    p.add_argument("--policies", type=int, default=20000, help="synthetic portfolio size")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--json", action="store_true")
    p = add(
        "gaming",
        "pricing.actuary_cli:actuary_cli",
        "what gaming personas would obtain; exclusions by reason",
        asub,
    )
    p.add_argument("--ruleset", default="default")
    p.add_argument("--synthetic", type=int, default=0)
    p.add_argument("--through", type=_date, default=None)
    p.add_argument("--json", action="store_true")

    bench = add("bench", None, "benchmarks that print side-by-side figures")
    bsub = bench.add_subparsers(dest="bench_command", required=True, metavar="WHICH")
    p = add("pricing", "pricing.bench:bench_cli", "vectorised evaluator vs a per-policy loop", bsub)
    p.add_argument("--policies", type=int, default=100_000)
    p.add_argument("--days", type=int, default=365)
    p.add_argument(
        "--loop-policies",
        type=int,
        default=1000,
        help="policies the loop baseline runs on (its rate is per policy-day)",
    )
    p.add_argument("--json", action="store_true")
    p = add(
        "ingest", "ingest.bench:bench_cli", "end-to-end ingest throughput vs a naive bridge", bsub
    )
    p.add_argument("--devices", type=int, default=2000)
    p.add_argument("--readings", type=int, default=60_000)
    p.add_argument("--workers", type=int, default=2,
                   help="ingest processes sharing the subscription")
    p.add_argument("--repeat", type=int, default=3,
                   help="rounds of each flat-out scenario; figures are the median round's")
    p.add_argument("--paced-rate", type=int, default=10_000,
                   help="readings/s offered in the paced latency run")
    p.add_argument("--json", action="store_true")
    p = add("dashboard", "dashboard.bench:bench_cli", "server time per page, a year of data",
            bsub)
    p.add_argument("--policies", type=int, default=50)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--json", action="store_true")
    p = add("soak", "ingest.soak:soak_cli", "steady load; throughput and memory over time", bsub)
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--rate", type=int, default=2000, help="readings per second offered")
    p.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        return _load(args.handler)(args, settings)
    except ConfigError as exc:
        print(f"glucover: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # Errors a user can cause are ValueErrors with a message that says what to do.
        from psycopg import OperationalError

        if isinstance(exc, OperationalError):
            print(f"glucover: cannot reach the database: {exc}", file=sys.stderr)
            return 2
        from glucover.errors import UserError

        if isinstance(exc, UserError):
            print(f"glucover: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
