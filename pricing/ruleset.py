"""Rulesets: the parameters of the floating sum insured, declared once, loaded from TOML and
validated.

The structure (validity -> the day's evidence -> day status -> clamped bonus -> weekly adherence)
is fixed by pricing/evaluator.py; a ruleset only sets its numbers. A ruleset has a kind: `bgm`
rulesets judge a day by its first fasting fingerstick reading (`default.toml` in pricing/rulesets/
is the 糖小贝 ruleset), `cgm` rulesets by a day of continuous readings, its sensor coverage and
time in range (`cgm-default.toml`, the rules in pricing/cgm_rules.py). A parameter names the
kinds it applies to; the editor shows a ruleset only its own.

Each parameter is one field of `Ruleset`, declared with `parameter(...)`: its TOML section and
key, default, unit, bounds, allowed names, labels in English and Chinese and help. Reading and
writing TOML, validation, the dashboard's editor form and the README's table
(`glucover price parameters`) are all generated from these declarations, so adding a parameter
is one edit. A TOML file may leave a parameter out; it then takes the declared default.
"""

from __future__ import annotations

from dataclasses import Field, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from glucover import parameters
from glucover.errors import UserError
from kernel import glucose
from kernel.units import MGDL_PER_MMOL
from kernel.vocabulary import Meal, Sample, Source, Status, status_bits


class RulesetError(UserError):
    """A ruleset file or form is wrong; the message names the parameter."""


KINDS = parameters.KINDS  # what a ruleset prices
BGM, CGM = ("bgm",), ("cgm",)
# The shipped ruleset of each kind: what a new policy of that kind is priced by.
RULESET_OF_KIND = {"bgm": "default", "cgm": "cgm-default"}
Parameter = parameters.Parameter
parameter = parameters.parameter
declaration = parameters.declaration


_SAMPLES = tuple(s.value for s in Sample)
_SOURCES = tuple(s.value for s in Source)
_STATUSES = tuple(s.name for s in Status)
_MEALS = tuple(m.value for m in Meal)


