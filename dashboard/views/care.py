"""The care team's alert queue (role `clinician`): the alerts of the policyholders on the
clinician's panel, by severity and age; assign, acknowledge, note, resolve with an outcome,
each action written to the audit table with it (care/store.py act)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from care import store
from care.rules import SEVERITIES, AlertRules, AlertRulesError, declared_fields
from dashboard import db
from dashboard.auth import User, panel
from dashboard.i18n import TEXT, t
from dashboard.parameter_form import (
    changes,
    choice_words,
    form_scope,
    parameter_inputs,
    shown,
    unit_words,
    widget_key,
)
from glucover.parameters import declaration


def severity(level: str, lang: str) -> str:
    """A severity as the queue shows it: urgent in capitals (text, no colour or emoji to
    depend on)."""
    word = t(f"severity_{level}", lang)
    return word.upper() if level == SEVERITIES[0] else word


def age(at: datetime, now: datetime, lang: str) -> str:
    """How long ago `at` was: an alert's age is its newest evidence's (store.EVIDENCE_AT)."""
    minutes = int((now - at).total_seconds() // 60)
    if minutes < 60:
        return t("age_minutes", lang, n=minutes)
    if minutes < 48 * 60:
        return t("age_hours", lang, n=minutes // 60)
    return t("age_days", lang, n=minutes // 1440)


def trail_note(outcome: str | None, detail: str, lang: str) -> str:
    """An audit row's note: a resolution's outcome in the page's language, then the
    clinician's own words (rows from before the outcome had a column hold English text)."""
    if outcome is None or pd.isna(outcome):
        return detail
    said = t(f"outcome_{outcome}", lang)
    return f"{said}: {detail}" if detail else said


def queue_table(queue: pd.DataFrame, lang: str, now: datetime) -> pd.DataFrame:
    last = pd.to_datetime(queue["last_measured_at"], utc=True)
    return pd.DataFrame({
        t("col_severity", lang): [severity(s, lang) for s in queue["severity"]],
        t("col_age", lang): [age(e, now, lang) for e in queue["evidence_at"]],
        t("col_policy", lang): queue["policy_id"],
        t("col_rule", lang): [t(f"rule_{r}", lang) for r in queue["rule"]],
        t("col_readings", lang): queue["reading_count"],
        t("col_last_reading", lang): last.dt.strftime("%m-%d %H:%M").fillna("—"),
        t("col_status", lang): [t(f"status_{s}", lang) for s in queue["status"]],
        t("col_assigned", lang): queue["assigned_to"].fillna("—"),
    })


def render(user: User) -> None:
    lang = st.session_state.get("lang", "en")
    st.title(t("alerts_title", lang))
    show_resolved = st.toggle(t("alerts_show_resolved", lang), value=False)
    with db.pool().connection() as conn:
        allowed = panel(conn, user)
        queue = store.list_alerts(conn, allowed, open_only=not show_resolved)
    if done := st.session_state.pop("alert_saved", None):
        st.toast(done)
    if queue.empty:
        st.success(t("alerts_none", lang))
        return
    now = datetime.now(UTC)
    st.dataframe(queue_table(queue, lang, now), hide_index=True, width="stretch")
    labels = {int(a): f"{severity(str(s), lang)} · {p} · {t(f'rule_{r}', lang)} · "
                      f"{age(w, now, lang)}"
              for a, s, p, r, w in zip(queue["alert_id"], queue["severity"], queue["policy_id"],
                                       queue["rule"], queue["evidence_at"], strict=True)}
    alert_id = st.selectbox(t("alert_pick", lang), list(labels), format_func=labels.__getitem__)
    alert = queue[queue["alert_id"] == alert_id].iloc[0]
    _details(alert, lang)
    if alert["status"] != "resolved":
        _actions(user, alert, allowed, lang)


def _details(alert: pd.Series, lang: str) -> None:  # type: ignore[type-arg]
    st.subheader(f"{alert['policy_id']} · {t('rule_' + alert['rule'], lang)}")
    with db.pool().connection() as conn:
        shown = store.evidence(conn, int(alert["alert_id"]))
        trail = store.audit_trail(conn, int(alert["alert_id"]))
        readings = shown.readings  # newest first, within the rule's window
        treatments = store.treatments_near(
            conn, str(alert["policy_id"]), readings["measured_at"].min(),
            readings["measured_at"].max()) if len(readings) else None
    values = readings["value_mmol"].dropna()
    # The service's own words are English; the figures are said in the page's language.
    st.write(t("alert_summary", lang, n=len(readings), low=values.min(), high=values.max())
             if len(values) and lang != "en" else alert["detail"])
    st.markdown(f"[{t('alert_open_policy', lang)}](panel?policy={alert['policy_id']})")
    if len(readings):
        st.caption(t("alert_readings", lang))
        st.dataframe(pd.DataFrame({
            t("col_time", lang): readings["measured_at"].dt.strftime("%Y-%m-%d %H:%M"),
            "mmol/L": readings["value_mmol"].round(1)}), hide_index=True)
        if shown.earlier:
            st.caption(t("alert_readings_earlier", lang, n=shown.earlier))
    if treatments is not None and len(treatments):
        st.caption(t("alert_treatments", lang))
        st.dataframe(pd.DataFrame({
            t("col_time", lang): treatments["created_at"].dt.strftime("%Y-%m-%d %H:%M"),
            t("col_event", lang): treatments["event_type"].fillna(""),
            t("col_carbs", lang): treatments["carbs_g"],
            t("col_insulin", lang): treatments["insulin_u"],
            t("col_notes", lang): treatments["notes"].fillna("")}), hide_index=True)
    if len(trail):
        st.caption(t("alert_trail", lang))
        # A table of plain text: st.table would render a note's Markdown (an image link in a
        # note would be fetched by every viewer's browser).
        st.dataframe(pd.DataFrame({
            t("col_time", lang): trail["at"].dt.strftime("%m-%d %H:%M"),
            t("col_who", lang): trail["username"],
            t("col_action", lang): [t(f"action_{a}", lang) for a in trail["action"]],
            t("alert_note", lang): [trail_note(o, d, lang) for o, d in zip(
                trail["outcome"], trail["detail"], strict=True)]}), hide_index=True)


