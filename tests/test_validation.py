"""The actuary's validation pack: Bühlmann–Straub credibility against a published case, lift
and Gini against hand-computed ones, properties of both, and the pack (`glucover actuary
validate`) reproducing the back-test's figures. docs/actuarial.md has the formulas."""

from __future__ import annotations

import itertools
import json
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actuary import credibility, lift
from actuary.credibility import BuhlmannStraub
from cli.main import main
from pricing.ruleset import load_builtin
from tests.helpers import START, load_fleet

# Hachemeister (1975): average bodily-injury claim amounts (ratios) and claim numbers (weights)
# of five US states over 12 quarters, as printed in the actuar package's vignette "Credibility
# theory features of actuar" (Dutang, Goulet, Milhaud, Pigeon), section 2.
HACHEMEISTER_RATIOS = {
    1: [1738, 1642, 1794, 2051, 2079, 2234, 2032, 2035, 2115, 2262, 2267, 2517],
    2: [1364, 1408, 1597, 1444, 1342, 1675, 1470, 1448, 1464, 1831, 1612, 1471],
    3: [1759, 1685, 1479, 1763, 1674, 2103, 1502, 1622, 1828, 2155, 2233, 2059],
    4: [1223, 1146, 1010, 1257, 1426, 1532, 1953, 1123, 1343, 1243, 1762, 1306],
    5: [1456, 1499, 1609, 1741, 1482, 1572, 1606, 1735, 1607, 1573, 1613, 1690],
}
HACHEMEISTER_WEIGHTS = {
    1: [7861, 9251, 8706, 8575, 7917, 8263, 9456, 8003, 7365, 7832, 7849, 9077],
    2: [1622, 1742, 1523, 1515, 1622, 1602, 1964, 1515, 1527, 1748, 1654, 1861],
    3: [1147, 1357, 1329, 1204, 998, 1077, 1277, 1218, 896, 1003, 1108, 1121],
    4: [407, 396, 348, 341, 315, 328, 352, 331, 287, 384, 321, 342],
    5: [2902, 3172, 3046, 3068, 2693, 2910, 3275, 2697, 2663, 3017, 3242, 3425],
}


def hachemeister_csv(path: Path) -> Path:
    rows = [(state, quarter + 1, HACHEMEISTER_WEIGHTS[state][quarter], ratio)
            for state, ratios in HACHEMEISTER_RATIOS.items()
            for quarter, ratio in enumerate(ratios)]
    pd.DataFrame(rows, columns=["group", "period", "weight", "value"]).to_csv(path, index=False)
    return path


