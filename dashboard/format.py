"""How the dashboard writes figures for people."""

from __future__ import annotations

import re

from dashboard.i18n import t

UNITS = ((86_400.0, "d"), (3_600.0, "h"), (60.0, "min"), (1.0, "s"))
UNIT_WORDS = {"zh": {"ms": "毫秒", "s": "秒", "min": "分钟", "h": "小时", "d": "天"}}


def duration(seconds: float | None, lang: str = "en") -> str:
    """A duration in the unit that reads best: 15 ms, 2.3 s, 4.1 min, 3.2 h, 45.0 d (in
    Chinese 15 毫秒, 2.3 秒, 4.1 分钟, 3.2 小时, 45.0 天)."""
    words = UNIT_WORDS.get(lang, {})
    if seconds is None:
        return "—"
    if abs(seconds) < 1.0:
        return f"{seconds * 1000:.0f} {words.get('ms', 'ms')}"
    for size, unit in UNITS:
        if abs(seconds) >= size:
            return f"{seconds / size:.1f} {words.get(unit, unit)}"
    return f"{seconds:.1f} {words.get('s', 's')}"


def money(amount: float, lang: str, signed: bool = False) -> str:
    """An amount with its currency, in whole yuan: RMB 50,100 / 50,100 元; signed: RMB +100,
    RMB -300 (a change)."""
    figure = f"{amount:+,.0f}" if signed else f"{amount:,.0f}"
    return t("money", lang, amount=figure)


def day(value: object) -> str:
    """A day as month-day with a non-breaking hyphen, so a narrow column does not break it."""
    return f"{value:%m}\u2011{value:%d}"


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$&])")


def plain(text: object) -> str:
    """Text a user typed (a ruleset's name, a note), for a place Streamlit renders as Markdown:
    every Markdown character escaped, so it shows as typed and never becomes a link or an
    image another viewer's browser would fetch."""
    return _MARKDOWN.sub(r"\\\1", str(text)).replace("\n", " ")
