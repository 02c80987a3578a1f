"""A policy's glucose records as an HL7 FHIR R4 Bundle (type `collection`). Pure: frames in, a
JSON-ready dict out; records/export.py reads the database and writes the file.

What the bundle holds (docs/fhir.md has the mapping and its sources):
- one pseudonymous Patient: no name, an identifier derived from the policy by a keyed hash
  (only the insurer, holding the key, can link it back), the birth year;
- one Device per meter or CGM bound to the policy (identifier = our device_id);
- one Observation per reading that pricing counts as valid (control solution and typed-in
  values are not patient observations and never are), in the unit the device sent, coded with
  LOINC by device kind and unit, its meal context as a note;
- for each CGM, the summary of the HL7 CGM implementation guide over the window: the
  time-in-ranges panel, mean glucose, GMI, CV, days of wear and % time active;
- one Consent per purpose the policyholder has chosen on (privacy/consent.py): permit or deny,
  opt-in or opt-out, since when, under which version of our text.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd

from kernel.vocabulary import DeviceKind, Meal, Unit

LOINC = "http://loinc.org"
CONSENT_SCOPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentscope"
ACT_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONSENT_PURPOSE_SYSTEM = "urn:glucover:consent-purpose"
CONSENT_TEXT_VERSION_URL = "urn:glucover:consent-text-version"
CONSENT_PURPOSE_TEXT = {
    "pricing": "readings change the sum insured",
    "care": "the care team is alerted and may contact the policyholder",
    "research": "pseudonymised data in actuarial back-tests and models",
}
UCUM = "http://unitsofmeasure.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DEVICE_ID_SYSTEM = "urn:glucover:device-id"
PSEUDONYM_SYSTEM = "urn:glucover:patient-pseudonym"
READING_SYSTEM = "urn:glucover:reading"  # device_id/seq/measured_at, the reading's identity
DEVICE_KIND_SYSTEM = "urn:glucover:device-kind"
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:glucover:fhir")

# LOINC of a glucose reading by device kind and the unit it was sent in (docs/fhir.md).
READING_CODES: dict[tuple[DeviceKind, Unit], tuple[str, str]] = {
    (DeviceKind.BGM, Unit.MG_DL): ("41653-7", "Glucose [Mass/volume] in Capillary blood by "
                                              "Glucometer"),
    (DeviceKind.BGM, Unit.MMOL_L): ("14743-9", "Glucose [Moles/volume] in Capillary blood by "
                                               "Glucometer"),
    (DeviceKind.CGM, Unit.MG_DL): ("99504-3", "Glucose [Mass/volume] in Interstitial fluid"),
    (DeviceKind.CGM, Unit.MMOL_L): ("105272-9", "Glucose [Moles/volume] in Interstitial fluid"),
}
DEVICE_KIND_TEXT = {DeviceKind.BGM: "Blood glucose meter",
                    DeviceKind.CGM: "Continuous glucose monitor"}
MEAL_TEXT = {Meal.FASTING: "fasting", Meal.PREPRANDIAL: "before a meal",
             Meal.POSTPRANDIAL: "after a meal", Meal.CASUAL: "casual (no meal context)",
             Meal.BEDTIME: "bedtime"}

# The HL7 CGM implementation guide's summary (STU 1): the times-in-ranges panel and its five
# bands, then the single figures. (LOINC, text, metrics column(s), UCUM unit)
TIR_PANEL = ("106793-3", "Continuous glucose monitoring time in ranges panel")
TIR_BANDS = (("104642-4", "Time in very low range (<54 mg/dL)"),
             ("104641-6", "Time in low range (54-69 mg/dL)"),
             ("97510-2", "Time in target range (70-180 mg/dL)"),
             ("104640-8", "Time in high range (181-250 mg/dL)"),
             ("104639-0", "Time in very high range (>250 mg/dL)"))
SUMMARY_FIGURES = (("97507-8", "Mean glucose (mass/volume) in interstitial fluid",
                    "mean_mgdl", "mg/dL"),
                   ("97506-0", "Glucose management indicator", "gmi", "%"),
                   ("104638-2", "Coefficient of variation of glucose", "cv", "%"),
                   ("104636-6", "Days of sensor wear", "days", "d"),
                   ("104637-4", "Percentage of time CGM active", "active_percent", "%"))


@dataclass(frozen=True)
class Subject:
    """Who the records are about, as far as the bundle may tell."""

    pseudonym: str
    birth_year: int | None


def pseudonym(key: bytes, policy_id: str) -> str:
    """A stable identifier for the policyholder that reveals nothing without `key`."""
    return hmac.new(key, f"fhir-patient:{policy_id}".encode(), hashlib.sha256).hexdigest()[:32]


def _uuid(*parts: object) -> str:
    return str(uuid.uuid5(_NAMESPACE, "/".join(str(p) for p in parts)))


def _coding(system: str, code: str, text: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}], "text": text}


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def effective(measured_at: pd.Timestamp, utc_offset_min: int) -> str:
    """The reading's instant with the offset its device was on: RFC 3339, like the wire."""
    zone = timezone(timedelta(minutes=int(utc_offset_min)))
    return measured_at.to_pydatetime().astimezone(zone).isoformat()


