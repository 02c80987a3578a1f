"""A form input per declared parameter (glucover/parameters.py): the ruleset editor and the
alert rules editor are both generated from their declarations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import Field
from typing import Any

import streamlit as st

from glucover.parameters import declaration


def parameter_inputs(base: Any, fields: Sequence[Field[Any]], lang: str = "en",
                     key: str = "rs") -> dict[str, Any]:
    """One input per parameter of `fields`, with its label (in the page's language), unit,
    bounds and help, holding `base`'s values: numbers three to a row, then names."""
    values: dict[str, Any] = {}
    cols = st.columns(3)
    numbers = [f for f in fields if not declaration(f).choices]
    for i, f in enumerate(numbers):
        p, current = declaration(f), getattr(base, f.name)
        label = f"{p.label(lang)} ({p.unit})" if p.unit else p.label(lang)
        whole = isinstance(f.default, int)
        kind: type = int if whole else float
        value = cols[i % 3].number_input(
            label, value=kind(current), step=kind(1 if whole else 0.1), help=p.help,
            min_value=None if p.low is None else kind(p.low),
            max_value=None if p.high is None else kind(p.high), key=f"{key}_{f.name}")
        values[f.name] = kind(value)
    for f in fields:
        p, current = declaration(f), getattr(base, f.name)
        if p.choices and isinstance(current, str):
            values[f.name] = st.selectbox(f"{p.label(lang)} · {p.section}", list(p.choices),
                                          index=list(p.choices).index(current), help=p.help,
                                          key=f"{key}_{f.name}")
        elif p.choices:
            values[f.name] = tuple(st.multiselect(p.label(lang), list(p.choices), list(current),
                                                  help=p.help, key=f"{key}_{f.name}"))
    return values
