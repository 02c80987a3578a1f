"""Enrolment: an application (from the sign-up page or `glucover policies apply --json FILE`)
is read, checked against its product's declared eligibility, and either refused with every
reason or accepted: a policy with its device, its first term and its premium schedule
(docs/policies.md). Every application is kept (policy_applications, 0057), consents included.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import psycopg

from devices.provisioning import add_devices
from glucover.errors import UserError
from kernel.vocabulary import NIGHTSCOUT_MODEL, DeviceKind
from nightscout.credentials import Credentials
from nightscout.enrolment import provision
from policies import states, terms
from policies.product import DIABETES_TYPES, FREQUENCIES, Product, product_for
from pricing.ruleset import RULESET_OF_KIND, builtin_names, builtin_or_default
from privacy import consent
from privacy.purposes import PURPOSES

Conn = psycopg.Connection[Any]

# What an application may name as its device: a meter or a CGM to provision, or uploads from
# the policyholder's own CGM app through the Nightscout-compatible API (docs/nightscout.md),
# which are a CGM's readings.
DEVICES = (*DeviceKind, NIGHTSCOUT_MODEL)


def kind_of(device: str) -> DeviceKind:
    """The kind of device an application's `device` is (a Nightscout upload is a CGM's)."""
    return DeviceKind.CGM if device == NIGHTSCOUT_MODEL else DeviceKind(device)


# The consents a policy cannot do without: its price is computed from glucose readings, health
# data that needs its own consent (PIPL Art. 29, GDPR Art. 9). The consent register (issue 29)
# is the one home of purposes; this names the one enrolment requires.
REQUIRED_CONSENTS = ("pricing",)


@dataclass(frozen=True)
class Application:
    holder_name: str
    birth_year: int
    diabetes_type: str
    diagnosis_year: int
    timezone: str
    device: str  # bgm or cgm: the device to provision; nightscout: uploads from an app
    product: str
    frequency: str
    consents: list[dict[str, Any]] = field(default_factory=list)
    start_date: date | None = None  # default: the day after the application

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["start_date"] = None if self.start_date is None else self.start_date.isoformat()
        return out


class ApplicationError(UserError):
    """An application that cannot be read; the message names every field at fault."""


def parse(doc: Any) -> Application:
    """An Application from its JSON object, or ApplicationError listing every field at fault
    (each checked on its own: the form shows them all at once)."""
    if not isinstance(doc, dict):
        raise ApplicationError("an application is a JSON object")
    errors: list[str] = []

    def text(key: str) -> str:
        value = doc.get(key)
        if not isinstance(value, str) or not value.strip():
            errors.append(f"{key}: required text")
            return ""
        return value.strip()

    def year(key: str) -> int:
        value = doc.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 1900 <= value <= 2100:
            errors.append(f"{key}: a year like 1970")
            return 0
        return value

    name, zone = text("holder_name"), text("timezone")
    if zone and zone not in available_timezones():
        errors.append(f"timezone: {zone!r} is not an IANA time zone like Asia/Shanghai")
    diabetes = text("diabetes_type")
    if diabetes and diabetes not in DIABETES_TYPES:
        errors.append(f"diabetes_type: one of {', '.join(DIABETES_TYPES)}")
    device = text("device")
    if device and device not in DEVICES:
        errors.append(f"device: one of {', '.join(DEVICES)}")
    product = doc.get("product") or (RULESET_OF_KIND[kind_of(device)] if device in DEVICES
                                     else "")
    frequency = doc.get("frequency", "monthly")
    if frequency not in FREQUENCIES:
        errors.append(f"frequency: one of {', '.join(FREQUENCIES)}")
    consents = doc.get("consents")
    if not isinstance(consents, list) or not all(
            isinstance(c, dict) and isinstance(c.get("purpose"), str)
            and isinstance(c.get("granted"), bool) for c in consents):
        errors.append('consents: a list like [{"purpose": "pricing", "granted": true}]')
        consents = []
    unknown = sorted({c["purpose"] for c in consents} - set(PURPOSES))
    if unknown:
        errors.append(f"consents: no purpose {', '.join(unknown)} (one of {', '.join(PURPOSES)})")
    start = None
    if doc.get("start_date") is not None:
        try:
            start = date.fromisoformat(str(doc["start_date"]))
        except ValueError:
            errors.append("start_date: a date like 2026-01-31")
    born, diagnosed = year("birth_year"), year("diagnosis_year")
    if errors:
        raise ApplicationError("; ".join(errors))
    return Application(name, born, diabetes, diagnosed, zone, device, str(product),
                       str(frequency), consents, start)


def refusals(app: Application, product: Product, today: date) -> list[str]:
    """Why the product cannot take this application (none: eligible)."""
    found = []
    age = today.year - app.birth_year
    if age < product.min_age:
        found.append(f"age {age} is below the product's {product.min_age} (eligibility.min_age)")
    if age > product.max_age:
        found.append(f"age {age} is above the product's {product.max_age} (eligibility.max_age)")
    if app.diabetes_type not in product.diabetes_types:
        found.append(f"the product enrols diabetes {', '.join(product.diabetes_types)}, not "
                     f"{app.diabetes_type} (eligibility.diabetes_types)")
    if not app.birth_year <= app.diagnosis_year <= today.year:
        found.append(f"diagnosis year {app.diagnosis_year} is not between the birth year and "
                     "this year")
    if product.name not in builtin_names():
        found.append(f"there is no product {product.name!r}: one of {', '.join(builtin_names())}")
    elif builtin_or_default(product.name).kind != kind_of(app.device):
        found.append(f"product {product.name} is priced on the other kind of device, not a "
                     f"{kind_of(app.device)}")
    granted = {c["purpose"] for c in app.consents if c["granted"]}
    for purpose in REQUIRED_CONSENTS:
        if purpose not in granted:
            found.append(f"the product is priced on glucose readings: it needs the consent "
                         f"{purpose!r}")
    if app.start_date is not None and app.start_date < today:
        found.append(f"the start date {app.start_date} has passed")
    return found


def record_consents(conn: Conn, policy_id: str, consents: list[dict[str, Any]], actor: str,
                    start: datetime) -> None:
    """Record the consents of the application in the consent register (privacy/consent.py),
    through the enrolment channel, in force from the policy's start (`start`, or now when that
    is later): the one place enrolment hands them over."""
    at = min(start, datetime.now(UTC))
    for c in consents:
        consent.record(conn, policy_id, str(c["purpose"]), bool(c["granted"]), actor,
                       "enrolment", at=at)


@dataclass(frozen=True)
class Outcome:
    application_id: int
    accepted: bool
    reasons: list[str]
    policy_id: str | None = None
    device_id: str | None = None
    term: terms.Term | None = None
    uploads: Credentials | None = None  # a Nightscout application's upload credentials

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"application_id": self.application_id,
                               "outcome": "accepted" if self.accepted else "refused",
                               "reasons": self.reasons, "policy_id": self.policy_id,
                               "device_id": self.device_id}
        if self.term is not None:
            out |= {"term_start": self.term.start.isoformat(),
                    "term_end": self.term.end.isoformat(), "frequency": self.term.frequency,
                    "instalment": self.term.instalment}
        return out


def apply(conn: Conn, app: Application, secret: str | None, actor: str,
          today: date | None = None, nightscout_key: str | None = None) -> Outcome:
    """Check and record an application; accepted: the policy, its device, its first term.
    `secret`: the device secret for the meter's broker password (None: the next sync-broker
    sets it). `nightscout_key`: the key upload credentials derive from, needed when the
    application uploads through Nightscout. The caller commits (a refusal is recorded too)."""
    today = today or datetime.now(UTC).date()
    product = product_for(app.product)
    reasons = refusals(app, product, today)
    body = json.dumps(app.as_json())
    if reasons:
        row = conn.execute("insert into policy_applications (body, outcome, reasons, actor) "
                           "values (%s, 'refused', %s, %s) returning application_id",
                           (body, reasons, actor)).fetchone()
        assert row is not None
        return Outcome(int(str(row[0])), False, reasons)
    number = conn.execute("select nextval('policy_number_seq')").fetchone()
    assert number is not None
    policy_id = f"POL-E-{int(str(number[0])):06d}"
    start = app.start_date or today + timedelta(days=1)
    conn.execute("insert into policies (policy_id, holder_name, birth_year, base_sum_insured, "
                 "timezone, start_date, ruleset_name) values (%s, %s, %s, %s, %s, %s, %s)",
                 (policy_id, app.holder_name, app.birth_year, product.base_sum_insured,
                  app.timezone, start, product.name))
    uploads = None
    if app.device == NIGHTSCOUT_MODEL:
        if nightscout_key is None:
            raise UserError("an application uploading through Nightscout needs the "
                            "deployment's nightscout key")
        uploads = provision(conn, nightscout_key, policy_id, start)  # nightscout/enrolment.py
        device_id = uploads.device_id
    else:
        device_id = f"{'CG' if app.device == 'cgm' else 'GM'}-E-{int(str(number[0])):06d}"
        add_devices(conn, [device_id], secret, DeviceKind(app.device))  # type: ignore[arg-type]
        conn.execute("insert into policy_devices (policy_id, device_id, bound_from) values "
                     "(%s, %s, %s)", (policy_id, device_id,
                                      datetime.combine(start - timedelta(days=2), time(), UTC)))
    conn.execute("insert into policy_events (policy_id, state, effective, actor, reason) "
                 "values (%s, 'applied', %s, %s, 'application received')",
                 (policy_id, today, actor))
    states.record(conn, policy_id, "active", start, actor, reason="application accepted")
    term = terms.open_first_term(conn, policy_id, app.frequency, actor, product)
    record_consents(conn, policy_id, app.consents, actor,
                    datetime.combine(start, time(), ZoneInfo(app.timezone)))
    row = conn.execute("insert into policy_applications (body, outcome, policy_id, actor) "
                       "values (%s, 'accepted', %s, %s) returning application_id",
                       (body, policy_id, actor)).fetchone()
    assert row is not None
    return Outcome(int(str(row[0])), True, [], policy_id, device_id, term, uploads)
