"""The policyholder page: their own policy only."""

from __future__ import annotations

import io
from datetime import date, timedelta
from functools import partial
from typing import Any

import altair as alt
import pandas as pd
import segno
import streamlit as st

from care.notices import URGENT_NOTICES, notice_text
from care.store import notices_for
from dashboard import db, format
from dashboard.auth import AccessDenied, User, panel, policy_for
from dashboard.i18n import LANGUAGES, t, voiced
from dashboard.policyholder_data import (
    EXPLAINED_ROWS,
    HISTORY_DAYS,
    LEDGER_ROWS,
    PolicySummary,
    load_summary,
)
from dashboard.views import access_log as access_view
from dashboard.views import cgm_section as cgm_view
from dashboard.views import consent_section, rights_section
from dashboard.views import reviews as reviews_view
from glucover.config import Settings
from kernel.vocabulary import Meal, Unit
from nightscout import credentials as ns_credentials
from pricing import cgm_metrics
from records.csv_export import table_csv
from records.export import policy_bundle, pseudonym_key

NOTICE_DAYS = 7  # how long a notice stays on the page
FHIR_CGM_DAYS = 14  # a CGM wearer's FHIR download by default: the consensus report's window


def explain(summary: PolicySummary, lang: str, unit: str = Unit.MMOL_L) -> pd.DataFrame:
    """The ledger, newest first, each line in words (a CGM day's hypoglycaemia threshold, the
    ruleset's, in `unit`)."""
    rules = summary.ruleset
    readings = summary.readings.assign(day=summary.readings["measured_at"].dt.date)
    by_key: dict[tuple[Any, int], dict[str, Any]] = {
        (r["day"], int(r["seq"])): r for r in readings.to_dict("records")}  # type: ignore[misc]
    lines = []
    start = summary.ledger["day"].iloc[0] if len(summary.ledger) else None
    steps = {"in_target": rules.delta_in_target, "high": rules.delta_high,
             "out_of_target": rules.delta_out_of_target, "missed": rules.delta_missed,
             "insufficient": rules.delta_missed, "hypo_risk": rules.delta_hypo_risk,
             "no_consent": 0.0}
    for row in summary.ledger.to_dict("records"):
        status = str(row["day_status"])
        r = None if pd.isna(row["reading_seq"]) else by_key.get(
            (row["day"], int(row["reading_seq"])))
        if status == "no_consent":
            text = t(status, lang)
        elif rules.kind == "cgm":
            text = t("explain_no_sensor", lang) if pd.isna(row["time_in_range"]) else t(
                "explain_cgm", lang, tir=row["time_in_range"], below=row["below"],
                limit=cgm_metrics.format_glucose(rules.hypo_below_mgdl, unit),
                coverage=row["coverage"], status=t(status, lang))
        elif status == "missed":
            text = t("explain_missed", lang)
        elif r is None:
            text = t(status, lang)
        else:
            meal = str(r["meal"])
            text = t("explain_reading", lang, time=r["measured_at"].strftime("%H:%M"),
                     meal=t(meal, lang) if meal in ("fasting", "preprandial") else "",
                     value=r["value_mmol"], status=t(status, lang))
        if start is not None and row["delta"] != steps[status] and \
                (row["day"] - start).days % rules.block_days == rules.block_days - 1:
            text += t("explain_week", lang, n=rules.min_measured_days)
        lines.append({t("col_day", lang): format.day(row["day"]),
                      t("col_what", lang): text,
                      t("col_change", lang): f"{row['delta']:+,.0f}",
                      t("col_sum_insured", lang): f"{row['sum_insured']:,.0f}"})
    return pd.DataFrame(lines[::-1])


# Each meal context its own colour, whatever the language (the legend's words change, not the
# colours).
MEAL_COLOURS = {Meal.FASTING: "#1f77b4", Meal.PREPRANDIAL: "#d62728",
                Meal.POSTPRANDIAL: "#ff9896", Meal.BEDTIME: "#9467bd", Meal.CASUAL: "#2ca02c",
                Meal.UNKNOWN: "#7f7f7f"}