@dataclass(frozen=True)
class Ruleset(parameters.Declared):
    error = RulesetError
    name: str = parameter("ruleset", "name", "", label=("Name", "名称"),
                          help="Identifies the ruleset; published versions are numbered per name.")
    description: str = parameter("ruleset", "description", "",
                                 label=("Description", "说明"), help="What the ruleset does.")
    kind: str = parameter("ruleset", "kind", "bgm", choices=KINDS, label=("Kind", "类型"),
                          help="bgm: priced on fingerstick readings; cgm: on continuous "
                          "glucose monitoring (time in range).")
    version: int = 0  # 0: not published (a file or a draft); set by publishing, not by TOML
    excluded_samples: tuple[str, ...] = parameter(
        "validity", "excluded_samples", ("control_solution",), choices=_SAMPLES,
        label=("Excluded samples", "排除的样本类型"),
        help="Sample types that never count (control solution is not blood).")
    allowed_sources: tuple[str, ...] = parameter(
        "validity", "allowed_sources", ("meter",), choices=_SOURCES,
        label=("Allowed sources", "允许的来源"),
        help="Only meter-sent readings count; manual entries do not.")
    excluded_status: tuple[str, ...] = parameter(
        "validity", "excluded_status", glucose.ERROR_STATUSES,
        choices=_STATUSES, label=("Excluded meter statuses", "排除的仪器状态"),
        help="GLS annunciations that void a reading (battery_low is harmless).")
    min_mgdl: float = parameter(
        "validity", "min_mgdl", 20.0, unit="mg/dL", low=0.0,
        label=("Meter range from", "仪器量程下限"),
        help="The device's measuring range; compared in mmol/L (mg/dL / "
        f"{MGDL_PER_MMOL}, unrounded).")
    max_mgdl: float = parameter(
        "validity", "max_mgdl", 600.0, unit="mg/dL", low=0.0,
        label=("Meter range to", "仪器量程上限"), help="Upper end of the meter's range.")
    future_tolerance_seconds: int = parameter(
        "validity", "future_tolerance_seconds", 300, unit="s", low=0,
        label=("Clock ahead tolerance", "时钟超前容差"),
        help="measured_at may be at most this far after received_at (meter clock ahead).")
    late_tolerance_seconds: int = parameter(
        "validity", "late_tolerance_seconds", 7 * 86400, unit="s", low=0,
        label=("Late sync tolerance", "延迟同步容差"),
        help="received_at may be at most this far after measured_at (late sync).")
    qualifying_meals: tuple[str, ...] = parameter(
        "qualifying", "meals", ("fasting", "preprandial"), choices=_MEALS, kinds=BGM,
        label=("Qualifying meal contexts", "计入的测量时段"),
        help="The first valid reading of the day in one of these contexts decides the day.")
    target_low: float = parameter(
        "bands", "target_low", 4.4, unit="mmol/L", low=0.0, kinds=BGM,
        label=("In target from", "达标下限"), help="in_target: target_low <= v <= target_high.")
    target_high: float = parameter(
        "bands", "target_high", 7.0, unit="mmol/L", low=0.0, kinds=BGM,
        label=("In target up to", "达标上限"), help="Upper end of the target band.")
    high_above: float = parameter(
        "bands", "high_above", 10.0, unit="mmol/L", low=0.0, kinds=BGM,
        label=("High above", "偏高阈值"),
        help="high: v > high_above; between the band and this: out_of_target.")
    delta_in_target: float = parameter(
        "deltas", "in_target", 100.0, unit="RMB", label=("Step when in target", "达标变动"),
        help="Change of the sum insured on an in-target day.")
    delta_high: float = parameter(
        "deltas", "high", -100.0, unit="RMB", label=("Step when high", "偏高变动"),
        help="Change on a high day.")
    delta_out_of_target: float = parameter(
        "deltas", "out_of_target", 0.0, unit="RMB",
        label=("Step when out of target", "未达标变动"), help="Change on an out-of-target day.")
    delta_missed: float = parameter(
        "deltas", "missed", 0.0, unit="RMB", label=("Step when missed", "未测量变动"),
        help="Change on a day without a qualifying reading (a CGM day: insufficient "
        "coverage).")
    delta_hypo_risk: float = parameter(
        "deltas", "hypo_risk", 0.0, unit="RMB", high=0.0, kinds=CGM,
        label=("Step on a hypoglycaemia day", "低血糖日变动"),
        help="Change on a day with clinically significant hypoglycaemia: never a reward.")
    slot_minutes: int = parameter(
        "cgm", "slot_minutes", 5, unit="min", low=1, high=60, kinds=CGM,
        label=("Coverage slot", "覆盖时段"),
        help="A day is cut into slots of this length from local midnight; a slot is covered "
        "when a valid reading lies in it.")
    min_coverage_percent: float = parameter(
        "cgm", "min_coverage_percent", 70.0, unit="%", low=0.0, high=100.0, kinds=CGM,
        label=("Sensor coverage needed", "所需佩戴覆盖率"),
        help="insufficient: covered slots below this share of the day's slots.")
    hypo_below_mgdl: float = parameter(
        "cgm", "hypo_below_mgdl", glucose.HYPO_LEVEL2.mgdl, unit="mg/dL", low=0.0, kinds=CGM,
        label=("Level 2 hypoglycaemia below", "二级低血糖阈值"),
        help="Readings below this are clinically significant hypoglycaemia.")
    hypo_max_percent: float = parameter(
        "cgm", "hypo_max_percent", 1.0, unit="%", low=0.0, high=100.0, kinds=CGM,
        label=("Hypoglycaemia share that voids a day", "低血糖占比上限"),
        help="hypo_risk: readings below the level 2 threshold make up at least this share.")
    range_low_mgdl: float = parameter(
        "cgm", "range_low_mgdl", glucose.TARGET_RANGE_MGDL[0], unit="mg/dL", low=0.0, kinds=CGM,
        label=("Time in range from", "目标范围下限"), help="In range: low <= v <= high.")
    range_high_mgdl: float = parameter(
        "cgm", "range_high_mgdl", glucose.TARGET_RANGE_MGDL[1], unit="mg/dL", low=0.0, kinds=CGM,
        label=("Time in range up to", "目标范围上限"), help="Upper end of the range.")
    in_range_min_percent: float = parameter(
        "cgm", "in_range_min_percent", 70.0, unit="%", low=0.0, high=100.0, kinds=CGM,
        label=("Time in range for a good day", "达标所需范围内占比"),
        help="in_target: readings in range make up at least this share.")
    very_high_above_mgdl: float = parameter(
        "cgm", "very_high_above_mgdl", glucose.HYPER_LEVEL2.mgdl, unit="mg/dL", low=0.0, kinds=CGM,
        label=("Very high above", "极高阈值"),
        help="Readings above this are level 2 hyperglycaemia.")
    very_high_min_percent: float = parameter(
        "cgm", "very_high_min_percent", 25.0, unit="%", low=0.0, high=100.0, kinds=CGM,
        label=("Very high share for a high day", "偏高日极高占比"),
        help="high: readings above the very high threshold make up at least this share.")
    bonus_min: float = parameter(
        "bonus", "min", -5000.0, unit="RMB", high=0.0, label=("Bonus floor", "奖励下限"),
        help="The running bonus is clamped to [min, max] after every day.")
    bonus_max: float = parameter(
        "bonus", "max", 20000.0, unit="RMB", low=0.0, label=("Bonus cap", "奖励上限"),
        help="The most the sum insured can rise above its base.")
    block_days: int = parameter(
        "adherence", "block_days", 7, unit="days", low=1, high=366,
        label=("Adherence block", "依从性周期"),
        help="Adherence is judged in blocks of this many days from the start date.")
    min_measured_days: int = parameter(
        "adherence", "min_measured_days", 5, unit="days", low=0,
        label=("Measured days needed", "所需测量天数"),
        help="Fewer days with a qualifying reading in a block costs the penalty.")
    adherence_penalty: float = parameter(
        "adherence", "penalty", -200.0, unit="RMB", high=0.0,
        label=("Weekly shortfall penalty", "周未达标扣减"),
        help="Added on a block's last day when it had too few measured days.")
    withdrawn_bonus: str = parameter(
        "consent", "withdrawn_bonus", "keep", choices=("keep", "base"),
        label=("Sum insured without consent", "撤回同意后的保额"),
        help="On days without the policyholder's consent to pricing (docs/privacy.md): keep "
        "the bonus as it stood, or return the sum insured to its base (0 bonus).")

    @property
    def min_mmol(self) -> float:
        return self.min_mgdl / MGDL_PER_MMOL

    @property
    def max_mmol(self) -> float:
        return self.max_mgdl / MGDL_PER_MMOL

    @property
    def excluded_status_mask(self) -> int:
        return status_bits(self.excluded_status)

    def validate(self) -> Ruleset:
        problems = parameters.problems(self)

        def check(ok: bool, message: str) -> None:
            if not ok:
                problems.append(message)

        # Rules that relate two parameters; each parameter's own bounds are declared above.
        check(bool(self.name.strip()), "ruleset.name must not be empty")
        check(bool(self.qualifying_meals), "qualifying.meals must name at least one context")
        check(self.min_mgdl < self.max_mgdl, "validity: need min_mgdl < max_mgdl")
        check(0 < self.target_low <= self.target_high, "bands: need 0 < target_low <= "
              "target_high")
        check(self.high_above >= self.target_high, "bands: high_above must be >= target_high")
        check(self.range_low_mgdl <= self.range_high_mgdl,
              "cgm: need range_low_mgdl <= range_high_mgdl")
        check(1440 % self.slot_minutes == 0, "cgm.slot_minutes must divide a day (1440 min)")
        check(self.min_measured_days <= self.block_days,
              "adherence.min_measured_days must be 0..block_days")
        if problems:
            raise RulesetError("; ".join(problems))
        return self

    def parameters(self) -> dict[str, Any]:
        """Flat parameter dict (for forms and diffs)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def declared_fields(kind: str | None = None) -> tuple[Field[Any], ...]:
    """The Ruleset fields that are parameters, in declaration order (those a ruleset of `kind`
    uses, when given)."""
    return parameters.declared(Ruleset, kind)


def markdown_table() -> str:
    """The README's table of ruleset parameters, generated from the declarations."""
    return parameters.markdown_table(Ruleset(), required=("name",))


def builtin_names() -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in resources.files("pricing.rulesets")
                  .iterdir() if p.name.endswith(".toml"))


def load_builtin(name: str) -> Ruleset:
    entry = resources.files("pricing.rulesets") / f"{name}.toml"
    if not entry.is_file():
        raise RulesetError(f"no built-in ruleset {name!r}; built-in: {', '.join(builtin_names())}")
    return Ruleset.from_toml(entry.read_text())


def builtin_or_default(name: str) -> Ruleset:
    """The built-in ruleset `name`, else `default`: what a policy naming `name` is priced by
    when no version of it is published."""
    try:
        return load_builtin(name)
    except RulesetError:
        return load_builtin("default")


def load(name_or_file: str) -> Ruleset:
    """A ruleset from a TOML file path, or a built-in by name."""
    path = Path(name_or_file)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise RulesetError(f"ruleset file {path} does not exist")
        return Ruleset.from_toml(path.read_text())
    return load_builtin(name_or_file)


def diff(old: Ruleset, new: Ruleset) -> list[tuple[str, Any, Any]]:
    """(parameter path, published, draft) of every parameter the draft changes."""
    return parameters.diff(old, new)
