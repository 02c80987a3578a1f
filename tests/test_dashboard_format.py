"""The dashboard's pure helpers: the starting language and how durations read."""

from __future__ import annotations

import pytest

from dashboard.format import duration
from dashboard.i18n import TEXT, initial_language
from dashboard.launch import command


@pytest.mark.parametrize(("query", "header", "expected"), [
    ("zh", "en-GB,en;q=0.9", "zh"),  # ?lang= wins
    (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh"),
    (None, "fr-FR,fr;q=0.9,zh;q=0.8,en;q=0.7", "zh"),  # the first we have, by weight
    (None, "en;q=0.5,zh;q=0.9", "zh"),
    (None, "de-DE", "en"),
    ("xx", None, "en"),
    (None, "zh;q=oops", "en"),
])
def test_initial_language(query: str | None, header: str | None, expected: str) -> None:
    assert initial_language(query, header) == expected


def test_every_text_has_both_languages() -> None:
    assert [key for key, text in TEXT.items() if set(text) != {"en", "zh"}] == []


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "—"), (0.0154, "15 ms"), (2.34, "2.3 s"), (246.0, "4.1 min"), (11_520.0, "3.2 h"),
    (3_877_224.0, "44.9 d"),
])
def test_duration_reads_in_the_best_unit(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


def test_the_dashboard_hides_the_developer_toolbar() -> None:
    argv = command(8501, "127.0.0.1")
    assert argv[argv.index("--client.toolbarMode") + 1] == "minimal"


def test_operations_tables_say_instants_to_the_minute_in_utc() -> None:
    import pandas as pd

    from dashboard.views.operations import headed

    frame = pd.DataFrame({"device_id": ["M-1", "M-2"], "state": ["online", "offline"],
                          "last_status": pd.Series([pd.Timestamp("2026-12-03 15:58:29+00:00"),
                                                    pd.NaT])})
    shown = headed(frame, "zh")
    assert list(shown.iloc[:, 2].fillna("")) == ["2026-12-03 15:58 UTC", ""]
    assert "+00:00" not in shown.to_string()


def test_every_simulated_segment_has_words_in_both_languages() -> None:
    """The workbench shows segments by name in its tables and charts: each persona's has words
    (a Chinese page showed gamer_clock, well_controlled...)."""
    from devices.cgm_sensor import CGM_PERSONAS
    from devices.personas import PERSONAS

    for name in ["standard", *(p.name for p in PERSONAS), *(p.name for p in CGM_PERSONAS)]:
        assert {"en", "zh"} <= set(TEXT.get(f"segment_{name}", {})), name


def test_today_chart_spans_the_local_day_and_shows_a_lone_reading() -> None:
    """Just after midnight a CGM wearer has one reading today: drawn as a point (a line of one
    reading draws nothing) on an axis from this local midnight to the next."""
    from datetime import date

    import pandas as pd

    from dashboard.views.cgm_section import today_chart
    from pricing.cgm_metrics import CgmWindow

    at = pd.Timestamp("2026-12-04 00:38:50+08:00")
    window = CgmWindow(first=date(2026, 11, 20), last=date(2026, 12, 3), metrics={},
                       agp=pd.DataFrame(), days=pd.DataFrame(),
                       today=pd.DataFrame({"measured_at": [at], "mgdl": [209.0]}))
    line = today_chart(window, "mmol/L", "en").to_dict()["layer"][1]
    assert line["mark"]["point"] is True
    assert line["encoding"]["x"]["scale"]["domain"] == ["2026-12-04T00:00:00",
                                                        "2026-12-05T00:00:00"]


def test_the_per_minute_chart_spans_the_last_hour() -> None:
    from datetime import UTC, datetime

    import pandas as pd

    from dashboard.views.operations import per_minute_chart

    now = datetime(2026, 12, 3, 16, 39, 30, tzinfo=UTC)
    frame = pd.DataFrame({"minute": pd.to_datetime(["2026-12-03 16:37+00:00"]),
                          "readings": [13283]})
    spec = per_minute_chart(frame, "zh", now).to_dict()
    assert spec["encoding"]["x"]["scale"]["domain"] == ["2026-12-03T15:39:30",
                                                        "2026-12-03T16:39:30"]
