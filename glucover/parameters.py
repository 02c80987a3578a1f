"""Declared parameters: a frozen dataclass whose fields carry their own declaration (TOML
section and key, default, unit, bounds, allowed names, labels in English and Chinese, help).

Reading and writing TOML, validating each value against its declaration, editor forms and the
README's tables are generated from the declarations, so adding a parameter is one edit. Pricing
rulesets (pricing/ruleset.py) and the care team's alert rules (care/rules.py) are declared so.
"""

from __future__ import annotations

import tomllib
from dataclasses import Field, dataclass, field, fields, replace
from typing import Any, ClassVar, Self

import tomli_w

from glucover.errors import UserError

KINDS = ("bgm", "cgm")  # kernel.vocabulary.DeviceKind: what a parameter applies to


@dataclass(frozen=True)
class Parameter:
    """What a parameter is, for everything generated from the declarations."""

    section: str
    key: str
    unit: str
    label_en: str
    label_zh: str
    help: str
    low: float | None = None  # inclusive bounds of a number
    high: float | None = None
    choices: tuple[str, ...] = ()  # the names a list (or a name) parameter may hold
    kinds: tuple[str, ...] = KINDS  # the kinds of device it applies to

    @property
    def path(self) -> str:
        return f"{self.section}.{self.key}"

    def label(self, lang: str) -> str:
        return self.label_zh if lang == "zh" else self.label_en


def parameter(section: str, key: str, default: Any, *, label: tuple[str, str], help: str,
              unit: str = "", low: float | None = None, high: float | None = None,
              choices: tuple[str, ...] = (), kinds: tuple[str, ...] = KINDS) -> Any:
    """A dataclass field carrying its Parameter declaration."""
    declared = Parameter(section, key, unit, label[0], label[1], help, low, high, choices, kinds)
    return field(default=default, metadata={"parameter": declared})


def declared(cls: type, kind: str | None = None) -> tuple[Field[Any], ...]:
    """The fields of `cls` that are parameters, in declaration order (those for `kind`, when
    given)."""
    return tuple(f for f in fields(cls) if "parameter" in f.metadata and (
        kind is None or kind in f.metadata["parameter"].kinds))


def declaration(f: Field[Any]) -> Parameter:
    found: Parameter = f.metadata["parameter"]
    return found


def typed(f: Field[Any], value: Any, error: type[UserError]) -> Any:
    """A TOML value as the field's type (that of its default), or `error` naming it."""
    path, default = declaration(f).path, f.default
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise error(f"{path} must be a list of names")
        return tuple(value)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise error(f"{path} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise error(f"{path} must be a whole number, got {value!r}")
        return value
    if not isinstance(value, str):
        raise error(f"{path} must be text")
    return value


def problem(f: Field[Any], value: Any) -> str | None:
    """What is wrong with one parameter's value against its declaration, if anything."""
    p = declaration(f)
    if p.choices and isinstance(value, str):
        return None if value in p.choices else f"{p.path}: {value!r} is not one of " \
            f"{', '.join(p.choices)}"
    if p.choices:
        bad = [v for v in value if v not in p.choices]
        return f"{p.path}: {bad[0]!r} is not one of {', '.join(p.choices)}" if bad else None
    if p.low is not None and value < p.low:
        return f"{p.path} must be >= {p.low:g}"
    if p.high is not None and value > p.high:
        return f"{p.path} must be <= {p.high:g}"
    return None


def problems(obj: Any) -> list[str]:
    """Every declared parameter of `obj` outside its own declaration."""
    return [p for f in declared(type(obj)) if (p := problem(f, getattr(obj, f.name)))]


def to_toml(obj: Any) -> str:
    doc: dict[str, dict[str, Any]] = {}
    for f in declared(type(obj)):
        value = getattr(obj, f.name)
        doc.setdefault(declaration(f).section, {})[declaration(f).key] = (
            list(value) if isinstance(value, tuple) else value)
    return tomli_w.dumps(doc)


def from_toml(cls: type, text: str, error: type[UserError]) -> dict[str, Any]:
    """The constructor arguments of `cls` a TOML text sets, each typed; `error` names an
    unknown parameter or a value of the wrong type."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"not valid TOML: {exc}") from None
    by_path = {declaration(f).path: f for f in declared(cls)}
    kwargs: dict[str, Any] = {}
    unknown = []
    for section, table in doc.items():
        if not isinstance(table, dict):
            unknown.append(section)
            continue
        for key, value in table.items():
            f = by_path.get(f"{section}.{key}")
            if f is None:
                unknown.append(f"{section}.{key}")
            else:
                kwargs[f.name] = typed(f, value, error)
    if unknown:
        raise error(f"unknown parameters: {', '.join(unknown)}")
    return kwargs


def diff(old: Any, new: Any) -> list[tuple[str, Any, Any]]:
    """(parameter path, old value, new value) of every declared parameter that differs."""
    return [(declaration(f).path, getattr(old, f.name), getattr(new, f.name))
            for f in declared(type(old)) if getattr(old, f.name) != getattr(new, f.name)]


def markdown_table(defaults: Any, required: tuple[str, ...] = ()) -> str:
    """A README table of the declared parameters of `defaults`' class, with its values."""
    rows = ["| parameter | for | unit | default | bounds | meaning |",
            "|---|---|---|---|---|---|"]
    for f in declared(type(defaults)):
        p = declaration(f)
        value = getattr(defaults, f.name)
        shown = ", ".join(value) if isinstance(value, tuple) else f"{value}"
        bounds = (f"one of {', '.join(p.choices)}" if p.choices else
                  " ".join(part for part in (
                      f">= {p.low:g}" if p.low is not None else "",
                      f"<= {p.high:g}" if p.high is not None else "") if part).replace(
                          " <=", ", <="))
        shown = shown or ("(required)" if f.name in required else '""')
        rows.append(f"| `{p.path}` | {', '.join(p.kinds)} | {p.unit} | {shown} | {bounds} | "
                    f"{p.label_en}: {p.help} |")
    return "\n".join(rows) + "\n"


class Declared:
    """What a frozen dataclass of declared parameters with a `name` and a `version` (0 until
    published) gets: TOML in and out, and changes that are validated. Subclasses set `error`
    and define `validate`."""

    error: ClassVar[type[UserError]] = UserError

    def validate(self) -> Self:
        raise NotImplementedError

    def to_toml(self) -> str:
        return to_toml(self)

    @classmethod
    def from_toml(cls, text: str, version: int = 0) -> Self:
        kwargs = from_toml(cls, text, cls.error)
        if "name" not in kwargs:
            name = next(f for f in declared(cls) if f.name == "name")
            raise cls.error(f"{declaration(name).path} is missing")
        return cls(**kwargs, version=version).validate()  # type: ignore[call-arg]

    def with_parameters(self, **changes: Any) -> Self:
        return replace(self, **changes).validate()  # type: ignore[type-var]
