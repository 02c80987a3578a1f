"""A product's policy terms: term and waiting period, premiums and lapse, what renewal does with
the bonus, who may enrol and what claims it covers. Declared parameters (glucover/parameters.py)
like the pricing rulesets', so the README's table (`glucover policies parameters`) and any form
come from these declarations. A product is named after the ruleset that prices its policies
(`default`: fingerstick meters; `cgm-default`: continuous monitoring); a product with no TOML
file of its own in policies/products/ takes the declared defaults."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

from glucover import parameters
from glucover.errors import UserError
from policies.diagnoses import CODES

parameter = parameters.parameter

BONUS_AT_RENEWAL = ("carried", "reset", "partly_carried")
DIABETES_TYPES = ("type1", "type2", "other")
FREQUENCIES = ("monthly", "yearly")


class ProductError(UserError):
    """A product file is wrong; the message names the parameter."""


def _age(section: str, key: str, default: int, label: tuple[str, str], help: str) -> Any:
    """An age parameter (years, 0..120), as care/rules.py declares its severities."""
    return parameter(section, key, default, unit="years", low=0, high=120, label=label,
                     help=help)


def _yearly(band: int, default: float, ordinal: tuple[str, str], applies: str) -> Any:
    """The yearly premium of one age band."""
    return parameter("premiums", f"yearly_band_{band}", default, unit="RMB", low=0.0,
                     label=(f"Yearly premium, {ordinal[0]} band",
                            f"年缴保费（{ordinal[1]}年龄段）"),
                     help=f"Yearly premium {applies}.")


@dataclass(frozen=True)
class Product(parameters.Declared):
    error = ProductError
    name: str = parameter("product", "name", "", label=("Product", "产品"),
                          help="The ruleset that prices the product's policies.")
    version: int = 0
    base_sum_insured: float = parameter(
        "cover", "base_sum_insured", 20000.0, unit="RMB", low=1.0,
        label=("Base sum insured", "基本保额"),
        help="The sum insured a new policy starts with; its ledger's bonus floats on top.")
    term_months: int = parameter(
        "term", "months", 12, unit="months", low=1, high=60, label=("Term", "保险期间"),
        help="A term's length; a renewal starts the next one the day after it ends.")
    waiting_period_days: int = parameter(
        "term", "waiting_period_days", 90, unit="days", low=0, high=730,
        label=("Waiting period", "等待期"),
        help="Days from the policy's start before a complication is covered; a claim for an "
        "event in them is flagged and cannot be approved.")
    grace_days: int = parameter(
        "premiums", "grace_days", 30, unit="days", low=0, high=120,
        label=("Grace period", "宽限期"),
        help="A premium unpaid this many days after it fell due lapses the policy: its ledger "
        "stops moving.")
    reinstatement_days: int = parameter(
        "premiums", "reinstatement_days", 60, unit="days", low=0, high=730,
        label=("Reinstatement window", "复效期"),
        help="A lapsed policy is reinstated, from the day after, by a payment that clears its "
        "arrears within this many days of the lapse (0: never); at most the two years of the "
        "PRC Insurance Law Art. 37.")
    band_2_from: int = _age("premiums", "band_2_from", 40, (
        "Second age band from", "第二年龄段起"),
        "Age (in the year the term starts) from which the second band's premium applies.")
    band_3_from: int = _age("premiums", "band_3_from", 60, (
        "Third age band from", "第三年龄段起"), "Likewise for the third band.")
    yearly_band_1: float = _yearly(1, 1200.0, ("first", "第一"), "below band_2_from")
    yearly_band_2: float = _yearly(2, 1800.0, ("second", "第二"), "from band_2_from")
    yearly_band_3: float = _yearly(3, 2600.0, ("third", "第三"), "from band_3_from")
    monthly_loading: float = parameter(
        "premiums", "monthly_loading", 0.05, unit="fraction", low=0.0, high=1.0,
        label=("Monthly loading", "月缴附加"),
        help="Paying monthly costs this much more: a month is yearly / 12 x (1 + loading).")
    bonus_at_renewal: str = parameter(
        "renewal", "bonus", "carried", choices=BONUS_AT_RENEWAL,
        label=("Bonus at renewal", "续保时的奖励保额"),
        help="carried: the new term opens with the last day's bonus; reset: with none; "
        "partly_carried: with carried_share of a positive bonus (a negative one is carried "
        "whole).")
    carried_share: float = parameter(
        "renewal", "carried_share", 0.5, unit="fraction", low=0.0, high=1.0,
        label=("Share carried", "结转比例"), help="With bonus = partly_carried.")
    premium_adjustment: str = parameter(
        "renewal", "premium_adjustment", "off", choices=("off", "on"),
        label=("Premium adjustment at renewal", "续保保费调整"),
        help="on: the next term's premium moves by the last term's status, as Vitality / "
        "AIA Premium Flex do (docs/policies.md).")
    adjustment_best: float = parameter(
        "renewal", "adjustment_best", -0.02, unit="fraction", low=-0.25, high=0.0,
        label=("Adjustment, every day in target", "全部达标的调整"),
        help="Premium change for a term whose measured days were all in target; the change "
        "is linear in the in-target share between this and adjustment_worst.")
    adjustment_worst: float = parameter(
        "renewal", "adjustment_worst", 0.02, unit="fraction", low=0.0, high=0.25,
        label=("Adjustment, no day in target", "全部未达标的调整"),
        help="Premium change for a term with no in-target day.")
    adjustment_cap: float = parameter(
        "renewal", "adjustment_cap", 0.10, unit="fraction", low=0.0, high=0.5,
        label=("Cumulative adjustment cap", "累计调整上限"),
        help="The adjustments of all renewals together stay within +- this.")
    min_age: int = _age("eligibility", "min_age", 18, ("Youngest applicant", "最低投保年龄"),
                        "Age in the year of application.")
    max_age: int = _age("eligibility", "max_age", 70, ("Oldest applicant", "最高投保年龄"),
                        "Age in the year of application.")
    diabetes_types: tuple[str, ...] = parameter(
        "eligibility", "diabetes_types", ("type1", "type2"), choices=DIABETES_TYPES,
        label=("Diabetes types", "糖尿病类型"), help="The types of diabetes the product enrols.")
    covered_diagnoses: tuple[str, ...] = parameter(
        "claims", "covered_diagnoses", CODES, choices=CODES,
        label=("Covered diagnoses", "保障的诊断"),
        help="ICD-10 codes a claim may be filed for (policies/diagnoses.py, docs/claims.md).")

    def validate(self) -> Product:
        problems = parameters.problems(self)
        if not self.name.strip():
            problems.append("product.name must not be empty")
        if not self.band_2_from <= self.band_3_from:
            problems.append("premiums: need band_2_from <= band_3_from")
        if not self.min_age <= self.max_age:
            problems.append("eligibility: need min_age <= max_age")
        if problems:
            raise ProductError("; ".join(problems))
        return self

    def bands(self) -> list[tuple[int, int | None, float]]:
        """The premium table's age bands: (first age, last age or None, yearly premium); the
        one home of the bands, for the premium of an age and the printed table alike."""
        return [(0, self.band_2_from - 1, self.yearly_band_1),
                (self.band_2_from, self.band_3_from - 1, self.yearly_band_2),
                (self.band_3_from, None, self.yearly_band_3)]

    def yearly_premium(self, age: int) -> float:
        """The yearly premium of an age (in the year the term starts): its band's."""
        return next(yearly for first, last, yearly in self.bands()
                    if age >= first and (last is None or age <= last))

    def premium(self, age: int, frequency: str) -> float:
        """One instalment: the yearly premium, or a month of it with the monthly loading."""
        yearly = self.yearly_premium(age)
        return round(yearly if frequency == "yearly" else
                     yearly / 12 * (1 + self.monthly_loading), 2)


def product_for(name: str) -> Product:
    """The product of policies priced by ruleset `name`: its file, else the defaults."""
    entry = resources.files("policies.products") / f"{name}.toml"
    if entry.is_file():
        return Product.from_toml(entry.read_text())
    return Product(name=name).validate()


def markdown_table() -> str:
    return parameters.markdown_table(Product(name="default"), required=("name",))
