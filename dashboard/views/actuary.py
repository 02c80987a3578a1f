"""Actuaries: portfolio KPIs, the ruleset editor, what-if back-tests, the GLM, gaming."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import altair as alt
import pandas as pd
import psycopg
import streamlit as st

from dashboard import db
from dashboard.auth import User
from dashboard.format import money
from dashboard.i18n import t
from dashboard.parameter_form import parameter_inputs
from pricing import actuary, glycaemia, safety, store
from pricing.ruleset import (
    RULESET_OF_KIND,
    Ruleset,
    RulesetError,
    declaration,
    declared_fields,
    diff,
    load_builtin,
)
from pricing.synthetic import synthetic_portfolio

# The portfolio on the last priced day (the nightly run prices every policy through yesterday):
# one day's rows by the ledger's day index (0021), not every policy-day. The heaviest queries
# of the workbench are named, so `glucover bench dashboard --explain` shows their plans.
KPI_SQL = (
    "select count(*) as policies, coalesce(sum(sum_insured), 0)::float8 as total, "
    "coalesce(avg(bonus), 0)::float8 as mean_bonus, "
    "coalesce(avg((day_status = 'in_target')::int), 0)::float8 as in_target_share "
    "from current_ledger where day = (select max(day) from sum_insured_ledger)")
# The window ends at the last priced day (the ledger's day index; a max over the daily summary
# itself would read all of it: on TimescaleDB every bucket of the continuous aggregate), and
# travels as a bound value, so the planner sees a month of days and takes the day index.
LAST_PRICED_SQL = "select max(day) from sum_insured_ledger"
TIR_SQL = (
    "select sum(in_range_readings)::float8 / nullif(sum(readings), 0) "
    "from readings_daily r join devices d using (device_id) where d.kind = 'bgm' "
    "and day > %s::date - make_interval(days => %s)")


@st.cache_data(ttl=30, show_spinner=False)
def kpis(url: str) -> dict[str, Any]:
    row = db.frame(KPI_SQL)
    claims = db.one("select count(*) from claims")
    policies = db.one("select count(*) from policies")
    first: dict[str, Any] = {str(k): v for k, v in row.iloc[0].to_dict().items()}
    return {**first, "claims": claims, "all_policies": policies,
            "time_in_range": portfolio_time_in_range()}


TIR_WINDOW_DAYS = 30


def portfolio_time_in_range() -> float | None:
    """Share of the portfolio's valid readings in range over the TIR_WINDOW_DAYS days up to
    the last priced day (and any after it), from the daily summary (readings_daily: validity
    and band as pricing/glycaemia.py). None before the summary has data (plain PostgreSQL:
    before the first pricing run)."""
    try:
        last = db.one(LAST_PRICED_SQL)
        if last is None:
            return None
        value = db.one(TIR_SQL, (last, TIR_WINDOW_DAYS))
    except psycopg.errors.ObjectNotInPrerequisiteState:  # never refreshed
        return None
    return None if value is None else float(value)


def cgm_portfolio() -> dict[str, float] | None:
    """The CGM policies over the last TIR_WINDOW_DAYS of their day summaries (cgm_days, made
    under cgm-default's bands): how many, time in range, time below 54 mg/dL (shares of valid
    readings), and the sensor's coverage of the days it was worn, as the ledger has it (rule 2:
    covered slots of the day's own slots). None without CGM policies."""
    row = db.frame(
        "select count(distinct policy_id)::int as policies, "
        "sum(in_range)::float8 / nullif(sum(readings), 0) as time_in_range, "
        "sum(low)::float8 / nullif(sum(readings), 0) as below_54 "
        "from cgm_days where day > (select max(day) from cgm_days) - %s",
        (TIR_WINDOW_DAYS,)).iloc[0]
    # Coverage on the days worn from the ledger's CGM rows of the same days (their figures are
    # set; a partial index by day finds them), the latest run's row of each policy-day.
    coverage = db.one(
        "select avg(coverage)::float8 / 100 from (select distinct on (policy_id, day) coverage "
        "from sum_insured_ledger where coverage is not null and time_in_range is not null "
        "and day > (select max(day) from cgm_days) - %s "
        "order by policy_id, day, run_id desc) latest", (TIR_WINDOW_DAYS,))
    if not row["policies"]:
        return None
    return {**{str(k): float(v) for k, v in row.to_dict().items()},
            "coverage": float(coverage or 0.0)}


