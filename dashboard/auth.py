"""Dashboard accounts: bcrypt password hashes, roles, and who may see which policy."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import bcrypt
import psycopg

ROLES = ("policyholder", "actuary", "operations", "clinician", "claims", "reviewer", "privacy")
BCRYPT_ROUNDS = 12


class AccessDenied(PermissionError):
    """A refusal; `code` names its text in dashboard/i18n.py (refused_<code>)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class User:
    username: str
    role: str
    policy_id: str | None
    care_lead: bool = False  # a clinician who publishes the alert rules

    @property
    def publishes_alert_rules(self) -> bool:
        return self.role == "clinician" and self.care_lead


def hash_password(password: str, rounds: int = BCRYPT_ROUNDS) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()


def create_user(conn: psycopg.Connection[Any], username: str, password: str, role: str,
                policy_id: str | None = None, rounds: int = BCRYPT_ROUNDS,
                care_lead: bool = False) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    # Names are not case-sensitive at sign-in: one login per name, whatever its case.
    taken = conn.execute("select username from dashboard_users where lower(username) = "
                         "lower(%s) and username <> %s", (username, username)).fetchone()
    if taken is not None:
        raise ValueError(f"username {username!r} is taken (as {taken[0]!r}): names are not "
                         "case-sensitive")
    conn.execute(
        "insert into dashboard_users (username, password_hash, role, policy_id, care_lead) "
        "values (%s, %s, %s, %s, %s) on conflict (username) do update set password_hash = "
        "excluded.password_hash, role = excluded.role, policy_id = excluded.policy_id, "
        "care_lead = excluded.care_lead",
        (username, hash_password(password, rounds), role, policy_id, care_lead))


def authenticate(conn: psycopg.Connection[Any], username: str, password: str) -> User | None:
    """The user of a name and password; the name is not case-sensitive (POL-007-000001 and
    pol-007-000001 are one login) and comes back as stored."""
    row = conn.execute("select username, password_hash, role, policy_id, care_lead "
                       "from dashboard_users where lower(username) = lower(%s) "
                       "order by username = %s desc, username limit 1",
                       (username.strip(), username.strip())).fetchone()
    # An unknown name costs the same bcrypt work as a known one: its password is checked
    # against a real hash of the cost the users' hashes have, so timing does not tell who
    # exists.
    stored = str(row[1]) if row else _dummy_hash(_usual_cost(conn))
    try:
        ok = bcrypt.checkpw(password.encode(), stored.encode())
    except ValueError:
        ok = False
    if not row or not ok:
        return None
    return User(str(row[0]), str(row[2]), None if row[3] is None else str(row[3]),
                bool(row[4]))


def _usual_cost(conn: psycopg.Connection[Any]) -> int:
    """The bcrypt cost most users' hashes have ($2b$<cost>$...); BCRYPT_ROUNDS without any."""
    row = conn.execute("select substr(password_hash, 5, 2) as cost, count(*) from "
                       "dashboard_users group by 1 order by 2 desc limit 1").fetchone()
    return int(row[0]) if row and str(row[0]).isdigit() else BCRYPT_ROUNDS


@cache
def _dummy_hash(cost: int) -> str:
    return hash_password("no such user", max(4, min(cost, 31)))


def add_to_panel(conn: psycopg.Connection[Any], username: str, policy_ids: list[str]) -> None:
    """Put policyholders on a clinician's panel."""
    with conn.cursor() as cur:
        cur.executemany("insert into care_panels (username, policy_id) values (%s, %s) "
                        "on conflict do nothing", [(username, p) for p in policy_ids])


def panel(conn: psycopg.Connection[Any], user: User) -> list[str]:
    """The policies a user may choose from: a clinician's panel; everyone's for actuaries and
    operations; a policyholder's own."""
    if user.role == "policyholder":
        return [str(user.policy_id)]
    if user.role == "clinician":
        rows = conn.execute("select policy_id from care_panels where username = %s "
                            "order by policy_id", (user.username,))
    else:
        rows = conn.execute("select policy_id from policies order by policy_id")
    return [str(p) for (p,) in rows]


def policy_for(user: User, requested: str | None, allowed: list[str] | None = None) -> str:
    """The policy `user` may look at. A policyholder gets their own, and asking for another's
    is refused; a clinician one on their panel (`allowed`); actuaries and operations any they
    name."""
    if user.role == "policyholder":
        assert user.policy_id is not None
        if requested and requested != user.policy_id:
            raise AccessDenied("not_yours", "you can only see your own policy")
        return user.policy_id
    if not requested:
        raise AccessDenied("no_policy", "choose a policy")
    if user.role == "clinician" and requested not in (allowed or []):
        raise AccessDenied("not_on_panel", "this policyholder is not on your panel")
    return requested
