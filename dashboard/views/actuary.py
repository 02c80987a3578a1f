"""Actuaries: portfolio KPIs, the ruleset editor, what-if back-tests, the GLM, gaming."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from actuary import backtest, gaming, glm, pack_pdf, pack_sources, research
from actuary.synthetic import synthetic_portfolio
from actuary.validation import ValidationPack
from dashboard import db
from dashboard.auth import User
from dashboard.format import money, plain
from dashboard.i18n import TEXT, t
from dashboard.parameter_form import (
    changes,
    choice_words,
    form_scope,
    parameter_inputs,
    widget_key,
)
from glucover.errors import UserError
from pricing import glycaemia, portfolio_figures, safety, store
from pricing.evaluator import CHUNK_POLICIES
from pricing.portfolio_figures import TIR_WINDOW_DAYS
from pricing.ruleset import (
    RULESET_OF_KIND,
    Ruleset,
    RulesetError,
    declaration,
    declared_fields,
    load_builtin,
)


# The portfolio's figures and their queries are pricing's (pricing/portfolio_figures.py).
@st.cache_data(ttl=30, show_spinner=False)
def kpis(url: str) -> dict[str, Any]:
    with db.pool().connection() as conn:
        return portfolio_figures.kpis(conn)


def cgm_portfolio() -> dict[str, float] | None:
    with db.pool().connection() as conn:
        return portfolio_figures.cgm_portfolio(conn)


@st.cache_data(ttl=60, show_spinner=False)
def stored(url: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, int]:
    """The policies consenting to research, their bindings and readings, and how many were
    left out (actuary/research.py)."""
    with db.pool().connection() as conn:
        policies, bindings = store.load_policies(conn)
        policies, left_out = research.consenting(conn, policies)
        bindings = bindings[bindings["policy_id"].isin(policies["policy_id"])]
        readings = store.load_readings(conn, sorted(set(bindings["device_id"])))
    return policies, bindings, readings, left_out


def _published(name: str) -> Ruleset:
    with db.pool().connection() as conn:
        return store.in_force(conn, name)


def _section_words(lang: str) -> Callable[[str], str]:
    return lambda section: t(f"rs_section_{section}", lang)


def ruleset_editor(user: User) -> Ruleset | None:
    lang = st.session_state.get("lang", "en")
    with db.pool().connection() as conn:
        names = store.ruleset_names(conn)
    name = st.selectbox(t("ws_ruleset", lang), names, key="ruleset_name")
    base = _published(name)
    # Every input of the form, the draft and the reason are of this version of this ruleset
    # (dashboard/parameter_form.py): another ruleset opens with its own values.
    scope = form_scope("rs", base)
    if done := st.session_state.pop("ruleset_published", None):
        st.success(t("ws_published", lang, name=plain(done[0]), version=done[1]))
    st.caption(t("ws_published_version", lang, version=base.version or t("ws_builtin", lang)))
    sections, choices = _section_words(lang), choice_words(lang)
    with st.form("ruleset"):
        values = parameter_inputs(
            base, [f for f in declared_fields(base.kind) if declaration(f).section != "ruleset"],
            lang, "rs", sections, choices)
        new_name = st.text_input(t("ws_name", lang), value=base.name,
                                 key=widget_key(scope, "name"))
        submitted = st.form_submit_button(t("ws_validate", lang))
    if submitted:
        try:
            st.session_state["candidate"] = (scope, base.with_parameters(
                name=new_name.strip(), version=0, **values))
        except RulesetError as exc:
            st.error(t("ws_not_valid", lang, error=exc))
            st.session_state.pop("candidate", None)
            return None
    held = st.session_state.get("candidate")
    if held is None or held[0] != scope:  # nothing validated, or of another ruleset
        return None
    candidate: Ruleset = held[1]
    st.success(t("ws_valid", lang))
    changed = changes(base, candidate, lang, t("form_section", lang), sections, choices)
    if changed.empty:
        st.info(t("ws_no_changes", lang))
        return candidate
    st.dataframe(changed, hide_index=True, width="stretch")
    c1, c2 = st.columns(2)
    if c1.button(t("ws_save_draft", lang), key=widget_key(scope, "save")):
        with db.pool().connection() as conn:
            store.save_draft(conn, candidate, user.username)
        st.toast(t("ws_draft_saved", lang))
    risk = safety.hypoglycaemia_risk(candidate)
    reason = ""
    if risk:
        st.warning(t("ws_hypo_warning", lang, risk=risk))
        reason = st.text_input(t("ws_hypo_reason", lang), key=widget_key(scope, "hypo_reason"))
    cost, reference_needed = _cost_of_change(candidate, lang)
    reference = ""
    if reference_needed:
        reference = st.text_input(t("ws_committee_reference", lang),
                                  key=widget_key(scope, "committee_reference"))
    if c2.button(t("ws_publish", lang), key=widget_key(scope, "publish"),
                 disabled=bool(risk and not reason.strip())
                 or bool(reference_needed and not reference.strip())):
        notes = "published from the dashboard"
        if cost is not None:
            notes += f"; cost of the change a year out {cost:+,.0f}"
        if reference.strip():
            notes += f"; pricing committee reference {reference.strip()}"
        with db.pool().connection() as conn:
            published = store.publish(conn, candidate, author=user.username, notes=notes,
                                      hypoglycaemia_reason=reason)
        st.session_state.pop("candidate", None)
        st.session_state["ruleset_published"] = (published.name, published.version)
        st.rerun()  # the form opens on the version just published
    return candidate


def _held_pack(rules: Ruleset) -> ValidationPack | str | None:
    """The validation pack run for exactly this ruleset on the Validation tab (or why it could
    not be), else None."""
    held = st.session_state.get("validation_pack")
    if held is None or held[0] != rules.to_toml():
        return None
    pack: ValidationPack | str = held[1]
    return pack


def _cost_of_change(candidate: Ruleset, lang: str) -> tuple[float | None, bool]:
    """Shown at the publish step: the change's cost a year out from this draft's validation
    pack, and whether it is above the committee's threshold (its reference then needed)."""
    pack = _held_pack(candidate)
    if not isinstance(pack, ValidationPack):
        st.caption(t("ws_cost_unknown", lang))
        return None, False
    s = pack.summary()
    st.info(t("ws_cost", lang, cost=money(s["cost_of_change"], lang, signed=True),
              share=f"{s['cost_of_change_share']:+.1%}", in_force=s["in_force"]))
    if s["committee_review"]:
        st.warning(t("ws_committee_needed", lang,
                     threshold=f"{s['committee_review_share']:.0%}"))
    return float(s["cost_of_change"]), bool(s["committee_review"])


