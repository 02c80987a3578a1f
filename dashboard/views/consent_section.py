"""The policyholder's consents on their page (privacy/consent.py): each purpose's text in the
page's language, its standing choice, and buttons to give or withdraw it; a changed text asks
for confirmation (PIPL Art 14). Staff see the choices, never the buttons."""

from __future__ import annotations

import streamlit as st

from dashboard import db
from dashboard.auth import User
from dashboard.i18n import t, voiced
from privacy import consent


def render(user: User, policy_id: str, lang: str) -> None:
    """The consents of `policy_id`, which the page has checked `user` may see."""
    staff = user.role != "policyholder"
    with db.pool().connection() as conn:
        choices = consent.state(conn, policy_id)
    with st.expander(t(voiced("consent_title", staff), lang),
                     expanded=any(c.needs_reconsent for c in choices)):
        if not staff:
            st.caption(t("consent_intro", lang))
        if st.session_state.pop("consent_saved", False):
            st.success(t("consent_saved", lang))
        for choice in choices:
            _purpose(user, policy_id, choice, lang, staff)


def _purpose(user: User, policy_id: str, choice: consent.Choice, lang: str,
             staff: bool) -> None:
    text = consent.texts()[choice.purpose]
    st.markdown(f"**{t(f'consent_purpose_{choice.purpose}', lang)}**")
    st.caption(text.body(lang))
    channel = t(f"channel_{choice.channel}", lang) if choice.channel else ""
    day = f"{choice.day:%Y-%m-%d}" if choice.day else ""
    if choice.given:
        st.write(t("consent_given", lang, day=day, channel=channel,
                   version=choice.text_version or "—"))
    elif choice.at is not None:
        st.write(t("consent_withdrawn", lang, day=day, channel=channel))
    else:
        st.write(t("consent_never", lang))
    if staff:
        return
    if choice.needs_reconsent:
        st.warning(t("consent_reconsent", lang, old=choice.text_version or "—",
                     new=choice.current_version))
        if st.button(t("consent_confirm", lang), key=f"consent_confirm_{choice.purpose}"):
            _record(user, policy_id, choice.purpose, True)
    label = "consent_withdraw" if choice.given else "consent_give"
    if st.button(t(label, lang), key=f"consent_{choice.purpose}"):
        _record(user, policy_id, choice.purpose, not choice.given)


def _record(user: User, policy_id: str, purpose: str, given: bool) -> None:
    assert user.role == "policyholder" and user.policy_id == policy_id  # their own only
    with db.pool().connection() as conn:
        consent.record(conn, policy_id, purpose, given, actor=user.username, channel="page")
    st.session_state["consent_saved"] = True
    st.rerun()
