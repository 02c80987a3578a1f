"""The care team's alerts in the database: placing readings at their policies, recording
findings as alerts (one open alert per policy and rule, later evidence attached), notices, the
clinicians' actions with their audit rows, and the rules' versions. Schema:
glucover/migrations/0019_care_alerts.sql."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import psycopg

from care.alerts import FRAME_COLUMNS, Finding
from care.notices import NOTICE_OF_RULE, notice_text
from care.rules import AlertRules, builtin
from glucover.db import insert_version, read_version
from pricing import store as pricing_store
from pricing.evaluator import assign_readings, bound_readings
from pricing.ruleset import Ruleset
from privacy import consent

Conn = psycopg.Connection[Any]
RULES_NAME = "default"
OUTCOMES = ("called", "advised", "referred", "no_action")
ACTIONS = ("assign", "acknowledge", "note", "resolve")
FOREVER_DAYS = 10**6  # the evaluator's day count for a policy with no end in sight


# ------------------------------------------------------------------ rules


def rules_in_force(conn: Conn) -> AlertRules:
    """The latest published version of the rules, else the shipped file (version 0)."""
    found = read_version(conn, "alert_rules", RULES_NAME)
    return builtin() if found is None else AlertRules.from_toml(*found)


def publish_rules(conn: Conn, rules: AlertRules, author: str, notes: str = "") -> AlertRules:
    """Store a new immutable version of the rules; returns it with its number."""
    body = rules.validate().to_toml()
    return AlertRules.from_toml(body, insert_version(conn, "alert_rules", rules.name, author,
                                                     notes, body))


# ------------------------------------------------------------------ readings at their policies


class Rulesets:
    """The pricing rulesets in force, by name, read once per evaluator pass: a policy's ruleset
    decides which of its readings are valid (pricing rule 1) and qualifying."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.found: dict[str, Ruleset] = {}

    def __call__(self, name: str) -> Ruleset:
        if name not in self.found:
            self.found[name] = pricing_store.in_force(self.conn, name)
        return self.found[name]


def policies_of(conn: Conn, device_ids: Iterable[str]) -> list[str]:
    rows = conn.execute("select distinct policy_id from policy_devices where device_id = any(%s)",
                        (list(device_ids),))
    return [str(r[0]) for r in rows]


def place(readings: pd.DataFrame, policies: pd.DataFrame, bindings: pd.DataFrame,
          rulesets: Rulesets, new: pd.DataFrame | None = None) -> pd.DataFrame:
    """The alert rules' frame (care/alerts.py FRAME_COLUMNS): each reading at every policy its
    meter was bound to when it was measured, judged valid and qualifying by that policy's
    pricing ruleset (pricing/evaluator.py assign_readings, rule 1). `new`: the readings the
    batch stored (identity columns); all are new when None."""
    readings = readings.reset_index(drop=True)
    row, binding = bound_readings(bindings, readings)
    placed = readings.iloc[row].reset_index(drop=True).assign(
        row=row, device_id=lambda f: f["device_id"].astype(str),
        policy_id=bindings["policy_id"].to_numpy()[binding])
    valid = np.zeros(len(placed), dtype=bool)
    qualifying = np.zeros(len(placed), dtype=bool)
    kind = np.empty(len(placed), dtype=object)
    for name, group in policies.groupby("ruleset_name", sort=False):
        ruleset = rulesets(str(name))
        group = group.reset_index(drop=True)
        of_group = placed["policy_id"].isin(group["policy_id"]).to_numpy()
        kind[of_group] = ruleset.kind
        assigned, _ = assign_readings(
            group, bindings[bindings["policy_id"].isin(group["policy_id"])], readings, ruleset,
            np.full(len(group), FOREVER_DAYS))
        ok = pd.MultiIndex.from_arrays([assigned.row, group["policy_id"].to_numpy()[
            assigned.policy]])
        here = pd.MultiIndex.from_arrays([placed["row"], placed["policy_id"]])
        is_valid = here.isin(ok) & of_group
        valid |= is_valid
        meal_ok = placed["meal"].astype(str).isin(ruleset.qualifying_meals).to_numpy()
        qualifying |= is_valid & (meal_ok | (ruleset.kind == "cgm"))
    placed["valid"], placed["qualifying"], placed["kind"] = valid, qualifying, kind
    if new is None:
        placed["new"] = True
    else:
        key = pd.MultiIndex.from_frame(new[["device_id", "seq", "measured_at"]].astype(
            {"device_id": str}))
        placed["new"] = pd.MultiIndex.from_frame(placed[["device_id", "seq", "measured_at"]]
                                                 ).isin(key)
    return placed[list(FRAME_COLUMNS)]


