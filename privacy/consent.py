"""Consent per purpose: what a policyholder agreed to, under which text, and whether it is live
on a day (schema: 0050_consent.sql; why and where it is enforced: docs/privacy.md).

The API other stages use (enrolment records consents through it):

    consent.record(conn, policy_id, "pricing", given=True, actor="pol-1", channel="page")
    consent.live(conn, policy_id, "pricing", day)       # -> bool
    consent.live_policies(conn, policy_ids, "research")  # -> the ids consented today
    consent.periods(conn, policy_ids, "pricing")         # -> policy_id, from_day, to_day
    consent.state(conn, policy_id)                       # -> one Choice per purpose

Events are append-only (a trigger and the grants refuse changes); a withdrawal takes effect
on its whole local day (consent_periods).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from importlib import resources
from typing import Any

import pandas as pd
import psycopg

from glucover.errors import UserError
from privacy.purposes import CHANNELS, PURPOSES

Conn = psycopg.Connection[Any]



@dataclass(frozen=True)
class ConsentText:
    purpose: str
    version: int
    en: str
    zh: str

    def body(self, lang: str) -> str:
        return self.zh if lang == "zh" else self.en


@cache
def texts() -> dict[str, ConsentText]:
    """The current text of each purpose (privacy/consent_texts.toml)."""
    raw = tomllib.loads((resources.files("privacy") / "consent_texts.toml").read_text())
    return {p: ConsentText(p, int(raw[p]["version"]), str(raw[p]["en"]), str(raw[p]["zh"]))
            for p in PURPOSES}


def current_version(purpose: str) -> int:
    return texts()[_purpose(purpose)].version


def store_texts(conn: Conn) -> None:
    """Keep every current text in the database, once per version, as shown."""
    with conn.cursor() as cur:
        cur.executemany(
            "insert into consent_texts (purpose, version, body_en, body_zh) "
            "select %s, %s, %s, %s where not exists (select 1 from consent_texts "
            "where purpose = %s and version = %s)",
            [(t.purpose, t.version, t.en, t.zh, t.purpose, t.version)
             for t in texts().values()])


def _purpose(purpose: str) -> str:
    if purpose not in PURPOSES:
        raise UserError(f"purpose must be one of {', '.join(PURPOSES)}, not {purpose!r}")
    return purpose


def record(conn: Conn, policy_id: str, purpose: str, given: bool, actor: str, channel: str,
           text_version: int | None = None, at: datetime | None = None) -> int:
    """Record a choice (in the caller's transaction); returns its event id. `text_version`:
    the version the person was shown, the current one by default; `at`: when it takes effect,
    now by default (only provisioning and enrolment back-date it to the policy's start)."""
    _purpose(purpose)
    if channel not in CHANNELS:
        raise UserError(f"channel must be one of {', '.join(CHANNELS)}, not {channel!r}")
    version = current_version(purpose) if text_version is None else text_version
    if not 0 < version <= current_version(purpose):
        raise UserError(f"no version {version} of the {purpose} consent text")
    if conn.execute("select 1 from policies where policy_id = %s", (policy_id,)
                    ).fetchone() is None:
        raise UserError(f"no policy {policy_id!r}")
    store_texts(conn)
    row = conn.execute(
        "insert into consent_events (policy_id, purpose, given, at, actor, channel, "
        "text_version) values (%s, %s, %s, coalesce(%s, clock_timestamp()), %s, %s, %s) "
        "returning event_id", (policy_id, purpose, given, at, actor, channel, version)
    ).fetchone()
    assert row is not None
    return int(str(row[0]))


def record_all(conn: Conn, policy_ids: list[str], actor: str, channel: str,
               from_start: bool = True) -> int:
    """Every purpose given for these policies (provisioning a simulated or demo portfolio),
    effective from each policy's start date's local midnight; policies with any consent
    recorded already are left as they are. Returns the number of events."""
    store_texts(conn)
    versions = [current_version(p) for p in PURPOSES]
    cur = conn.execute(
        "insert into consent_events (policy_id, purpose, given, at, actor, channel, "
        "text_version) select p.policy_id, v.purpose, true, case when %s then "
        "local_midnight(p.start_date, p.timezone) else clock_timestamp() end, %s, %s, "
        "v.version from policies p cross join unnest(%s::text[], %s::int[]) as "
        "v(purpose, version) where p.policy_id = any(%s) and not exists (select 1 from "
        "consent_events e where e.policy_id = p.policy_id)",
        (from_start, actor, channel, list(PURPOSES), versions, policy_ids))
    return cur.rowcount


def live(conn: Conn, policy_id: str, purpose: str, day: date | None = None) -> bool:
    """Whether `purpose` is consented to on `day` (a local day; today in the policy's zone
    by default)."""
    row = conn.execute(
        "select consent_live(p.policy_id, %s, coalesce(%s, local_day(now(), p.timezone))) "
        "from policies p where p.policy_id = %s", (_purpose(purpose), day, policy_id)
    ).fetchone()
    return bool(row and row[0])


def live_policies(conn: Conn, policy_ids: list[str] | None, purpose: str,
                  day: date | None = None) -> set[str]:
    """Those of `policy_ids` (every policy when None) with `purpose` consented to on `day`
    (today in each policy's zone by default)."""
    rows = conn.execute(
        "select p.policy_id from policies p where (%s::text[] is null or "
        "p.policy_id = any(%s)) and consent_live(p.policy_id, %s, "
        "coalesce(%s, local_day(now(), p.timezone)))",
        (policy_ids, policy_ids, _purpose(purpose), day)).fetchall()
    return {str(r[0]) for r in rows}


def periods(conn: Conn, policy_ids: list[str], purpose: str) -> pd.DataFrame:
    """The consented stretches of days: policy_id, from_day, to_day (NaT: still)."""
    rows = conn.execute("select policy_id, from_day, to_day from consent_periods "
                        "where policy_id = any(%s) and purpose = %s",
                        (policy_ids, _purpose(purpose))).fetchall()
    frame = pd.DataFrame(rows, columns=["policy_id", "from_day", "to_day"])
    for column in ("from_day", "to_day"):
        frame[column] = pd.to_datetime(frame[column])
    return frame


@dataclass(frozen=True)
class Choice:
    """A purpose's standing choice for a policy."""

    purpose: str
    given: bool
    text_version: int  # of the last event; 0 when none, or before consent records
    current_version: int
    at: datetime | None
    channel: str | None
    actor: str | None
    day: date | None = None  # the local day of `at` in the policy's zone


    @property
    def needs_reconsent(self) -> bool:
        """Given under an older text: the person is asked to confirm under the current one."""
        return self.given and self.text_version < self.current_version

    def as_dict(self) -> dict[str, Any]:
        return {"purpose": self.purpose, "given": self.given,
                "text_version": self.text_version, "current_version": self.current_version,
                "needs_reconsent": self.needs_reconsent,
                "at": self.at.isoformat() if self.at else None,
                "day": self.day.isoformat() if self.day else None, "channel": self.channel,
                "actor": self.actor}


def state(conn: Conn, policy_id: str) -> list[Choice]:
    """Each purpose's latest choice for the policy (not given when none was recorded)."""
    if conn.execute("select 1 from policies where policy_id = %s", (policy_id,)
                    ).fetchone() is None:
        raise UserError(f"no policy {policy_id!r}")
    rows = {str(r[0]): r for r in conn.execute(
        "select distinct on (purpose) purpose, given, text_version, at, channel, actor, "
        "local_day(at, p.timezone) from consent_events join policies p using (policy_id) "
        "where policy_id = %s order by purpose, at desc, event_id desc",
        (policy_id,)).fetchall()}
    out = []
    for purpose in PURPOSES:
        r = rows.get(purpose)
        out.append(Choice(purpose, bool(r[1]) if r else False, int(str(r[2])) if r else 0,
                          current_version(purpose), r[3] if r else None,
                          str(r[4]) if r else None, str(r[5]) if r else None,
                          r[6] if r else None))
    return out


def history(conn: Conn, policy_id: str) -> pd.DataFrame:
    """Every recorded choice of the policy, newest first."""
    rows = conn.execute("select at, purpose, given, text_version, channel, actor from "
                        "consent_events where policy_id = %s order by at desc, event_id desc",
                        (policy_id,)).fetchall()
    return pd.DataFrame(rows, columns=["at", "purpose", "given", "text_version", "channel",
                                       "actor"])
