"""Alert rules: what makes a reading dangerous enough to tell the care team, every threshold a
declared parameter (glucover/parameters.py), loaded from TOML and published in versions by the
care team lead (`glucover alerts rules`). The shipped rules are `care/default-rules.toml`; the
clinical thresholds and their sources are in docs/care.md.

Glucose thresholds are in mmol/L, compared with a reading's value_mmol (mg/dL / MGDL_PER_MMOL,
unrounded); their defaults are the consensus levels of kernel/glucose.py where there is one
(16.7 mmol/L, 300 mg/dL, is the care team's own).
"""

from __future__ import annotations

from dataclasses import Field, dataclass
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from glucover import parameters
from glucover.errors import UserError
from glucover.parameters import parameter
from kernel import glucose
from kernel.vocabulary import Status, status_bits

CGM = ("cgm",)
SEVERITIES = ("urgent", "high", "medium", "low")  # the queue's order
_STATUSES = tuple(s.name for s in Status)


class AlertRulesError(UserError):
    """An alert rules file or form is wrong; the message names the parameter."""


def _severity(rule: str, default: str) -> Any:
    return parameter(rule, "severity", default, choices=SEVERITIES,
                     label=("Severity", "严重程度"), help="Where the alert sorts in the queue.")


@dataclass(frozen=True)
class AlertRules(parameters.Declared):
    error = AlertRulesError
    name: str = parameter("rules", "name", "", label=("Name", "名称"),
                          help="Identifies the rules; published versions are numbered per name.")
    description: str = parameter("rules", "description", "", label=("Description", "说明"),
                                 help="What the rules are for.")
    version: int = 0  # 0: not published; set by publishing

    level2_below: float = parameter(
        "hypo_level2", "below_mmol", glucose.HYPO_LEVEL2.mmol, unit="mmol/L", low=0.0,
        label=("Level 2 hypoglycaemia below", "二级低血糖阈值"),
        help="A valid fingerstick reading below this raises the alert at once.")
    level2_minutes: int = parameter(
        "hypo_level2", "cgm_minutes", 15, unit="min", low=0, kinds=CGM,
        label=("CGM: minutes below", "CGM：持续分钟"),
        help="A CGM raises it when its readings stay below the threshold this long.")
    level2_severity: str = _severity("hypo_level2", "urgent")

    level1_below: float = parameter(
        "hypo_level1_repeated", "below_mmol", glucose.HYPO_LEVEL1.mmol, unit="mmol/L", low=0.0,
        label=("Level 1 hypoglycaemia below", "一级低血糖阈值"),
        help="Readings below this are level 1 hypoglycaemia.")
    level1_count: int = parameter(
        "hypo_level1_repeated", "count", 3, low=1,
        label=("Episodes", "次数"),
        help="This many level 1 episodes (a fingerstick reading; a CGM run of cgm_minutes) "
        "within `days` raise the alert.")
    level1_days: int = parameter(
        "hypo_level1_repeated", "days", 7, unit="days", low=1, high=60,
        label=("Within days", "天数内"), help="The window the episodes fall in.")
    level1_minutes: int = parameter(
        "hypo_level1_repeated", "cgm_minutes", 15, unit="min", low=0, kinds=CGM,
        label=("CGM: minutes per episode", "CGM：每次持续分钟"),
        help="A CGM episode is a run below the threshold at least this long.")
    level1_severity: str = _severity("hypo_level1_repeated", "high")

    hyper_above: float = parameter(
        "hyper_severe", "above_mmol", 16.7, unit="mmol/L", low=0.0,
        label=("Severe hyperglycaemia above", "严重高血糖阈值"),
        help="A valid fingerstick reading above this raises the alert at once.")
    hyper_cgm_above: float = parameter(
        "hyper_severe", "cgm_above_mmol", glucose.HYPER_LEVEL2.mmol, unit="mmol/L", low=0.0,
        kinds=CGM,
        label=("CGM: above", "CGM：高于"), help="A CGM raises it when its readings stay above "
        "this for cgm_minutes.")
    hyper_minutes: int = parameter(
        "hyper_severe", "cgm_minutes", 120, unit="min", low=0, kinds=CGM,
        label=("CGM: minutes above", "CGM：持续分钟"), help="How long a CGM run must last.")
    hyper_severity: str = _severity("hyper_severe", "high")

    rise_mmol: float = parameter(
        "rising", "rise_mmol", 1.0, unit="mmol/L", low=0.0,
        label=("Rise of the weekly mean", "周均值升幅"),
        help="The mean of the last `days` of qualifying readings (fingerstick: the pricing "
        "ruleset's qualifying meals; CGM: every valid reading) up by this much against the "
        "`days` before.")
    rise_days: int = parameter(
        "rising", "days", 7, unit="days", low=1, high=60,
        label=("Window", "窗口"), help="Length of each of the two windows compared.")
    rise_min_readings: int = parameter(
        "rising", "min_readings", 3, low=1,
        label=("Readings needed per window", "每窗口所需读数"),
        help="Fewer qualifying readings in either window: no judgement.")
    rise_severity: str = _severity("rising", "medium")

    lapsed_days: int = parameter(
        "lapsed", "days", 3, unit="days", low=1, high=60,
        label=("No valid reading for", "未测量天数"),
        help="A policy in force without a valid reading this long raises the alert and a "
        "measuring reminder.")
    lapsed_severity: str = _severity("lapsed", "medium")

    error_count: int = parameter(
        "device_trouble", "error_count", 3, low=1,
        label=("Error readings", "错误读数"),
        help="This many readings carrying an error status (the statuses below) within "
        "`error_hours`.")
    error_hours: int = parameter(
        "device_trouble", "error_hours", 24, unit="h", low=1, high=24 * 14,
        label=("Within hours", "小时内"), help="The window the error readings fall in.")
    error_statuses: tuple[str, ...] = parameter(
        "device_trouble", "error_statuses", glucose.ERROR_STATUSES,
        choices=_STATUSES, label=("Error statuses", "错误状态"),
        help="Meter annunciations that count as errors.")
    clock_drift_seconds: int = parameter(
        "device_trouble", "clock_drift_seconds", 600, unit="s", low=0,
        label=("Clock drift beyond", "时钟偏差超过"),
        help="The meter's clock, as its status reports, further than this from true time.")
    battery_below_percent: int = parameter(
        "device_trouble", "battery_below_percent", 10, unit="%", low=0, high=100,
        label=("Battery below", "电量低于"),
        help="A status reporting less battery than this; a reading flagged battery_low too.")
    device_severity: str = _severity("device_trouble", "low")

    notice_max_age_hours: int = parameter(
        "notices", "max_age_hours", 24, unit="h", low=1,
        label=("Notify for readings younger than", "通知的读数时效"),
        help="A new alert tells the policyholder only when the reading that raised it was "
        "measured this recently (history synced late still reaches the care team).")

    max_gap_minutes: int = parameter(
        "cgm", "max_gap_minutes", 20, unit="min", low=1, kinds=CGM,
        label=("Longest gap within a run", "连续段最大间隔"),
        help="Two CGM readings further apart than this do not belong to one run.")

    # ------------------------------------------------------------ derived

    def severity(self, rule: str) -> str:
        return str(getattr(self, {
            "hypo_level2": "level2_severity", "hypo_level1_repeated": "level1_severity",
            "hyper_severe": "hyper_severity", "rising": "rise_severity",
            "lapsed": "lapsed_severity", "device_trouble": "device_severity"}[rule]))

    @property
    def error_mask(self) -> int:
        return status_bits(self.error_statuses)

    def lookback(self, rule: str) -> timedelta:
        """How far before a new reading a streaming rule must see readings to judge it."""
        gap = timedelta(minutes=self.max_gap_minutes)
        return {
            "hypo_level2": timedelta(minutes=self.level2_minutes) + gap,
            "hyper_severe": timedelta(minutes=self.hyper_minutes) + gap,
            "hypo_level1_repeated": timedelta(days=self.level1_days),
            "device_trouble": timedelta(hours=self.error_hours),
        }[rule]

    def evidence_window(self, rule: str) -> timedelta:
        """The span of an alert's readings, ending at its newest, that shows it: the readings
        a streaming rule judges it on (its look-back), a rise's last window. An open alert
        gathers the evidence of each later episode; older readings are counted, not listed."""
        if rule == "rising":
            return timedelta(days=self.rise_days)
        if rule == "lapsed":  # judged on no reading
            return timedelta(days=self.lapsed_days)
        return self.lookback(rule)

    # ------------------------------------------------------------ TOML

    def validate(self) -> AlertRules:
        problems = parameters.problems(self)
        if not self.name.strip():
            problems.append("rules.name must not be empty")
        if self.level2_below > self.level1_below:
            problems.append("hypo_level2.below_mmol must not be above "
                            "hypo_level1_repeated.below_mmol")
        if self.hyper_cgm_above > self.hyper_above:
            problems.append("hyper_severe: cgm_above_mmol must not be above above_mmol")
        if problems:
            raise AlertRulesError("; ".join(problems))
        return self


def declared_fields(kind: str | None = None) -> tuple[Field[Any], ...]:
    return parameters.declared(AlertRules, kind)


def markdown_table() -> str:
    """The README's table of alert rule parameters, generated from the declarations."""
    return parameters.markdown_table(AlertRules(), required=("name",))


def builtin() -> AlertRules:
    return AlertRules.from_toml((resources.files("care") / "default-rules.toml").read_text())


def load(path: str | None) -> AlertRules:
    """Rules from a TOML file, or the shipped ones."""
    if path is None:
        return builtin()
    file = Path(path)
    if not file.is_file():
        raise AlertRulesError(f"alert rules file {file} does not exist")
    return AlertRules.from_toml(file.read_text())
