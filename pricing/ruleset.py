"""Rulesets: the parameters of the floating sum insured, loaded from TOML and validated.

The structure (validity -> qualifying reading -> day status -> clamped bonus -> weekly adherence)
is fixed by pricing/evaluator.py; a ruleset only sets its numbers. `default.toml` in
pricing/rulesets/ is the 糖小贝 ruleset.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

import tomli_w

from devices.wire import MGDL_PER_MMOL, Meal, Sample, Source, Status
from glucover.errors import UserError


class RulesetError(UserError):
    """A ruleset file or form is wrong; the message names the parameter."""


@dataclass(frozen=True)
class Ruleset:
    name: str
    description: str = ""
    version: int = 0  # 0: not published (a file or a draft)
    excluded_samples: tuple[str, ...] = ("control_solution",)
    allowed_sources: tuple[str, ...] = ("meter",)
    excluded_status: tuple[str, ...] = tuple(s.name for s in Status if s.name != "battery_low")
    min_mgdl: float = 20.0
    max_mgdl: float = 600.0
    future_tolerance_seconds: int = 300
    late_tolerance_seconds: int = 7 * 86400
    qualifying_meals: tuple[str, ...] = ("fasting", "preprandial")
    target_low: float = 4.4
    target_high: float = 7.0
    high_above: float = 10.0
    delta_in_target: float = 100.0
    delta_high: float = -100.0
    delta_out_of_target: float = 0.0
    delta_missed: float = 0.0
    bonus_min: float = -5000.0
    bonus_max: float = 20000.0
    block_days: int = 7
    min_measured_days: int = 5
    adherence_penalty: float = -200.0
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def min_mmol(self) -> float:
        return self.min_mgdl / MGDL_PER_MMOL

    @property
    def max_mmol(self) -> float:
        return self.max_mgdl / MGDL_PER_MMOL

    @property
    def excluded_status_mask(self) -> int:
        mask = 0
        for name in self.excluded_status:
            mask |= 1 << Status[name].value
        return mask

    def validate(self) -> Ruleset:
        problems = []

        def check(ok: bool, message: str) -> None:
            if not ok:
                problems.append(message)

        check(bool(self.name.strip()), "ruleset.name must not be empty")
        for value in self.excluded_samples:
            check(value in Sample._value2member_map_, f"validity.excluded_samples: {value!r} "
                  "is not a sample type")
        for value in self.allowed_sources:
            check(value in Source._value2member_map_, f"validity.allowed_sources: {value!r} "
                  "is not a source")
        for value in self.excluded_status:
            check(value in Status.__members__, f"validity.excluded_status: {value!r} is not a "
                  "GLS status name")
        for value in self.qualifying_meals:
            check(value in Meal._value2member_map_, f"qualifying.meals: {value!r} is not a "
                  "meal context")
        check(bool(self.qualifying_meals), "qualifying.meals must name at least one context")
        check(0 < self.min_mgdl < self.max_mgdl, "validity: need 0 < min_mgdl < max_mgdl")
        check(self.future_tolerance_seconds >= 0, "validity.future_tolerance_seconds >= 0")
        check(self.late_tolerance_seconds >= 0, "validity.late_tolerance_seconds >= 0")
        check(0 < self.target_low <= self.target_high, "bands: need 0 < target_low <= "
              "target_high")
        check(self.high_above >= self.target_high, "bands: high_above must be >= target_high")
        check(self.bonus_min <= 0 <= self.bonus_max, "bonus: need min <= 0 <= max")
        check(1 <= self.block_days <= 366, "adherence.block_days must be 1..366")
        check(0 <= self.min_measured_days <= self.block_days,
              "adherence.min_measured_days must be 0..block_days")
        if problems:
            raise RulesetError("; ".join(problems))
        return self

    # ------------------------------------------------------------ TOML

    def to_toml(self) -> str:
        doc = {
            "ruleset": {"name": self.name, "description": self.description},
            "validity": {
                "excluded_samples": list(self.excluded_samples),
                "allowed_sources": list(self.allowed_sources),
                "excluded_status": list(self.excluded_status),
                "min_mgdl": self.min_mgdl, "max_mgdl": self.max_mgdl,
                "future_tolerance_seconds": self.future_tolerance_seconds,
                "late_tolerance_seconds": self.late_tolerance_seconds,
            },
            "qualifying": {"meals": list(self.qualifying_meals)},
            "bands": {"target_low": self.target_low, "target_high": self.target_high,
                      "high_above": self.high_above},
            "deltas": {"in_target": self.delta_in_target, "high": self.delta_high,
                       "out_of_target": self.delta_out_of_target, "missed": self.delta_missed},
            "bonus": {"min": self.bonus_min, "max": self.bonus_max},
            "adherence": {"block_days": self.block_days,
                          "min_measured_days": self.min_measured_days,
                          "penalty": self.adherence_penalty},
        }
        return tomli_w.dumps(doc)

    @classmethod
    def from_toml(cls, text: str, version: int = 0) -> Ruleset:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RulesetError(f"not valid TOML: {exc}") from None
        known = {
            ("ruleset", "name"): "name", ("ruleset", "description"): "description",
            ("validity", "excluded_samples"): "excluded_samples",
            ("validity", "allowed_sources"): "allowed_sources",
            ("validity", "excluded_status"): "excluded_status",
            ("validity", "min_mgdl"): "min_mgdl", ("validity", "max_mgdl"): "max_mgdl",
            ("validity", "future_tolerance_seconds"): "future_tolerance_seconds",
            ("validity", "late_tolerance_seconds"): "late_tolerance_seconds",
            ("qualifying", "meals"): "qualifying_meals",
            ("bands", "target_low"): "target_low", ("bands", "target_high"): "target_high",
            ("bands", "high_above"): "high_above",
            ("deltas", "in_target"): "delta_in_target", ("deltas", "high"): "delta_high",
            ("deltas", "out_of_target"): "delta_out_of_target",
            ("deltas", "missed"): "delta_missed",
            ("bonus", "min"): "bonus_min", ("bonus", "max"): "bonus_max",
            ("adherence", "block_days"): "block_days",
            ("adherence", "min_measured_days"): "min_measured_days",
            ("adherence", "penalty"): "adherence_penalty",
        }
        kwargs: dict[str, Any] = {"version": version}
        unknown = []
        for section, table in doc.items():
            if not isinstance(table, dict):
                unknown.append(section)
                continue
            for key, value in table.items():
                attr = known.get((section, key))
                if attr is None:
                    unknown.append(f"{section}.{key}")
                else:
                    kwargs[attr] = value
        if unknown:
            raise RulesetError(f"unknown parameters: {', '.join(unknown)}")
        if "name" not in kwargs:
            raise RulesetError("ruleset.name is missing")
        types = {f.name: f.type for f in fields(cls)}
        for attr, value in list(kwargs.items()):
            kind = str(types[attr])
            if kind.startswith("tuple"):
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise RulesetError(f"{attr} must be a list of names")
                kwargs[attr] = tuple(value)
            elif kind == "float":
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise RulesetError(f"{attr} must be a number, got {value!r}")
                kwargs[attr] = float(value)
            elif kind == "int":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise RulesetError(f"{attr} must be a whole number, got {value!r}")
            elif kind == "str" and not isinstance(value, str):
                raise RulesetError(f"{attr} must be text")
        return cls(**kwargs).validate()

    def parameters(self) -> dict[str, Any]:
        """Flat parameter dict (for forms and diffs)."""
        out = asdict(self)
        out.pop("extra")
        return out

    def with_parameters(self, **changes: Any) -> Ruleset:
        return replace(self, **changes).validate()


def builtin_names() -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in resources.files("pricing.rulesets")
                  .iterdir() if p.name.endswith(".toml"))


def load_builtin(name: str) -> Ruleset:
    entry = resources.files("pricing.rulesets") / f"{name}.toml"
    if not entry.is_file():
        raise RulesetError(f"no built-in ruleset {name!r}; built-in: {', '.join(builtin_names())}")
    return Ruleset.from_toml(entry.read_text())


def load(name_or_file: str) -> Ruleset:
    """A ruleset from a TOML file path, or a built-in by name."""
    path = Path(name_or_file)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise RulesetError(f"ruleset file {path} does not exist")
        return Ruleset.from_toml(path.read_text())
    return load_builtin(name_or_file)


def diff(old: Ruleset, new: Ruleset) -> list[tuple[str, Any, Any]]:
    a, b = old.parameters(), new.parameters()
    return [(k, a[k], b[k]) for k in a if k != "version" and a[k] != b[k]]
