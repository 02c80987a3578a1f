"""The words every stage shares: device kinds, units, meal context, sample type, source and the
GLS sensor status bits (wire format v1 and the schema spell them so). No I/O and no imports of
ours.

Facts and sources: docs/domain.md ("Units", "What a meter record carries").
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum, StrEnum


class DeviceKind(StrEnum):
    """What a device is (the `devices.kind` column): it decides the LOINC codes of its readings
    and which ruleset prices a policy."""

    BGM = "bgm"  # fingerstick blood glucose meter
    CGM = "cgm"  # continuous glucose monitor: interstitial fluid, a reading every few minutes


# The `devices.model` of a policy's Nightscout uploads (nightscout/): readings that come over
# HTTP, never over MQTT, so the device has no broker account.
NIGHTSCOUT_MODEL = "nightscout"


class Unit(StrEnum):
    MMOL_L = "mmol/L"
    MG_DL = "mg/dL"


class Meal(StrEnum):
    FASTING = "fasting"
    PREPRANDIAL = "preprandial"
    POSTPRANDIAL = "postprandial"
    CASUAL = "casual"
    BEDTIME = "bedtime"
    UNKNOWN = "unknown"


class Sample(StrEnum):
    CAPILLARY_WHOLE_BLOOD = "capillary_whole_blood"
    CAPILLARY_PLASMA = "capillary_plasma"
    VENOUS_WHOLE_BLOOD = "venous_whole_blood"
    VENOUS_PLASMA = "venous_plasma"
    ARTERIAL_WHOLE_BLOOD = "arterial_whole_blood"
    ARTERIAL_PLASMA = "arterial_plasma"
    INTERSTITIAL_FLUID = "interstitial_fluid"
    CONTROL_SOLUTION = "control_solution"


class Source(StrEnum):
    METER = "meter"
    MANUAL = "manual"


class Status(IntEnum):
    """GLS sensor status annunciation: the bit number of each flag in the 16-bit field."""

    battery_low = 0
    sensor_malfunction = 1
    sample_size_insufficient = 2
    strip_insertion_error = 3
    strip_type_incorrect = 4
    result_too_high = 5
    result_too_low = 6
    temperature_too_high = 7
    temperature_too_low = 8
    read_interrupted = 9
    general_device_fault = 10
    time_fault = 11


def status_bits(names: Iterable[str]) -> int:
    bits = 0
    for name in names:
        bits |= 1 << Status[name].value
    return bits


def status_names(bits: int) -> list[str]:
    return [s.name for s in Status if bits >> s.value & 1]