# Chart axes in numbers (months and hours), never in words: no "Nov" or "03 AM" on a
# Chinese page.
DAY_AXIS = "%m-%d"
TIME_AXIS = "%H:%M"
MOMENT = "%Y-%m-%d %H:%M"


def readings_chart(summary: PolicySummary, lang: str) -> alt.LayerChart | alt.FacetChart:
    rules = summary.ruleset
    band = alt.Chart(pd.DataFrame({"low": [rules.target_low], "high": [rules.target_high]})
                     ).mark_rect(opacity=0.15, color="green").encode(y="low:Q", y2="high:Q")
    shown = summary.readings[summary.readings["measured_at"] >= pd.Timestamp(
        summary.today - timedelta(days=HISTORY_DAYS), tz=summary.timezone)]
    data = shown.assign(measured_at=shown["measured_at"].dt.tz_localize(None),
                        meal=shown["meal"].astype(str).map(lambda meal: t(meal, lang)))
    meals = [m for m in MEAL_COLOURS if m in set(shown["meal"].astype(str))]
    points = alt.Chart(data).mark_circle(size=28).encode(
        x=alt.X("measured_at:T", title=t("axis_time", lang),
                axis=alt.Axis(format=DAY_AXIS, labelOverlap=True)),
        y=alt.Y("value_mmol:Q", title="mmol/L"),
        color=alt.Color("meal:N", title=t("axis_meal", lang),
                        scale=alt.Scale(domain=[t(m, lang) for m in meals],
                                        range=[MEAL_COLOURS[m] for m in meals]),
                        legend=alt.Legend(orient="bottom", columns=3)),
        tooltip=[alt.Tooltip("measured_at:T", title=t("axis_time", lang), format=MOMENT),
                 alt.Tooltip("value_mmol:Q", title="mmol/L"),
                 alt.Tooltip("meal:N", title=t("axis_meal", lang))])
    return alt.layer(band, points)


def render(user: User) -> None:
    lang = st.session_state.get("lang", "en")
    requested = st.query_params.get("policy")
    with db.pool().connection() as conn:
        options = panel(conn, user)
    if user.role != "policyholder":
        if not options:
            st.info(t("no_panel", lang))
            return
        # A clinician who asks for someone off the panel is refused below, not redirected.
        if requested in options or requested is None or user.role != "clinician":
            requested = st.selectbox(t("choose_policy", lang), options,
                                     index=options.index(requested)
                                     if requested in options else 0)
            st.query_params["policy"] = requested  # the URL names the policy shown
    try:
        policy_id = policy_for(user, requested, options)
    except AccessDenied as exc:
        st.error(t(f"refused_{exc.code}", lang))
        return
    access_view.staff_read(policy_id, "policy_page", once=True)
    with db.pool().connection() as conn:
        summary = load_summary(conn, policy_id, explained_rows=LEDGER_ROWS
                               if st.session_state.get("ledger_all") else EXPLAINED_ROWS)
    st.title(f"{summary.holder_name} · {policy_id}")
    staff = user.role != "policyholder"
    rules = summary.ruleset
    c1, c2, c3 = st.columns(3)
    c1.metric(t("sum_insured", lang), format.money(summary.sum_insured, lang),
              delta=f"{format.money(summary.today_delta, lang, signed=True)} "
                    f"{t('today_change', lang)}" if summary.today_delta else None)
    c2.metric(t("week_change", lang), format.money(summary.week_change, lang, signed=True))
    c3.metric(t("claim_today", lang), "—" if summary.claim_today is None
              else format.money(summary.claim_today, lang))
    cap = rules.bonus_max
    if summary.bonus < 0:
        st.warning(t(voiced("below_base", staff), lang, bonus=summary.bonus,
                     base=summary.base_sum_insured))
    else:
        st.progress(min(summary.bonus / cap, 1.0) if cap else 0.0,
                    text=t("progress_to_cap", lang, bonus=summary.bonus, cap=cap))
    if staff:  # today's task speaks to the policyholder
        pass
    elif rules.kind == "cgm":
        st.info(t("task_wear", lang, tir=rules.in_range_min_percent,
                  amount=rules.delta_in_target) + " " + _today_so_far(summary, lang))
    elif summary.today_status:
        st.success(t("task_done", lang, status=t(summary.today_status, lang)))
    else:
        st.info(t("task_measure", lang, amount=rules.delta_in_target))
    _notices(policy_id, lang, staff)
    c1, c2, c3 = st.columns(3)
    c1.metric(t("gmi" if summary.a1c_formula == "gmi" else "a1c", lang),
              "—" if summary.a1c_estimate is None else f"{summary.a1c_estimate:.1f}%")
    c2.metric(t("tir", lang), "—" if summary.time_in_range is None
              else f"{summary.time_in_range:.0%}")
    unit = t("day" if summary.streak == 1 else "days", lang)
    c3.metric(t("streak", lang), f"{summary.streak} {unit}")
    if summary.cgm is not None:
        cgm_view.render(summary, lang, staff)
    else:
        st.subheader(t(voiced("readings", staff), lang))
        if len(summary.readings):
            st.altair_chart(readings_chart(summary, lang), width="stretch")
    # Built only when clicked (a callable), from the policy this user may see.
    fhir_download(summary, lang, staff)
    if not staff:  # the upload credentials are the policyholder's own
        nightscout_uploads(policy_id, lang)
    csv_downloads(policy_id, lang, staff)
    consent_section.render(user, policy_id, lang)
    rights_section.render(user, policy_id, lang)
    reviews_view.request_section(user, policy_id, list(summary.ledger["day"])[::-1], lang)
    st.subheader(t(voiced("ledger", staff), lang))
    if summary.ledger.empty:
        st.info(t("no_ledger", lang))
        return
    total = len(summary.ledger)
    shown = total if st.session_state.get("ledger_all") else min(total, EXPLAINED_ROWS)
    if total > EXPLAINED_ROWS:  # say that the table is the latest rows, and offer the rest
        st.caption(t("ledger_latest", lang, shown=shown, total=total))
        st.toggle(t("ledger_all", lang, total=total), key="ledger_all")
    # A static table: its text wraps, so it reads on a phone without scrolling sideways.
    unit = st.session_state.get("unit", str(Unit.MMOL_L))
    st.table(explain(summary, lang, unit).head(shown).set_index(t("col_day", lang)))