@st.cache_data(ttl=60, show_spinner="Loading the stored portfolio…")
def stored(url: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    with db.pool().connection() as conn:
        policies, bindings = store.load_policies(conn)
        readings = store.load_readings(conn, sorted(set(bindings["device_id"])))
    return policies, bindings, readings


def _published(name: str) -> Ruleset:
    with db.pool().connection() as conn:
        return store.in_force(conn, name)


def ruleset_editor(user: User) -> Ruleset | None:
    names = list(db.frame("select distinct name from rulesets order by name")["name"]) or [
        "default"]
    name = st.selectbox("Ruleset", names)
    base = _published(name)
    st.caption(f"published version {base.version or 'built-in'}")
    with st.form("ruleset"):
        values = parameter_inputs(
            base, [f for f in declared_fields(base.kind) if declaration(f).section != "ruleset"],
            st.session_state.get("lang", "en"))
        new_name = st.text_input("Name", value=base.name)
        submitted = st.form_submit_button("Validate")
    if not submitted and "candidate" not in st.session_state:
        return None
    if submitted:
        try:
            st.session_state["candidate"] = base.with_parameters(name=new_name.strip(), version=0,
                                                                 **values)
        except RulesetError as exc:
            st.error(f"Not valid: {exc}")
            st.session_state.pop("candidate", None)
            return None
    candidate: Ruleset = st.session_state["candidate"]
    changes = diff(base, candidate)
    st.success("Valid.")
    st.dataframe(pd.DataFrame(changes, columns=["parameter", "published", "draft"]).astype(str),
                 hide_index=True, width="stretch")
    c1, c2 = st.columns(2)
    if c1.button("Save draft"):
        db.execute("insert into ruleset_drafts (name, author, body) values (%s, %s, %s) "
                   "on conflict (name) do update set body = excluded.body, author = "
                   "excluded.author, updated_at = now()",
                   (candidate.name, user.username, candidate.to_toml()))
        st.toast("Draft saved")
    risk = safety.hypoglycaemia_risk(candidate)
    reason = ""
    if risk:
        st.warning(f"Hypoglycaemia: {risk}. A scheme that rewards low readings can push people "
                   "into hypoglycaemia. Publish only with a reason, kept with the version.")
        reason = st.text_input("Reason for publishing anyway", key="hypo_reason")
    if c2.button("Publish new version", disabled=not changes or bool(risk and not reason.strip())):
        with db.pool().connection() as conn:
            published = store.publish(conn, candidate, author=user.username,
                                      notes="published from the dashboard",
                                      hypoglycaemia_reason=reason)
        st.success(f"Published {published.name} version {published.version}")
    return candidate


def backtest_section(candidate: Ruleset | None) -> None:
    rules = candidate or _published("default")
    # Against the shipped ruleset of the same kind, over the policies of that kind.
    baseline = _published(RULESET_OF_KIND[rules.kind])
    st.write(f"Candidate **{rules.name}** against published **{baseline.name}** "
             f"v{baseline.version or 'built-in'}")
    if not st.button("Run back-test"):
        return
    with db.pool().connection() as conn:
        policies, bindings = store.load_policies(conn)
        policies = store.of_kind(conn, policies, rules.kind)
    if policies.empty:
        st.warning("No policies of this kind stored yet.")
        return
    bar = st.progress(0.0, text="Back-testing…")
    through = datetime.now(UTC).date() - timedelta(days=1)
    def progress(fraction: float) -> None:
        bar.progress(fraction, text=f"Back-testing… {fraction:.0%}")

    def chunk_readings(device_ids: list[str]) -> pd.DataFrame:  # a chunk at a time
        with db.pool().connection() as conn:
            return store.load_readings(conn, device_ids)

    result = actuary.backtest(policies, bindings, chunk_readings, rules, baseline, through,
                              progress=progress)
    summary = result.summary()
    c1, c2, c3 = st.columns(3)
    c1.metric("Total sum insured", f"{summary['total_sum_insured']:,.0f}",
              delta=f"{summary['change_vs_baseline']:+,.0f} vs baseline")
    liability_change = summary["expected_liability"] - summary["expected_liability_baseline"]
    c2.metric("Expected liability", f"{summary['expected_liability']:,.0f}",
              delta=f"{liability_change:+,.0f}")
    c3.metric("Mean sum insured", f"{summary['mean_sum_insured']:,.0f}")
    h1, h2, h3 = st.columns(3)
    for col, key, label in ((h1, "days_below_3_9", "Days with a reading < 3.9 mmol/L"),
                            (h2, "days_below_3_0", "Days with a reading < 3.0 mmol/L"),
                            (h3, "readings_below_3_0", "Readings < 3.0 mmol/L (time below 54)")):
        value = summary[f"hypo_{key}_percent"]
        change = value - summary[f"hypo_{key}_percent_baseline"]
        col.metric(label, f"{value:.2f}%", delta=f"{change:+.2f} pt vs baseline",
                   delta_color="inverse")
    st.altair_chart(alt.Chart(result.per_policy).mark_bar().encode(
        x=alt.X("bonus:Q", bin=alt.Bin(maxbins=30), title="bonus at period end"),
        y=alt.Y("count():Q", title="policies")), width="stretch")
    st.altair_chart(alt.Chart(result.by_segment).mark_bar().encode(
        x=alt.X("expected_liability:Q", title="expected liability"),
        y=alt.Y("segment:N", sort="-x")), width="stretch")
    st.dataframe(result.by_segment.round(2), hide_index=True, width="stretch")
    st.download_button("Per-policy results (CSV)", result.per_policy.to_csv(index=False),
                       "backtest_per_policy.csv", "text/csv")
    st.download_button("By segment (CSV)", result.by_segment.to_csv(index=False),
                       "backtest_by_segment.csv", "text/csv")


@st.cache_data(show_spinner="Fitting the claim-frequency GLM…")
def _glm(n: int) -> pd.DataFrame:
    portfolio = synthetic_portfolio(n, 365, seed=11)
    through = (portfolio.policies["start_date"].min() + pd.Timedelta(days=364)).date()
    return actuary.glm_on_synthetic(portfolio, load_builtin("default"), through).table


def glm_section() -> None:
    n = st.number_input("Synthetic portfolio size", 1000, 100_000, 5000, step=1000)
    if st.button("Fit GLM"):
        table = _glm(int(n))
        st.dataframe(table.round(4), hide_index=True, width="stretch")
        st.download_button("GLM table (CSV)", table.to_csv(index=False), "glm.csv", "text/csv")


def gaming_section(candidate: Ruleset | None) -> None:
    if not st.button("Run gaming report"):
        return
    policies, bindings, readings = stored(db.database_url())
    if policies.empty:
        st.warning("No policies stored yet.")
        return
    report = actuary.gaming_report(policies, bindings, readings,
                                   candidate or _published("default"),
                                   datetime.now(UTC).date() - timedelta(days=1))
    st.dataframe(report.by_segment.round(1), hide_index=True, width="stretch")
    st.dataframe(report.exclusions, hide_index=True, width="stretch")
    if not report.clock_inversions.empty:
        st.write("Meters whose clock went back while their sequence went up:")
        st.dataframe(report.clock_inversions, hide_index=True)
    st.download_button("Flagged policies (CSV)", report.flagged_policies.to_csv(index=False),
                       "gaming_flagged.csv", "text/csv")
    st.subheader("Safety: hypoglycaemia by segment")
    st.caption("Share of policy-days with a valid reading below 3.9 and below 3.0 mmol/L; a "
               "segment is flagged when the ruleset rewards it while it goes low.")
    st.dataframe(report.safety, hide_index=True, width="stretch")
    st.download_button(f"Policies rewarded while often low ({len(report.hypo_rewarded)}, CSV)",
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
    tabs = st.tabs([t(f"wb_tab_{tab}", lang) for tab in ("ruleset", "backtest", "glm", "gaming")])
    with tabs[0]:
        candidate = ruleset_editor(user)
    with tabs[1]:
        backtest_section(candidate)
    with tabs[2]:
        glm_section()
    with tabs[3]:
        gaming_section(candidate)
