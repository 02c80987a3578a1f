"""The actuarial workbench: back-tests, the GLM and the gaming report."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from actuary import backtest, gaming, glm
from actuary.synthetic import HAZARD_RATIO_PER_A1C, synthetic_portfolio
from cli.main import main
from devices.fleet import fleet_messages, portfolio
from devices.provisioning import add_portfolio
from pricing.ruleset import load_builtin
from tests.helpers import START, TEST_SECRET, current_ledger, load_fleet, store_messages

DEFAULT = load_builtin("default")


def test_glm_recovers_the_simulated_hba1c_effect() -> None:
    portfolio = synthetic_portfolio(20_000, 365, seed=11)
    fit = glm.glm_on_synthetic(portfolio, DEFAULT, date(2025, 12, 31))
    _, low, high = fit.rate_ratio("est_a1c")
    assert low < HAZARD_RATIO_PER_A1C < high
    assert high - low < 0.6  # informative, not a flat interval
    age_rr = fit.rate_ratio("age_65+")
    assert age_rr[1] > 1.0  # the older band's higher rate is found too
    assert fit.claims > 100


def test_gaming_report_flags_exactly_the_gaming_personas() -> None:
    p = synthetic_portfolio(3000, 120, seed=3)
    report = gaming.gaming_report(p.policies, p.bindings, p.readings, DEFAULT, date(2025, 4, 30))
    flagged = set(report.by_segment.loc[report.by_segment["flagged"], "segment"])
    assert flagged == {"gamer_control_solution", "gamer_manual", "gamer_clock"}
    reasons = report.exclusions.set_index(["segment", "reason"])["readings"]
    assert reasons[("gamer_control_solution", "excluded_sample")] > 100
    assert reasons[("gamer_manual", "excluded_source")] > 100
    # The per-policy review list is noisier (a run of late syncs), but it is mostly gamers.
    review = report.flagged_policies["segment"]
    assert len(review) > 100
    assert review.isin(flagged).mean() > 0.9
    # Safety: the over-treaters earn the reward while going low; the report finds them (and
    # not the erratic, who go low as often as some but earn nothing for it).
    safety = report.safety.set_index("segment")
    assert set(safety.index[safety["flagged"]]) == {"over_treater"}
    low = safety["days_below_3_9_percent"].astype(float)
    assert low["over_treater"] > 5 * low["well_controlled"]
    assert float(safety["mean_bonus"]["over_treater"]) > 0
    rewarded = report.hypo_rewarded["segment"]
    over_treaters = int(safety["policies"]["over_treater"])
    assert (rewarded == "over_treater").sum() > 0.9 * over_treaters
    assert rewarded.value_counts().index[0] == "over_treater"


def test_backtest_equals_the_engine_and_exports(db_url: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from pricing.engine import run_pricing

    load_fleet(db_url, n=40, days=35, seed=12)
    through = START + timedelta(days=34)
    run_pricing(db_url, through)
    engine = current_ledger(db_url)
    engine_final = engine[engine["day"] == through].set_index("policy_id")["sum_insured"]

    monkeypatch.setenv("DATABASE_URL", db_url)
    candidate = tmp_path / "generous.toml"
    candidate.write_text(DEFAULT.with_parameters(name="generous", delta_in_target=150.0)
                         .to_toml())
    assert main(["actuary", "backtest", "--ruleset", str(candidate), "--baseline", "default",
                 "--through", through.isoformat(), "--json", "--out", str(tmp_path / "out")]) == 0
    report = json.loads(capsys.readouterr().out)
    per = pd.read_csv(tmp_path / "out" / "per_policy.csv").set_index("policy_id")
    pd.testing.assert_series_equal(per["sum_insured_baseline"].sort_index(),
                                   engine_final.sort_index(), check_names=False)
    assert report["total_sum_insured_baseline"] == pytest.approx(engine_final.sum())
    assert report["change_vs_baseline"] > 0  # a richer in-target step pays more
    assert report["expected_liability"] > report["expected_liability_baseline"]
    assert {s["segment"] for s in report["by_segment"]} <= {
        "well_controlled", "improving", "deteriorating", "erratic", "lapsing",
        "gamer_control_solution", "gamer_retester", "gamer_manual", "gamer_clock"}
    for name in ("by_segment", "distribution", "paths"):
        assert (tmp_path / "out" / f"{name}.csv").stat().st_size > 0


def test_gaming_cli_sees_clock_backdating_in_stored_readings(
        db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> None:
    load_fleet(db_url, n=60, days=40, seed=5)
    with psycopg.connect(db_url) as conn:
        clock_gamers = {str(r[0]) for r in conn.execute(
            "select d.device_id from policies p join policy_devices d using (policy_id) "
            "where p.segment = 'gamer_clock'")}
    assert clock_gamers
    monkeypatch.setenv("DATABASE_URL", db_url)
    assert main(["actuary", "gaming", "--through", (START + timedelta(days=39)).isoformat(),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    inverted = {r["device_id"] for r in report["clock_inversions"]}
    assert inverted and inverted <= clock_gamers


def test_gaming_report_prices_each_policy_by_its_own_products_ruleset(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Meter and CGM wearers in one stored portfolio: each segment's mean bonus in the gaming
    report is the back-test's under its own product's ruleset (a CGM wearer by cgm-default, not
    by the meter rules); a candidate replaces only its own product's ruleset."""
    people = portfolio(24, 17, START, cgm_share=0.5)
    assert 4 <= sum(p.kind == "cgm" for p in people) <= 20
    with psycopg.connect(db_url) as conn:
        add_portfolio(conn, people, TEST_SECRET)
        conn.commit()
    store_messages(db_url, [(m.topic, m.payload, m.at) for m in fleet_messages(people, 17, 22)
                            if m.topic.endswith("readings")])
    through = START + timedelta(days=21)
    monkeypatch.setenv("DATABASE_URL", db_url)

    def segment_bonus(ruleset: str, baseline: str) -> dict[str, float]:
        out = tmp_path / ruleset.replace("/", "_")
        assert main(["actuary", "backtest", "--ruleset", ruleset, "--baseline", baseline,
                     "--through", through.isoformat(), "--json", "--out", str(out)]) == 0
        capsys.readouterr()
        per = pd.read_csv(out / "per_policy.csv")
        return {str(k): float(v) for k, v in per.groupby("segment")["bonus"].mean().items()}

    def gaming(*extra: str) -> dict[str, float]:
        assert main(["actuary", "gaming", "--through", through.isoformat(), "--json",
                     *extra]) == 0
        rows = json.loads(capsys.readouterr().out)["by_segment"]
        return {r["segment"]: r["mean_bonus"] for r in rows}

    cgm = segment_bonus("cgm-default", "cgm-default")
    meters = segment_bonus("default", "default")
    assert cgm and meters and all(s.startswith("cgm_") for s in cgm)
    report = gaming()
    assert report == pytest.approx({**meters, **cgm})
    assert len({round(v) for v in cgm.values()}) > 1  # not every CGM segment at one figure

    # A candidate of the meter product changes the meter segments only.
    generous = tmp_path / "default.toml"
    generous.write_text(DEFAULT.with_parameters(delta_in_target=150.0).to_toml())
    richer = segment_bonus(str(generous), "default")
    with_candidate = gaming("--ruleset", str(generous))
    assert with_candidate == pytest.approx({**richer, **cgm})
    assert richer != pytest.approx(meters)


