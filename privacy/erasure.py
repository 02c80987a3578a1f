"""Erasure of a policyholder (PIPL Art 47, GDPR Art 17; schema: 0053_erasure.sql;
docs/privacy.md "Erasure").

`erase` deletes, in one transaction, every row of the person: readings and rejects of their
meters, the meters themselves, day summaries, sensor sessions, alerts with their evidence,
audit and notices, consents, reviews, the ledger, the dashboard login and its sessions, the
policy. The access log keeps its rows, but the key that linked them to the policy is
deleted, so they name nobody. The caller then closes the meters' broker accounts
(`glucover privacy erase` does: cli/erase.py).

Legal hold: a policy with a claim keeps the claim, the policy row (name and birth year
removed) and the ledger rows through the latest claim's basis day, which the payout relied
on; everything else goes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import psycopg

from glucover.errors import UserError

Conn = psycopg.Connection[Any]
ERASED_NAME = "(erased)"


@dataclass
class Erasure:
    policy_id: str
    held: bool  # a claim keeps the policy row, the claim and the ledger it relied on
    devices: list[str]
    counts: dict[str, int] = field(default_factory=dict)


def request(conn: Conn, policy_id: str, username: str) -> int:
    """A policyholder's request from their page (an operator decides it)."""
    row = conn.execute("insert into erasure_requests (policy_id, requested_by) values (%s, %s) "
                       "on conflict (policy_id) where status = 'open' do nothing "
                       "returning request_id", (policy_id, username)).fetchone()
    if row is None:
        raise UserError("an erasure request is already waiting")
    return int(str(row[0]))


def open_requests(conn: Conn) -> list[tuple[int, str, str, Any]]:
    """(request_id, policy_id, requested_by, requested_at) of the requests waiting."""
    return [(int(str(r[0])), str(r[1]), str(r[2]), r[3]) for r in conn.execute(
        "select request_id, policy_id, requested_by, requested_at from erasure_requests "
        "where status = 'open' order by requested_at")]


def pending(conn: Conn, policy_id: str) -> bool:
    return conn.execute("select 1 from erasure_requests where policy_id = %s and status = "
                        "'open'", (policy_id,)).fetchone() is not None


def erase(conn: Conn, policy_id: str, reason: str, actor: str) -> Erasure:
    """Erase the policy's person (in the caller's transaction, which must commit it)."""
    if not reason.strip():
        raise UserError("--reason must say why (a request, the end of retention)")
    if conn.execute("select 1 from policies where policy_id = %s for update",
                    (policy_id,)).fetchone() is None:
        raise UserError(f"no policy {policy_id!r}")
    conn.execute("select set_config('glucover.erasure', 'on', true)")
    hold = conn.execute("select max(basis_day) from claims where policy_id = %s",
                        (policy_id,)).fetchone()
    hold_day = hold[0] if hold else None
    devices = [str(r[0]) for r in conn.execute(
        "select distinct device_id from policy_devices d where policy_id = %s and not exists "
        "(select 1 from policy_devices o where o.device_id = d.device_id and "
        "o.policy_id <> d.policy_id)", (policy_id,))]
    done = Erasure(policy_id, hold_day is not None, devices)
    p = {"p": policy_id, "d": devices, "hold": hold_day}
    subject = conn.execute("select subject from policy_subjects where policy_id = %(p)s",
                           p).fetchone()
    alerts = "(select alert_id from alerts where policy_id = %(p)s)"
    reviews = "(select review_id from decision_reviews where policy_id = %(p)s)"
    users = "(select username from dashboard_users where policy_id = %(p)s)"
    steps = [
        ("readings", "delete from readings where device_id = any(%(d)s)"),
        ("rejected_messages", "delete from rejected_messages where device_id = any(%(d)s)"),
        ("device_status", "delete from device_status where device_id = any(%(d)s)"),
        ("device_acks", "delete from device_acks where device_id = any(%(d)s)"),
        ("sensor_sessions", "delete from sensor_sessions where device_id = any(%(d)s)"),
        ("meter_days", "delete from meter_days where policy_id = %(p)s"),
        ("cgm_days", "delete from cgm_days where policy_id = %(p)s"),
        ("notices", "delete from notices where policy_id = %(p)s"),
        ("alert_readings", f"delete from alert_readings where alert_id in {alerts}"),
        ("alert_audit", f"delete from alert_audit where alert_id in {alerts}"),
        ("alerts", "delete from alerts where policy_id = %(p)s"),
        ("care_panels", "delete from care_panels where policy_id = %(p)s"),
        ("consent_events", "delete from consent_events where policy_id = %(p)s"),
        # A correction's ledger row names its review: they go together (no hold keeps a
        # review).
        ("sum_insured_ledger", "delete from sum_insured_ledger where policy_id = %(p)s and "
                               "(%(hold)s::date is null or day > %(hold)s::date or "
                               f"review_id in {reviews})"),
        ("review_audit", f"delete from review_audit where review_id in {reviews}"),
        ("decision_reviews", "delete from decision_reviews where policy_id = %(p)s"),
        ("dashboard_sessions", f"delete from dashboard_sessions where username in {users}"),
        ("dashboard_users", "delete from dashboard_users where policy_id = %(p)s"),
        ("policy_subjects", "delete from policy_subjects where policy_id = %(p)s"),
        ("policy_devices", "delete from policy_devices where policy_id = %(p)s"),
        ("devices", "delete from devices where device_id = any(%(d)s)"),
    ]
    # The application holds the person's identity: it goes, held or not. The policy's life
    # (its events, terms and premiums) goes with the policy; a claim holds it, with the claim.
    steps.append(("policy_applications",
                  "delete from policy_applications where policy_id = %(p)s"))
    if hold_day is None:
        steps += [
            ("premium_payments", "delete from premium_payments where policy_id = %(p)s"),
            ("policy_terms", "delete from policy_terms where policy_id = %(p)s"),
            ("policy_events", "delete from policy_events where policy_id = %(p)s"),
            ("policies", "delete from policies where policy_id = %(p)s"),
        ]
    conn.execute("update erasure_requests set status = %s, decided_by = %s, decided_at = "
                 "clock_timestamp(), policy_id = case when %s then policy_id end "
                 "where policy_id = %s and status = 'open'",
                 ("held" if done.held else "erased", actor, done.held, policy_id))
    for table, statement in steps:
        done.counts[table] = conn.execute(statement, p).rowcount
    if hold_day is not None:  # the claim keeps the row; the person's fields go
        conn.execute("update policies set holder_name = %s, birth_year = null, "
                     "segment = 'erased' where policy_id = %s", (ERASED_NAME, policy_id))
    conn.execute("insert into erasures (actor, reason, subject, held, counts) values "
                 "(%s, %s, %s, %s, %s)", (actor, reason.strip(), subject[0] if subject else None,
                                          done.held, json.dumps(done.counts)))
    return done