# A back-test replays its policies in parts so the bar advances as each is done; a part is at
# most the evaluator's chunk (memory) and at least BACKTEST_MIN_PART policies (a part's
# readings load with one COPY: smaller parts only add round trips).
BACKTEST_PARTS = 20
BACKTEST_MIN_PART = 25


def backtest_part_size(policies: int) -> int:
    """Policies per part of a back-test of `policies`: about BACKTEST_PARTS parts."""
    return max(1, min(CHUNK_POLICIES, max(BACKTEST_MIN_PART, math.ceil(
        policies / BACKTEST_PARTS))))


def _headed(frame: pd.DataFrame, lang: str) -> pd.DataFrame:
    """A results table with its column names and segments in the page's language (a column or
    segment without words keeps its name); the CSV downloads keep the machine names."""
    return _segments_said(frame, lang).rename(
        columns={c: t(f"wb_col_{c}", lang) for c in frame.columns if f"wb_col_{c}" in TEXT})


def _segments_said(frame: pd.DataFrame, lang: str) -> pd.DataFrame:
    if "segment" not in frame:
        return frame
    return frame.assign(segment=frame["segment"].map(
        lambda s: t(f"segment_{s}", lang) if f"segment_{s}" in TEXT else s))


def _worse_when_higher(shown_change: float) -> dict[str, Any]:
    """st.metric's colouring of a change where more is worse (liability, hypoglycaemia): a
    rise red, a fall green, no change (as shown, rounded) grey without an arrow."""
    if shown_change == 0:
        return {"delta_color": "off", "delta_arrow": "off"}
    return {"delta_color": "inverse"}


def _better_when_higher(shown_change: float) -> dict[str, Any]:
    """st.metric's colouring of a change where more is better (the Gini): a rise green, a
    fall red, no change (as shown) grey without an arrow."""
    if shown_change == 0:
        return {"delta_color": "off", "delta_arrow": "off"}
    return {"delta_color": "normal"}


