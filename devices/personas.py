"""Who the simulated policyholders are: glycaemic control, habits, and the ways some game rules.

All glucose figures are mmol/L. Means and spreads follow the clinical facts in
docs/domain.md#clinical-thresholds (fasting target 4.4-7.0, high above 10.0; post-meal rise of
2-4 mmol/L).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Persona:
    name: str
    weight: float  # share of a portfolio
    fasting_start: float  # mean fasting glucose on day 0
    fasting_end: float  # ... on the last simulated day (linear trend)
    day_sd: float  # day-to-day spread of fasting glucose
    adherence_start: float  # probability of a fasting measurement on a day
    adherence_end: float
    hypo_rate: float = 0.01  # chance of a hypo (casual reading < 3.9) on a day
    control_solution_rate: float = 0.0  # days the first test uses control solution
    retest: bool = False  # re-measures until in target
    manual_rate: float = 0.0  # days with a typed-in, flattering value
    clock_backdate_rate: float = 0.0  # missed days refilled with the clock set back a day
    gamer: bool = False
    over_treats: bool = False  # chases the in-target reward into hypoglycaemia (a safety case)


PERSONAS: tuple[Persona, ...] = (
    Persona("well_controlled", 0.25, 6.0, 6.0, 0.6, 0.93, 0.93),
    # Aims for the bottom of the target band to earn every reward, over-treats (more insulin,
    # skipped snacks) and goes low most weeks: never a gamer of the rules, a safety case. Carved
    # out of well_controlled's share right after it, so the other personas' draws stay put.
    Persona("over_treater", 0.05, 4.9, 4.9, 0.6, 0.95, 0.95, hypo_rate=0.35,
            over_treats=True),
    Persona("improving", 0.15, 9.5, 6.4, 1.0, 0.80, 0.90),
    Persona("deteriorating", 0.15, 6.6, 10.8, 1.0, 0.85, 0.70),
    Persona("erratic", 0.10, 8.0, 8.0, 2.6, 0.70, 0.70, hypo_rate=0.05),
    Persona("lapsing", 0.10, 7.0, 7.4, 1.0, 0.92, 0.15),
    Persona("gamer_control_solution", 0.05, 9.6, 9.6, 1.2, 0.80, 0.80,
            control_solution_rate=0.7, gamer=True),
    Persona("gamer_retester", 0.05, 8.4, 8.4, 1.6, 0.85, 0.85, retest=True, gamer=True),
    Persona("gamer_manual", 0.05, 9.8, 9.8, 1.2, 0.60, 0.60, manual_rate=0.8, gamer=True),
    Persona("gamer_clock", 0.05, 6.2, 6.2, 0.8, 0.55, 0.55, clock_backdate_rate=0.8,
            gamer=True),
)
