"""Claims on the dashboard (docs/claims.md): the claims handler's queue (role `claims`) and a
policyholder's own claims (file one, send the documents asked for, follow it). Every step goes
through policies/claims.py, which records it as an event; a refusal it raises is shown."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import db, format
from dashboard.auth import User
from dashboard.i18n import t
from glucover.errors import UserError
from policies import claim_evidence, documents
from policies import claims as process
from policies.diagnoses import BY_CODE
from policies.product import product_for


def _lang() -> str:
    return str(st.session_state.get("lang", "en"))


def _money(value: float | None, lang: str) -> str:
    return "—" if value is None else format.money(value, lang)


def _diagnosis(code: str | None, lang: str) -> str:
    if code is None:
        return "—"
    found = BY_CODE.get(code)
    return code if found is None else f"{code} {found.name(lang)}"


def claims_table(found: list[process.Claim], lang: str) -> pd.DataFrame:
    return pd.DataFrame({
        t("col_claim", lang): [c.claim_id for c in found],
        t("col_policy", lang): [c.policy_id for c in found],
        t("col_event_date", lang): [c.event_date.isoformat() for c in found],
        t("col_diagnosis", lang): [_diagnosis(c.diagnosis, lang) for c in found],
        t("col_claim_status", lang): [t(f"claim_status_{c.status}", lang) for c in found],
        t("col_basis", lang): [_money(c.basis_sum_insured, lang) for c in found],
        t("col_payout", lang): [_money(c.payout, lang) for c in found],
        t("col_flags", lang): [len(c.flags) for c in found],
    })


def _steps(claim: process.Claim, lang: str, staff: bool) -> pd.DataFrame:
    return pd.DataFrame({
        t("col_when", lang): [e.at[:16].replace("T", " ") for e in claim.events],
        t("col_step", lang): [t(f"claim_step_{e.kind}", lang) for e in claim.events],
        **({t("col_who", lang): [e.actor for e in claim.events]} if staff else {}),
        t("col_words", lang): [
            (t(f"decline_{e.reason_code}", lang) + (f": {e.words}" if e.words else ""))
            if e.reason_code else e.words for e in claim.events],
    })


def _documents(claim: process.Claim, lang: str, owner: str | None) -> None:
    st.subheader(t("claim_documents", lang))
    if not claim.documents:
        st.caption(t("claim_no_documents", lang))
        return
    for d in claim.documents:
        with db.pool().connection() as conn:
            _, content = process.document_content(conn, d.document_id, owner)
        st.download_button(t("claim_download", lang, name=d.filename), content,
                           file_name=d.filename, mime=d.media_type,
                           key=f"doc-{d.document_id}",
                           help=f"{d.size_bytes / 1024:,.0f} KiB, SHA-256 {d.sha256[:16]}…")


def _act(claim_id: int, run: Callable[[Any], None]) -> None:
    """Run one step; its outcome is shown on the next run (the page reloads the claim)."""
    lang = _lang()
    try:
        with db.pool().connection() as conn:
            run(conn)
            status = process.claim(conn, claim_id).status
        st.session_state["claim_note"] = ("ok", t("claim_done", lang, claim=claim_id,
                                                  status=t(f"claim_status_{status}", lang)))
    except UserError as exc:
        st.session_state["claim_note"] = ("error", t("claim_refused", lang, why=str(exc)))
    st.rerun()


def _note() -> None:
    note = st.session_state.pop("claim_note", None)
    if note is not None:
        (st.success if note[0] == "ok" else st.error)(note[1])


# ------------------------------------------------------------------ the handler's queue


def render_queue(user: User) -> None:
    lang = _lang()
    st.title(t("claims_title", lang))
    _note()
    scope = st.radio(t("claims_show", lang), ("open", "all"), horizontal=True,
                     format_func=lambda s: t(f"claims_{s}", lang))
    with db.pool().connection() as conn:
        found = process.claims(conn)
    if scope == "open":
        found = [c for c in found if c.status in process.OPEN]
    if not found:
        st.info(t("claims_none", lang))
        return
    st.dataframe(claims_table(found, lang), hide_index=True, width="stretch")
    chosen = st.selectbox(t("claims_choose", lang), [c.claim_id for c in found],
                          format_func=lambda i: f"{i} · " + next(
                              f"{c.policy_id} · {c.event_date}" for c in found
                              if c.claim_id == i))
    with db.pool().connection() as conn:
        claim = process.claim(conn, int(chosen))
        run_id = claim_evidence.basis_run(conn, claim.claim_id)
        ledger = claim_evidence.ledger_as_filed(conn, claim, run_id)
        readings = claim_evidence.readings_around(conn, claim)
        earlier = [c for c in process.claims(conn, claim.policy_id)
                   if c.claim_id != claim.claim_id]
    _handler_detail(user, claim, ledger, readings, earlier, lang)


def _handler_detail(user: User, claim: process.Claim, ledger: pd.DataFrame,
                    readings: pd.DataFrame, earlier: list[process.Claim], lang: str) -> None:
    st.subheader(f"{t('col_claim', lang)} {claim.claim_id} · {claim.policy_id}")
    st.write(f"**{t('col_diagnosis', lang)}:** {_diagnosis(claim.diagnosis, lang)}  \n"
             f"**{t('col_event_date', lang)}:** {claim.event_date}  \n"
             f"**{t('col_claim_status', lang)}:** {t(f'claim_status_{claim.status}', lang)}")
    st.info(t("claim_basis", lang, day=claim.basis_day.isoformat(),
              amount=_money(claim.basis_sum_insured, lang)))
    if claim.flags:
        for flag in claim.flags:
            st.warning(t(f"flag_{flag}", lang))
    else:
        st.caption(t("claim_no_flags", lang))
    st.subheader(t("claim_history", lang))
    st.dataframe(_steps(claim, lang, staff=True), hide_index=True, width="stretch")
    _documents(claim, lang, owner=None)
    st.subheader(t("claim_ledger", lang))
    st.dataframe(pd.DataFrame({
        t("col_day", lang): [d.isoformat() for d in ledger["day"]],
        t("col_day_status", lang): [t(s, lang) for s in ledger["day_status"]],
        t("col_bonus", lang): [_money(v, lang) for v in ledger["bonus"]],
        t("sum_insured", lang): [_money(v, lang) for v in ledger["sum_insured"]],
    }), hide_index=True, width="stretch")
    st.subheader(t("claim_readings", lang))
    if readings.empty:
        st.caption(t("claim_no_readings", lang))
    else:
        st.dataframe(pd.DataFrame({
            t("col_measured", lang): pd.to_datetime(readings["measured_at"]).dt.strftime(
                "%Y-%m-%d %H:%M"),
            t("col_glucose", lang): readings["value_mmol"].round(1),
        }), hide_index=True, width="stretch")
    st.subheader(t("claim_earlier", lang))
    if earlier:
        st.dataframe(claims_table(earlier, lang), hide_index=True, width="stretch")
    else:
        st.caption(t("claims_none", lang))
    _handler_actions(user, claim, lang)


def _handler_actions(user: User, claim: process.Claim, lang: str) -> None:
    cid, me = claim.claim_id, user.username
    if claim.status == "approved":
        if st.button(t("claim_pay", lang), key=f"pay-{cid}"):
            _act(cid, lambda conn: process.record_payment(conn, cid, me))
        return
    if claim.status not in process.OPEN:
        return
    words = st.text_area(t("claim_words", lang), key=f"words-{cid}")
    reason = st.selectbox(t("claim_reason", lang), list(process.DECLINE_REASONS),
                          format_func=lambda r: t(f"decline_{r}", lang), key=f"reason-{cid}")
    ask, approve, decline = st.columns(3)
    if ask.button(t("claim_ask", lang), key=f"ask-{cid}"):
        _act(cid, lambda conn: process.ask_for_information(conn, cid, me, words))
    if approve.button(t("claim_approve", lang), key=f"approve-{cid}", type="primary"):
        _act(cid, lambda conn: process.approve(conn, cid, me, words))
    if decline.button(t("claim_decline", lang), key=f"decline-{cid}"):
        _act(cid, lambda conn: process.decline(conn, cid, me, reason, words))


# ------------------------------------------------------------------ the policyholder's claims


def render_mine(user: User) -> None:
    """A policyholder's own claims: only their policy's, whatever the URL asks."""
    lang = _lang()
    assert user.policy_id is not None
    policy = user.policy_id
    st.title(t("page_my_claims", lang))
    _note()
    with db.pool().connection() as conn:
        mine = process.claims(conn, policy, detail=True)
        product = db_product(conn, policy)
    for claim in mine:
        with st.expander(f"{claim.claim_id} · {claim.event_date} · "
                         f"{_diagnosis(claim.diagnosis, lang)} · "
                         f"{t(f'claim_status_{claim.status}', lang)}",
                         expanded=claim.status in process.OPEN):
            st.write(t("claim_basis", lang, day=claim.basis_day.isoformat(),
                       amount=_money(claim.basis_sum_insured, lang)))
            if claim.payout is not None:
                st.metric(t("col_payout", lang), _money(claim.payout, lang))
            st.dataframe(_steps(claim, lang, staff=False), hide_index=True,
                         width="stretch")
            _documents(claim, lang, owner=policy)
            if claim.status == "more_information":
                _send_documents(claim, policy, user.username, lang)
    if not mine:
        st.caption(t("my_claims_none", lang))
    _file_form(policy, user.username, product, lang)


def db_product(conn: Any, policy_id: str) -> str:
    row = conn.execute("select ruleset_name from policies where policy_id = %s",
                       (policy_id,)).fetchone()
    return "default" if row is None else str(row[0])


def _uploaded(files: list[Any] | None) -> list[documents.Document]:
    return [documents.checked(f.name, f.getvalue()) for f in files or []]


def _send_documents(claim: process.Claim, policy: str, username: str, lang: str) -> None:
    asked = next((e.words for e in reversed(claim.events) if e.kind == "more_information"), "")
    st.warning(t("claim_asked", lang, words=asked))
    with st.form(f"add-{claim.claim_id}"):
        files = st.file_uploader(t("claim_upload", lang), type=["pdf", "png", "jpg", "jpeg"],
                                 accept_multiple_files=True, key=f"up-{claim.claim_id}")
        sent = st.form_submit_button(t("claim_add", lang))
    if sent:
        cid = claim.claim_id
        try:
            docs = _uploaded(files)
        except UserError as exc:
            st.error(t("claim_refused", lang, why=str(exc)))
            return
        _act(cid, lambda conn: process.add_documents(conn, cid, docs, username,
                                                            owner=policy))


def _file_form(policy: str, username: str, product: str, lang: str) -> None:
    st.subheader(t("claim_file_title", lang))
    st.caption(t("claim_file_help", lang))
    covered = product_for(product).covered_diagnoses
    with st.form("file-claim"):
        event = st.date_input(t("claim_event_date", lang), value=None)
        code = st.selectbox(t("claim_diagnosis", lang), covered,
                            format_func=lambda c: _diagnosis(c, lang))
        files = st.file_uploader(t("claim_upload", lang), type=["pdf", "png", "jpg", "jpeg"],
                                 accept_multiple_files=True)
        submitted = st.form_submit_button(t("claim_submit", lang))
    if not submitted or event is None:
        return
    try:
        docs = _uploaded(files)
        with db.pool().connection() as conn:
            claim_id = process.file_claim(conn, policy, event, str(code), docs, username)
        st.session_state["claim_note"] = ("ok", t("claim_filed", lang, claim=claim_id))
    except UserError as exc:
        st.session_state["claim_note"] = ("error", t("claim_refused", lang, why=str(exc)))
    st.rerun()
