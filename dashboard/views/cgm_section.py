"""The CGM wearer's part of the policyholder page: today's trace, the AGP, the time-in-ranges
bar and the consensus metrics against their targets, in mg/dL or mmol/L. The figures come from
pricing/cgm_metrics.py (dashboard/policyholder_data.py assembles them); this module only draws."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import db
from dashboard.i18n import t, voiced
from dashboard.policyholder_data import PolicySummary
from dashboard.views import access_log
from kernel import units
from kernel.vocabulary import Unit
from pricing import cgm_metrics
from records.agp_report import BANDS, band_ranges  # the five bands, as on the report
from records.export import agp_pdf

UNITS = (Unit.MMOL_L, Unit.MG_DL)
# st.table reads its cells as Markdown, where a leading ">" starts a quote.
SYMBOL = {"<": "<", "<=": "≤", ">": "\\>", ">=": "≥"}


def unit_picker() -> str:
    """mg/dL or mmol/L, chosen in the sidebar and kept for the session."""
    st.session_state.setdefault("unit", str(Unit.MMOL_L))
    lang = st.session_state.get("lang", "en")
    choice = st.sidebar.selectbox(t("unit_label", lang), [str(u) for u in UNITS],
                                  key="unit_sidebar", index=[str(u) for u in UNITS].index(
                                      st.session_state["unit"]))
    st.session_state["unit"] = choice
    return str(choice)


def target_lines(unit: str) -> pd.DataFrame:
    return pd.DataFrame({"y": list(cgm_metrics.target_band(unit))})


TODAY_POINTS_BELOW = 12  # readings: under an hour of a CGM's


def today_chart(figures: cgm_metrics.CgmWindow, unit: str, lang: str
                ) -> alt.LayerChart | alt.FacetChart:
    low, high = cgm_metrics.target_band(unit)
    band = alt.Chart(pd.DataFrame({"low": [low], "high": [high]})
                     ).mark_rect(opacity=0.15, color="green").encode(y="low:Q", y2="high:Q")
    data = figures.today.assign(value=units.in_unit(figures.today["mgdl"], unit),
                                measured_at=figures.today["measured_at"].dt.tz_localize(None))
    # The whole local day on the axis, so a few minutes of data do not repeat one label.
    today = figures.last + timedelta(days=1)
    day = [datetime.combine(today, time()).isoformat(),
           datetime.combine(today + timedelta(days=1), time()).isoformat()]
    # A few readings (the day just begun, a sensor just warmed up) as points: a line of one
    # reading draws nothing.
    few = len(data) < TODAY_POINTS_BELOW
    line = alt.Chart(data).mark_line(point=few, color="#08519c").encode(
        x=alt.X("measured_at:T", title=t("axis_time", lang), scale=alt.Scale(domain=day),
                axis=alt.Axis(format="%H:%M", tickCount=8)),
        y=alt.Y("value:Q", title=unit),
        tooltip=[alt.Tooltip("measured_at:T", title=t("axis_time", lang), format="%H:%M"),
                 alt.Tooltip("value:Q", title=unit, format=".1f")])
    return alt.layer(band, line)


def agp_chart(figures: cgm_metrics.CgmWindow, unit: str, lang: str
              ) -> alt.LayerChart | alt.FacetChart:
    profile = figures.agp.copy()
    for p in cgm_metrics.AGP_PERCENTILES:
        profile[f"p{p}"] = units.in_unit(profile[f"p{p}"], unit)
    profile["time"] = pd.Timestamp("2000-01-01") + pd.to_timedelta(profile["minute"], unit="m")
    x = alt.X("time:T", title=t("axis_time", lang), axis=alt.Axis(format="%H:%M"))
    outer = alt.Chart(profile).mark_area(opacity=0.25, color="#4292c6").encode(
        x=x, y=alt.Y("p5:Q", title=unit), y2="p95:Q")
    inner = alt.Chart(profile).mark_area(opacity=0.5, color="#2171b5").encode(
        x=x, y="p25:Q", y2="p75:Q")
    median = alt.Chart(profile).mark_line(color="#08306b").encode(x=x, y="p50:Q")
    targets = alt.Chart(target_lines(unit)).mark_rule(color="green", strokeDash=[4, 3]
                                                      ).encode(y="y:Q")
    return alt.layer(outer, inner, median, targets)


def daily_chart(figures: cgm_metrics.CgmWindow, unit: str, lang: str) -> alt.FacetChart:
    """The window's days, one small trace each over the target band, four to a row (so a
    phone's 390 px hold a row)."""
    days = figures.days.assign(
        value=units.in_unit(figures.days["mgdl"], unit),
        day=figures.days["measured_at"].dt.strftime("%m-%d"),
        time=pd.Timestamp("2000-01-01") + pd.to_timedelta(
            figures.days["measured_at"].dt.hour * 60 + figures.days["measured_at"].dt.minute,
            unit="m"))
    low, high = cgm_metrics.target_band(unit)
    days["low"], days["high"] = low, high
    top = units.in_unit(350, unit)
    band = alt.Chart(days).mark_area(color="green", opacity=0.12).encode(
        x=alt.X("time:T", axis=None), y=alt.Y("low:Q", axis=None,
                                              scale=alt.Scale(domain=[0, top])), y2="high:Q")
    line = alt.Chart(days).mark_line(color="#08306b", strokeWidth=1).encode(
        x=alt.X("time:T", axis=None), y=alt.Y("value:Q", axis=None,
                                              scale=alt.Scale(domain=[0, top])))
    chart: alt.FacetChart = alt.layer(band, line).properties(width=60, height=45).facet(
        facet=alt.Facet("day:N", title=None, header=alt.Header(labelFontSize=10)), columns=4)
    return chart