@dataclass(frozen=True)
class ConsentChoice:
    """A purpose's standing choice: given or withdrawn since `at`, under text `text_version`
    (0: the policy's contract, before consent records)."""

    purpose: str
    given: bool
    at: datetime
    text_version: int


def consent_entry(choice: ConsentChoice, patient_url: str, pseudonym_: str) -> dict[str, Any]:
    """A FHIR R4 Consent: the person's permit (opt-in) or deny (opt-out) for one purpose."""
    url = f"urn:uuid:{_uuid('consent', pseudonym_, choice.purpose)}"
    at = choice.at.astimezone(UTC).replace(microsecond=0).isoformat()
    return {"fullUrl": url, "resource": {
        "resourceType": "Consent", "id": url.removeprefix("urn:uuid:"), "status": "active",
        "scope": {"coding": [{"system": CONSENT_SCOPE_SYSTEM, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": LOINC, "code": "59284-0",
                                  "display": "Patient Consent"}]}],
        "patient": {"reference": patient_url}, "dateTime": at,
        "policyRule": {"coding": [{"system": ACT_CODE_SYSTEM,
                                   "code": "OPTIN" if choice.given else "OPTOUT"}]},
        "provision": {"type": "permit" if choice.given else "deny", "period": {"start": at},
                      "purpose": [{"system": CONSENT_PURPOSE_SYSTEM, "code": choice.purpose,
                                   "display": CONSENT_PURPOSE_TEXT[choice.purpose]}]},
        "extension": [{"url": CONSENT_TEXT_VERSION_URL,
                       "valueInteger": choice.text_version}]}}


