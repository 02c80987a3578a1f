"""The policy's life against the real database: terms, renewal with the product's bonus rule,
premiums and the lapse that stops the ledger (docs/policies.md)."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import psycopg
import pytest

from cli.main import main
from policies import premiums, terms
from policies.product import Product, ProductError
from tests.helpers import START, current_ledger, load_fleet

A, B, C = "POL-004-000001", "POL-004-000002", "POL-004-000003"


def test_renewal_rules_adjustments_and_schedules() -> None:
    carried, reset = Product(name="p"), Product(name="p", bonus_at_renewal="reset")
    partly = Product(name="p", bonus_at_renewal="partly_carried", carried_share=0.25)
    assert terms.opening_bonus(800.0, carried) == 800.0
    assert terms.opening_bonus(800.0, reset) == 0.0
    assert terms.opening_bonus(800.0, partly) == 200.0
    assert terms.opening_bonus(-300.0, partly) == -300.0  # a penalty is never wiped out
    assert terms.next_adjustment(0.0, 1.0, carried) == 0.0  # off in the default product
    on = Product(name="p", premium_adjustment="on", adjustment_cap=0.03)
    assert terms.next_adjustment(0.0, 1.0, on) == -0.02
    assert terms.next_adjustment(0.0, 0.5, on) == 0.0
    assert terms.next_adjustment(-0.02, 1.0, on) == -0.03  # capped
    assert terms.next_adjustment(0.01, None, on) == 0.01  # nothing measured: unchanged
    assert terms.add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert terms.term_end(date(2026, 3, 2), carried) == date(2027, 3, 1)
    term = terms.Term(1, date(2026, 1, 31), date(2027, 1, 30), "monthly", 105.0)
    due = premiums.due_dates(term, carried)
    assert len(due) == 12 and due[1] == date(2026, 2, 28)
    assert premiums.instalments_covered(209.99, 105.0, 12) == 1
    assert premiums.instalments_covered(210.0, 105.0, 12) == 2
    assert [carried.premium(a, "yearly") for a in (30, 40, 65)] == [1200.0, 1800.0, 2600.0]
    assert [carried.yearly_premium(a) for a in (0, 39, 40, 59, 60, 120)] == [
        1200.0, 1200.0, 1800.0, 1800.0, 2600.0, 2600.0]
    assert [(r["age_from"], r["age_to"], r["yearly"], r["monthly"])
            for r in premiums.premium_table(carried)] == [
        (0, 39, 1200.0, 105.0), (40, 59, 1800.0, 157.5), (60, None, 2600.0, 227.5)]
    assert carried.premium(30, "monthly") == 105.0
    with pytest.raises(ProductError, match="min_age <= max_age"):
        Product(name="p", min_age=50, max_age=40).validate()


@pytest.fixture
def fleet(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    load_fleet(db_url, n=3, days=45, seed=4)
    with psycopg.connect(db_url) as conn:
        conn.execute("update readings set ingested_at = ingested_at - interval '1 hour'")
        conn.commit()
    monkeypatch.setenv("DATABASE_URL", db_url)
    return db_url


def _last_day(db_url: str, policy: str) -> date:
    ledger = current_ledger(db_url)
    last: date = max(ledger[ledger["policy_id"] == policy]["day"])
    return last


def _row(db_url: str, policy: str, day: date) -> dict[str, Any]:
    ledger = current_ledger(db_url)
    found = ledger[(ledger["policy_id"] == policy) & (ledger["day"] == day)]
    assert len(found) == 1
    row = {str(k): v for k, v in found.iloc[0].to_dict().items()}
    return row


def test_a_lapse_stops_the_ledger(fleet: str, capsys: pytest.CaptureFixture[str]) -> None:
    from pricing.engine import run_pricing

    with psycopg.connect(fleet) as conn:
        monthly = terms.open_first_term(conn, A, "monthly", "test")
        terms.open_first_term(conn, B, "yearly", "test")
        conn.commit()
    assert main(["premiums", "record", "--policy", A, "--amount", str(monthly.instalment),
                 "--paid-on", START.isoformat(), "--json"]) == 0
    account = json.loads(capsys.readouterr().out)
    second_due = date(2026, 4, 2)
    assert account["instalments_paid"] == 1 and account["next_due"] == second_due.isoformat()
    lapses_on = second_due + timedelta(days=31)  # the default grace period: 30 days
    assert account["lapses_on"] == lapses_on.isoformat()
    assert main(["premiums", "record", "--policy", B, "--amount", "2000", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["next_due"] is None  # the year is paid

    assert main(["premiums", "sweep", "--as-of", (lapses_on - timedelta(days=1)).isoformat(),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["lapsed"] == []
    assert main(["premiums", "sweep", "--as-of", lapses_on.isoformat(), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["lapsed"] == [A]
    assert main(["policies", "show", "--policy", A, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["state"] == "lapsed" and shown["state_since"] == lapses_on.isoformat()
    assert shown["term_start"] == START.isoformat() and shown["term_end"] == "2027-03-01"

    through = START + timedelta(days=90)
    run_pricing(fleet, through)
    assert _last_day(fleet, A) == lapses_on - timedelta(days=1)  # the grace period's last day
    assert _last_day(fleet, B) == through and _last_day(fleet, C) == through
    assert main(["premiums", "record", "--policy", C, "--amount", "10"]) == 2
    assert "no terms" in capsys.readouterr().err

    # Cancelled: the ledger never moves again, and the state is final.
    assert main(["policies", "cancel", "--policy", B, "--reason", "asked by the holder",
                 "--effective", through.isoformat(), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "cancelled"
    run_pricing(fleet, through + timedelta(days=5))
    assert _last_day(fleet, B) == through and _last_day(fleet, C) == through + timedelta(days=5)
    assert main(["policies", "cancel", "--policy", B, "--reason", "again"]) == 2
    assert "cannot become cancelled" in capsys.readouterr().err


@pytest.mark.parametrize("rule", ["carried", "partly_carried", "reset"])
def test_renewal_opens_the_next_term_with_the_products_bonus(fleet: str, rule: str) -> None:
    from pricing.engine import run_pricing

    product = Product(name="default", term_months=1, bonus_at_renewal=rule,
                      carried_share=0.5).validate()
    with psycopg.connect(fleet) as conn:
        for policy in (A, B, C):
            first = terms.open_first_term(conn, policy, "yearly", "test", product)
        conn.commit()
    assert first.end == date(2026, 4, 1)
    through = START + timedelta(days=44)
    run_pricing(fleet, through)
    assert _last_day(fleet, A) == first.end  # no renewal: the cover ends with the term
    closing, policy = max((float(_row(fleet, p, first.end)["bonus"]), p) for p in (A, B, C))
    assert closing > 0  # the best-kept of the three

    with psycopg.connect(fleet) as conn:
        second = terms.renew(conn, policy, "test", product=product)
        conn.commit()
    expected = {"carried": closing, "partly_carried": round(closing / 2, 2), "reset": 0.0}[rule]
    assert second.start == date(2026, 4, 2) and second.opening_bonus == expected
    opening = _row(fleet, policy, second.start)
    assert float(opening["bonus"]) == expected and opening["day_status"] == "missed"

    run_pricing(fleet, through)
    ledger = current_ledger(fleet).set_index(["policy_id", "day"])
    day_one = _row(fleet, policy, second.start)
    # The new term's first day is rated from the opening bonus, then day by day.
    assert float(day_one["bonus"]) - float(day_one["delta"]) == pytest.approx(expected)
    assert _last_day(fleet, policy) == through
    mine = ledger.loc[policy]
    later = mine[mine.index > second.start]
    previous = mine["bonus"].shift()[mine.index > second.start]
    assert (later["bonus"] - later["delta"] - previous).abs().max() < 0.005


def test_the_docs_table_is_the_declarations() -> None:
    from pathlib import Path

    from policies.product import markdown_table

    text = (Path(__file__).parent.parent / "docs" / "policies.md").read_text()
    assert markdown_table() in text, "docs/policies.md: paste `glucover policies parameters`"


def test_paying_the_arrears_reinstates_and_the_lapse_stays_frozen(
        fleet: str, capsys: pytest.CaptureFixture[str]) -> None:
    from glucover.errors import UserError
    from policies.claims import file_claim, payout_on
    from pricing.engine import run_pricing

    with psycopg.connect(fleet) as conn:
        yearly = terms.open_first_term(conn, A, "yearly", "test")
        terms.open_first_term(conn, B, "yearly", "test")
        conn.commit()
    lapsed_from = START + timedelta(days=31)  # the year's premium unpaid past 30 days' grace
    assert main(["premiums", "sweep", "--as-of", lapsed_from.isoformat(), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["lapsed"] == [A, B]
    through = START + timedelta(days=44)
    run_pricing(fleet, through)
    assert _last_day(fleet, A) == lapsed_from - timedelta(days=1)

    # Part of the arrears: recorded, still lapsed, the account says what reinstates it.
    paid_on = START + timedelta(days=35)
    assert main(["premiums", "record", "--policy", A, "--amount", "100", "--paid-on",
                 paid_on.isoformat(), "--json"]) == 0
    partly = json.loads(capsys.readouterr().out)
    assert partly["state"] == "lapsed" and partly["reinstated_from"] is None
    assert partly["arrears"] == yearly.instalment - 100
    closes = lapsed_from + timedelta(days=59)  # the default window: 60 days
    assert partly["reinstatable_until"] == closes.isoformat()
    # The rest: active again from the day after, an event in the history.
    assert main(["premiums", "record", "--policy", A, "--amount",
                 str(yearly.instalment - 100), "--paid-on", paid_on.isoformat(),
                 "--json"]) == 0
    cleared = json.loads(capsys.readouterr().out)
    reinstated = paid_on + timedelta(days=1)
    assert cleared["state"] == "active" and cleared["arrears"] == 0
    assert cleared["reinstated_from"] == reinstated.isoformat()
    assert main(["policies", "show", "--policy", A, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(h["state"], h["effective"]) for h in shown["history"]] == [
        ("lapsed", lapsed_from.isoformat()), ("active", reinstated.isoformat())]
    assert shown["history"][1]["reason"] == f"reinstated: arrears paid on {paid_on}"

    # The ledger resumes from the reinstatement with the bonus the lapse froze; the lapsed
    # days are never priced, and a second run changes nothing.
    run_pricing(fleet, through)
    ledger = current_ledger(fleet)
    days = set(ledger[ledger["policy_id"] == A]["day"])
    assert not {lapsed_from + timedelta(days=k) for k in range(5)} & days
    assert {reinstated, through} <= days
    frozen = float(_row(fleet, A, lapsed_from - timedelta(days=1))["bonus"])
    first = _row(fleet, A, reinstated)
    assert float(first["bonus"]) - float(first["delta"]) == pytest.approx(frozen)
    assert run_pricing(fleet, through).rows_added == 0
    assert _last_day(fleet, B) == lapsed_from - timedelta(days=1)  # B is still lapsed

    # No event while lapsed is covered; the day after, the basis is the frozen bonus's day.
    with psycopg.connect(fleet) as conn:
        with pytest.raises(UserError, match=r"lapsed from \S+ until its reinstatement"):
            file_claim(conn, A, lapsed_from + timedelta(days=2), "N18.5", [], "test",
                       today=through)
        conn.rollback()
        assert payout_on(conn, A, reinstated)[0] == lapsed_from - timedelta(days=1)

    # Past the window a payment cannot reinstate: refused, one line, nothing recorded.
    late = closes + timedelta(days=1)
    assert main(["premiums", "record", "--policy", B, "--amount", "5000", "--paid-on",
                 late.isoformat()]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"reinstatement window (60 days, premiums.reinstatement_days) closed on {closes}" \
        in err
    with psycopg.connect(fleet) as conn:
        assert conn.execute("select count(*) from premium_payments where policy_id = %s",
                            (B,)).fetchone() == (0,)


def test_the_premium_sweep_up_runs_lapses_an_overdue_policy(fleet: str) -> None:
    """`glucover up` runs `premium_sweep` beside pricing, with the pricing login; a yearly
    premium unpaid since the fleet's start is long past its grace period."""
    import os

    from cli.up import premium_sweep, spawn
    from glucover.db import ensure_login_role, with_credentials
    from tests.helpers import wait_until

    with psycopg.connect(fleet) as conn:
        terms.open_first_term(conn, A, "yearly", "test")
        conn.commit()
    ensure_login_role(fleet, "glucover_pricing", "glucover_pricing_sweep", "sweep-pw")
    env = {**os.environ, "DATABASE_URL": with_credentials(fleet, "glucover_pricing_sweep",
                                                          "sweep-pw")}
    child, _ = spawn("premiums", premium_sweep(0.5), env)
    try:
        def state() -> tuple[Any, ...] | None:
            with psycopg.connect(fleet) as conn:
                return conn.execute("select state, since from policy_state where policy_id = "
                                    "%s", (A,)).fetchone()

        assert wait_until(lambda: child.proc.poll() is not None
                          or state() == ("lapsed", START + timedelta(days=31)), 60)
        assert child.proc.poll() is None  # still sweeping, every half second
        assert state() == ("lapsed", START + timedelta(days=31))
    finally:
        child.proc.terminate()
        child.proc.wait(20)
