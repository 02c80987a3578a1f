"""Human review of an automated decision (privacy/reviews.py): a policyholder asks, a reviewer
upholds or corrects; a correction is a new ledger row naming the review that the nightly run
carries forward; every step is audited and a decision is final. Pages in both languages."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from dashboard.auth import create_user
from pricing.engine import run_pricing
from privacy import reviews
from tests.helpers import PASSWORD, START, load_fleet, signed_in

POLICY = "POL-006-000001"
THROUGH = START + timedelta(days=19)


@pytest.fixture
def priced(db_url: str) -> str:
    load_fleet(db_url, n=6, days=20, seed=6)
    with psycopg.connect(db_url) as conn:
        conn.execute("update readings set ingested_at = ingested_at - interval '1 hour'")
        conn.commit()
    run_pricing(db_url, THROUGH)
    return db_url


def _sums(conn: psycopg.Connection[tuple[object, ...]]) -> list[float]:
    return [float(str(r[0])) for r in conn.execute(
        "select sum_insured from current_ledger where policy_id = %s order by day", (POLICY,))]


def test_a_correction_is_a_new_ledger_row_that_pricing_carries_forward(priced: str) -> None:
    day = START + timedelta(days=5)
    with psycopg.connect(priced) as conn:
        before = _sums(conn)
        review_id = reviews.request(conn, POLICY, day, "My meter was broken that morning.",
                                    "alice")
        with pytest.raises(reviews.ReviewError, match="already waiting"):
            reviews.request(conn, POLICY, day, "again", "alice")
        reviews.decide(conn, review_id, "uwe", "corrected", "Meter fault confirmed.", 100.0)
        conn.commit()
        rows = conn.execute("select review_id, delta::float8 from sum_insured_ledger "
                            "where policy_id = %s and day = %s order by run_id",
                            (POLICY, day)).fetchall()
        assert len(rows) == 2 and rows[0][0] is None and rows[1][0] == review_id
        assert rows[1][1] == rows[0][1] + 100
        with pytest.raises(reviews.ReviewError, match="decided already"):
            reviews.decide(conn, review_id, "uwe", "upheld", "changed my mind")
        with pytest.raises(psycopg.errors.RaiseException):
            conn.execute("update decision_reviews set reason = 'x' where review_id = %s",
                         (review_id,))
        conn.rollback()
    run_pricing(priced, THROUGH)
    with psycopg.connect(priced) as conn:
        after = _sums(conn)
        named = conn.execute("select review_id from current_ledger where policy_id = %s and "
                             "day = %s", (POLICY, day)).fetchone()
        audit = conn.execute("select username, action from review_audit where review_id = %s "
                             "order by audit_id", (review_id,)).fetchall()
    assert named == (review_id,)
    assert after[:5] == before[:5]
    # Every later day is 100 higher, unless the cap or floor clamps it.
    assert all(a == b + 100 for a, b in zip(after[5:], before[5:], strict=True))
    assert audit == [("alice", "request"), ("uwe", "correct")]


def test_an_upheld_review_changes_no_ledger_row(priced: str) -> None:
    day = START + timedelta(days=3)
    with psycopg.connect(priced) as conn:
        count = conn.execute("select count(*) from sum_insured_ledger").fetchone()
        review_id = reviews.request(conn, POLICY, day, "Why?", "alice")
        with pytest.raises(reviews.ReviewError):
            reviews.decide(conn, review_id, "uwe", "upheld", "  ")
        reviews.decide(conn, review_id, "uwe", "upheld", "The reading was 11.2 mmol/L.")
        conn.commit()
        assert conn.execute("select count(*) from sum_insured_ledger").fetchone() == count
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("delete from review_audit")


@pytest.mark.parametrize(("lang", "ask", "upheld"), [
    ("en", "Ask for a review", "upheld by a reviewer"),
    ("zh", "提交复核申请", "复核维持原决定")])
def test_the_policyholder_asks_and_the_reviewer_decides_on_their_pages(
        priced: str, monkeypatch: pytest.MonkeyPatch, lang: str, ask: str, upheld: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", priced)
    with psycopg.connect(priced) as conn:
        create_user(conn, "alice", PASSWORD, "policyholder", POLICY, rounds=4)
        create_user(conn, "uwe", PASSWORD, "reviewer", rounds=4)
        conn.commit()
    at = signed_in("alice", {"lang": lang})
    at.text_area[0].input("The reading was control solution by mistake.")
    next(b for b in at.button if b.label == ask).click()
    at.run()
    assert not at.exception
    with psycopg.connect(priced) as conn:
        waiting = reviews.queue(conn)
    assert list(waiting["policy_id"]) == [POLICY]
    rv = signed_in("uwe", {"lang": lang})
    assert not rv.exception
    assert any("control solution" in i.value for i in rv.info)
    rv.text_area[0].input("The reading counted as it should.")
    rv.button(key="FormSubmitter:decide_1-" + ("Decide" if lang == "en" else "决定")).click()
    rv.run()
    assert not rv.exception
    at = signed_in("alice", {"lang": lang})
    assert any(upheld in s.value for s in at.success)
