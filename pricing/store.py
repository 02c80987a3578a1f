"""Reading the evaluator's input frames from the database, and rulesets in and out of it."""

from __future__ import annotations

import io
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
import psycopg
from psycopg import sql

from glucover.db import TextArray, insert_version, read_version
from pricing import ruleset as rulesets
from pricing import safety
from pricing.ruleset import Ruleset, RulesetError

Conn = psycopg.Connection[Any]


def load_policies(conn: Conn, policy_ids: list[str] | None = None
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    where = "" if policy_ids is None else " where policy_id = any(%(ids)s)"
    params = {"ids": policy_ids}
    rows = conn.execute("select policy_id, start_date, base_sum_insured::float8, timezone, "
                        f"ruleset_name, segment, birth_year, holder_name from policies{where} "
                        "order by policy_id", params).fetchall()
    policies = pd.DataFrame(rows, columns=["policy_id", "start_date", "base_sum_insured",
                                           "timezone", "ruleset_name", "segment", "birth_year",
                                           "holder_name"])
    policies["start_date"] = pd.to_datetime(policies["start_date"])
    policies["base_sum_insured"] = policies["base_sum_insured"].astype(float)
    brows = conn.execute(f"select policy_id, device_id, bound_from, bound_to from policy_devices"
                         f"{where}", params).fetchall()
    bindings = pd.DataFrame(brows, columns=["policy_id", "device_id", "bound_from", "bound_to"])
    for column in ("bound_from", "bound_to"):
        bindings[column] = pd.to_datetime(bindings[column], utc=True)
    return policies, bindings


def load_readings(conn: Conn, device_ids: list[str] | None, since: datetime | None = None,
                  until: datetime | None = None, ingested_at: list[datetime] | None = None
                  ) -> pd.DataFrame:
    """Readings of these meters (all, when None) measured in [since, until) (open ends when
    None); only those stored by the ingest transactions of `ingested_at` when given (the alert
    evaluator's new readings, 0019_care_alerts.sql)."""
    # COPY to CSV parsed by pandas' C reader: no Python object per row, so tens of millions of
    # readings load in seconds. COPY takes no bind parameters; the values are quoted literals.
    # Times travel as integer microseconds since the epoch (exact).
    # Named meters over a window of time are read one by one by the index on (device_id,
    # measured_at) (`offset 0` keeps it so): given the list, the planner expected most of the
    # table and read all of it, once per chunk of a pricing run (two seconds a chunk for a day
    # of 10,000 meters). A whole history (a back-test) is read in one pass.
    by_device = device_ids is not None and since is not None
    source = (sql.SQL("readings r where ({devices}::text[] is null or device_id = any({devices}))"
                      ) if not by_device else sql.SQL(
        "unnest({devices}::text[]) d(device_id) cross join lateral (select * from readings r"
        " where r.device_id = d.device_id"
        " and ({since}::timestamptz is null or r.measured_at >= {since})"
        " and ({until}::timestamptz is null or r.measured_at < {until}) offset 0) r"))
    query = sql.SQL(
        "copy (select r.device_id, seq,"
        " (extract(epoch from measured_at) * 1000000)::bigint,"
        " (extract(epoch from received_at) * 1000000)::bigint,"
        " glucose_mmol(value_digits, value_exponent, unit), meal, sample, source, status"
        " from {source}"
        " {where} ({ingested}::timestamptz[] is null or ingested_at = any({ingested}))"
        " and ({since}::timestamptz is null or measured_at >="
        " {since}) and ({until}::timestamptz is null or measured_at < {until}))"
        " to stdout (format csv)").format(
            source=source.format(devices=sql.Literal(
                None if device_ids is None else TextArray(device_ids)), since=sql.Literal(since),
                                 until=sql.Literal(until)),
            where=sql.SQL("where" if by_device else "and"),
            ingested=sql.Literal(ingested_at), since=sql.Literal(since),
            until=sql.Literal(until))
    buffer = io.BytesIO()
    with conn.cursor() as cur, cur.copy(query) as copy:
        for block in copy:
            buffer.write(block)
    buffer.seek(0)
    # The compact representation (pricing/evaluator.py's readings contract): 32-bit seq and
    # status, categories for the names, no object column.
    dtypes = {"device_id": "category", "seq": "int32", "measured_at": "int64",
              "received_at": "int64", "value_mmol": "float64", "meal": "category",
              "sample": "category", "source": "category", "status": "int32"}
    if buffer.getbuffer().nbytes:
        frame = pd.read_csv(buffer, header=None, names=list(dtypes), dtype=dtypes)
    else:
        frame = pd.DataFrame({c: pd.Series(dtype=t) for c, t in dtypes.items()})
    for column in ("measured_at", "received_at"):
        frame[column] = pd.to_datetime(frame[column], unit="us", utc=True)
    return frame


def published(conn: Conn, name: str, version: int | None = None) -> Ruleset | None:
    """A published ruleset (the latest version unless one is named)."""
    found = read_version(conn, "rulesets", name, version)
    return None if found is None else Ruleset.from_toml(found[0], version=found[1])


def in_force(conn: Conn, name: str) -> Ruleset:
    """The ruleset a policy naming `name` is priced by, read only: the latest published
    version, else the built-in file, else `default` (a name nobody published)."""
    found = published(conn, name)
    return found if found is not None else rulesets.builtin_or_default(name)


def of_kind(conn: Conn, policies: pd.DataFrame, kind: str) -> pd.DataFrame:
    """The policies priced by a ruleset of `kind` (bgm or cgm): a back-test of a CGM ruleset
    replays the CGM policies, one of a meter ruleset the meter policies."""
    kinds = {name: in_force(conn, str(name)).kind for name in policies["ruleset_name"].unique()}
    return policies[policies["ruleset_name"].map(kinds) == kind].reset_index(drop=True)


def publish(conn: Conn, ruleset: Ruleset, author: str, notes: str = "",
            hypoglycaemia_reason: str = "") -> Ruleset:
    """Store a new immutable version; returns it with its version number. A ruleset whose
    in-target band starts below level 1 hypoglycaemia (pricing/safety.py) is refused unless the
    author gives a reason, which is stored with the version."""
    ruleset.validate()
    risk = safety.hypoglycaemia_risk(ruleset)
    if risk and not hypoglycaemia_reason.strip():
        raise RulesetError(f"not published: {risk}; publish it only with a reason")
    if risk:
        notes = f"{notes}; hypoglycaemia risk accepted ({risk}): {hypoglycaemia_reason.strip()}"
    body = ruleset.to_toml()
    return Ruleset.from_toml(body, version=insert_version(conn, "rulesets", ruleset.name, author,
                                                          notes, body))


def current(conn: Conn, name: str) -> Ruleset:
    """The version pricing uses now: the latest published, publishing the built-in file first
    when it is new or changed (so the shipped `default` is always on record)."""
    latest = published(conn, name)
    try:
        builtin = rulesets.load_builtin(name)
    except RulesetError:
        builtin = None
    if builtin is not None and (latest is None or latest.to_toml() != builtin.to_toml()) and (
            latest is None or _is_builtin_version(conn, name, latest.version)):
        return publish(conn, builtin, author="glucover", notes="built-in ruleset file")
    if latest is None:
        raise RulesetError(f"ruleset {name!r} is neither published nor built in")
    return latest


def _is_builtin_version(conn: Conn, name: str, version: int) -> bool:
    """Only replace a version that itself came from the file: actuaries' versions win."""
    row = conn.execute("select author from rulesets where name = %s and version = %s",
                       (name, version)).fetchone()
    return bool(row and row[0] == "glucover")



def ruleset_names(conn: Conn) -> list[str]:
    """The names of the published rulesets, in order (`default` before anything is)."""
    rows = conn.execute("select distinct name from rulesets order by name").fetchall()
    return [str(name) for (name,) in rows] or ["default"]


def save_draft(conn: Conn, ruleset: Ruleset, author: str) -> None:
    """Keep an author's unpublished ruleset under its name (one draft per name)."""
    conn.execute("insert into ruleset_drafts (name, author, body) values (%s, %s, %s) "
                 "on conflict (name) do update set body = excluded.body, author = "
                 "excluded.author, updated_at = now()",
                 (ruleset.name, author, ruleset.to_toml()))


def cover_ends(conn: Conn) -> dict[str, date | None]:
    """Policies whose ledger may not move on from some day, from their state (policy_state,
    0055) and terms (policy_terms, 0056): the last day the ledger may hold (the day before a
    lapse or expiry began; the last term's end until a renewal), or None for a policy nothing
    moves any more (claimed, cancelled) or that is not yet in force (applied). Others (active
    policies without terms: provisioned before enrolment) are not listed."""
    ends: dict[str, date | None] = {
        str(pid): end for pid, end in conn.execute(
            "select policy_id, max(ends) from policy_terms group by policy_id").fetchall()}
    for pid, state, since in conn.execute("select policy_id, state, since from policy_state "
                                          "where state <> 'active'").fetchall():
        pid = str(pid)
        if state in ("lapsed", "expired"):
            end = since - timedelta(days=1)
            ends[pid] = min(end, ends.get(pid) or end)
        else:
            ends[pid] = None
    return ends


Lapse = tuple[date, date]  # the first and the last day of a lapse a reinstatement ended


def lapses(conn: Conn, policy_ids: list[str]) -> dict[str, list[Lapse]]:
    """Per policy, its lapses that a reinstatement ended (policy_lapses, 0059), in order: the
    days its ledger holds no row, the bonus frozen as it was on the day before
    (docs/policies.md). A lapse still running is cover_ends'."""
    out: dict[str, list[Lapse]] = {}
    for pid, first, reinstated in conn.execute(
            "select policy_id, lapsed_from, reinstated_on from policy_lapses "
            "where reinstated_on > lapsed_from and policy_id = any(%s) "
            "order by policy_id, lapsed_from", (policy_ids,)).fetchall():
        out.setdefault(str(pid), []).append((first, reinstated - timedelta(days=1)))
    return out


def term_starts(conn: Conn, policy_ids: list[str]) -> dict[str, dict[date, float]]:
    """Per policy, the renewed terms' first days with the bonus each opens with (0056)."""
    out: dict[str, dict[date, float]] = {}
    for pid, starts, bonus in conn.execute(
            "select policy_id, starts, opening_bonus::float8 from policy_terms "
            "where term_number > 1 and policy_id = any(%s)", (policy_ids,)).fetchall():
        out.setdefault(str(pid), {})[starts] = float(bonus)
    return out
