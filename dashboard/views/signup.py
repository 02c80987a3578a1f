"""The sign-up page (signed out): an application for a policy, checked by policies/enrolment.py
against the product's eligibility. Accepted, it is a policy with its device and a login (the
policy number, lower case, and the password chosen here); refused, the page says why. An
applicant uploading from their own CGM app through Nightscout finds the base URL and secret on
their policy's page once signed in (dashboard/views/policyholder.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import available_timezones

import streamlit as st

from dashboard import db
from dashboard.auth import hash_password
from dashboard.i18n import t
from glucover.config import Settings
from glucover.errors import UserError
from policies import enrolment
from policies.product import DIABETES_TYPES, FREQUENCIES

MIN_PASSWORD = 10  # characters


def render() -> None:
    lang = str(st.session_state.get("lang", "en"))
    st.title(t("signup_title", lang))
    this_year = datetime.now(UTC).year
    zones = sorted(available_timezones())
    with st.form("signup"):
        name = st.text_input(t("signup_name", lang))
        born = st.number_input(t("signup_birth_year", lang), 1900, this_year, 1975)
        kind = st.selectbox(t("signup_diabetes_type", lang), DIABETES_TYPES,
                            format_func=lambda v: t(v, lang))
        diagnosed = st.number_input(t("signup_diagnosis_year", lang), 1900, this_year,
                                    this_year - 5)
        zone = st.selectbox(t("signup_timezone", lang), zones,
                            index=zones.index("Asia/Shanghai"))
        device = st.selectbox(t("signup_device", lang), enrolment.DEVICES,
                              format_func=lambda v: t(v, lang))
        frequency = st.selectbox(t("signup_frequency", lang), FREQUENCIES,
                                 format_func=lambda v: t(v, lang))
        password = st.text_input(t("signup_password", lang), type="password",
                                 help=f">= {MIN_PASSWORD}")
        pricing = st.checkbox(t("signup_consent_pricing", lang))
        research = st.checkbox(t("signup_consent_research", lang))
        submitted = st.form_submit_button(t("signup_submit", lang))
    st.markdown(f"[{t('signup_back', lang)}](signin)")
    if not submitted:
        return
    if len(password) < MIN_PASSWORD:
        st.error(t("signup_refused", lang, why=f"password < {MIN_PASSWORD}"))
        return
    doc = {"holder_name": name, "birth_year": int(born), "diabetes_type": kind,
           "diagnosis_year": int(diagnosed), "timezone": zone, "device": device,
           "frequency": frequency,
           "consents": [{"purpose": "pricing", "granted": pricing},
                        {"purpose": "research", "granted": research}]}
    try:
        application = enrolment.parse(doc)
        with db.pool().connection() as conn:
            # The dashboard holds no device secret: the meter gets its broker password when an
            # operator next runs `glucover devices sync-broker`.
            outcome = enrolment.apply(conn, application, None, "signup", nightscout_key=(
                Settings.from_env().key("nightscout_key")))
            if outcome.accepted:
                username = str(outcome.policy_id).lower()
                conn.execute("select create_policyholder_login(%s, %s, %s)",
                             (username, hash_password(password), outcome.policy_id))
    except UserError as exc:
        st.error(t("signup_refused", lang, why=str(exc)))
        return
    if not outcome.accepted:
        st.error(t("signup_refused", lang, why="; ".join(outcome.reasons)))
        return
    assert outcome.term is not None
    st.success(t("signup_accepted", lang, policy=outcome.policy_id,
                 start=outcome.term.start.isoformat(), device=outcome.device_id,
                 username=username))
    if outcome.uploads is not None:  # the base URL and secret are on the policy's page
        st.info(t("signup_nightscout", lang))
