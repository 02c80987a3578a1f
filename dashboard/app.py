"""glucover dashboard: `glucover dashboard` serves it (dashboard/server.py adds the session
cookie routes); AppTest runs this file alone.

Signed-in users see the pages of their role: policyholders their own policy, actuaries the
workbench and any policy, operations the data flow and meters, clinicians the alerts and
policyholders of their panel. DATABASE_URL names the database
(the dashboard's own least-privilege role in `glucover up` and compose).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import streamlit as st

from dashboard import db, sessions, throttle
from dashboard.auth import User, authenticate
from dashboard.i18n import initial_language, t
from dashboard.views import access_log, actuary, care, operations, policyholder, reviews, signup
from dashboard.views import claims as claims_view
from glucover.config import Settings


def sign_in() -> None:
    st.title("glucover")
    lang = policyholder.language_picker("signin")
    with st.form("sign_in"):
        username = st.text_input(t("username", lang))
        password = st.text_input(t("password", lang), type="password")
        submitted = st.form_submit_button(t("sign_in", lang))
    st.markdown(f"[{t('signup_link', lang)}]({SIGN_UP_PATH})")
    if submitted:
        now = datetime.now(UTC)
        address = st.context.ip_address
        address = address if isinstance(address, str) and address else "unknown"
        user, refusal = None, None
        with db.pool().connection() as conn:
            refusal = throttle.refused(conn, username, address, now)
            if refusal is None:
                user = authenticate(conn, username, password)
                if user is None:
                    throttle.record_failure(conn, username, address, now)
                else:
                    throttle.record_success(conn, user.username)
                    token, _ = sessions.open_session(conn, session_key(), user)
        if refusal is not None:
            st.error(t("sign_in_throttled", lang, minutes=refusal.minutes))
        elif user is None:
            st.error(t("bad_login", lang))
        else:
            st.session_state["user"] = user
            st.session_state["token"] = token
            st.session_state["cookie"] = "open"  # the browser stores it on the next run
            st.rerun()


def sign_out() -> None:
    token = st.session_state.get("token")
    if token:
        with db.pool().connection() as conn:
            sessions.close_session(conn, session_key(), token)  # revoked, wherever it is
        session_id = sessions.verify(session_key(), token, datetime.now(UTC))
        if session_id is not None:
            st.session_state["close_csrf"] = sessions.csrf_token(session_key(), session_id)
    forget_user()
    st.session_state["cookie"] = "close"


@st.cache_resource(show_spinner=False)
def session_key() -> bytes:
    return sessions.signing_key(Settings.from_env().key("session_key"))



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
    routes) after signing in or out; on every run until one completes (main forgets the
    action then), since a run that moves to another page drops what it drew. The page gets a
    one-time grant and the session's CSRF token, never the session token; the script removes
    itself once it has run."""
    action = st.session_state.get("cookie")
    key = session_key()
    if action == "open":
        session_id = sessions.verify(key, st.session_state.get("token"), datetime.now(UTC))
        if session_id is None:
            return
        _post(sessions.OPEN_PATH, sessions.csrf_token(key, session_id),
              {"grant": sessions.grant_for(key, session_id, datetime.now(UTC))})
    elif action == "close":
        _post(sessions.CLOSE_PATH, st.session_state.get("close_csrf", ""), {})


def _post(path: str, csrf: str, body: dict[str, str]) -> None:
    headers = {"Content-Type": "application/json", sessions.CSRF_HEADER: csrf}
    st.html(f"<script>(function () {{ const me = document.currentScript; "
            f"fetch({json.dumps(path)}, {{method: 'POST', credentials: 'same-origin', "
            f"headers: {json.dumps(headers)}, body: {json.dumps(json.dumps(body))}}})"
            ".finally(() => { if (me) { me.remove(); } }); })();</script>",
            unsafe_allow_javascript=True)


SESSION_CHECK_S = 10  # how soon an open tab notices its session was signed out elsewhere


def session_still_open() -> bool:
    """Whether this tab's session is still open (signing out in any tab closes it)."""
    token = st.session_state.get("token")
    if not token:
        return True  # AppTest runs without the cookie: nothing to watch
    with db.pool().connection() as conn:
        return sessions.is_open(conn, session_key(), token)


@st.fragment(run_every=SESSION_CHECK_S)
def watch_session() -> None:
    """Every few seconds: a session signed out elsewhere signs this tab out too."""
    if not session_still_open():
        st.rerun(scope="app")


def forget_user() -> None:
    for name in ("user", "token", "candidate"):
        st.session_state.pop(name, None)


