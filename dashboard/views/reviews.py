"""Reviews of automated decisions (privacy/reviews.py): the reviewer's queue and decision, and
the policyholder's request and its outcome on their own page."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import db
from dashboard.auth import User
from dashboard.i18n import TEXT, t
from dashboard.views import access_log
from pricing import store
from privacy import reviews


def render(user: User) -> None:
    """The reviewer's page: the queue, one review's day in full, the decision."""
    lang = st.session_state.get("lang", "en")
    if user.role != "reviewer":
        st.error(t("page_refused", lang))
        return
    st.title(t("page_reviews", lang))
    if saved := st.session_state.pop("review_saved", None):
        st.success(t("rv_saved", lang, id=saved))
    with db.pool().connection() as conn:
        waiting = reviews.queue(conn)
    if waiting.empty:
        st.info(t("rv_empty", lang))
        return
    shown = waiting.assign(day_status=waiting["day_status"].map(lambda s: t(str(s), lang)))
    st.dataframe(shown[["review_id", "policy_id", "day", "delta", "day_status",
                        "requested_at"]].rename(columns=lambda c: t(f"rv_col_{c}", lang)),
                 hide_index=True, width="stretch")
    chosen = st.selectbox(t("rv_choose", lang), list(waiting["review_id"]), key="rv_choose")
    with db.pool().connection() as conn:
        case = reviews.review(conn, int(chosen))
    access_log.staff_read(str(case.row["policy_id"]), "review", once=True,
                          detail=f"review {chosen}")
    with db.pool().connection() as conn:
        row = case.row
        day_readings = _day_readings(conn, str(row["policy_id"]), row["day"])
    st.subheader(t("rv_case", lang, policy=row["policy_id"], day=row["day"]))
    st.write(t("rv_view", lang))
    st.info(str(row["view"]))
    st.write(t("rv_decision", lang, status=t(str(row["day_status"]), lang),
               delta=float(row["delta"]), ruleset=row["ruleset_name"],
               version=row["ruleset_version"]))
    st.dataframe(day_readings.assign(meal=day_readings["meal"].map(
        lambda m: t(m, lang) if m in TEXT else m)).rename(
        columns=lambda c: t(f"rv_col_{c}", lang)), hide_index=True, width="stretch")
    with st.form(f"decide_{chosen}"):
        outcome = st.radio(t("rv_outcome", lang), reviews.OUTCOMES,
                           format_func=lambda o: t(f"rv_{o}", lang), horizontal=True)
        reason = st.text_area(t("rv_reason", lang))
        amount = st.number_input(t("rv_adjustment", lang), value=0.0, step=100.0)
        if st.form_submit_button(t("rv_decide", lang)):
            try:
                with db.pool().connection() as conn:
                    reviews.decide(conn, int(chosen), user.username, str(outcome), reason,
                                   amount if outcome == "corrected" else None)
            except reviews.ReviewError as exc:
                st.error(t(f"review_refused_{exc.code}", lang))
            else:
                st.session_state["review_saved"] = int(chosen)
                st.rerun()


def _day_readings(conn: Any, policy_id: str, day: date) -> pd.DataFrame:
    """The policy's readings measured on the day (a day either side in UTC: the table says
    each one's local time)."""
    policies, bindings = store.load_policies(conn, [policy_id])
    start = datetime.combine(day, time(), UTC) - timedelta(days=1)
    readings = store.load_readings(conn, sorted(set(bindings["device_id"].astype(str))),
                                   since=start, until=start + timedelta(days=3))
    zone = str(policies["timezone"].iloc[0])
    local = readings["measured_at"].dt.tz_convert(zone)
    shown = readings[(local.dt.date == day).to_numpy()]
    return pd.DataFrame({"time": local[(local.dt.date == day).to_numpy()].dt.strftime("%H:%M"),
                         "value_mmol": shown["value_mmol"].round(1),
                         "meal": shown["meal"].astype(str), "seq": shown["seq"],
                         "status": shown["status"]})


def request_section(user: User, policy_id: str, days: list[object], lang: str) -> None:
    """On the policyholder's page: ask for a review of a day; the outcomes so far."""
    with db.pool().connection() as conn:
        mine = reviews.of_policy(conn, policy_id)
    with st.expander(t("review_title", lang)):
        for r in mine.to_dict("records"):
            status = str(r["status"])
            text = t(f"review_status_{status}", lang, day=r["day"], reason=r["reason"] or "",
                     adjustment=float(r["adjustment"] or 0))
            (st.info if status == "open" else st.success)(text)
        if user.role != "policyholder" or not days:
            return
        if saved := st.session_state.pop("review_requested", None):
            st.success(t("review_sent", lang, id=saved))
        with st.form("review_request"):
            day = st.selectbox(t("review_day", lang), days)
            view = st.text_area(t("review_view", lang))
            if st.form_submit_button(t("review_submit", lang)):
                try:
                    with db.pool().connection() as conn:
                        review_id = reviews.request(conn, policy_id, day,  # type: ignore[arg-type]
                                                    view, user.username)
                except reviews.ReviewError as exc:
                    st.error(t(f"review_refused_{exc.code}", lang))
                else:
                    st.session_state["review_requested"] = review_id
                    st.rerun()