def backtest_section(candidate: Ruleset | None) -> None:
    lang = st.session_state.get("lang", "en")
    rules = candidate or _published("default")
    # Against the shipped ruleset of the same kind, over the policies of that kind.
    baseline = _published(RULESET_OF_KIND[rules.kind])
    st.write(t("bt_against", lang, name=plain(rules.name), baseline=plain(baseline.name),
               version=baseline.version or t("ws_builtin", lang)))
    if not st.button(t("bt_run", lang)):
        return
    with db.pool().connection() as conn:
        policies, bindings = store.load_policies(conn)
        policies = store.of_kind(conn, policies, rules.kind)
        policies, left_out = research.consenting(conn, policies)
    st.caption(t("left_out_research", lang, n=left_out))
    if policies.empty:
        st.warning(t("bt_no_policies", lang))
        return
    n = len(policies)
    part = backtest_part_size(n)
    parts = math.ceil(n / part)
    bar = st.progress(0.0, text=t("bt_starting", lang, n=n))
    through = datetime.now(UTC).date() - timedelta(days=1)
    done_parts = 0

    def progress(fraction: float) -> None:  # after each part
        nonlocal done_parts
        done_parts += 1
        bar.progress(fraction, text=t("bt_progress", lang, done=min(done_parts * part, n), n=n,
                                      part=done_parts, parts=parts))

    def part_readings(device_ids: list[str]) -> pd.DataFrame:  # a part at a time
        with db.pool().connection() as conn:
            return store.load_readings(conn, device_ids)

    result = backtest.backtest(policies, bindings, part_readings, rules, baseline, through,
                              progress=progress, chunk_policies=part)
    bar.progress(1.0, text=t("bt_done" if done_parts > 1 else "bt_done_one", lang, n=n,
                             parts=done_parts))
    summary = result.summary()
    c1, c2, c3 = st.columns(3)
    # Neither colour for the sum insured (more for the policyholders, more owed); more
    # expected liability is worse for the insurer: red.
    c1.metric(t("bt_total", lang), f"{summary['total_sum_insured']:,.0f}",
              delta=t("bt_vs_baseline", lang, change=f"{summary['change_vs_baseline']:+,.0f}"),
              delta_color="off")
    liability_change = summary["expected_liability"] - summary["expected_liability_baseline"]
    c2.metric(t("bt_liability", lang), f"{summary['expected_liability']:,.0f}",
              delta=t("bt_vs_baseline", lang, change=f"{liability_change:+,.0f}"),
              **_worse_when_higher(round(liability_change)))
    c3.metric(t("bt_mean", lang), f"{summary['mean_sum_insured']:,.0f}")
    h1, h2, h3 = st.columns(3)
    for col, key in ((h1, "days_below_3_9"), (h2, "days_below_3_0"),
                     (h3, "readings_below_3_0")):
        value = summary[f"hypo_{key}_percent"]
        change = value - summary[f"hypo_{key}_percent_baseline"]
        col.metric(t(f"bt_{key}", lang), f"{value:.2f}%",
                   delta=t("bt_pt_vs_baseline", lang, change=f"{change:+.2f}"),
                   **_worse_when_higher(round(change, 2)))
    st.altair_chart(alt.Chart(result.per_policy).mark_bar().encode(
        x=alt.X("bonus:Q", bin=alt.Bin(maxbins=30), title=t("bt_bonus_axis", lang)),
        y=alt.Y("count():Q", title=t("bt_policies_axis", lang))), width="stretch")
    st.altair_chart(alt.Chart(_segments_said(result.by_segment, lang)).mark_bar().encode(
        x=alt.X("expected_liability:Q", title=t("bt_liability_axis", lang)),
        y=alt.Y("segment:N", sort="-x", title=t("bt_segment_axis", lang))), width="stretch")
    st.dataframe(_headed(result.by_segment.round(2), lang), hide_index=True, width="stretch")
    st.download_button(t("bt_per_policy_csv", lang), result.per_policy.to_csv(index=False),
                       "backtest_per_policy.csv", "text/csv")
    st.download_button(t("bt_by_segment_csv", lang), result.by_segment.to_csv(index=False),
                       "backtest_by_segment.csv", "text/csv")


VALIDATION_SIZES = (1000, 50_000, 5000)  # a synthetic portfolio's policies: least, most, default
LORENZ_POINTS = 400  # points of each Lorenz curve drawn (a browser need not draw 100,000)


