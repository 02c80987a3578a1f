"""`glucover export fhir`, and the same bundle for the dashboard's download buttons: a policy's
records read from the database, kept to what pricing counts as valid, as FHIR (records/fhir.py).
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pandas as pd
import psycopg

from glucover.config import Settings
from glucover.db import connect
from glucover.errors import UserError
from kernel import days
from kernel.vocabulary import DeviceKind
from pricing import cgm_metrics, cgm_rules, store
from pricing.evaluator import assign_readings
from pricing.ruleset import Ruleset
from privacy import access_log, consent
from records import agp_report, fhir

READING_COLUMNS = ("device_id", "seq", "measured_at", "utc_offset_min", "received_at", "value",
                   "unit", "value_mmol", "meal", "sample", "source", "status")
# The value as sent and in mmol/L, from the decimal readings stores (devices/wire/values.py).
READING_SELECT = {"value": "glucose_value(value_digits, value_exponent)",
                  "value_mmol": "glucose_mmol(value_digits, value_exponent, unit)"}


@dataclass(frozen=True)
class Export:
    policy_id: str
    window: tuple[date, date]
    document: dict[str, Any]
    observations: int

    def to_json(self) -> bytes:
        return orjson.dumps(self.document, option=orjson.OPT_INDENT_2)

    @property
    def file_name(self) -> str:
        return f"glucover-{self.policy_id}-{self.window[0]}-{self.window[1]}.fhir.json"


def pseudonym_key(secret: str) -> bytes:
    """The key of the patient pseudonyms, from GLUCOVER_PSEUDONYM_KEY (itself derived from the
    deployment secret unless given)."""
    return hashlib.sha256(f"fhir-pseudonym:{secret}".encode()).digest()


@dataclass(frozen=True)
class _Policy:
    """A policy as both exports read it: its row, its device bindings, its time zone and the
    ruleset it is priced by."""

    policies: pd.DataFrame  # the one row, as pricing's frames have it
    bindings: pd.DataFrame
    row: pd.Series  # type: ignore[type-arg]
    zone: ZoneInfo
    ruleset: Ruleset

    @property
    def device_ids(self) -> list[str]:
        return sorted(set(self.bindings["device_id"].astype(str)))


def _policy(conn: psycopg.Connection[Any], policy_id: str) -> _Policy:
    """UserError when there is no such policy."""
    policies, bindings = store.load_policies(conn, [policy_id])
    if policies.empty:
        raise UserError(f"no policy {policy_id}")
    row = policies.iloc[0]
    return _Policy(policies, bindings, row, ZoneInfo(str(row["timezone"])),
                   store.in_force(conn, str(row["ruleset_name"])))


def policy_bundle(conn: psycopg.Connection[Any], policy_id: str, key: bytes,
                  first: date | None = None, last: date | None = None,
                  now: datetime | None = None) -> Export:
    """The policy's bundle over [first, last] (calendar days in the policy's timezone; default:
    its start date through today). UserError when there is no such policy."""
    policy = _policy(conn, policy_id)
    p, zone = policy.row, policy.zone
    start = p["start_date"].date()
    first = max(first or start, start)
    last = last or days.today(str(zone), now)
    if last < first:
        raise UserError(f"--to {last} is before --from {first} (the policy starts {start})")
    kinds = {str(d): DeviceKind(str(k)) for d, k in conn.execute(
        "select device_id, kind from devices where device_id = any(%s) order by device_id",
        (policy.device_ids,))}
    readings = _readings(conn, policy.device_ids, datetime.combine(first, time(), zone),
                         datetime.combine(last + timedelta(days=1), time(), zone))
    n_days = np.array([(last - start).days + 1])
    assigned, _ = assign_readings(policy.policies, policy.bindings, readings, policy.ruleset,
                                  n_days)
    valid = readings.iloc[np.sort(assigned.row)]
    birth = p.get("birth_year")
    subject = fhir.Subject(fhir.pseudonym(key, policy_id),
                           None if pd.isna(birth) else int(birth))
    consents = [fhir.ConsentChoice(c.purpose, c.given, c.at, c.text_version)
                for c in consent.state(conn, policy_id) if c.at is not None]
    document = fhir.bundle(subject, sorted(kinds.items()), valid,
                           _cgm_summaries(valid, kinds, zone, (first, last)), (first, last),
                           generated_at=now, consents=consents)
    return Export(policy_id, (first, last), document, len(valid))


def _readings(conn: psycopg.Connection[Any], device_ids: list[str], since: datetime,
              until: datetime) -> pd.DataFrame:
    rows = conn.execute(
        f"select {', '.join(READING_SELECT.get(c, c) for c in READING_COLUMNS)} from readings "
        "where device_id = any(%s) "
        "and measured_at >= %s and measured_at < %s", (device_ids, since, until)).fetchall()
    frame = pd.DataFrame(rows, columns=list(READING_COLUMNS))
    for column in ("measured_at", "received_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame.astype({"seq": "int64", "status": "int64", "value": "float64",
                         "value_mmol": "float64", "utc_offset_min": "int64"})


def _cgm_summaries(valid: pd.DataFrame, kinds: dict[str, DeviceKind], zone: ZoneInfo,
                   window: tuple[date, date]) -> pd.DataFrame:
    """The consensus metrics of each CGM over the window (pricing/cgm_metrics.py), in local days."""
    worn = valid[valid["device_id"].map(kinds) == DeviceKind.CGM]
    frame = pd.DataFrame({
        "device_id": worn["device_id"], "measured_at": worn["measured_at"],
        "value_mgdl": cgm_rules.value_mgdl(worn)})
    return cgm_metrics.metrics(frame, *window, zone=str(zone))


def export_fhir_cli(args: argparse.Namespace, settings: Settings) -> int:
    with connect(settings.require_database_url()) as conn:
        export = policy_bundle(conn, args.policy, pseudonym_key(settings.key("pseudonym_key")),
                               args.date_from, args.date_to)
        access_log.record(conn, getpass.getuser(), "operator", args.policy, "fhir_export",
                          detail=args.out)
        conn.commit()
    out = Path(args.out)
    out.write_bytes(export.to_json())
    print(f"wrote {out}: FHIR R4 Bundle of policy {args.policy}, {export.window[0]} .. "
          f"{export.window[1]}, {export.observations} observations, "
          f"{len(export.document['entry'])} resources")
    return 0


def agp_pdf(conn: psycopg.Connection[Any], policy_id: str, last: date | None = None,
            unit: str = "mmol/L", lang: str = "en", now: datetime | None = None) -> bytes:
    """The policy's AGP report (records/agp_report.py) over the AGP_DAYS through `last`
    (default: yesterday in the policy's timezone). UserError when there is no such policy or
    it has no CGM."""
    policy = _policy(conn, policy_id)
    zone, ruleset = policy.zone, policy.ruleset
    if ruleset.kind != "cgm":
        raise UserError(f"policy {policy_id} is priced on fingerstick readings "
                        f"({ruleset.name}); an AGP report needs a CGM")
    today = (last + timedelta(days=1)) if last else days.today(str(zone), now)
    since = datetime.combine(today - timedelta(days=cgm_metrics.AGP_DAYS + 1), time(), zone)
    readings = store.load_readings(conn, policy.device_ids, since=since)
    window = cgm_metrics.window(readings, ruleset, zone, today)
    subject = agp_report.Subject(str(policy.row["holder_name"]), policy_id,
                                 ", ".join(policy.device_ids))
    return agp_report.render(subject, window, unit, lang)


def export_agp_cli(args: argparse.Namespace, settings: Settings) -> int:
    with connect(settings.require_database_url()) as conn:
        pdf = agp_pdf(conn, args.policy, args.date_to, args.unit, args.lang)
        access_log.record(conn, getpass.getuser(), "operator", args.policy, "agp_export",
                          detail=args.out)
        conn.commit()
    Path(args.out).write_bytes(pdf)
    print(f"wrote {args.out}: AGP report of policy {args.policy} ({len(pdf):,} bytes)")
    return 0
