"""Claims on the dashboard against the real database: the claims handler's queue, the
policyholder's own claims (docs/claims.md)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest

from dashboard.auth import create_user
from tests.helpers import PASSWORD, START, load_fleet, signed_in

ALICE, BOB = "POL-004-000002", "POL-004-000001"
EVENT = START + timedelta(days=100)


@pytest.fixture
def claims_db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    from policies import claims
    from pricing.engine import run_pricing

    load_fleet(db_url, n=3, days=20, seed=4)
    run_pricing(db_url, EVENT)
    with psycopg.connect(db_url) as conn:
        create_user(conn, "handler", PASSWORD, "claims", rounds=4)
        create_user(conn, "insured-handler", PASSWORD, "claims", ALICE, rounds=4)
        create_user(conn, "alice", PASSWORD, "policyholder", ALICE, rounds=4)
        create_user(conn, "bob", PASSWORD, "policyholder", BOB, rounds=4)
        ids = {"alice": claims.file_claim(conn, ALICE, EVENT, "E11.35", [], "alice"),
               "bob": claims.file_claim(conn, BOB, EVENT, "I21", [], "bob")}
        conn.commit()
    monkeypatch.setenv("DATABASE_URL", db_url)
    return ids


def _status(db_url: str, claim_id: int) -> Any:
    with psycopg.connect(db_url) as conn:
        return conn.execute("select status from claim_status where claim_id = %s",
                            (claim_id,)).fetchone()


def test_the_handler_works_the_queue(db_url: str, claims_db: dict[str, int]) -> None:
    at = signed_in("handler")
    assert at.title[0].value == "Claims queue"
    assert len(at.dataframe[0].value) == 2
    assert at.selectbox[0].value == claims_db["bob"]  # the newest first
    assert any("Sum insured at the end of" in i.value for i in at.info)
    assert {"Steps", "Documents", "The ledger as it stood when filed",
            "Readings around the event", "Earlier claims on this policy"} <= {
        s.value for s in at.subheader}
    # The ledger as it stood: each day with its date and its result, both shown.
    ledger = next(d.value for d in at.dataframe if "Sum insured" in d.value.columns)
    assert list(ledger.columns) == ["Day", "Result of the day", "Bonus", "Sum insured"]
    assert ledger["Day"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    next(b for b in at.button if b.label == "Approve and pay the basis").click().run()
    assert not at.exception
    assert _status(db_url, claims_db["bob"]) == ("approved",)
    assert any("approved" in s.value for s in at.success)

    # A handler holding a policy cannot judge a claim on it.
    own = signed_in("insured-handler")
    own.selectbox[0].set_value(claims_db["alice"]).run()
    next(b for b in own.button if b.label == "Approve and pay the basis").click().run()
    assert any("own policy" in e.value for e in own.error)
    assert _status(db_url, claims_db["alice"]) == ("filed",)

    zh = signed_in("handler", {"lang": "zh"})
    assert zh.title[0].value == "理赔队列"
    assert "（理赔专员）" in zh.sidebar.markdown[0].value or \
        "(理赔专员)" in zh.sidebar.markdown[0].value


def _my_claims(username: str, policy: str, lang: str = "en") -> Any:
    from streamlit.testing.v1 import AppTest

    def page(username: str, policy: str, lang: str) -> None:
        import streamlit as st

        from dashboard.auth import User
        from dashboard.views import claims

        st.session_state["lang"] = lang
        claims.render_mine(User(username, "policyholder", policy))

    at = AppTest.from_function(page, args=(username, policy, lang), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def test_a_policyholder_sees_and_files_only_their_own(db_url: str,
                                                      claims_db: dict[str, int]) -> None:
    at = _my_claims("alice", ALICE)
    labels = [e.label for e in at.expander]
    assert len(labels) == 1 and labels[0].startswith(f"{claims_db['alice']} ·")
    at.date_input[0].set_value(EVENT - timedelta(days=1))
    at.selectbox[0].set_value("I63")
    at.button[0].click().run()
    assert not at.exception
    with psycopg.connect(db_url) as conn:
        mine = conn.execute("select policy_id, diagnosis, filed_by from claims where "
                            "claim_id > %s", (claims_db["bob"],)).fetchall()
    assert mine == [(ALICE, "I63", "alice")]
    assert any("filed" in s.value for s in at.success)
    assert len(at.expander) == 2
    zh = _my_claims("bob", BOB, "zh")
    assert [e.label for e in zh.expander] == [
        f"{claims_db['bob']} · {EVENT} · I21 急性心肌梗死 · 已提交"]
    assert zh.title[0].value == "我的理赔"