def validation_section(candidate: Ruleset | None) -> None:
    """The pack of `glucover actuary validate` for the draft (or the default): holdout lift,
    Gini, double lift, credibility and the change's cost, the committee's PDF."""
    lang = st.session_state.get("lang", "en")
    rules = candidate or _published("default")
    with db.pool().connection() as conn:
        in_force = pack_sources.in_force_for(rules, store.ruleset_names(conn))
    st.write(t("va_against", lang, name=rules.name, in_force=in_force))
    source = st.radio(t("va_source", lang), ("stored", "synthetic"), horizontal=True,
                      format_func=lambda s: t(f"va_source_{s}", lang), key="va_source")
    size = VALIDATION_SIZES[2]
    if source == "synthetic":
        size = int(st.number_input(t("va_size", lang), VALIDATION_SIZES[0], VALIDATION_SIZES[1],
                                   VALIDATION_SIZES[2], step=1000, key="va_size"))
    if st.button(t("va_run", lang)):
        with st.spinner(t("va_running", lang)):
            try:
                pack: ValidationPack | str = _run_pack(rules, source, size)
            except UserError as exc:
                pack = str(exc)
        st.session_state["validation_pack"] = (rules.to_toml(), pack)
        st.session_state["validation_run"] = st.session_state.get("validation_run", 0) + 1
        st.rerun()  # the publish step (on the Ruleset tab) shows the cost from now on
    held = _held_pack(rules)
    if held is None:
        return
    if isinstance(held, str):
        st.warning(t("va_failed", lang, why=held))
        return
    show_pack(held, lang)


def _run_pack(rules: Ruleset, source: str, size: int) -> ValidationPack:
    if source == "synthetic":
        return pack_sources.synthetic_pack(size, rules)

    def part_readings(device_ids: list[str]) -> pd.DataFrame:
        with db.pool().connection() as conn:
            return store.load_readings(conn, device_ids)

    with db.pool().connection() as conn:
        return pack_sources.stored_pack(conn, rules, datetime.now(UTC).date()
                                        - timedelta(days=1), readings=part_readings)


