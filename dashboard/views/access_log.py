"""The access log in the dashboard (privacy/access_log.py): staff reads of one person's data
are recorded here (`staff_read`), and the data protection officer's page reads, filters and
exports the log."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import streamlit as st

from dashboard import db
from dashboard.auth import User
from dashboard.i18n import TEXT, t
from privacy import access_log


def staff_read(policy_id: str, what: str, once: bool = False, detail: str = "") -> None:
    """Record that the signed-in staff member read `policy_id`'s data (policyholders reading
    their own are not logged). `once`: only the first time in this session (a page that
    Streamlit runs again on every click)."""
    user: User | None = st.session_state.get("user")
    if user is None or user.role == "policyholder":
        return
    seen: set[tuple[str, str, str]] = st.session_state.setdefault("access_logged", set())
    key = (policy_id, what, detail)
    if once and key in seen:
        return
    with db.pool().connection() as conn:
        access_log.record(conn, user.username, user.role, policy_id, what, detail=detail)
    seen.add(key)


def render(user: User) -> None:
    """The data protection officer's page: the log, filtered, and its CSV."""
    lang = st.session_state.get("lang", "en")
    if user.role != "privacy":
        st.error(t("page_refused", lang))
        return
    st.title(t("page_access_log", lang))
    c1, c2, c3 = st.columns(3)
    policy = c1.text_input(t("al_policy", lang)).strip() or None
    username = c2.text_input(t("al_user", lang)).strip() or None
    today = datetime.now(UTC).date()
    window = c3.date_input(t("al_days", lang), value=(today - timedelta(days=30), today),
                           format="YYYY-MM-DD")
    since = until = None
    if isinstance(window, tuple) and len(window) == 2:
        first, last = window
        since = datetime.combine(first, time(), UTC)
        until = datetime.combine(last + timedelta(days=1), time(), UTC)
    with db.pool().connection() as conn:
        log = access_log.entries(conn, policy, username, since, until)
    st.caption(t("al_count", lang, n=len(log)))
    shown = log.assign(policy_id=log["policy_id"].fillna(t("al_erased", lang)),
                       what=log["what"].map(lambda w: t(f"al_what_{w}", lang)),
                       role=log["role"].map(lambda r: t(f"role_{r}", lang)
                                            if f"role_{r}" in TEXT else r),
                       purpose=log["purpose"].map(lambda p: t(f"al_purpose_{p}", lang)))
    st.dataframe(shown.drop(columns=["subject"]).rename(
        columns=lambda c: t(f"al_col_{c}", lang)), hide_index=True, width="stretch")
    st.download_button(t("al_csv", lang), log.to_csv(index=False),
                       f"access-log-{date.today():%Y%m%d}.csv", "text/csv")