def test_backtest_loading_readings_a_chunk_at_a_time_changes_nothing() -> None:
    """A stored portfolio's back-test loads one chunk of policies' readings at a time; the
    result must be the same as with every reading in memory, and each load must ask only for
    its chunk's meters."""
    p = synthetic_portfolio(300, 60, seed=5, with_claims=False)
    through = (p.policies["start_date"].min() + pd.Timedelta(days=59)).date()
    generous = DEFAULT.with_parameters(name="generous", delta_in_target=150.0)
    whole = backtest.backtest(p.policies, p.bindings, p.readings, generous, DEFAULT, through)
    asked: list[list[str]] = []

    def load(device_ids: list[str]) -> pd.DataFrame:
        asked.append(device_ids)
        return p.readings[p.readings["device_id"].isin(device_ids)]

    chunked = backtest.backtest(p.policies, p.bindings, load, generous, DEFAULT, through,
                               chunk_policies=70)
    assert [len(ids) for ids in asked] == [70, 70, 70, 70, 20]  # one meter per policy here
    assert sorted(d for ids in asked for d in ids) == sorted(p.bindings["device_id"])
    pd.testing.assert_frame_equal(chunked.per_policy, whole.per_policy)
    pd.testing.assert_frame_equal(chunked.by_segment, whole.by_segment)


def test_a_backtest_partitioned_on_a_local_dask_cluster_equals_one_process(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from actuary import partitioned
    from pricing import store

    load_fleet(db_url, n=30, days=30, seed=14)
    through = START + timedelta(days=29)
    generous = DEFAULT.with_parameters(name="generous", delta_in_target=150.0)
    with psycopg.connect(db_url) as conn:
        policies, bindings = store.load_policies(conn)
        single = backtest.backtest(policies, bindings, lambda ids: store.load_readings(conn, ids),
                                  generous, DEFAULT, through)
    assert partitioned.partitions([f"P{i}" for i in range(10)], 4) == [
        ["P0", "P1", "P2"], ["P3", "P4", "P5"], ["P6", "P7", "P8"], ["P9"]]
    with partitioned.cluster(partitioned.LOCAL, workers=2) as client:
        spread = partitioned.partitioned_backtest(client, db_url, policies, generous, DEFAULT,
                                                  through, n_partitions=4)
        assert len(client.scheduler_info()["workers"]) == 2

    def ordered(frame: pd.DataFrame, key: str) -> pd.DataFrame:
        return frame.sort_values(key).reset_index(drop=True)

    pd.testing.assert_frame_equal(ordered(spread.per_policy, "policy_id"),
                                  ordered(single.per_policy, "policy_id"))
    pd.testing.assert_frame_equal(spread.by_segment, single.by_segment)
    assert spread.exposure == single.exposure and spread.summary() == single.summary()
    assert single.summary()["change_vs_baseline"] > 0  # not two empty results
    # The CLI points at a cluster the same way.
    monkeypatch.setenv("DATABASE_URL", db_url)
    candidate = tmp_path / "generous.toml"
    candidate.write_text(generous.to_toml())
    assert main(["actuary", "backtest", "--ruleset", str(candidate), "--through",
                 through.isoformat(), "--scheduler", "local", "--workers", "2",
                 "--partitions", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["total_sum_insured"] == pytest.approx(single.summary()["total_sum_insured"])