def show_pack(pack: ValidationPack, lang: str) -> None:
    s = pack.summary()
    b = s["backtest"]
    st.caption(t("va_window", lang, policies=f"{s['policies']:,}", holdout=s["holdout_from"],
                 through=s["through"], train=s["training_claims"], hold=s["holdout_claims"]))
    c1, c2, c3 = st.columns(3)
    gini_change = s["gini_proposed"] - s["gini_in_force"]
    # A higher Gini ranks risk better: a rise green, no change (as shown) grey.
    c1.metric(t("va_gini", lang), f"{s['gini_proposed']:.3f}",
              delta=t("va_vs_in_force", lang, change=f"{gini_change:+.3f}"),
              **_better_when_higher(round(gini_change, 3)))
    c1.caption(t("va_interval", lang, low=f"{s['gini_proposed_low']:.3f}",
                 high=f"{s['gini_proposed_high']:.3f}",
                 in_force=f"{s['gini_in_force']:.3f}"))
    c2.metric(t("va_cost", lang), money(s["cost_of_change"], lang, signed=True),
              delta=f"{s['cost_of_change_share']:+.1%}",
              **_worse_when_higher(round(s["cost_of_change"])))
    c2.caption(t("va_payouts", lang, proposed=money(s["expected_payout_proposed"], lang),
                 in_force=money(s["expected_payout_in_force"], lang)))
    hypo = b["hypo_days_below_3_9_percent"]
    hypo_change = hypo - b["hypo_days_below_3_9_percent_baseline"]
    c3.metric(t("bt_days_below_3_9", lang), f"{hypo:.2f}%",
              delta=t("bt_pt_vs_baseline", lang, change=f"{hypo_change:+.2f}"),
              **_worse_when_higher(round(hypo_change, 2)))
    c3.caption(t("va_credibility", lang, tau2=f"{s['credibility_tau2']:.3g}",
                 s2=f"{s['credibility_s2']:.3g}", z=f"{s['credibility_mean_z']:.3f}"))
    if s["committee_review"]:
        st.warning(t("ws_committee_needed", lang,
                     threshold=f"{s['committee_review_share']:.0%}"))
    said = {"actual": t("va_actual", lang), "proposed": t("va_proposed", lang),
            "in_force": t("va_in_force", lang)}
    lift_frame = pack.lift.lift
    bars = alt.Chart(lift_frame).mark_bar(color="#c7c7c7").encode(
        x=alt.X("bin:O", title=t("va_decile", lang)),
        y=alt.Y("actual_per_exposure:Q", title=t("va_per_year", lang)))
    line = alt.Chart(lift_frame).mark_line(point=True).encode(
        x="bin:O", y="predicted_per_exposure:Q")
    st.subheader(t("va_lift", lang))
    st.altair_chart(bars + line, width="stretch")
    if pack.lift.double_lift is not None:
        d = pack.lift.double_lift
        long = pd.concat([pd.DataFrame({"bin": d["bin"], "ae": d["ae"],
                                        "model": said["proposed"]}),
                          pd.DataFrame({"bin": d["bin"], "ae": d["ae_b"],
                                        "model": said["in_force"]})])
        st.subheader(t("va_double_lift", lang))
        st.altair_chart(alt.Chart(long).mark_line(point=True).encode(
            x=alt.X("bin:O", title=t("va_decile", lang)),
            y=alt.Y("ae:Q", title=t("va_ae", lang)),
            color=_model_colours(said, lang)), width="stretch")
    st.subheader(t("va_lorenz", lang))
    st.altair_chart(alt.Chart(_lorenz_frame(pack, said)).mark_line().encode(
        x=alt.X("x:Q", title=t("va_exposure_share", lang), scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("y:Q", title=t("va_claims_share", lang), scale=alt.Scale(domain=[0, 1])),
        color=_model_colours(said, lang)), width="stretch")
    st.subheader(t("va_by_segment", lang))
    st.dataframe(_headed(pack.cost.round(0), lang), hide_index=True, width="stretch")
    st.download_button(t("va_pdf", lang), _pdf(pack, lang),
                       f"validation_{pack.proposed.name}.pdf", "application/pdf")
    st.download_button(t("va_cost_csv", lang), pack.cost.to_csv(index=False),
                       "validation_cost.csv", "text/csv")


def _pdf(pack: ValidationPack, lang: str) -> bytes:
    """The committee's PDF of this pack in this language, drawn once (a rerun of the page
    reuses it)."""
    drawn: dict[tuple[int, str], bytes] = st.session_state.setdefault("validation_pdf", {})
    key = (int(st.session_state.get("validation_run", 0)), lang)
    if key not in drawn:
        drawn.clear()  # only the pack on show is kept
        drawn[key] = pack_pdf.render(pack, lang)
    return drawn[key]


def _model_colours(said: dict[str, str], lang: str) -> alt.Color:
    """The same colour for a model in every chart and language (the PDF's colours)."""
    names = [said["proposed"], said["in_force"], t("va_equality", lang)]
    return alt.Color("model:N", title=None, legend=alt.Legend(orient="bottom"),
                     scale=alt.Scale(domain=names, range=[pack_pdf.PROPOSED_COLOUR,
                                                          pack_pdf.IN_FORCE_COLOUR, "#999999"]))


def _lorenz_frame(pack: ValidationPack, said: dict[str, str]) -> pd.DataFrame:
    p = pack.per_policy
    h = p[(p["holdout_years"] > 0) & p["predicted_proposed"].notna()]
    e, a = h["holdout_years"].to_numpy(float), h["holdout_claims"].to_numpy(float)
    frames = [pd.DataFrame({"x": [0.0, 1.0], "y": [0.0, 1.0], "model": t(
        "va_equality", st.session_state.get("lang", "en"))})]
    for name in ("proposed", "in_force"):
        x, y = pack_pdf.lorenz_points(e, a, h[f"predicted_{name}"].to_numpy(float))
        keep = np.unique(np.linspace(0, len(x) - 1, LORENZ_POINTS).astype(int))
        frames.append(pd.DataFrame({"x": x[keep], "y": y[keep], "model": said[name]}))
    return pd.concat(frames, ignore_index=True)


@st.cache_data(show_spinner=False)
def _glm(n: int) -> pd.DataFrame:
    portfolio = synthetic_portfolio(n, 365, seed=11)
    through = (portfolio.policies["start_date"].min() + pd.Timedelta(days=364)).date()
    return glm.glm_on_synthetic(portfolio, load_builtin("default"), through).table


def glm_section() -> None:
    lang = st.session_state.get("lang", "en")
    n = st.number_input(t("glm_size", lang), 1000, 100_000, 5000, step=1000)
    if st.button(t("glm_fit", lang)):
        with st.spinner(t("glm_fitting", lang)):
            table = _glm(int(n))
        st.dataframe(table.round(4), hide_index=True, width="stretch")
        st.download_button(t("glm_csv", lang), table.to_csv(index=False), "glm.csv",
                           "text/csv")


def gaming_section(candidate: Ruleset | None) -> None:
    lang = st.session_state.get("lang", "en")
    if not st.button(t("gm_run", lang)):
        return
    with st.spinner(t("gm_loading", lang)):
        policies, bindings, readings, left_out = stored(db.database_url())
    st.caption(t("left_out_research", lang, n=left_out))
    if policies.empty:
        st.warning(t("gm_no_policies", lang))
        return
    # Each policy by its own product's ruleset in force; the candidate replaces its own.
    report = gaming.gaming_report(policies, bindings, readings, candidate,
                                   datetime.now(UTC).date() - timedelta(days=1),
                                   published=_published)
    st.dataframe(_headed(report.by_segment.round(1), lang), hide_index=True, width="stretch")
    st.dataframe(_headed(report.exclusions, lang), hide_index=True, width="stretch")
    if not report.clock_inversions.empty:
        st.write(t("gm_clock", lang))
        st.dataframe(report.clock_inversions, hide_index=True)
    st.download_button(t("gm_flagged_csv", lang), report.flagged_policies.to_csv(index=False),
                       "gaming_flagged.csv", "text/csv")
    st.subheader(t("gm_safety", lang))
    st.caption(t("gm_safety_caption", lang))
    st.dataframe(_headed(report.safety, lang), hide_index=True, width="stretch")
    st.download_button(t("gm_hypo_rewarded_csv", lang, n=len(report.hypo_rewarded)),
                       report.hypo_rewarded.to_csv(index=False), "hypo_rewarded.csv",
                       "text/csv")


def render(user: User) -> None:
    lang = st.session_state.get("lang", "en")
    st.title(t("wb_title", lang))
    k = kpis(db.database_url())
    c1, c2, c3, c4 = st.columns(4)
    c1.metric(t("wb_policies", lang), f"{int(k['all_policies']):,}")
    c2.metric(t("wb_total", lang), money(k["total"], lang))
    c3.metric(t("wb_mean_bonus", lang), money(k["mean_bonus"], lang))
    c4.metric(t("wb_in_target", lang), f"{k['in_target_share']:.0%}")
    tir = k["time_in_range"]
    st.caption(t("wb_meters_tir", lang, low=glycaemia.TIR_LOW_MMOL, high=glycaemia.TIR_HIGH_MMOL,
                 days=TIR_WINDOW_DAYS, tir=t("wb_no_data", lang) if tir is None
                 else f"{tir:.1%}"))
    c = cgm_portfolio()
    st.caption(t("wb_no_cgm", lang) if c is None else t(
        "wb_cgm", lang, n=f"{int(c['policies']):,}", days=TIR_WINDOW_DAYS,
        tir=f"{c['time_in_range']:.1%}", below=f"{c['below_54']:.2%}",
        coverage=f"{c['coverage']:.0%}"))
    # Keyed and tracked, so a rerun from inside a tab (a radio, a button) stays on that tab.
    tabs = st.tabs([t(f"wb_tab_{tab}", lang)
                    for tab in ("ruleset", "backtest", "validation", "glm", "gaming", "claims")],
                   key=f"wb_tabs_{lang}", on_change="rerun")
    with tabs[0]:
        candidate = ruleset_editor(user)
    with tabs[1]:
        backtest_section(candidate)
    with tabs[2]:
        validation_section(candidate)
    with tabs[3]:
        glm_section()
    with tabs[4]:
        gaming_section(candidate)
    with tabs[5]:
        claims_section(lang)


def claims_section(lang: str) -> None:
    """Incurred claims, payouts and the loss ratio by product and month (policies/figures.py)."""
    from policies.figures import claims_by_month

    with db.pool().connection() as conn:
        figures = claims_by_month(conn)
    st.caption(t("wb_claims_caption", lang))
    if figures.empty:
        st.info(t("wb_claims_none", lang))
        return
    st.dataframe(pd.DataFrame({
        t("col_product", lang): figures["product"],
        t("col_month", lang): figures["month"],
        t("col_claims_filed", lang): figures["claims_filed"],
        t("col_claims_approved", lang): figures["claims_approved"],
        t("col_incurred", lang): [money(v, lang) for v in figures["incurred"]],
        t("col_paid", lang): [money(v, lang) for v in figures["paid"]],
        t("col_earned", lang): [money(v, lang) for v in figures["earned_premium"]],
        t("col_loss_ratio", lang): ["—" if pd.isna(v) else f"{v:.1%}"
                                    for v in figures["loss_ratio"]],
    }), hide_index=True, width="stretch")
