"""`glucover nightscout enable`: a policy's Nightscout device, its binding and credentials."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg

from glucover.errors import UserError
from kernel.vocabulary import NIGHTSCOUT_MODEL, DeviceKind
from nightscout import credentials
from nightscout.credentials import Credentials, device_id_of
from pricing.ruleset import RULESET_OF_KIND

DEVICE_MODEL = NIGHTSCOUT_MODEL
# Bound from two days before the start date, as provisioning binds meters: the start date's
# local midnight may be the UTC day before it (devices/provisioning.py).
BIND_EARLY = timedelta(days=2)


def enable(conn: psycopg.Connection[Any], secret: str, policy_id: str, rotate: bool
           ) -> tuple[Credentials, bool]:
    """The policy's upload credentials, created on first use or rotated; (credentials,
    whether anything changed). In the caller's transaction.

    On first use the policy's Nightscout device (a CGM) is bound to it from its start, the
    meters bound before are unbound from now on (the app is the policyholder's device from
    here), and a policy priced under the fingerstick ruleset moves to the CGM one."""
    policy = conn.execute("select start_date from policies where policy_id = %s for update",
                          (policy_id,)).fetchone()
    if policy is None:
        raise UserError(f"no policy {policy_id!r}: `glucover alerts list` or the dashboard "
                        "names the policies")
    row = conn.execute("select generation from nightscout_uploaders where policy_id = %s",
                       (policy_id,)).fetchone()
    if row is not None and not rotate:
        return credentials.credentials(secret, policy_id, int(str(row[0]))), False
    if row is None:
        _switch_over(conn, policy_id, device_id_of(policy_id))
        return provision(conn, secret, policy_id, policy[0]), True
    generation = int(str(row[0])) + 1
    creds = credentials.credentials(secret, policy_id, generation)
    sha1_key, sha512_key, token_key = credentials.keys(creds)
    conn.execute("update nightscout_uploaders set generation = %s, secret_sha1_key = %s, "
                 "secret_sha512_key = %s, token_key = %s, rotated_at = now() "
                 "where policy_id = %s",
                 (generation, sha1_key, sha512_key, token_key, policy_id))
    return creds, True


def provision(conn: psycopg.Connection[Any], secret: str, policy_id: str, start: date
              ) -> Credentials:
    """The policy's Nightscout device (a CGM) bound from its start, and its first
    credentials: what `enable` does on first use, and all that enrolment does for an applicant
    who uploads through Nightscout (policies/enrolment.py): a new policy has no meter to
    unbind and is priced as a CGM already. In the caller's transaction."""
    creds = credentials.credentials(secret, policy_id, 1)
    sha1_key, sha512_key, token_key = credentials.keys(creds)
    conn.execute("insert into devices (device_id, model, kind) values (%s, %s, %s) "
                 "on conflict (device_id) do nothing",
                 (creds.device_id, DEVICE_MODEL, str(DeviceKind.CGM)))
    conn.execute("insert into policy_devices (policy_id, device_id, bound_from) "
                 "values (%s, %s, %s) on conflict do nothing",
                 (policy_id, creds.device_id, datetime.combine(start, time(), UTC) - BIND_EARLY))
    conn.execute("insert into nightscout_uploaders (policy_id, device_id, generation, "
                 "secret_sha1_key, secret_sha512_key, token_key) values "
                 "(%s, %s, %s, %s, %s, %s)",
                 (policy_id, creds.device_id, creds.generation, sha1_key, sha512_key,
                  token_key))
    return creds


def _switch_over(conn: psycopg.Connection[Any], policy_id: str, device_id: str) -> None:
    """An existing policy moving to Nightscout uploads: the meters bound before are unbound
    from now on, and a policy priced under the fingerstick ruleset moves to the CGM one."""
    conn.execute("update policy_devices set bound_to = now() where policy_id = %s "
                 "and device_id <> %s and (bound_to is null or bound_to > now())",
                 (policy_id, device_id))
    conn.execute("update policies set ruleset_name = %s where policy_id = %s "
                 "and ruleset_name = %s", (RULESET_OF_KIND[DeviceKind.CGM], policy_id,
                                           RULESET_OF_KIND[DeviceKind.BGM]))


def uploader_of(conn: psycopg.Connection[Any], secret: str, policy_id: str
                ) -> Credentials | None:
    """A policy's current credentials, to show its holder; None when not enabled."""
    row = conn.execute("select generation from nightscout_uploaders where policy_id = %s",
                       (policy_id,)).fetchone()
    return None if row is None else credentials.credentials(secret, policy_id, int(str(row[0])))