def nightscout_uploads(policy_id: str, lang: str) -> None:
    """Where the policyholder's CGM app uploads (docs/nightscout.md): the base URL, secret and
    token to copy, a QR code of xDrip+'s URL, and how to set up xDrip+ and AndroidAPS."""
    with db.pool().connection() as conn:
        row = conn.execute("select generation from nightscout_uploaders where policy_id = %s",
                           (policy_id,)).fetchone()
    with st.expander(t("ns_title", lang), icon=":material/cloud_upload:"):
        if row is None:
            st.caption(t("ns_not_enabled", lang))
            return
        settings = Settings.from_env()
        creds = ns_credentials.credentials(settings.key("nightscout_key"), policy_id,
                                           int(str(row[0])))
        urls = ns_credentials.app_urls(settings.api_url, creds)
        st.caption(t("ns_intro", lang))
        for label, value in (("ns_base_url", urls["base_url"]), ("ns_secret", creds.api_secret),
                             ("ns_token", creds.token), ("ns_xdrip_url", urls["xdrip_url"])):
            st.text(t(label, lang))
            st.code(value, language=None, wrap_lines=True)
        st.caption(t("ns_qr", lang))
        st.image(qr_png(urls["xdrip_url"]), width=180)
        st.markdown(t("ns_xdrip_steps", lang))
        st.markdown(t("ns_aaps_steps", lang))
        st.warning(t("ns_keep_secret", lang), icon=":material/key:")


def qr_png(text: str) -> bytes:
    out = io.BytesIO()
    segno.make(text, error="m").save(out, kind="png", scale=5, border=2)
    return out.getvalue()


def _notices(policy_id: str, lang: str, staff: bool) -> None:
    """What the care team told this policyholder in the last week (care/notices.py), in the
    page's language."""
    with db.pool().connection() as conn:
        notices = notices_for(conn, policy_id, within=timedelta(days=NOTICE_DAYS))
    if notices.empty:
        return
    st.caption(t(voiced("notices_title", staff), lang))
    for kind, created_at in zip(notices["kind"], notices["created_at"], strict=True):
        show = st.warning if kind in URGENT_NOTICES else st.info
        show(f"{created_at:%m-%d %H:%M} · {notice_text(str(kind), lang)}",
             icon=":material/medical_services:")


