"""How much of what a meter sends wrong is kept: rejected_messages is for review, not a place a
meter can fill. Per meter, the first KEPT_PER_MINUTE refused messages of each minute are kept
whole (payload capped, ingest/store.py); the rest of that minute are counted and, once the
minute is over, recorded as one row that says how many, of what reasons and bytes. Rows older
than RETENTION are deleted by the worker (hourly). Pure but for the clock the caller passes."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from ingest.store import Rejection

KEPT_PER_MINUTE = 20
WINDOW_S = 60.0
RETENTION = timedelta(days=30)
PRUNE_EVERY_S = 3600.0


@dataclass
class _Minute:
    started: float
    kept: int = 0
    dropped: int = 0
    dropped_bytes: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    last: Rejection | None = None


class RejectBudget:
    """Per meter (per topic for messages of no meter), which rejections are written."""

    def __init__(self, kept_per_minute: int = KEPT_PER_MINUTE, window_s: float = WINDOW_S
                 ) -> None:
        self.kept_per_minute = kept_per_minute
        self.window_s = window_s
        self.minutes: dict[str, _Minute] = {}

    def admit(self, rejections: list[Rejection], now: float) -> list[Rejection]:
        """The rejections to write now: those within each meter's budget, and a summary of
        every minute that is over and had more."""
        out = self.flush(now)
        for j in rejections:
            key = j.device_id or j.topic
            minute = self.minutes.get(key)
            if minute is None:
                minute = self.minutes[key] = _Minute(now)
            if minute.kept < self.kept_per_minute:
                minute.kept += 1
                out.append(j)
            else:
                minute.dropped += 1
                minute.dropped_bytes += len(j.payload)
                minute.reasons[str(j.reason)] += 1
                minute.last = j
        return out

    def flush(self, now: float) -> list[Rejection]:
        """Summaries of the minutes that are over; their meters start a new budget."""
        out = []
        for key, minute in list(self.minutes.items()):
            if now - minute.started < self.window_s:
                continue
            del self.minutes[key]
            if minute.dropped and minute.last is not None:
                out.append(self._summary(minute, minute.last))
        return out

    def _summary(self, minute: _Minute, last: Rejection) -> Rejection:
        reasons = ", ".join(f"{reason} x{n}" for reason, n in minute.reasons.most_common())
        return Rejection(
            last.topic, last.device_id, minute.reasons.most_common(1)[0][0],
            f"{minute.dropped} more refused messages ({minute.dropped_bytes} bytes) within "
            f"a minute, over the {self.kept_per_minute} kept whole per meter: {reasons}",
            b"", last.received_at)