def settled(conn: Conn, policy_ids: list[str], since: datetime
            ) -> set[tuple[str, str, str, int, datetime]]:
    """(rule, policy_id, device_id, seq, measured_at) of readings that are evidence of a
    resolved alert: a rule judges them no more, so resolving an alert closes its episode."""
    rows = conn.execute(
        "select a.rule, a.policy_id, r.device_id, r.seq, r.measured_at from alert_readings r "
        "join alerts a using (alert_id) where a.status = 'resolved' and a.policy_id = any(%s) "
        "and r.measured_at >= %s", (policy_ids, since))
    return {(str(a), str(b), str(c), int(d), e) for a, b, c, d, e in rows}


# ------------------------------------------------------------------ findings -> alerts


@dataclass(frozen=True)
class Raised:
    alert_id: int
    policy_id: str
    rule: str
    notify: bool = False  # the policyholder is sent a notice


def _tells_policyholder(finding: Finding, rules: AlertRules) -> bool:
    """A rule that sends a notice, on readings measured recently (or on none: a lapse)."""
    last = finding.last_measured
    return finding.rule in NOTICE_OF_RULE and (
        last is None or datetime.now(last.tzinfo) - last <= timedelta(
            hours=rules.notice_max_age_hours))


def record(conn: Conn, findings: Iterable[Finding], rules: AlertRules,
           committed_at: datetime | None = None) -> list[Raised]:
    """Findings as alerts, in the caller's transaction: a new alert when the policy has no open
    one of the rule (and a keyed finding was not raised before), else the evidence attached
    to the open one. Recording the same finding twice changes nothing. Returns the new alerts,
    whose notices are queued too. A policy without live consent to care raises nothing
    (docs/privacy.md)."""
    findings = list(findings)
    cared_for = consent.live_policies(conn, sorted({f.policy_id for f in findings}), "care")
    raised = []
    for f in findings:
        if f.policy_id not in cared_for:
            continue
        row = conn.execute("select alert_id from alerts where policy_id = %s and rule = %s "
                           "and status <> 'resolved' for update", (f.policy_id, f.rule)
                           ).fetchone()
        if row is None:
            if f.key is not None and conn.execute(
                    "select 1 from alerts where policy_id = %s and rule = %s and trigger_key = "
                    "%s", (f.policy_id, f.rule, f.key)).fetchone():
                continue
            row = conn.execute(
                "insert into alerts (policy_id, rule, severity, detail, trigger_key, "
                "rules_name, rules_version, evidence_committed_at) values "
                "(%s, %s, %s, %s, %s, %s, %s, %s) on conflict do nothing returning alert_id",
                (f.policy_id, f.rule, rules.severity(f.rule), f.detail, f.key, rules.name,
                 rules.version, committed_at)).fetchone()
            if row is None:  # another evaluator raised it a moment ago
                continue
            raised.append(Raised(int(str(row[0])), f.policy_id, f.rule, _tells_policyholder(
                f, rules)))
        elif f.key is not None:
            continue
        alert_id = int(str(row[0]))
        if f.evidence:
            with conn.cursor() as cur:
                cur.executemany("insert into alert_readings (alert_id, device_id, seq, "
                                "measured_at) values (%s, %s, %s, %s) on conflict do nothing",
                                [(alert_id, *e) for e in f.evidence])
            conn.execute(
                "update alerts a set (reading_count, first_measured_at, last_measured_at) = "
                "(select count(*), min(measured_at), max(measured_at) from alert_readings r "
                "where r.alert_id = a.alert_id), detail = %s, updated_at = clock_timestamp() "
                "where alert_id = %s", (f.detail, alert_id))
    _queue_notices(conn, raised)
    return raised


