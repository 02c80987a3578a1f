"""Demo claims for `glucover up` (`make demo`): a few claims in every state, through the same
process a policyholder and a claims handler use (policies/claims.py)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import psycopg

from glucover.errors import UserError
from policies import claims
from policies.documents import checked
from policies.product import product_for

Conn = psycopg.Connection[Any]

# A one-page PDF: what a discharge letter upload looks like to the checks.
LETTER = checked("discharge-letter.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n"
                 b"trailer << /Root 1 0 R >>\n%%EOF\n")


def seed_claims(conn: Conn, policy_ids: list[str], handler: str, today: date
                ) -> dict[str, int]:
    """One claim in each state on the first policies of `policy_ids` (each needs its ledger
    priced through yesterday): filed and declined ones inside the waiting period,
    more_information on the first (a demo policyholder's), approved and paid ones when the
    history is longer than the waiting period (else left out). Claim ids by status."""
    rows = conn.execute("select policy_id, start_date, ruleset_name from policies "
                        "where policy_id = any(%s)", (policy_ids,)).fetchall()
    start = {str(r[0]): (r[1], str(r[2])) for r in rows}
    ordered = [p for p in policy_ids if p in start]
    made: dict[str, int] = {}

    def file(policy: str, event: date, code: str) -> int:
        return claims.file_claim(conn, policy, event, code, [LETTER], policy.lower(), today)

    plan = iter(ordered)
    try:
        first = next(plan)
        made["more_information"] = file(first, today - timedelta(days=2), "E11.35")
        claims.ask_for_information(conn, made["more_information"], handler,
                                   "the eye hospital's operation note (vitrectomy)")
        made["filed"] = file(next(plan), today - timedelta(days=1), "I63")
        declined = next(plan)
        made["declined"] = file(declined, start[declined][0] + timedelta(days=3), "I21")
        claims.decline(conn, made["declined"], handler, "waiting_period",
                       "the event fell in the first 90 days of the policy")
        for status in ("approved", "paid"):
            policy = next(plan)
            begins, product = start[policy]
            event = begins + timedelta(days=product_for(product).waiting_period_days)
            if event > today - timedelta(days=1):
                continue  # the history is shorter than the waiting period
            made[status] = file(policy, event, "N18.5")
            claims.approve(conn, made[status], handler, "dialysis confirmed")
            if status == "paid":
                claims.record_payment(conn, made[status], handler, "DEMO-PAYMENT-1")
    except (StopIteration, UserError):
        pass  # a small demo portfolio: fewer claims
    return made