def bands_chart(m: dict[str, Any], unit: str, lang: str) -> alt.LayerChart | alt.FacetChart:
    """The five bands, very high on top to very low (as the AGP report lists them), each a
    row named with its range in `unit` and its share (%) of the readings written beside it."""
    ranges = band_ranges(unit)
    data = pd.DataFrame({
        "band": [f"{t(f'band_{key}', lang)} {ranges[key]}" for key, _, _ in BANDS],
        "share": cgm_metrics.band_shares(m), "colour": [c for _, c, _ in BANDS]})
    data["label"] = data["share"].map(lambda v: f"{v:.1f}%")
    order = list(data["band"])[::-1]
    y = alt.Y("band:N", sort=order, title=None, axis=alt.Axis(
        labelLimit=220, labelFontSize=12, ticks=False, domain=False))
    bars = alt.Chart(data).mark_bar(height=16).encode(
        x=alt.X("share:Q", title=None, axis=None, scale=alt.Scale(domain=[0, 125])), y=y,
        color=alt.Color("colour:N", scale=None, legend=None),
        tooltip=[alt.Tooltip("band:N", title=unit), alt.Tooltip("share:Q", format=".1f")])
    labels = alt.Chart(data).mark_text(align="left", dx=4, fontSize=13).encode(
        x="share:Q", y=y, text="label:N")
    return alt.layer(bars, labels).properties(height=150)


def metrics_table(m: dict[str, Any], unit: str, lang: str) -> pd.DataFrame:
    """Each consensus metric, its value and its target, met or not."""
    rows = [{t("col_metric", lang): t("m_mean", lang),
             t("col_value", lang): cgm_metrics.format_glucose(m["mean_mgdl"], unit),
             t("col_target", lang): ""},
            {t("col_metric", lang): t("m_gmi", lang), t("col_value", lang): f"{m['gmi']:.1f}%",
             t("col_target", lang): ""}]
    for column, op, target in cgm_metrics.TARGETS:
        ok = cgm_metrics.meets(column, float(m[column]))
        rows.append({t("col_metric", lang): t(f"m_{column}", lang),
                     t("col_value", lang): f"{m[column]:.1f}%",
                     t("col_target", lang): f"{SYMBOL[op]} {target:g}% · "
                     + t("met" if ok else "not_met", lang)})
    return pd.DataFrame(rows).set_index(t("col_metric", lang))


def render(summary: PolicySummary, lang: str, staff: bool = False) -> None:
    figures = summary.cgm
    assert figures is not None
    unit = unit_picker()
    if len(figures.today):
        st.subheader(t("cgm_today", lang))
        st.altair_chart(today_chart(figures, unit, lang), width="stretch")
    if not figures.metrics:
        st.info(t("no_cgm_data", lang))
        return
    st.subheader(t("tir_bands", lang, unit=unit))
    st.altair_chart(bands_chart(figures.metrics, unit, lang), width="stretch")
    st.subheader(t("agp", lang))
    st.altair_chart(agp_chart(figures, unit, lang), width="stretch")
    low, high = (cgm_metrics.format_value(v, unit)
                 for v in (cgm_metrics.TIR_LOW_MGDL, cgm_metrics.TIR_HIGH_MGDL))
    st.caption(t("agp_caption", lang, low=low, high=high, unit=unit))
    st.subheader(t("daily_profiles", lang))
    st.altair_chart(daily_chart(figures, unit, lang), width="content")
    st.subheader(t(voiced("metrics_title", staff), lang))
    st.table(metrics_table(figures.metrics, unit, lang))
    policy_id = summary.policy_id  # the page has checked that this user may see it
    st.download_button(t(voiced("agp_download", staff), lang),
                       data=lambda: agp_pdf_of(policy_id, unit, lang),
                       file_name=f"glucover-{policy_id}-agp.pdf", mime="application/pdf",
                       on_click="ignore", icon=":material/picture_as_pdf:")


def agp_pdf_of(policy_id: str, unit: str, lang: str) -> bytes:
    """The AGP report of a policy the caller may see (records/export.py)."""
    access_log.staff_read(policy_id, "agp_export")
    with db.pool().connection() as conn:
        return agp_pdf(conn, policy_id, unit=unit, lang=lang)
