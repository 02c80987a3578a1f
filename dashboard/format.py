"""How the dashboard writes figures for people."""

from __future__ import annotations

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
