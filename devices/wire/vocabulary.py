"""The words of wire format v1 that every stage shares: units, meal context, sample type, source
and the GLS sensor status bits. No I/O and no other imports: pricing and the dashboard import
this module and nothing else of the wire format.

Facts and sources: docs/domain.md ("Units", "What a meter record carries").
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum, StrEnum

# 1 mmol/L = 18.0156 mg/dL (glucose molar mass 180.156 g/mol): docs/domain.md#units.
MGDL_PER_MMOL = 18.0156


class DeviceKind(StrEnum):
    """What a device is (the `devices.kind` column): it decides the LOINC codes of its readings
    and which ruleset prices a policy."""

    BGM = "bgm"  # fingerstick blood glucose meter
    CGM = "cgm"  # continuous glucose monitor: interstitial fluid, a reading every few minutes


class Unit(StrEnum):
    MMOL_L = "mmol/L"
    MG_DL = "mg/dL"


# The decimals a meter shows in each unit (docs/domain.md#units): readings keep at least these
# in their stored decimal, so one meter's values share an exponent (devices/wire/values.py).
UNIT_DECIMALS: dict[str, int] = {Unit.MMOL_L: 1, Unit.MG_DL: 0}


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
