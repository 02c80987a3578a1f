"""Checks that flag a claim for a second look (docs/claims.md). A flag does not decide a claim;
it tells the handler where to look. Each check is a small function; `at_filing` runs them all
over the data as it stood when the claim was filed, `readings_after_event` also when the claim
is shown (readings keep arriving)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from actuary import gaming
from pricing import store
from pricing.ruleset import Ruleset

Conn = psycopg.Connection[Any]

RISE_WINDOW_DAYS = 30  # the bonus rise looked at: the 30 days before the event
# A rise is sharp when it reaches this share of what every day of the window in target could
# earn (30 x the ruleset's in-target step: 2,400 RMB of 3,000 under the default ruleset).
SHARP_RISE_SHARE = 0.8

# The flags, with what each means (docs/claims.md; the dashboard's words in dashboard/i18n.py).
FLAGS = {
    "waiting_period": "the event falls within the waiting period",
    "sharp_bonus_rise": "the bonus rose sharply in the 30 days before the event",
    "readings_after_event": "the policy's meter sent readings measured after the event date",
    "gaming_exclusions": "the gaming report: the ruleset's exclusions are worth much to this "
                         "policy (retests, control solution, clock games)",
    "gaming_hypo_rewarded": "the gaming report: rewarded while often hypoglycaemic",
    "gaming_clock_inversions": "the gaming report: the meter's clock went back while its "
                               "sequence went up",
}


def in_waiting_period(start: date, waiting_days: int, event_date: date) -> bool:
    return event_date < start + timedelta(days=waiting_days)


def sharp_rise(rise: float, rules: Ruleset) -> bool:
    """rise >= SHARP_RISE_SHARE x RISE_WINDOW_DAYS x the in-target step."""
    most = RISE_WINDOW_DAYS * max(rules.delta_in_target, 0.0)
    return most > 0 and rise >= SHARP_RISE_SHARE * most


def bonus_rise(conn: Conn, policy_id: str, basis_day: date) -> float:
    """The bonus on the basis day less the bonus RISE_WINDOW_DAYS before (0 before the start)."""
    row = conn.execute(
        "select (select bonus::float8 from current_ledger where policy_id = %(p)s and day = "
        "%(d)s), (select bonus::float8 from current_ledger where policy_id = %(p)s and day = "
        "%(e)s)", {"p": policy_id, "d": basis_day,
                   "e": basis_day - timedelta(days=RISE_WINDOW_DAYS)}).fetchone()
    assert row is not None
    return float(row[0] or 0.0) - float(row[1] or 0.0)


def readings_after_event(conn: Conn, policy_id: str, event_date: date) -> bool:
    """Whether the policy's meters sent a reading measured after the event's local day."""
    row = conn.execute(
        """select exists (
               select 1 from policy_devices pd
               join policies p using (policy_id)
               join readings r on r.device_id = pd.device_id
                    and r.measured_at >= pd.bound_from
                    and (pd.bound_to is null or r.measured_at < pd.bound_to)
               where pd.policy_id = %s
                 and r.measured_at >= local_midnight(%s::date + 1, p.timezone))""",
        (policy_id, event_date)).fetchone()
    return bool(row and row[0])


def gaming_flags(conn: Conn, policy_id: str, through: date) -> list[str]:
    """The gaming report's flags on this one policy, through the basis day."""
    policies, bindings = store.load_policies(conn, [policy_id])
    if policies.empty or through < policies["start_date"].iloc[0].date():
        return []
    readings = store.load_readings(
        conn, sorted(set(bindings["device_id"])),
        until=datetime.combine(through + timedelta(days=2), datetime.min.time(), UTC))
    name = str(policies["ruleset_name"].iloc[0])
    rules = store.in_force(conn, name)
    report = gaming.gaming_report(policies, bindings, readings, None, through,
                                  published=lambda _: rules)
    found = []
    gap = report.by_segment["gap"]
    if len(gap) and float(gap.max()) > gaming.FLAG_GAP:
        found.append("gaming_exclusions")
    if not report.hypo_rewarded.empty:
        found.append("gaming_hypo_rewarded")
    if not report.clock_inversions.empty:
        found.append("gaming_clock_inversions")
    return found


def at_filing(conn: Conn, policy_id: str, start: date, waiting_days: int, ruleset_name: str,
              event_date: date, basis_day: date) -> list[str]:
    """Every flag, over the data as it stands now (when the claim is filed)."""
    found = []
    if in_waiting_period(start, waiting_days, event_date):
        found.append("waiting_period")
    if sharp_rise(bonus_rise(conn, policy_id, basis_day), store.in_force(conn, ruleset_name)):
        found.append("sharp_bonus_rise")
    if readings_after_event(conn, policy_id, event_date):
        found.append("readings_after_event")
    found += gaming_flags(conn, policy_id, basis_day)
    return found