def _queue_notices(conn: Conn, raised: list[Raised]) -> None:
    """A notice for each new alert of a rule that tells the policyholder, to each meter bound
    to the policy now, in the policyholder's language."""
    for r in raised:
        if not r.notify:
            continue
        kind = NOTICE_OF_RULE[r.rule]
        rows = conn.execute(
            "select pd.device_id, p.language from policies p join policy_devices pd using "
            "(policy_id) where p.policy_id = %s and pd.bound_to is null", (r.policy_id,))
        with conn.cursor() as cur:
            cur.executemany(
                "insert into notices (policy_id, device_id, alert_id, kind, language, body) "
                "values (%s, %s, %s, %s, %s, %s)",
                [(r.policy_id, device, r.alert_id, kind, lang, notice_text(kind, str(lang)))
                 for device, lang in rows.fetchall()])


# ------------------------------------------------------------------ reading alerts


ALERT_COLUMNS = ("alert_id", "policy_id", "rule", "severity", "status", "raised_at",
                 "reading_count", "detail", "assigned_to", "updated_at", "first_measured_at",
                 "last_measured_at", "outcome", "resolved_at", "evidence_at")
# An alert's age is its newest evidence's: the latest reading that shows it (an open alert
# gathers later episodes), else, for one judged on no reading (a lapse, a status report),
# when it was raised.
EVIDENCE_AT = "coalesce(last_measured_at, raised_at) as evidence_at"
# Alerts and notices are shown only while the policyholder consents to care.
CARE_CONSENTED = ("consent_live(policy_id, 'care', (select local_day(now(), p.timezone) "
                  "from policies p where p.policy_id = {table}.policy_id))")
SEVERITY_RANK = "array_position(array['urgent', 'high', 'medium', 'low'], severity)"


def list_alerts(conn: Conn, policy_ids: list[str] | None = None, open_only: bool = False,
                limit: int = 1000) -> pd.DataFrame:
    """Alerts, the queue's order: open before resolved, by severity, oldest first; with
    `evidence_at`, the time of the newest evidence."""
    select = ", ".join(EVIDENCE_AT if c == "evidence_at" else c for c in ALERT_COLUMNS)
    rows = conn.execute(
        f"select {select} from alerts "
        "where (%(ids)s::text[] is null or policy_id = any(%(ids)s)) "
        "and (not %(open)s or status <> 'resolved') "
        f"and {CARE_CONSENTED.format(table='alerts')} "
        f"order by status = 'resolved', {SEVERITY_RANK}, raised_at limit %(limit)s",
        {"ids": policy_ids, "open": open_only, "limit": limit}).fetchall()
    return pd.DataFrame(rows, columns=list(ALERT_COLUMNS))


@dataclass(frozen=True)
class Evidence:
    """The readings that show an alert: those within its rule's window (AlertRules.
    evidence_window) ending at the newest, newest first, and how many earlier ones it holds
    (an alert left open gathers every later episode)."""

    readings: pd.DataFrame  # device_id, seq, measured_at, value_mmol, meal, status
    earlier: int


def rules_of_alert(conn: Conn, alert_id: int) -> AlertRules:
    """The version of the rules that raised the alert (the shipped file for version 0)."""
    row = conn.execute("select rules_name, rules_version from alerts where alert_id = %s",
                       (alert_id,)).fetchone()
    found = (read_version(conn, "alert_rules", str(row[0]), int(str(row[1])))
             if row is not None and int(str(row[1])) else None)
    return builtin() if found is None else AlertRules.from_toml(*found)


def evidence(conn: Conn, alert_id: int) -> Evidence:
    """The alert's readings within its rule's window, newest first, with a count of the rest,
    under the rules that raised it."""
    rule = conn.execute("select rule from alerts where alert_id = %s", (alert_id,)).fetchone()
    window = rules_of_alert(conn, alert_id).evidence_window(str(rule[0]) if rule else "lapsed")
    since = ("(select last_measured_at - %(window)s from alerts a "
             "where a.alert_id = %(id)s)")
    params = {"id": alert_id, "window": window}
    rows = conn.execute(
        "select r.device_id, r.seq, r.measured_at,"
        " glucose_mmol(g.value_digits, g.value_exponent, g.unit), g.meal, g.status "
        "from alert_readings r left join readings g using (device_id, seq, measured_at) "
        f"where r.alert_id = %(id)s and r.measured_at >= {since} "
        "order by r.measured_at desc, r.device_id, r.seq desc", params).fetchall()
    earlier = conn.execute(
        f"select count(*) from alert_readings where alert_id = %(id)s and measured_at < {since}",
        params).fetchone()
    return Evidence(pd.DataFrame(rows, columns=["device_id", "seq", "measured_at", "value_mmol",
                                                "meal", "status"]),
                    int(str(earlier[0])) if earlier else 0)


