"""glucover dashboard: `glucover dashboard` serves it (dashboard/server.py adds the session
cookie routes); AppTest runs this file alone.

Signed-in users see the pages of their role: policyholders their own policy, actuaries the
workbench and any policy, operations the data flow and meters, clinicians the alerts and
policyholders of their panel. DATABASE_URL names the database
(the dashboard's own least-privilege role in `glucover up` and compose).
"""

from __future__ import annotations

import json

import streamlit as st

from dashboard import db, sessions
from dashboard.auth import User, authenticate
from dashboard.i18n import initial_language, t
from dashboard.views import actuary, care, operations, policyholder
from glucover.config import Settings


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
                token, _ = sessions.open_session(conn, session_key(), user)
        if user is None:
            st.error(t("bad_login", lang))
        else:
            st.session_state["user"] = user
            st.session_state["token"] = token
            st.session_state["cookie"] = "open"  # the browser stores it on the next run
            st.rerun()


def sign_out() -> None:
    token = st.session_state.pop("token", None)
    if token:
        with db.pool().connection() as conn:
            sessions.close_session(conn, session_key(), token)  # revoked, wherever it is
    st.session_state.pop("user", None)
    st.session_state.pop("candidate", None)
    st.session_state["cookie"] = "close"


@st.cache_resource(show_spinner=False)
def session_key() -> bytes:
    return sessions.signing_key(Settings.from_env().secret())


def resumed_user() -> User | None:
    """The user of the session cookie the browser sent, when it is valid and not revoked."""
    token = st.context.cookies.get(sessions.COOKIE)
    if not token:
        return None
    with db.pool().connection() as conn:
        user = sessions.resume(conn, session_key(), token)
    if user is not None:
        st.session_state["token"] = token
    return user


def sync_cookie() -> None:
    """Have the browser set or clear the HttpOnly session cookie (dashboard/server.py's
    routes), once, after signing in or out."""
    action = st.session_state.pop("cookie", None)
    if action == "open":
        body = json.dumps({"token": st.session_state["token"]})
        st.html(f"<script>fetch({json.dumps(sessions.OPEN_PATH)}, {{method: 'POST', "
                f"credentials: 'same-origin', headers: {{'Content-Type': 'application/json'}},"
                f" body: {json.dumps(body)}}});</script>", unsafe_allow_javascript=True)
    elif action == "close":
        st.html(f"<script>fetch({json.dumps(sessions.CLOSE_PATH)}, {{method: 'POST', "
                "credentials: 'same-origin'});</script>", unsafe_allow_javascript=True)


def main() -> None:
    st.set_page_config(page_title="glucover", page_icon="🩸", layout="wide")
    if "lang" not in st.session_state:  # ?lang=zh, else the browser's language
        st.session_state["lang"] = initial_language(
            st.query_params.get("lang"), st.context.headers.get("Accept-Language"))
    user: User | None = st.session_state.get("user")
    if user is None and "cookie" not in st.session_state:
        user = resumed_user()
        if user is not None:
            st.session_state["user"] = user
    sync_cookie()
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
        # A clinician starts at the alert queue; a link to a policyholder opens the panel.
        "clinician": [st.Page(lambda: care.render(user), title="Alerts", url_path="alerts",
                              default="policy" not in st.query_params),
                      st.Page(lambda: policyholder.render(user), title="My panel",
                              url_path="panel", default="policy" in st.query_params),
                      st.Page(lambda: care.render_rules(user), title="Alert rules",
                              url_path="alert-rules")],
    }[user.role]
    st.navigation(pages).run()


main()
