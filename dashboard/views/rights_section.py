"""The person's rights on their page (privacy/erasure.py): asking for their data to be erased,
and, for operations, the requests waiting for a decision."""

from __future__ import annotations

import streamlit as st

from dashboard import db
from dashboard.auth import User
from dashboard.i18n import t
from glucover.errors import UserError
from privacy import erasure


def render(user: User, policy_id: str, lang: str) -> None:
    """On the policyholder's own page: ask for erasure (an operator decides)."""
    if user.role != "policyholder":
        return
    with db.pool().connection() as conn:
        waiting = erasure.pending(conn, policy_id)
    with st.expander(t("erase_title", lang), expanded=waiting):
        st.caption(t("erase_explained", lang))
        if waiting:
            st.info(t("erase_waiting", lang))
            return
        confirmed = st.checkbox(t("erase_confirm", lang), key="erase_confirm")
        if st.button(t("erase_ask", lang), key="erase_ask", disabled=not confirmed):
            try:
                with db.pool().connection() as conn:
                    erasure.request(conn, policy_id, user.username)
            except UserError:
                pass  # asked already, in another tab: the page says it is waiting
            st.rerun()


def requests_section(lang: str) -> None:
    """On the operations page: erasure requests waiting, with the command that decides each."""
    with db.pool().connection() as conn:
        waiting = erasure.open_requests(conn)
    st.subheader(t("erase_requests", lang))
    if not waiting:
        st.caption(t("erase_none", lang))
        return
    for request_id, policy_id, who, at in waiting:
        st.write(t("erase_request", lang, id=request_id, policy=policy_id, who=who,
                   at=f"{at:%Y-%m-%d %H:%M}"))
        st.code(f"glucover privacy erase --policy {policy_id} --reason 'request {request_id}'",
                language="sh")