# Treatments an app uploaded (carbs, insulin: nightscout/, 0045_nightscout.sql) this long
# before an alert's first reading and after its last are shown beside them.
TREATMENTS_BEFORE, TREATMENTS_AFTER = timedelta(hours=6), timedelta(hours=1)


def treatments_near(conn: Conn, policy_id: str, first: datetime, last: datetime
                    ) -> pd.DataFrame:
    """The policy's uploaded treatments around [first, last], newest first."""
    rows = conn.execute(
        "select created_at, event_type, carbs_g, insulin_u, notes from nightscout_treatments "
        "where policy_id = %s and created_at between %s and %s order by created_at desc",
        (policy_id, first - TREATMENTS_BEFORE, last + TREATMENTS_AFTER)).fetchall()
    return pd.DataFrame(rows, columns=["created_at", "event_type", "carbs_g", "insulin_u",
                                       "notes"])


def audit_trail(conn: Conn, alert_id: int) -> pd.DataFrame:
    rows = conn.execute("select at, username, action, detail, outcome from alert_audit "
                        "where alert_id = %s order by audit_id", (alert_id,)).fetchall()
    return pd.DataFrame(rows, columns=["at", "username", "action", "detail", "outcome"])


def notices_for(conn: Conn, policy_id: str, within: timedelta, limit: int = 5) -> pd.DataFrame:
    """A policy's notices of the last `within`, newest first."""
    rows = conn.execute("select created_at, kind, body, state from notices where policy_id = %s "
                        "and created_at >= now() - %s and "
                        + CARE_CONSENTED.format(table="notices")
                        + " order by created_at desc limit %s",
                        (policy_id, within, limit)).fetchall()
    return pd.DataFrame(rows, columns=["created_at", "kind", "body", "state"])


# ------------------------------------------------------------------ the care team's actions


# Why an action may be refused: the dashboard says each as `action_refused_<code>`.
REFUSALS = ("unknown_action", "not_on_panel", "resolved", "empty_note", "no_outcome")


class ActionError(ValueError):
    """An action refused: a code from REFUSALS, which the dashboard says in its reader's
    language, and English for logs and the command line."""

    def __init__(self, code: str, message: str) -> None:
        assert code in REFUSALS, code
        super().__init__(message)
        self.code = code


def act(conn: Conn, username: str, alert_id: int, action: str, detail: str = "",
        outcome: str | None = None, allowed: list[str] | None = None) -> None:
    """A clinician's action on an alert and its audit row, in one transaction the caller
    commits. `allowed`: the policies the clinician may act on (their panel)."""
    if action not in ACTIONS:
        raise ActionError("unknown_action", f"unknown action {action!r}")
    row = conn.execute("select policy_id, status from alerts where alert_id = %s for update",
                       (alert_id,)).fetchone()
    if row is None or (allowed is not None and str(row[0]) not in allowed):
        raise ActionError("not_on_panel", "no such alert on your panel")
    if row[1] == "resolved" and action != "note":
        raise ActionError("resolved", "the alert is resolved")
    if action == "assign":
        conn.execute("update alerts set assigned_to = %s, updated_at = clock_timestamp() "
                     "where alert_id = %s", (username, alert_id))
    elif action == "acknowledge":
        conn.execute("update alerts set status = 'acknowledged', acknowledged_at = "
                     "clock_timestamp(), assigned_to = coalesce(assigned_to, %s), updated_at = "
                     "clock_timestamp() where alert_id = %s", (username, alert_id))
    elif action == "note":
        if not detail.strip():
            raise ActionError("empty_note", "a note needs text")
    else:
        if outcome not in OUTCOMES:
            raise ActionError("no_outcome", f"resolve with one of: {', '.join(OUTCOMES)}")
        conn.execute("update alerts set status = 'resolved', outcome = %s, resolved_at = "
                     "clock_timestamp(), updated_at = clock_timestamp() where alert_id = %s",
                     (outcome, alert_id))
    # The trail holds the clinician's own words; the action and outcome are codes, said in the
    # reader's language where they are shown.
    conn.execute("insert into alert_audit (username, alert_id, action, detail, outcome) values "
                 "(%s, %s, %s, %s, %s)", (username, alert_id, action, detail.strip(),
                                          outcome if action == "resolve" else None))
