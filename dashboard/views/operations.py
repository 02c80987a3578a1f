"""Operations: is data flowing, what is refused, which meters need attention. The queries
live with the stages owning the data (ingest/flow.py, devices/health.py); this page only
reads and draws them, in the page's language."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import db
from dashboard.format import duration
from dashboard.i18n import TEXT, t
from dashboard.views import rights_section
from devices import health
from ingest import flow


@st.cache_data(ttl=10, show_spinner=False)
def _flow(url: str) -> tuple[pd.DataFrame, float | None, float | None, float | None]:
    with db.pool().connection() as conn:
        return (flow.per_minute(conn), flow.ingest_lag(conn), flow.reading_age(conn),
                flow.since_last_reading(conn))


@st.cache_data(ttl=30, show_spinner=False)
def _rejects(url: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    with db.pool().connection() as conn:
        return flow.rejects_by_reason(conn), flow.reject_samples(conn)


@st.cache_data(ttl=30, show_spinner=False)
def _devices(url: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    with db.pool().connection() as conn:
        return (health.silent_meters(conn), health.low_batteries(conn),
                health.drifting_clocks(conn))


def headed(frame: pd.DataFrame, lang: str) -> pd.DataFrame:
    """A table with its columns named in the page's language (ops_col_<column>), a meter's
    state (online, offline: the wire's words) said in it too."""
    if "state" in frame:
        frame = frame.assign(state=frame["state"].map(
            lambda s: t(f"ops_state_{s}", lang) if f"ops_state_{s}" in TEXT else s))
    for column in frame.columns:  # instants to the minute, in UTC, said so
        if pd.api.types.is_datetime64_any_dtype(frame[column]):
            instants = pd.to_datetime(frame[column], utc=True)
            frame = frame.assign(**{column: instants.dt.strftime("%Y-%m-%d %H:%M UTC")})
    return frame.rename(columns={c: t(f"ops_col_{c}", lang) for c in frame.columns})


def table(where: Any, frame: pd.DataFrame, lang: str) -> None:
    """A table in the page's language, or "none" in words when it is empty."""
    if frame.empty:
        where.caption(t("ops_none", lang))
    else:
        where.dataframe(headed(frame, lang), hide_index=True, width="stretch")


def per_minute_chart(per_minute: pd.DataFrame, lang: str, now: datetime | None = None
                     ) -> alt.Chart:
    """Readings per minute over the last hour, the whole hour on the axis (a few minutes of
    data do not repeat one label); the time axis in hours and minutes (UTC), in no language's
    words."""
    data = per_minute.assign(minute=pd.to_datetime(per_minute["minute"], utc=True)
                             .dt.tz_localize(None)) if len(per_minute) else per_minute
    end = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None, microsecond=0)
    hour = [(end - timedelta(hours=1)).isoformat(), end.isoformat()]
    chart: alt.Chart = alt.Chart(data).mark_line(color="#1f77b4", point=len(data) < 3).encode(
        x=alt.X("minute:T", title=t("ops_minute", lang), scale=alt.Scale(domain=hour),
                axis=alt.Axis(format="%H:%M")),
        y=alt.Y("readings:Q", title=t("ops_readings", lang)),
        tooltip=[alt.Tooltip("minute:T", title=t("ops_minute", lang), format="%H:%M"),
                 alt.Tooltip("readings:Q", title=t("ops_readings", lang), format=",")])
    return chart.properties(height=220)


def render() -> None:
    url = db.database_url()
    lang = st.session_state.get("lang", "en")
    st.title(t("page_operations", lang))
    per_minute, lag, age, last = _flow(url)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric(t("ops_last_hour", lang), f"{int(per_minute['readings'].sum()):,}"
              if len(per_minute) else "0")
    c2.metric(t("ops_lag", lang), duration(lag, lang), help=t("ops_lag_help", lang))
    c3.metric(t("ops_age", lang), duration(age, lang), help=t("ops_age_help", lang))
    c4.metric(t("ops_since_last", lang), duration(last, lang))
    st.subheader(t("ops_per_minute", lang))
    st.altair_chart(per_minute_chart(per_minute, lang), width="stretch")
    rights_section.requests_section(lang)
    by_reason, samples = _rejects(url)
    st.subheader(t("ops_rejected", lang))
    table(st, by_reason, lang)
    with st.expander(t("ops_samples", lang)):
        table(st, samples, lang)
    offline, low, drift = _devices(url)
    silent = int(offline["silent"].iloc[0]) if len(offline) else 0
    st.subheader(t("ops_silent", lang, hours=health.OFFLINE_AFTER_HOURS, n=silent))
    if silent > health.SILENT_SHOWN:
        st.caption(t("ops_silent_shown", lang, n=health.SILENT_SHOWN))
    table(st, offline.drop(columns="silent"), lang)
    c1, c2 = st.columns(2)
    c1.subheader(t("ops_battery", lang, pct=health.LOW_BATTERY_PCT))
    table(c1, low, lang)
    c2.subheader(t("ops_clock", lang, s=health.CLOCK_DRIFT_S))
    table(c2, drift, lang)