def _today_so_far(summary: PolicySummary, lang: str) -> str:
    """Today's coverage and time in range so far, as the evaluator has them (rule 2's slots of
    the whole day, its band); nothing before a reading today."""
    figures = summary.today_figures
    if figures is None or pd.isna(figures["time_in_range"]):
        return ""
    return t("today_so_far", lang, tir=figures["time_in_range"], coverage=figures["coverage"])


def fhir_download(summary: PolicySummary, lang: str, staff: bool) -> None:
    """The FHIR download. A sensor's every reading is tens of MB over months: a CGM wearer is
    pointed to the consensus summary (the figures and the AGP report above) first and chooses
    the days, the last FHIR_CGM_DAYS by default; a meter's history is small, all of it."""
    policy_id = summary.policy_id  # the page has checked that this user may see it
    first: date | None = None
    last: date | None = None
    if summary.cgm is not None:
        st.caption(t("fhir_cgm_first", lang))
        chosen = st.date_input(t("fhir_days", lang), value=(
            summary.today - timedelta(days=FHIR_CGM_DAYS - 1), summary.today),
            max_value=summary.today, format="YYYY-MM-DD", key="fhir_days")
        if not isinstance(chosen, tuple) or len(chosen) != 2:
            st.info(t("fhir_pick_days", lang))  # the second day not picked yet
            return
        first, last = chosen
    st.download_button(t(voiced("fhir_download", staff), lang),
                       data=lambda: fhir_bundle(policy_id, first, last),
                       file_name=f"glucover-{policy_id}.fhir.json",
                       mime="application/fhir+json", help=t("fhir_help", lang),
                       on_click="ignore", icon=":material/download:")


def csv_downloads(policy_id: str, lang: str, staff: bool) -> None:
    """The readings and the ledger as CSV (records/csv_export.py), built when clicked."""
    c1, c2 = st.columns(2)
    for column, table in ((c1, "readings"), (c2, "ledger")):
        column.download_button(t(voiced(f"csv_{table}", staff), lang),
                               data=partial(table_of, policy_id, table),
                               file_name=f"glucover-{policy_id}-{table}.csv", mime="text/csv",
                               on_click="ignore", icon=":material/table:", key=f"csv_{table}")


def table_of(policy_id: str, table: str) -> bytes:
    """A table of a policy the caller may see, as CSV."""
    access_view.staff_read(policy_id, f"{table}_csv")
    with db.pool().connection() as conn:
        return table_csv(conn, policy_id, table)


def fhir_bundle(policy_id: str, first: date | None = None, last: date | None = None) -> bytes:
    """The policy's records as a FHIR R4 Bundle (records/export.py) over [first, last] (local
    days; default its whole history); the caller has checked that this user may see
    `policy_id`."""
    access_view.staff_read(policy_id, "fhir_export")
    with db.pool().connection() as conn:
        key = pseudonym_key(Settings.from_env().key("pseudonym_key"))
        export = policy_bundle(conn, policy_id, key, first, last)
    return export.to_json()


def language_picker(where: str = "sidebar") -> str:
    """The language choice, on the sign-in page (`where="signin"`) or in the sidebar. The
    choice lives in session_state["lang"]; each widget has a key of its own, since Streamlit
    forgets a widget's key on a page that does not show the widget."""
    key = f"lang_{where}"
    st.session_state[key] = st.session_state["lang"]

    def chosen() -> None:
        st.session_state["lang"] = st.session_state[key]

    if where == "sidebar":
        st.sidebar.selectbox("Language / 语言", list(LANGUAGES), key=key, on_change=chosen,
                             format_func=lambda code: LANGUAGES[code])
    else:
        st.radio("Language / 语言", list(LANGUAGES), key=key, on_change=chosen,
                 format_func=lambda code: LANGUAGES[code], horizontal=True)
    return str(st.session_state["lang"])