def bundle(subject: Subject, devices: Iterable[tuple[str, DeviceKind]], readings: pd.DataFrame,
           summaries: pd.DataFrame, window: tuple[date, date],
           generated_at: datetime | None = None,
           consents: Iterable[ConsentChoice] = ()) -> dict[str, Any]:
    """The Bundle. `readings`: the valid readings to export, with device_id, seq, measured_at
    (UTC), utc_offset_min, value, unit, meal. `summaries`: pricing.cgm_metrics.metrics rows of
    the CGMs over `window` (first, last day inclusive). `consents`: each purpose's choice."""
    patient_url = f"urn:uuid:{_uuid('patient', subject.pseudonym)}"
    patient: dict[str, Any] = {
        "resourceType": "Patient", "id": patient_url.removeprefix("urn:uuid:"),
        "identifier": [{"system": PSEUDONYM_SYSTEM, "value": subject.pseudonym}]}
    if subject.birth_year:
        patient["birthDate"] = f"{subject.birth_year:04d}"
    entries = [{"fullUrl": patient_url, "resource": patient}]
    kinds: dict[str, DeviceKind] = {}
    for device_id, kind in devices:
        kinds[device_id] = kind
        url = _device_url(device_id)
        entries.append({"fullUrl": url, "resource": {
            "resourceType": "Device", "id": url.removeprefix("urn:uuid:"),
            "identifier": [{"system": DEVICE_ID_SYSTEM, "value": device_id}],
            "type": _coding(DEVICE_KIND_SYSTEM, str(kind), DEVICE_KIND_TEXT[kind]),
            "patient": {"reference": patient_url}}})
    entries += _reading_observations(readings, kinds, patient_url)
    for row in summaries.to_dict("records"):
        entries += _summary_observations({str(k): v for k, v in row.items()}, patient_url,
                                         window)
    entries += [consent_entry(c, patient_url, subject.pseudonym) for c in consents]
    stamp = (generated_at or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    return {"resourceType": "Bundle", "id": _uuid("bundle", subject.pseudonym, *window, stamp),
            "type": "collection", "timestamp": stamp.isoformat(), "entry": entries}


def _device_url(device_id: str) -> str:
    return f"urn:uuid:{_uuid('device', device_id)}"


def _reading_observations(readings: pd.DataFrame, kinds: dict[str, DeviceKind],
                          patient_url: str) -> list[dict[str, Any]]:
    out = []
    category = [{"coding": [{"system": CATEGORY, "code": "laboratory"}]}]
    ordered = readings.sort_values(["measured_at", "device_id", "seq"], kind="stable")
    values = ordered["value"].to_numpy(dtype=np.float64)
    seqs = ordered["seq"].to_numpy(dtype=np.int64)
    offsets = ordered["utc_offset_min"].to_numpy(dtype=np.int64)
    times = list(ordered["measured_at"])
    for i, (device_id, unit_name, meal_name) in enumerate(zip(
            ordered["device_id"].astype(str), ordered["unit"].astype(str),
            ordered["meal"].astype(str), strict=True)):
        unit = Unit(unit_name)
        code, text = READING_CODES[(kinds[device_id], unit)]
        measured, seq = pd.Timestamp(times[i]), int(seqs[i])
        url = f"urn:uuid:{_uuid('reading', device_id, seq, measured.isoformat())}"
        value = float(values[i])
        observation: dict[str, Any] = {
            "resourceType": "Observation", "id": url.removeprefix("urn:uuid:"),
            "identifier": [{"system": READING_SYSTEM,
                            "value": f"{device_id}/{seq}/{measured.isoformat()}"}],
            "status": "final", "category": category, "code": _coding(LOINC, code, text),
            "subject": {"reference": patient_url},
            "effectiveDateTime": effective(measured, int(offsets[i])),
            "valueQuantity": _quantity(int(value) if value.is_integer() else value, str(unit)),
            "device": {"reference": _device_url(device_id)}}
        meal = Meal(meal_name)
        if meal in MEAL_TEXT:
            observation["note"] = [{"text": f"Meal context: {MEAL_TEXT[meal]}"}]
        out.append({"fullUrl": url, "resource": observation})
    return out


def _summary_observations(m: dict[str, Any], patient_url: str, window: tuple[date, date]
                          ) -> list[dict[str, Any]]:
    device_id = str(m["device_id"])
    period = {"start": window[0].isoformat(), "end": window[1].isoformat()}
    common = {"status": "final",
              "category": [{"coding": [{"system": CATEGORY, "code": "laboratory"}]}],
              "subject": {"reference": patient_url}, "effectivePeriod": period,
              "device": {"reference": _device_url(device_id)}}
    low = m["tbr_below_70"] - m["tbr_below_54"]
    high = m["tar_above_180"] - m["tar_above_250"]
    bands = (m["tbr_below_54"], low, m["tir_70_180"], high, m["tar_above_250"])
    out = []
    url = f"urn:uuid:{_uuid('cgm-summary', device_id, *window, TIR_PANEL[0])}"
    out.append({"fullUrl": url, "resource": {
        "resourceType": "Observation", "id": url.removeprefix("urn:uuid:"), **common,
        "code": _coding(LOINC, *TIR_PANEL),
        "component": [{"code": _coding(LOINC, code, text),
                       "valueQuantity": _quantity(round(float(share), 2), "%")}
                      for (code, text), share in zip(TIR_BANDS, bands, strict=True)]}})
    for code, text, column, unit in SUMMARY_FIGURES:
        url = f"urn:uuid:{_uuid('cgm-summary', device_id, *window, code)}"
        value = float(m[column])
        out.append({"fullUrl": url, "resource": {
            "resourceType": "Observation", "id": url.removeprefix("urn:uuid:"), **common,
            "code": _coding(LOINC, code, text),
            "valueQuantity": _quantity(int(value) if unit == "d" else round(value, 2), unit)}})
    return out