def test_credibility_reproduces_the_hachemeister_case(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """actuar's vignette, section 4: cm(~state, hachemeister, ratios, weights) gives collective
    premium 1684, between-state variance 89639 and within-state variance 139120026."""
    assert main(["actuary", "credibility", "--input", str(hachemeister_csv(tmp_path / "h.csv")),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    summary = report["summary"]
    assert round(summary["collective_mean"]) == 1684
    assert round(summary["tau2"]) == 89639
    assert round(summary["s2"]) == 139120026
    assert summary["groups"] == 5
    groups = pd.DataFrame(report["groups"]).set_index("group")
    # By hand from the formulas: state 4 has the least weight, so the least credibility.
    w4 = sum(HACHEMEISTER_WEIGHTS[4])
    assert groups.loc["4", "weight"] == w4
    assert groups.loc["4", "z"] == pytest.approx(w4 / (w4 + summary["s2"] / summary["tau2"]),
                                                 rel=1e-12)
    assert groups["z"].idxmin() == "4"
    x4 = sum(r * w for r, w in zip(HACHEMEISTER_RATIOS[4], HACHEMEISTER_WEIGHTS[4],
                                  strict=True)) / w4
    z4 = float(groups["z"]["4"])
    assert groups.loc["4", "estimate"] == pytest.approx(
        z4 * x4 + (1 - z4) * summary["collective_mean"], rel=1e-12)


def test_credibility_csv_has_full_precision(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["actuary", "credibility", "--input",
                 str(hachemeister_csv(tmp_path / "h.csv"))]) == 0
    groups_text, summary_text = capsys.readouterr().out.split("\n\n")
    assert groups_text.splitlines()[0] == "group,weight,mean,z,estimate"
    assert summary_text.splitlines()[0] == "collective_mean,s2,tau2,groups"
    values = summary_text.splitlines()[1].split(",")
    model = BuhlmannStraub().fit(pd.read_csv(tmp_path / "h.csv"))
    assert float(values[0]) == model.collective_mean_  # round-trips exactly
    assert float(values[2]) == model.tau2_


@pytest.mark.parametrize(("command", "body", "message"), [
    ("credibility", "group,period,value\na,1,2\n", "missing column(s) weight"),
    ("credibility", "group,period,weight,value\na,1,1,2\na,2,x,2\n", "line 3, column weight: "
     "'x' is not a number > 0"),
    ("credibility", "group,period,weight,value\na,1,1,2\na,2,0,2\nb,1,-1,3\n", "line 3, column "
     "weight: '0' is not a number > 0 (1 more such rows)"),
    ("credibility", "group,period,weight,value\na,1,1,two\n", "line 2, column value: 'two' is "
     "not a number"),
    ("credibility", "group,period,weight,value\na,1,1,2\na,1,1,3\n", "line 3, column period"),
    ("credibility", "group,period,weight,value\n", "no rows"),
    ("lift", "policy_id,exposure,actual\np,1,0\n", "missing column(s) predicted"),
    ("lift", "policy_id,exposure,actual,predicted\np,0,1,1\n", "line 2, column exposure"),
    ("lift", "policy_id,exposure,actual,predicted\np,1,-1,1\n", "line 2, column actual: '-1' is "
     "not a number >= 0"),
    ("lift", "policy_id,exposure,actual,predicted\np,1,1,1\np,1,1,1\n", "line 3, column "
     "policy_id: 'p' appears twice"),
    ("lift", "policy_id,exposure,actual,predicted,predicted_b\np,1,1,1,nan\n",
     "column predicted_b"),
    ("lift", "policy_id,exposure,actual,predicted\np,1,0,1\n", "actual sums to 0"),
])
def test_bad_input_files_say_line_and_column(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, body: str,
        message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(body)
    assert main(["actuary", command, "--input", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"glucover: {path}: ") and message in err


# ------------------------------------------------------------------------- Gini by hand


def test_gini_of_a_perfectly_ranked_score() -> None:
    """Four policies of one year each, the claim on the highest predicted: x = 1/4..1, y = 0,
    0, 0, 1; area = 1/4 x (0 + 1) / 2 = 1/8; Gini = 1 − 2/8 = 0.75."""
    ones = np.ones(4)
    assert lift.gini_index(ones, np.array([0.0, 0, 0, 1]), np.array([1.0, 2, 3, 4])) == 0.75
    # Unequal exposure: (2 years, no claim), (1 year, 3 claims), ranked by rate 0.1 < 0.5.
    # x = 2/3, 1; y = 0, 1; area = (1/3)(0 + 1)/2 = 1/6; Gini = 2/3.
    assert lift.gini_index(np.array([2.0, 1]), np.array([0.0, 3]),
                           np.array([0.2, 0.5])) == pytest.approx(2 / 3, rel=1e-15)
    # The same score reversed ranks worst: the Lorenz curve lies above the diagonal.
    assert lift.gini_index(ones, np.array([0.0, 0, 0, 1]), np.array([4.0, 3, 2, 1])) == -0.75


def test_gini_of_a_random_score() -> None:
    """Over every order of a score (all 4! permutations) the Gini averages exactly 0; a large
    random score's 95% interval holds 0."""
    actual = np.array([1.0, 2, 3, 4])
    ginis = [lift.gini_index(np.ones(4), actual, np.array(p, dtype=float))
             for p in itertools.permutations([1, 2, 3, 4])]
    assert np.mean(ginis) == pytest.approx(0.0, abs=1e-15)
    rng = np.random.default_rng(5)
    n = 20_000
    exposure = rng.uniform(0.5, 1.0, n)
    # Claims at one rate per unit exposure; the score knows nothing of them.
    frame = pd.DataFrame({"exposure": exposure,
                          "actual": rng.poisson(0.3 * exposure).astype(float),
                          "predicted": rng.uniform(0.1, 1.0, n) * exposure})
    report = lift.lift_report(frame, seed=2, replicates=200)
    assert report.gini_low < 0 < report.gini_high
    assert abs(report.gini) < 0.03


def test_equal_exposure_bins_by_the_midpoint_rule(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Exposures 1, 1, 2 sorted by predicted rate: midpoints 0.5/4, 1.5/4, 3/4 of the total, so
    with 2 bins the first two policies fill bin 1 and the third bin 2."""
    path = tmp_path / "lift.csv"
    path.write_text("policy_id,exposure,actual,predicted,predicted_b\n"
                    "c,2,1,0.8,0.4\na,1,0,0.1,0.2\nb,1,2,0.3,0.3\n")
    assert main(["actuary", "lift", "--input", str(path), "--bins", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    first, second = report["lift"]
    assert (first["policies"], first["exposure"], second["exposure"]) == (2, 2.0, 2.0)
    assert first["actual_per_exposure"] == 1.0  # (0 + 2) / 2
    assert first["predicted_per_exposure"] == pytest.approx(0.2)  # (0.1 + 0.3) / 2
    assert first["ae"] == pytest.approx(2 / 0.4)
    assert second["ae"] == pytest.approx(1 / 0.8)
    # Gini: rates 0.1, 0.3, 0.4; x = 1/4, 1/2, 1; y = 0, 2/3, 1; area = 1/4 x 1/3 / 2 ... by
    # trapezoids: (1/4)(0)/2 + (1/4)(0 + 2/3)/2 + (1/2)(2/3 + 1)/2 = 0 + 1/12 + 5/12 = 1/2.
    assert report["summary"]["gini"] == pytest.approx(0.0, abs=1e-15)
    # Double lift: ratios predicted / predicted_b are a 0.5, b 1, c 2: bin 1 holds a and b.
    d1, d2 = report["double_lift"]
    assert d1["policies"] == 2 and d1["ae"] == pytest.approx(2 / 0.4)
    assert d1["ae_b"] == pytest.approx(2 / 0.5) and d2["ae_b"] == pytest.approx(1 / 0.4)


# ----------------------------------------------------------------------------- properties

groups_strategy = st.lists(
    st.lists(st.tuples(st.floats(0.01, 100.0), st.floats(-50.0, 50.0)), min_size=1,
             max_size=6),
    min_size=2, max_size=8)


def _frame(groups: list[list[tuple[float, float]]]) -> pd.DataFrame:
    rows = [(f"g{i}", j, w, x) for i, g in enumerate(groups) for j, (w, x) in enumerate(g)]
    return pd.DataFrame(rows, columns=["group", "period", "weight", "value"])


@settings(max_examples=200, deadline=None)
@given(groups_strategy)
def test_credibility_factors_lie_in_0_1_and_estimates_between_the_means(
        groups: list[list[tuple[float, float]]]) -> None:
    model = BuhlmannStraub().fit(_frame(groups))
    g = model.groups_
    assert ((g["z"] >= 0) & (g["z"] <= 1)).all()
    mu = model.collective_mean_
    low = np.minimum(g["mean"], mu) - 1e-9 * (1 + abs(mu))
    high = np.maximum(g["mean"], mu) + 1e-9 * (1 + abs(mu))
    assert ((g["estimate"] >= low) & (g["estimate"] <= high)).all()
    assert model.tau2_ >= 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0.01, 10.0), st.integers(0, 5), st.floats(0.01, 5.0)),
                min_size=2, max_size=40),
       st.floats(1e-3, 1e3))
def test_gini_is_invariant_to_exposure_scaling(
        rows: list[tuple[float, int, float]], scale: float) -> None:
    exposure = np.array([r[0] for r in rows])
    actual = np.array([float(r[1]) for r in rows])
    predicted = np.array([r[2] for r in rows])
    if actual.sum() == 0:
        return
    gini = lift.gini_index(exposure, actual, predicted)
    assert lift.gini_index(exposure * scale, actual, predicted) == pytest.approx(
        gini, abs=1e-9)
    assert -1 <= gini <= 1


def test_each_quantity_is_its_formula() -> None:
    """The pure functions on a case small enough to do by hand: groups a (w 1, 3; X 2, 4) and
    b (w 2; X 10). w_a = 4, X_a = (2 + 12)/4 = 3.5; w_b = 2, X_b = 10; w = 6, X = 34/6;
    s2 = (1 x 1.5² + 3 x 0.5²) / 1 = 3; Σ w_i (X_i − X)² = 4 (13/6)² + 2 (26/6)² = 56.33...;
    τ² = (56.33... − 3) / (6 − 20/6) = 20."""
    group = np.array([0, 0, 1])
    weight, value = np.array([1.0, 3.0, 2.0]), np.array([2.0, 4.0, 10.0])
    w_i = credibility.group_weights(weight, group, 2)
    x_i = credibility.group_means(weight, value, group, w_i)
    assert list(w_i) == [4.0, 2.0] and list(x_i) == [3.5, 10.0]
    s2 = credibility.within_variance(weight, value, group, x_i, np.array([2, 1]))
    assert s2 == 3.0
    tau2 = credibility.between_variance(w_i, x_i, s2)
    assert tau2 == pytest.approx(20.0, rel=1e-12)
    z = credibility.credibility_factors(w_i, s2, tau2)
    assert z == pytest.approx([4 / 4.15, 2 / 2.15], rel=1e-12)
    assert list(credibility.credibility_factors(w_i, s2, 0.0)) == [0.0, 0.0]


# ------------------------------------------------------------------- the pack


def test_the_pack_reproduces_the_backtest_and_writes_the_pdf(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proposed = tmp_path / "wider.toml"
    proposed.write_text(load_builtin("default").with_parameters(
        name="wider", target_high=8.0, delta_high=-150.0).to_toml())
    assert main(["actuary", "backtest", "--ruleset", str(proposed), "--baseline", "default",
                 "--synthetic", "1500", "--json"]) == 0
    backtest = json.loads(capsys.readouterr().out)
    pdf = tmp_path / "pack.pdf"
    assert main(["actuary", "validate", "--ruleset", str(proposed), "--synthetic", "1500",
                 "--json", "--pdf", str(pdf)]) == 0
    pack = json.loads(capsys.readouterr().out)
    reproduced = pack["summary"]["backtest"]
    for key, value in backtest.items():
        if key not in ("by_segment", "distribution"):
            assert reproduced[key] == value, key
    s = pack["summary"]
    assert s["in_force"] == "default" and s["policies"] == 1500
    assert s["holdout_from"] == "2025-10-03" and s["through"] == "2025-12-31"
    assert s["training_claims"] > 0 and s["holdout_claims"] > 0
    assert -1 < s["gini_proposed"] < 1 and s["gini_proposed_low"] <= s["gini_proposed_high"]
    # Better control earns a higher score and claims less: the score's coefficient is negative.
    assert s["score_coefficient_in_force"] < 0
    # The cost table sums to its total, and the total is the summary's.
    cost = pd.DataFrame(pack["cost"])
    body, total = cost.iloc[:-1], cost.iloc[-1]
    assert total["segment"] == "all" and body["policies"].sum() == 1500
    assert body["expected_payout_proposed"].sum() == pytest.approx(
        total["expected_payout_proposed"])
    assert s["cost_of_change"] == pytest.approx(
        total["expected_payout_proposed"] - total["expected_payout_in_force"])
    # A wider target band raises sums insured, so the change costs money.
    assert s["cost_of_change"] > 0
    assert len(pack["lift"]) == 10 and len(pack["double_lift"]) == 10
    assert sum(b["policies"] for b in pack["lift"]) == sum(b["policies"]
                                                           for b in pack["double_lift"])
    assert pdf.read_bytes().startswith(b"%PDF")
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True,
                          capture_output=True, text=True).stdout
    assert "Ruleset validation pack" in text and "Double lift" in text
    assert "well_controlled" in text


def test_the_pack_in_chinese(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pdf = tmp_path / "pack-zh.pdf"
    assert main(["actuary", "validate", "--ruleset", "default", "--synthetic", "1200",
                 "--pdf", str(pdf), "--lang", "zh"]) == 0
    assert "cost of the change" in capsys.readouterr().out
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True,
                          capture_output=True, text=True).stdout
    assert "规则集验证报告" in text and "双重提升图" in text


def test_validate_on_the_stored_portfolio_says_when_claims_are_too_few(
        db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> None:
    """The stored portfolio is replayed from the database; a small, short one has no claims
    to judge a model by, and the command says so (exit 2), not a stack trace."""
    load_fleet(db_url, n=20, days=30, seed=4)
    monkeypatch.setenv("DATABASE_URL", db_url)
    through = START + timedelta(days=29)
    assert main(["actuary", "validate", "--ruleset", "default", "--through",
                 through.isoformat(), "--holdout-from", (through - timedelta(days=9))
                 .isoformat()]) == 2
    err = capsys.readouterr().err
    assert "claims models need claims experience" in err or "holdout cannot judge" in err
    assert main(["actuary", "validate", "--ruleset", "default", "--through",
                 through.isoformat(), "--holdout-from", "2030-01-01"]) == 2
    assert "is after the last day" in capsys.readouterr().err


def test_bench_actuary_small(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "actuary", "--policies", "1500", "--days", "200",
                 "--chunk-policies", "600", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["policy_days"] == 1500 * 200
    assert report["holdout_claims"] > 0 and report["training_claims"] > 0
    for key in ("pack_seconds", "replay_seconds", "figures_seconds", "backtest_seconds",
                "peak_rss_mb"):
        assert report[key] > 0


# --------------------------------------------------------------- the workbench's tab


@pytest.fixture
def workbench_db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    from dashboard.auth import create_user
    from pricing import store
    from tests.helpers import PASSWORD

    load_fleet(db_url, n=6, days=20, seed=6)
    with psycopg.connect(db_url) as conn:
        store.current(conn, "default")
        create_user(conn, "ann", PASSWORD, "actuary", rounds=4)
        conn.commit()
    monkeypatch.setenv("DATABASE_URL", db_url)
    return db_url


@pytest.fixture
def workbench(workbench_db: str) -> Any:
    """ann's workbench (AppTest), signed in."""
    from tests.helpers import signed_in

    return signed_in("ann")


def _button(at: Any, label: str) -> Any:
    return next(b for b in at.button if b.label == label)


def _run_validation(at: Any, label: str = "Run validation", synthetic: int | None = None
                    ) -> None:
    """Press the Validation tab's run button (`label`, in the page's language) on the stored
    portfolio, or on a synthetic one of `synthetic` policies; the page shows no exception."""
    if synthetic is not None:
        at.radio(key="va_source").set_value("synthetic").run()
        at.number_input(key="va_size").set_value(synthetic).run()
    _button(at, label).click()
    at.run()
    assert not at.exception, at.exception


def test_the_validation_tab_prices_a_draft_and_publishing_asks_for_the_committee(
        workbench: Any, workbench_db: str) -> None:
    at = workbench
    next(s for s in at.selectbox if s.label == "Ruleset").set_value("default").run()
    next(n for n in at.number_input if n.label == "In target up to (mmol/L)").set_value(8.0)
    _button(at, "Validate").click()
    at.run()
    assert "Cost of the change: run the Validation tab on this draft to see it." in [
        c.value for c in at.caption]
    # The stored fleet is too small and short for claims: the tab says so, and no cost.
    _run_validation(at)
    assert any(w.value.startswith("No validation pack:") for w in at.warning)
    # A synthetic portfolio of a year has claims to judge the draft by.
    _run_validation(at, synthetic=1500)
    labels = {m.label for m in at.metric}
    assert {"Gini on the holdout, proposed", "Cost of the change a year out"} <= labels
    assert [s.value for s in at.subheader][-4:] == [
        "Lift: claims per policy-year by equal-exposure decile (bars actual, line predicted)",
        "Double lift: actual / expected, sorted by proposed / in force",
        "Ordered Lorenz curves on the holdout", "Cost by product and segment"]
    cost = next(d.value for d in at.dataframe if "cost of the change" in d.value.columns)
    assert "cost of the change" in cost.columns and cost.iloc[-1]["segment"] == "all"
    # The publish step now shows the cost; above the threshold it needs a reference.
    assert any(i.value.startswith("Cost of the change a year out: RMB +") for i in at.info)
    publish = _button(at, "Publish new version")
    assert publish.disabled
    at.text_input(key=next(k for k in (w.key for w in at.text_input)
                           if k and k.endswith("committee_reference"))).input("PC-2026-14")
    at.run()
    _button(at, "Publish new version").click()
    at.run()
    assert not at.exception, at.exception
    with psycopg.connect(workbench_db) as conn:
        row = conn.execute("select notes from rulesets where name = 'default' "
                           "order by version desc limit 1").fetchone()
    assert row is not None and "pricing committee reference PC-2026-14" in row[0]
    assert "cost of the change a year out +" in row[0]


def test_the_validation_tab_in_chinese(workbench: Any) -> None:
    at = workbench
    at.selectbox(key="lang_sidebar").set_value("zh").run()
    _run_validation(at, "运行验证", synthetic=1200)
    assert {"保留期基尼系数（拟议）", "一年后的变更成本"} <= {m.label for m in at.metric}
    assert any("变更成本" in d.value.columns for d in at.dataframe)


def test_the_claims_model_is_statsmodels_poisson_glm() -> None:
    """validation.poisson_glm (Newton–Raphson) against statsmodels' GLM on one data set."""
    import statsmodels.api as sm

    from actuary.validation import poisson_glm

    rng = np.random.default_rng(3)
    n = 5000
    design = np.column_stack([np.ones(n), rng.uniform(0.8, 1.4, n), rng.random(n) < 0.3])
    exposure = rng.uniform(0.1, 1.0, n)
    claims = rng.poisson(exposure * np.exp(design @ np.array([-2.0, -0.7, 0.4]))).astype(float)
    expected = sm.GLM(claims, design, family=sm.families.Poisson(), exposure=exposure).fit()
    np.testing.assert_allclose(poisson_glm(design, claims, exposure), expected.params,
                               rtol=1e-8, atol=1e-10)
