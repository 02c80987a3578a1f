"""A form input per declared parameter (glucover/parameters.py): the ruleset editor and the
alert rules editor are both generated from their declarations.

A form edits one published version of one ruleset (or of the alert rules): its widgets are
keyed by that name and version (`form_scope`). Streamlit keeps a keyed widget's value for as
long as the key is shown, whatever `value=` says; keys shared by every ruleset carried one
ruleset's values into the next one opened, and a version someone else published meanwhile
would be edited from the inputs of the one before."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import Field
from typing import Any

import pandas as pd
import streamlit as st

from dashboard.i18n import TEXT, t
from glucover.parameters import declaration, declared, diff
from kernel.vocabulary import Meal

Words = Callable[[str], str]  # a section or an allowed name, as a person reads it


def form_scope(prefix: str, base: Any) -> str:
    """The prefix of every widget key of a form editing `base`: its name and version."""
    return f"{prefix}:{base.name}:v{base.version}"


def widget_key(scope: str, field_name: str) -> str:
    return f"{scope}:{field_name}"


def _same(name: str) -> str:
    return name


def parameter_inputs(base: Any, fields: Sequence[Field[Any]], lang: str = "en",
                     prefix: str = "rs", section_title: Words = _same,
                     choice_label: Words = _same) -> dict[str, Any]:
    """One input per parameter of `fields`, with its label (in the page's language), unit,
    bounds and help, holding `base`'s values, keyed by `form_scope(prefix, base)`: a heading
    per section (`section_title` names it), its numbers three to a row, then its names (each
    allowed name as `choice_label` says it)."""
    scope = form_scope(prefix, base)
    values: dict[str, Any] = {}
    sections = list(dict.fromkeys(declaration(f).section for f in fields))
    for section in sections:
        title = section_title(section)
        st.markdown(f"**{title}**")
        own = [f for f in fields if declaration(f).section == section]
        numbers = [f for f in own if not declaration(f).choices]
        # A row of three at a time, so a phone (columns stacked) keeps the declared order.
        for row in range(0, len(numbers), 3):
            for col, f in zip(st.columns(3), numbers[row:row + 3], strict=False):
                p, current = declaration(f), getattr(base, f.name)
                unit = unit_words(p.unit, lang)
                label = f"{p.label(lang)} ({unit})" if unit else p.label(lang)
                whole = isinstance(f.default, int)
                kind: type = int if whole else float
                value = col.number_input(
                    label, value=kind(current), step=kind(1 if whole else 0.1), help=p.help,
                    min_value=None if p.low is None else kind(p.low),
                    max_value=None if p.high is None else kind(p.high),
                    key=widget_key(scope, f.name))
                values[f.name] = kind(value)
        for f in own:
            p, current = declaration(f), getattr(base, f.name)
            if p.choices and isinstance(current, str):
                values[f.name] = st.selectbox(
                    f"{p.label(lang)} · {title}", list(p.choices),
                    index=list(p.choices).index(current), help=p.help,
                    format_func=choice_label, key=widget_key(scope, f.name))
            elif p.choices:
                values[f.name] = tuple(st.multiselect(
                    p.label(lang), list(p.choices), list(current), help=p.help,
                    format_func=choice_label, key=widget_key(scope, f.name)))
    return values


def unit_words(unit: str, lang: str) -> str:
    """A declared unit as the page's language writes it (RMB: 元; mmol/L stays)."""
    key = f"form_unit_{unit}"
    return t(key, lang) if key in TEXT else unit


def shown(value: Any, unit: str = "", choice_label: Words = _same) -> str:
    """A parameter's value as a person reads it: names in words, numbers with their unit (as
    `unit_words` gives it)."""
    if isinstance(value, tuple):
        return ", ".join(choice_label(v) for v in value) or "—"
    if isinstance(value, str):
        return choice_label(value)
    number = f"{value:g}" if isinstance(value, float) else f"{value}"
    return f"{number} {unit}" if unit else number


def changes(base: Any, candidate: Any, lang: str, section_heading: str,
            section_title: Words = _same, choice_label: Words = _same) -> pd.DataFrame:
    """What `candidate` changes against `base` (glucover.parameters.diff), a row per
    parameter: its section and label in words, the value before and after, its TOML name.
    No rows when nothing changed."""
    by_path = {declaration(f).path: f for f in declared(type(base))}
    rows = []
    for path, before, after in diff(base, candidate):
        p = declaration(by_path[path])
        rows.append((section_title(p.section), p.label(lang),
                     shown(before, unit_words(p.unit, lang), choice_label),
                     shown(after, unit_words(p.unit, lang), choice_label), path))
    # The file's name last: on a phone the values are what fits.
    return pd.DataFrame(rows, columns=[section_heading, t("form_parameter", lang),
                                       t("form_before", lang), t("form_after", lang),
                                       t("form_toml", lang)])


_CHOICE_KEYS = ("severity_{}", "meter_status_{}", "sample_{}", "source_{}", "withdrawn_{}")
_MEALS = frozenset(m.value for m in Meal)


def choice_words(lang: str) -> Words:
    """The allowed names of the declarations in words: severities, meter statuses, samples,
    sources and meal contexts (a name without words stays as it is)."""
    def said(name: str) -> str:
        for pattern in _CHOICE_KEYS:
            if pattern.format(name) in TEXT:
                return t(pattern.format(name), lang)
        return t(name, lang) if name in _MEALS else name
    return said
