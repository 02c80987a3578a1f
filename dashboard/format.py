"""How the dashboard writes figures for people."""

from __future__ import annotations

from dashboard.i18n import t

UNITS = ((86_400.0, "d"), (3_600.0, "h"), (60.0, "min"), (1.0, "s"))


def duration(seconds: float | None) -> str:
    """A duration in the unit that reads best: 15 ms, 2.3 s, 4.1 min, 3.2 h, 45.0 d."""
    if seconds is None:
        return "—"
    if abs(seconds) < 1.0:
        return f"{seconds * 1000:.0f} ms"
    for size, unit in UNITS:
        if abs(seconds) >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


def money(amount: float, lang: str, signed: bool = False) -> str:
    """An amount with its currency, in whole yuan: RMB 50,100 / 50,100 元; signed: RMB +100,
    RMB -300 (a change)."""
    figure = f"{amount:+,.0f}" if signed else f"{amount:,.0f}"
    return t("money", lang, amount=figure)


def day(value: object) -> str:
    """A day as month-day with a non-breaking hyphen, so a narrow column does not break it."""
    return f"{value:%m}\u2011{value:%d}"
