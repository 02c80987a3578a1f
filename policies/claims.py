"""Claims on severe complications, as a process (docs/claims.md).

A policyholder (or an operator for them) files a claim: the event date, a covered diagnosis and
documents. Filing freezes its basis: the sum insured at the end of the day before the event as
the ledger stands then (readings that arrive later never change it), and runs the checks that
flag it for a second look (policies/claim_checks.py). A claims handler then asks for more
documents, declines with a reason code, or approves: approval fixes the payout at the frozen
basis and ends the cover (the policy becomes `claimed`; its ledger stops moving); `pay` records
the money going out. Every step is an event in claim_events (append-only); the claim's status
is its latest event's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from glucover.errors import UserError
from policies import claim_checks, states
from policies.diagnoses import BY_CODE
from policies.documents import Document
from policies.product import product_for

Conn = psycopg.Connection[Any]

STATUSES = ("filed", "more_information", "approved", "declined", "paid")
OPEN = ("filed", "more_information")  # the handler's queue
# Why a claim is declined: code -> meaning (the dashboard's words in dashboard/i18n.py).
DECLINE_REASONS = {
    "waiting_period": "the event fell within the waiting period",
    "not_covered_diagnosis": "the diagnosis is not one the product covers",
    "not_severe": "the documents do not show the treatment that makes the diagnosis severe",
    "documents_insufficient": "the documents asked for were not provided",
    "not_in_force": "the policy was not in force on the event date",
    "pre_existing": "the complication was diagnosed before the policy started",
    "misrepresentation": "facts given at application were untrue",
    "duplicate": "another claim covers the same event",
}


@dataclass(frozen=True)
class ClaimEvent:
    kind: str
    status: str
    at: str
    actor: str
    reason_code: str | None
    words: str
    amount: float | None


@dataclass(frozen=True)
class StoredDocument:
    document_id: int
    filename: str
    media_type: str
    size_bytes: int
    sha256: str
    added_by: str
    added_at: str


@dataclass(frozen=True)
class Claim:
    claim_id: int
    policy_id: str
    event_date: date
    diagnosis: str | None
    status: str
    basis_day: date
    basis_sum_insured: float
    payout: float | None  # set by approval: the frozen basis
    flags: list[str]
    filed_at: str
    filed_by: str
    documents: list[StoredDocument] = field(default_factory=list)
    events: list[ClaimEvent] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["event_date"] = self.event_date.isoformat()
        out["basis_day"] = self.basis_day.isoformat()
        return out

    def text(self) -> str:
        payout = "—" if self.payout is None else f"{self.payout:,.2f}"
        flags = ", ".join(self.flags) or "none"
        return (f"claim {self.claim_id}: policy {self.policy_id}, event {self.event_date}, "
                f"diagnosis {self.diagnosis or '—'}, {self.status}; basis "
                f"{self.basis_sum_insured:,.2f} (sum insured at the end of {self.basis_day}), "
                f"payout {payout}; flags: {flags}")


def basis_on(conn: Conn, policy_id: str, event_date: date
             ) -> tuple[date, float, int | None]:
    """(basis day, sum insured at its end, the pricing run of that ledger row) for an event on
    `event_date`, from the ledger as it stands now; nothing is recorded."""
    policy = conn.execute("select start_date, base_sum_insured::float8 from policies "
                          "where policy_id = %s", (policy_id,)).fetchone()
    if policy is None:
        raise UserError(f"no policy {policy_id!r}")
    start, base = policy[0], float(str(policy[1]))
    assert isinstance(start, date)
    if event_date < start:
        raise UserError(f"policy {policy_id} starts on {start}; an event on {event_date} is "
                        "not covered")
    basis = event_date - timedelta(days=1)
    lapse = states.reinstated_lapse(conn, policy_id, basis)
    if lapse is not None:  # the day before a reinstatement: the bonus frozen at the lapse
        basis = lapse[0] - timedelta(days=1)
    if basis < start:
        return basis, base, None  # the first day: nothing earned or lost yet
    row = conn.execute("select sum_insured::float8, run_id from current_ledger where "
                       "policy_id = %s and day = %s", (policy_id, basis)).fetchone()
    if row is None:
        raise UserError(f"the ledger of {policy_id} does not reach {basis} yet: run "
                        f"`glucover price run --through {basis}` first")
    return basis, float(str(row[0])), int(str(row[1]))


def payout_on(conn: Conn, policy_id: str, event_date: date) -> tuple[date, float]:
    """(basis day, what a claim for an event on `event_date` would pay), recording nothing."""
    basis, amount, _ = basis_on(conn, policy_id, event_date)
    return basis, amount


def file_claim(conn: Conn, policy_id: str, event_date: date, diagnosis: str,
               documents: Sequence[Document], filed_by: str, today: date | None = None) -> int:
    """Record a claim with its frozen basis and flags; the caller commits. Refuses an unknown
    policy, an event it does not cover and a diagnosis its product does not cover."""
    policy = conn.execute(
        "select p.start_date, p.ruleset_name, s.state, s.since from policies p "
        "join policy_state s using (policy_id) where p.policy_id = %s", (policy_id,)).fetchone()
    if policy is None:
        raise UserError(f"no policy {policy_id!r}")
    start, product_name, state, since = policy
    product = product_for(str(product_name))
    if diagnosis not in product.covered_diagnoses:
        known = "" if diagnosis in BY_CODE else " (not a code we know)"
        raise UserError(f"{diagnosis!r} is not a covered diagnosis of product {product.name}"
                        f"{known}: see `glucover claims diagnoses`")
    if event_date > (today or datetime.now(UTC).date()):
        raise UserError(f"the event date {event_date} is in the future")
    if event_date < start:
        raise UserError(f"policy {policy_id} starts on {start}; an event on {event_date} is "
                        "not covered")
    if state == "claimed":
        raise UserError(f"policy {policy_id} was paid a claim already; its cover has ended")
    if state in ("applied", "lapsed", "cancelled", "expired") and event_date >= since:
        raise UserError(f"policy {policy_id} is {state} since {since}: an event on "
                        f"{event_date} is not covered")
    lapse = states.reinstated_lapse(conn, policy_id, event_date)
    if lapse is not None:
        raise UserError(f"policy {policy_id} was lapsed from {lapse[0]} until its reinstatement "
                        f"on {lapse[1]}: an event on {event_date} is not covered")
    conn.execute("select pg_advisory_xact_lock(hashtext('claims:' || %s))", (policy_id,))
    basis_day, basis_sum, run_id = basis_on(conn, policy_id, event_date)
    flags = claim_checks.at_filing(conn, policy_id, start, product.waiting_period_days,
                                   str(product_name), event_date, basis_day)
    row = conn.execute(
        "insert into claims (policy_id, event_date, diagnosis, basis_day, basis_sum_insured, "
        "basis_run_id, flags, filed_by) values (%s, %s, %s, %s, %s, %s, %s, %s) "
        "returning claim_id",
        (policy_id, event_date, diagnosis, basis_day, basis_sum, run_id, flags,
         filed_by)).fetchone()
    assert row is not None
    claim_id = int(str(row[0]))
    _event(conn, claim_id, "filed", "filed", filed_by)
    _store_documents(conn, claim_id, documents, filed_by)
    return claim_id


def add_documents(conn: Conn, claim_id: int, documents: Sequence[Document], by: str,
                  owner: str | None = None) -> None:
    """More documents for an open claim; one asked for more information returns to the
    queue. `owner`: the policy the adder may touch (a policyholder's own)."""
    claim = _locked(conn, claim_id)
    if owner is not None and claim.policy_id != owner:
        raise UserError(f"no claim {claim_id}")
    if claim.status not in OPEN:
        raise UserError(f"claim {claim_id} is {claim.status}: documents go to an open claim")
    if not documents:
        raise UserError("give at least one --document")
    _store_documents(conn, claim_id, documents, by)
    _event(conn, claim_id, "documents_added", "filed", by,
           words=", ".join(d.filename for d in documents))


def ask_for_information(conn: Conn, claim_id: int, handler: str, words: str) -> None:
    claim = _locked(conn, claim_id)
    _check_handler(conn, handler, claim)
    _require_open(claim, "asked for more information")
    if not words.strip():
        raise UserError("say what is needed (--words)")
    _event(conn, claim_id, "more_information", "more_information", handler, words=words.strip())


def approve(conn: Conn, claim_id: int, handler: str, words: str = "") -> None:
    """Approve: the payout is the frozen basis; the policy becomes claimed (its cover ends)."""
    claim = _locked(conn, claim_id)
    _check_handler(conn, handler, claim)
    _require_open(claim, "approved")
    if "waiting_period" in claim.flags:
        raise UserError(f"claim {claim_id}: the event on {claim.event_date} falls within the "
                        "waiting period; decline it with --reason waiting_period")
    if states.state_of(conn, claim.policy_id).state == "claimed":
        raise UserError(f"policy {claim.policy_id} was paid a claim already")
    _event(conn, claim_id, "approved", "approved", handler, words=words,
           amount=claim.basis_sum_insured)
    states.record(conn, claim.policy_id, "claimed", claim.event_date, handler,
                  reason=f"claim {claim_id} approved", claim_id=claim_id)


def decline(conn: Conn, claim_id: int, handler: str, reason: str, words: str = "") -> None:
    if reason not in DECLINE_REASONS:
        raise UserError(f"{reason!r} is not a decline reason: one of "
                        f"{', '.join(DECLINE_REASONS)}")
    claim = _locked(conn, claim_id)
    _check_handler(conn, handler, claim)
    _require_open(claim, "declined")
    _event(conn, claim_id, "declined", "declined", handler, reason_code=reason, words=words)


def record_payment(conn: Conn, claim_id: int, handler: str, reference: str = "") -> None:
    """The approved payout went out."""
    claim = _locked(conn, claim_id)
    _check_handler(conn, handler, claim)
    if claim.status != "approved":
        raise UserError(f"claim {claim_id} is {claim.status}: only an approved claim is paid")
    _event(conn, claim_id, "paid", "paid", handler, words=reference, amount=claim.payout)


def claim(conn: Conn, claim_id: int, owner: str | None = None) -> Claim:
    """One claim with its documents and events; `owner`: only if on this policy."""
    found = claims(conn, claim_id=claim_id, policy_id=owner, detail=True)
    if not found:
        raise UserError(f"no claim {claim_id}")
    return found[0]


def claims(conn: Conn, policy_id: str | None = None, status: str | None = None,
           claim_id: int | None = None, detail: bool = False) -> list[Claim]:
    """Claims, newest first; flags include readings that arrived after the event since."""
    if status is not None and status not in STATUSES:
        raise UserError(f"{status!r} is not a status: one of {', '.join(STATUSES)}")
    rows = conn.execute(
        """select c.claim_id, c.policy_id, c.event_date, c.diagnosis, s.status, c.basis_day,
                  c.basis_sum_insured::float8, c.flags, c.filed_at, c.filed_by,
                  (select amount::float8 from claim_events e where e.claim_id = c.claim_id
                     and e.kind in ('approved', 'paid') order by event_id desc limit 1)
           from claims c join claim_status s using (claim_id)
           where (%(p)s::text is null or c.policy_id = %(p)s)
             and (%(s)s::text is null or s.status = %(s)s)
             and (%(c)s::bigint is null or c.claim_id = %(c)s)
           order by c.claim_id desc""",
        {"p": policy_id, "s": status, "c": claim_id}).fetchall()
    out = []
    for r in rows:
        flags = list(r[7])
        if "readings_after_event" not in flags and claim_checks.readings_after_event(
                conn, str(r[1]), r[2]):
            flags.append("readings_after_event")
        out.append(Claim(int(r[0]), str(r[1]), r[2], r[3], str(r[4]), r[5], float(r[6]),
                         None if r[10] is None else float(r[10]), flags, r[8].isoformat(),
                         str(r[9]),
                         _documents(conn, int(r[0])) if detail else [],
                         _events(conn, int(r[0])) if detail else []))
    return out


def document_content(conn: Conn, document_id: int, owner: str | None = None
                     ) -> tuple[StoredDocument, bytes]:
    row = conn.execute(
        "select d.document_id, d.filename, d.media_type, d.size_bytes, d.sha256, d.added_by, "
        "d.added_at, d.content, c.policy_id from claim_documents d join claims c "
        "using (claim_id) where d.document_id = %s", (document_id,)).fetchone()
    if row is None or (owner is not None and row[8] != owner):
        raise UserError(f"no document {document_id}")
    return (StoredDocument(int(row[0]), row[1], row[2], int(row[3]), row[4], row[5],
                           row[6].isoformat()), bytes(row[7]))


# ------------------------------------------------------------------ internals


def _event(conn: Conn, claim_id: int, kind: str, status: str, actor: str,
           reason_code: str | None = None, words: str = "", amount: float | None = None
           ) -> None:
    conn.execute("insert into claim_events (claim_id, kind, status, actor, reason_code, words, "
                 "amount) values (%s, %s, %s, %s, %s, %s, %s)",
                 (claim_id, kind, status, actor, reason_code, words, amount))


def _store_documents(conn: Conn, claim_id: int, documents: Sequence[Document], by: str
                     ) -> None:
    for d in documents:
        conn.execute("insert into claim_documents (claim_id, filename, media_type, size_bytes, "
                     "sha256, content, added_by) values (%s, %s, %s, %s, %s, %s, %s)",
                     (claim_id, d.filename, d.media_type, d.size_bytes, d.sha256, d.content,
                      by))


def _locked(conn: Conn, claim_id: int) -> Claim:
    """The claim, with its policy's claims serialised until the transaction ends."""
    row = conn.execute("select policy_id from claims where claim_id = %s",
                       (claim_id,)).fetchone()
    if row is None:
        raise UserError(f"no claim {claim_id}")
    conn.execute("select pg_advisory_xact_lock(hashtext('claims:' || %s))", (row[0],))
    return claims(conn, claim_id=claim_id)[0]


def _require_open(claim: Claim, done: str) -> None:
    if claim.status not in OPEN:
        raise UserError(f"claim {claim.claim_id} is {claim.status}: only an open claim (filed "
                        f"or more_information) can be {done}")


def _check_handler(conn: Conn, handler: str, claim: Claim) -> None:
    """A claims handler, judging a claim that is not on their own policy nor filed by them."""
    row = conn.execute("select username, role, policy_id from dashboard_users where "
                       "lower(username) = lower(%s)", (handler,)).fetchone()
    if row is None or row[1] != "claims":
        raise UserError(f"{handler!r} is not a claims handler (a dashboard user with the "
                        "claims role)")
    if row[2] == claim.policy_id or str(row[0]).lower() == claim.filed_by.lower():
        raise UserError(f"{row[0]} holds policy {claim.policy_id}: a handler cannot judge a "
                        "claim on their own policy; another handler must"
                        if row[2] == claim.policy_id else
                        f"{row[0]} filed claim {claim.claim_id}: another handler must judge it")


def _documents(conn: Conn, claim_id: int) -> list[StoredDocument]:
    rows = conn.execute("select document_id, filename, media_type, size_bytes, sha256, "
                        "added_by, added_at from claim_documents where claim_id = %s "
                        "order by document_id", (claim_id,)).fetchall()
    return [StoredDocument(int(r[0]), r[1], r[2], int(r[3]), r[4], r[5], r[6].isoformat())
            for r in rows]


def _events(conn: Conn, claim_id: int) -> list[ClaimEvent]:
    rows = conn.execute("select kind, status, at, actor, reason_code, words, amount::float8 "
                        "from claim_events where claim_id = %s order by event_id",
                        (claim_id,)).fetchall()
    return [ClaimEvent(r[0], r[1], r[2].isoformat(), r[3], r[4], r[5],
                       None if r[6] is None else float(r[6])) for r in rows]