# Every page by its URL path; what each role sees, in its menu's order, the first its default.
# A page's URL works opened, reloaded or shared: signed out, it shows the sign-in form and,
# once signed in, the page asked for (with its query, e.g. ?policy=) when the role has it.
PAGES: dict[str, Callable[[User], None]] = {
    "policy": policyholder.render,
    "workbench": actuary.render,
    "operations": lambda user: operations.render(),
    "alerts": care.render,
    "panel": policyholder.render,  # a clinician's view of a policyholder on the panel
    "alert-rules": care.render_rules,
    "claims": claims_view.render_queue,
    "my-claims": claims_view.render_mine,  # a policyholder's own claims only
    "reviews": reviews.render,
    "access-log": access_log.render,
}
ROLE_PAGES: dict[str, tuple[tuple[str, str], ...]] = {
    "policyholder": (("policy", "page_my_policy"), ("my-claims", "page_my_claims")),
    "actuary": (("workbench", "page_workbench"), ("policy", "page_policies")),
    "operations": (("operations", "page_operations"),),
    "clinician": (("alerts", "page_alerts"), ("panel", "page_panel"),
                  ("alert-rules", "page_alert_rules")),
    "claims": (("claims", "page_claims"),),
    "reviewer": (("reviews", "page_reviews"),),
    "privacy": (("access-log", "page_access_log"),),
}
SIGN_IN_PATH = "signin"
SIGN_UP_PATH = "signup"  # signed out only: an application for a policy


def may_open(role: str, url_path: str) -> bool:
    """Whether a role's pages include this one (checked again by the page itself)."""
    return any(path == url_path for path, _ in ROLE_PAGES[role])


def default_path(role: str, query: Mapping[str, str]) -> str:
    """The page a role starts on: the first of its menu; a link naming a policy (?policy=)
    opens the role's policy page."""
    pages = [path for path, _ in ROLE_PAGES[role]]
    if "policy" in query:
        return next((p for p in pages if PAGES[p] is policyholder.render), pages[0])
    return pages[0]


def signed_out_pages(lang: str) -> list[Any]:
    """Signed out, every page's URL shows the sign-in form (no "Page not found"), so the URL
    asked for, with its query, is still there once signed in. The default page is served at
    "/" only, whatever its url_path: "/signin" is a hidden page of its own."""
    pages = [st.Page(sign_in, title=t("sign_in", lang), url_path="start", default=True),
             st.Page(signup.render, title=t("signup_title", lang), url_path=SIGN_UP_PATH,
                     visibility="hidden")]
    pages += [st.Page(sign_in, title=t("sign_in", lang), url_path=path, visibility="hidden")
              for path in [*PAGES, SIGN_IN_PATH]]
    return pages


def signed_in_pages(user: User, lang: str) -> list[Any]:
    """The role's pages in its menu, each at its own URL path (none is Streamlit's default
    page, whose URL is "/" only: "/panel" would not find it). "/" (and the sign-in page's
    URL once signed in) opens the role's start page; every other page's URL is known too (not
    "Page not found") and sends the user to the start page. The query goes along."""
    titles = dict(ROLE_PAGES[user.role])
    pages = {path: st.Page(guarded(path, user), title=t(titles[path], lang), url_path=path)
             for path in titles}
    start = pages[default_path(user.role, st.query_params.to_dict())]
    home = st.Page(elsewhere(SIGN_IN_PATH, start), title=t("sign_in", lang), url_path="start",
                   default=True, visibility="hidden")
    for path in [*PAGES, SIGN_IN_PATH, SIGN_UP_PATH]:
        if path not in pages:
            pages[path] = st.Page(elsewhere(path, start), title=path, url_path=path,
                                  visibility="hidden")
    return [home, *pages.values()]


def guarded(path: str, user: User) -> Callable[[], None]:
    def page() -> None:
        if not may_open(user.role, path):  # checked per page, not only by the menu
            st.error(t("page_refused", st.session_state.get("lang", "en")))
            return
        if st.session_state.pop("refused_page", None):
            st.info(t("page_not_yours", st.session_state.get("lang", "en")))
        PAGES[path](user)
    return page


def elsewhere(path: str, home: Any) -> Callable[[], None]:
    def page() -> None:
        if path != SIGN_IN_PATH:
            st.session_state["refused_page"] = path
        st.switch_page(home, query_params=st.query_params.to_dict())  # ?policy=, ?lang= kept
    return page


def keep_language_in_url() -> str:
    """The page's language, in the URL (?lang=) too, so a reload or a shared link keeps it."""
    lang = str(st.session_state["lang"])
    if st.query_params.get("lang") != lang:
        st.query_params["lang"] = lang
    return lang


def main() -> None:
    st.set_page_config(page_title="glucover", page_icon="🩸", layout="wide")
    if "lang" not in st.session_state:  # ?lang=zh, else the browser's language
        st.session_state["lang"] = initial_language(
            st.query_params.get("lang"), st.context.headers.get("Accept-Language"))
    user: User | None = st.session_state.get("user")
    if user is not None and not session_still_open():  # signed out in another tab
        forget_user()
        user = None
    if user is None and "cookie" not in st.session_state:
        user = resumed_user()
        if user is not None:
            st.session_state["user"] = user
    sync_cookie()
    lang = keep_language_in_url()
    if user is None:
        st.navigation(signed_out_pages(lang), position="hidden").run()
        st.session_state.pop("cookie", None)
        return
    lang = policyholder.language_picker()
    st.sidebar.write(f"**{user.username}** ({t(f'role_{user.role}', lang)})")
    st.sidebar.button(t("sign_out", lang), on_click=sign_out)
    watch_session()
    st.navigation(signed_in_pages(user, lang)).run()
    st.session_state.pop("cookie", None)  # the run completed: the browser has the script


main()