def _act(user: User, alert_id: int, allowed: list[str], action: str, lang: str,
         detail: str = "", outcome: str | None = None) -> None:
    with db.pool().connection() as conn:
        try:
            store.act(conn, user.username, alert_id, action, detail, outcome, allowed)
        except store.ActionError as exc:
            conn.rollback()
            st.error(t(f"action_refused_{exc.code}", lang))
            return
    st.session_state["alert_saved"] = t("alert_done", lang)
    st.rerun()


def _actions(user: User, alert: pd.Series, allowed: list[str],  # type: ignore[type-arg]
             lang: str) -> None:
    alert_id = int(alert["alert_id"])
    c1, c2 = st.columns(2)
    # What is done already is not offered again: assigning to oneself, acknowledging twice.
    if c1.button(t("alert_assign", lang), key=f"assign-{alert_id}",
                 disabled=alert["assigned_to"] == user.username):
        _act(user, alert_id, allowed, "assign", lang)
    if c2.button(t("alert_acknowledge", lang), key=f"ack-{alert_id}",
                 disabled=alert["status"] != "open"):
        _act(user, alert_id, allowed, "acknowledge", lang)
    with st.form(f"note-{alert_id}", clear_on_submit=True):
        note = st.text_area(t("alert_note", lang))
        if st.form_submit_button(t("alert_add_note", lang)):
            _act(user, alert_id, allowed, "note", lang, note)
    with st.form(f"resolve-{alert_id}"):
        outcome = st.selectbox(t("alert_outcome", lang), store.OUTCOMES,
                               format_func=lambda o: t(f"outcome_{o}", lang))
        note = st.text_input(t("alert_note", lang), key=f"resolve-note-{alert_id}")
        if st.form_submit_button(t("alert_resolve", lang)):
            _act(user, alert_id, allowed, "resolve", lang, note, outcome)


def _rule_words(lang: str) -> Callable[[str], str]:
    """A section of the alert rules as the care team says it: the rule's own name."""
    def said(section: str) -> str:
        key = f"rule_{section}" if f"rule_{section}" in TEXT else f"ar_section_{section}"
        return t(key, lang)
    return said


def render_rules(user: User) -> None:
    """The alert rules in force, each parameter under its rule, names in words; the care team
    lead edits them, sees what would change and publishes a new version."""
    lang = st.session_state.get("lang", "en")
    st.title(t("rules_title", lang))
    with db.pool().connection() as conn:
        rules = store.rules_in_force(conn)
    if done := st.session_state.pop("rules_published", None):
        st.success(t("rules_published", lang, version=done))
    st.caption(t("rules_version", lang, version=rules.version or t("ws_builtin", lang)))
    editable = [f for f in declared_fields() if declaration(f).section != "rules"]
    sections, choices = _rule_words(lang), choice_words(lang)
    if not user.publishes_alert_rules:
        st.table(pd.DataFrame({
            t("rules_section", lang): [sections(declaration(f).section) for f in editable],
            t("rules_parameter", lang): [declaration(f).label(lang) for f in editable],
            t("rules_value", lang): [shown(getattr(rules, f.name),
                                           unit_words(declaration(f).unit, lang), choices)
                                     for f in editable]}))
        st.info(t("rules_lead_only", lang))
        return
    # The form, the draft and the confirmation are of this version (parameter_form.py): a
    # version published meanwhile opens with its own values.
    scope = form_scope("ar", rules)
    with st.form("alert-rules"):
        values = parameter_inputs(rules, editable, lang, "ar", sections, choices)
        submitted = st.form_submit_button(t("rules_check", lang))
    if submitted:
        try:
            st.session_state["rules_candidate"] = (scope, rules.with_parameters(version=0,
                                                                                **values))
        except AlertRulesError as exc:
            st.session_state.pop("rules_candidate", None)
            st.error(t("rules_invalid", lang, error=exc))
            return
    held = st.session_state.get("rules_candidate")
    if held is None or held[0] != scope:
        return
    candidate: AlertRules = held[1]
    changed = changes(rules, candidate, lang, t("rules_section", lang), sections, choices)
    if changed.empty:
        st.info(t("rules_unchanged", lang))
        return
    st.write(t("rules_review", lang))
    st.dataframe(changed, hide_index=True, width="stretch")
    notes = st.text_input(t("rules_notes", lang), key=widget_key(scope, "notes"))
    if st.button(t("rules_publish", lang), key=widget_key(scope, "publish"), type="primary"):
        with db.pool().connection() as conn:
            published = store.publish_rules(conn, candidate, user.username, notes)
        st.session_state.pop("rules_candidate", None)
        st.session_state["rules_published"] = published.version
        st.rerun()  # the form opens on the version just published
