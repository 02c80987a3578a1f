"""Loading a synthetic portfolio straight into the database by COPY (no broker, no ingest):
policies, meters, bindings, readings and the ledger the evaluator gives them, a chunk of
policies at a time, for benchmarks that need an insurer's scale of stored data."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import psycopg

from actuary.synthetic import Portfolio, synthetic_chunks
from devices.wire.values import stored_decimals
from kernel.vocabulary import Unit
from pricing import meter_days
from pricing.products import evaluate
from pricing.ruleset import load_builtin
from privacy import consent

READING_STAGING = {"device_id": "text", "seq": "integer", "measured_us": "bigint",
                   "received_us": "bigint", "value_digits": "bigint",
                   "value_exponent": "smallint", "meal": "text", "sample": "text",
                   "source": "text", "status": "integer"}
LEDGER_STAGING = {"policy_id": "text", "day": "integer", "day_status": "text",
                  "reading_seq": "integer", "delta": "numeric", "bonus": "numeric",
                  "sum_insured": "numeric"}
STAGING = "; ".join(
    f"create temp table if not exists {name} ({', '.join(f'{c} {t}' for c, t in cols.items())})"
    " on commit delete rows" for name, cols in (("load_readings", READING_STAGING),
                                                 ("load_ledger", LEDGER_STAGING)))


def _micros(times: pd.Series) -> npt.NDArray[np.int64]:  # type: ignore[type-arg]
    return times.to_numpy(dtype="datetime64[us]").astype(np.int64)


def _copy_csv(conn: psycopg.Connection[Any], table: str, columns: list[str],
              frame: pd.DataFrame) -> None:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, header=False, columns=columns, na_rep="")
    with conn.cursor() as cur, cur.copy(
            f"copy {table} ({', '.join(columns)}) from stdin (format csv)") as copy:
        copy.write(buffer.getvalue())


def copy_chunk(conn: psycopg.Connection[Any], part: Portfolio, through: date,
               run_id: int) -> tuple[int, int]:
    """One chunk's policies, meters, bindings, readings and ledger; (readings, ledger rows)."""
    ruleset = load_builtin("default")
    policies = part.policies.assign(holder_name="bench", ruleset_name=ruleset.name)
    _copy_csv(conn, "policies", ["policy_id", "holder_name", "birth_year", "segment",
                                 "base_sum_insured", "timezone", "start_date", "ruleset_name"],
              policies.assign(start_date=policies["start_date"].dt.date))
    _copy_csv(conn, "devices", ["device_id"], part.bindings)
    bound = part.policies["start_date"].min() - pd.Timedelta(days=2)
    _copy_csv(conn, "policy_devices", ["policy_id", "device_id", "bound_from"],
              part.bindings.assign(bound_from=bound.tz_localize(UTC)))
    # Times travel as integers (microseconds, days) into staging tables and become timestamps
    # in the database: formatting tens of millions of timestamps as text is what made a first
    # version of this loader slow.
    r = part.readings
    digits, exponent = stored_decimals(r["value_mmol"].to_numpy(np.float64), Unit.MMOL_L)
    conn.execute(STAGING)
    _copy_csv(conn, "load_readings", list(READING_STAGING), pd.DataFrame({
        "device_id": r["device_id"], "seq": r["seq"], "measured_us": _micros(r["measured_at"]),
        "received_us": _micros(r["received_at"]), "value_digits": digits,
        "value_exponent": exponent, "meal": r["meal"], "sample": r["sample"],
        "source": r["source"], "status": r["status"]}))
    # Ingested when received, as live ingest would have stored them over the year (the
    # operations page looks at what was ingested in the last minutes).
    conn.execute(
        "insert into readings (device_id, seq, measured_at, utc_offset_min, received_at, "
        "ingested_at, value_digits, value_exponent, unit, meal, sample, source, status) "
        "select device_id, seq, to_timestamp(measured_us / 1e6), 0, "
        "to_timestamp(received_us / 1e6), to_timestamp(received_us / 1e6), value_digits, "
        "value_exponent, 'mmol/L', meal, sample, source, status from load_readings")
    ledger = evaluate(part.policies, part.bindings, r, ruleset, through).to_frame()
    _copy_csv(conn, "load_ledger", list(LEDGER_STAGING), pd.DataFrame({
        "policy_id": ledger["policy_id"],
        "day": ledger["day"].to_numpy(dtype="datetime64[D]").astype(np.int64),
        "day_status": ledger["day_status"], "reading_seq": ledger["reading_seq"],
        "delta": ledger["delta"].round(2), "bonus": ledger["bonus"].round(2),
        "sum_insured": ledger["sum_insured"].round(2)}))
    conn.execute(
        "insert into sum_insured_ledger (policy_id, day, run_id, day_status, reading_seq, "
        "delta, bonus, sum_insured, ruleset_name, ruleset_version) "
        "select policy_id, date '1970-01-01' + day, %s, day_status, reading_seq, delta, bonus, "
        "sum_insured, %s, 1 from load_ledger", (run_id, ruleset.name))
    return len(r), len(ledger)


def copy_portfolio(url: str, policies: int, days: int, seed: int = 5,
                   chunk_policies: int = 10_000) -> dict[str, Any]:
    """A portfolio of `policies` with `days` of history up to yesterday, priced through
    yesterday, loaded by COPY; then the daily summary refreshed. Returns counts."""
    through = datetime.now(UTC).date() - timedelta(days=1)
    start = through - timedelta(days=days - 1)
    readings = rows = 0
    with psycopg.connect(url) as conn:
        row = conn.execute("insert into pricing_runs (through, finished_at, watermark) values "
                           "(%s, now(), now()) returning run_id", (through,)).fetchone()
        assert row is not None
        conn.execute("insert into rulesets (name, version, author, notes, body) values "
                     "('default', 1, 'glucover', 'built-in ruleset file', %s) "
                     "on conflict do nothing", (load_builtin("default").to_toml(),))
        rules = load_builtin("default")
        for part in synthetic_chunks(policies, days, seed, chunk_policies, start=str(start)):
            n, m = copy_chunk(conn, part, through, int(str(row[0])))
            consent.record_all(conn, list(part.policies["policy_id"].astype(str)),
                               actor="glucover bench", channel="provisioning")
            # The day summaries, as the nightly run keeps them.
            meter_days.refresh(conn, list(part.policies["policy_id"].astype(str)), rules, None)
            readings, rows = readings + n, rows + m
            conn.commit()
        conn.execute("update pricing_runs set policies = %s, rows_added = %s", (policies, rows))
        conn.commit()
        conn.execute("analyze")
        conn.commit()
    return {"readings": readings, "ledger_rows": rows, "first_day": start.isoformat(),
            "through": through.isoformat()}
