"""glucover dashboard: `streamlit run dashboard/app.py` (or `glucover dashboard`).

Signed-in users see the pages of their role: policyholders their own policy, actuaries the
workbench and any policy, operations the data flow and meters. DATABASE_URL names the database
(the dashboard's own least-privilege role in `glucover up` and compose).
"""

from __future__ import annotations

import streamlit as st

from dashboard import db
from dashboard.auth import User, authenticate, close_session, open_session
from dashboard.i18n import initial_language, t
from dashboard.views import actuary, operations, policyholder


def sign_in() -> None:
    st.title("glucover")
    lang = policyholder.language_picker("signin")
    with st.form("sign_in"):
        username = st.text_input(t("username", lang))
        password = st.text_input(t("password", lang), type="password")
        submitted = st.form_submit_button(t("sign_in", lang))
    if submitted:
        with db.pool().connection() as conn:
            user = authenticate(conn, username, password)
            if user is not None:
                st.session_state["token"] = open_session(conn, user)
        if user is None:
            st.error(t("bad_login", lang))
        else:
            st.session_state["user"] = user
            st.rerun()


def sign_out() -> None:
    token = st.session_state.pop("token", None)
    if token:
        with db.pool().connection() as conn:
            close_session(conn, token)
    st.session_state.pop("user", None)
    st.session_state.pop("candidate", None)


def main() -> None:
    st.set_page_config(page_title="glucover", page_icon="🩸", layout="wide")
    if "lang" not in st.session_state:  # ?lang=zh, else the browser's language
        st.session_state["lang"] = initial_language(
            st.query_params.get("lang"), st.context.headers.get("Accept-Language"))
    user: User | None = st.session_state.get("user")
    if user is None:
        st.navigation([st.Page(sign_in, title="Sign in", url_path="signin")]).run()
        return
    policyholder.language_picker()
    st.sidebar.write(f"**{user.username}** ({user.role})")
    st.sidebar.button(t("sign_out", st.session_state.get("lang", "en")), on_click=sign_out)
    pages = {
        "policyholder": [st.Page(lambda: policyholder.render(user), title="My policy",
                                 url_path="policy", default=True)],
        "actuary": [st.Page(lambda: actuary.render(user), title="Workbench",
                            url_path="workbench", default=True),
                    st.Page(lambda: policyholder.render(user), title="Policies",
                            url_path="policy")],
        "operations": [st.Page(operations.render, title="Operations", url_path="operations",
                               default=True)],
    }[user.role]
    st.navigation(pages).run()


main()
