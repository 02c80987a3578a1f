"""The benchmark commands run end to end and check their own results (small sizes here;
their figures are printed, never asserted as timings)."""

from __future__ import annotations

import json

import pytest

from cli.main import main


def test_bench_pricing_small(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "pricing", "--policies", "400", "--days", "60", "--loop-policies",
                 "60", "--chunk-policies", "150", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["policy_days"] == 400 * 60
    assert report["ledgers_equal_on_sample"] is True
    for key in ("policy_days_per_s", "loop_policy_days_per_s", "ratio_vs_loop", "peak_rss_mb"):
        assert report[key] > 0
    # Three chunks (150, 150, 100 policies), the largest held at once; beside them the whole
    # portfolio at once, in a process of its own, the same size.
    assert 0 < report["largest_chunk_readings"] < report["readings"] / 2
    assert report["all_at_once"]["policy_days"] == report["policy_days"]
    assert 20 < report["frame_bytes_per_reading"] < 45  # compact: no int64 seq, no objects
    counts = report["day_status_counts"]
    assert counts["in_target"] > 0 and counts["missed"] > 0 and counts["high"] > 0


def test_bench_ingest_small(settings: object, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "ingest", "--devices", "200", "--readings", "4000", "--workers", "1",
                 "--repeat", "2", "--paced-rate", "500", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["lost"] == 0 and report["duplicated"] == 0
    for key in ("single_readings_per_s", "batched_readings_per_s", "naive_readings_per_s",
                "single_no_acks_readings_per_s", "batched_no_acks_readings_per_s",
                "ratio_vs_naive", "p50_latency_ms", "p99_latency_ms", "paced_p50_latency_ms",
                "paced_p99_latency_ms"):
        assert report[key] > 0
    assert report["scenarios"]["batched_no_acks"]["stored"] == 4000
    # The acks' cost is what the rates beside it say, not a figure of its own.
    single, bare = report["single_readings_per_s"], report["single_no_acks_readings_per_s"]
    assert report["acks_cost_single_percent"] == round(100 * (1 - single / bare), 1)
    assert report["scenarios"]["batched"]["stored"] == 4000
    assert report["scenarios"]["paced"]["stored"] == 2500  # five seconds at 500/s
    assert report["paced_readings_per_s"] == report["scenarios"]["paced"]["readings_per_s"] > 0
    assert {k: len(v) for k, v in report["rounds"].items()} == {
        "single": 2, "batched": 2, "single_no_acks": 2, "batched_no_acks": 2, "naive": 2,
        "copy_limit": 2}
    # The machine's limit beside it: the same readings COPY'd straight in, and the share.
    assert report["copy_limit_readings_per_s"] > 0
    # Each batched round against the limit measured just before it; the median of those.
    shares = [round(100 * b / c, 1) for b, c in zip(
        report["rounds"]["batched"], report["rounds"]["copy_limit"], strict=True)]
    assert report["batched_share_of_limit_rounds"] == shares
    assert report["batched_share_of_limit_percent"] == sorted(shares)[1]
    assert set(report["cpu_s_per_1000_readings"]["copy_limit"]) == {"database",
                                                                    "load_generator"}
    # CPU time comes in 10 ms clock ticks: COPYing 4,000 readings may cost less than one.
    assert report["cpu_s_per_1000_readings"]["copy_limit"]["load_generator"] >= 0
    for scenario in ("single", "batched"):
        use = report["cpu_s_per_1000_readings"][scenario]
        assert set(use) == {"worker", "broker", "database", "load_generator"}
        # CPU time comes in 10 ms clock ticks: 4,000 batched readings may cost the database
        # less than one (a CI run saw 0.0); the worker's decoding always costs more.
        assert use["worker"] > 0 and use["database"] >= 0 and use["broker"] >= 0
    assert report["cpu_s_per_1000_readings"]["single"]["broker"] > 0  # 4,000 messages
    assert report["single_readings_per_s"] in report["rounds"]["single"]


def test_bench_soak_reports_throughput_and_memory_over_time(settings: object) -> None:
    from bench.soak import FLAT_MB_PER_MIN, run_soak
    from glucover.config import Settings

    assert isinstance(settings, Settings)
    report = run_soak(0.4, 500, settings, progress=False)
    samples = report["samples"]
    assert len(samples) >= 4
    stored = [s["stored"] for s in samples]
    assert stored == sorted(stored) and 0 < report["stored"] == stored[-1] <= report["sent"]
    assert all(s["worker_rss_mb"] > 10 for s in samples)
    assert report["worker_rss_max_mb"] == max(s["worker_rss_mb"] for s in samples)
    assert report["memory_flat"] == (abs(report["worker_rss_slope_mb_per_min"])
                                     < FLAT_MB_PER_MIN)


def test_bench_dashboard_renders_every_page(settings: object,
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://unused")  # the bench must leave it as is
    code = main(["bench", "dashboard", "--policies", "60", "--days", "60", "--runs", "3",
                 "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    report = json.loads(out.out)
    # Loaded by COPY: every policy priced every day, readings as the synthetic portfolio has.
    assert report["ledger_rows"] == 60 * 60 and report["readings"] > 60 * 60
    assert set(report["pages"]) == {"policyholder", "actuary", "operations", "clinician"}
    for page in report["pages"].values():
        assert 0 < page["best_s"] <= page["median_s"] <= page["p95_s"]
    import os

    assert os.environ["DATABASE_URL"] == "postgresql://unused"


def test_bench_cgm_small(settings: object, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "cgm", "--sensors", "12", "--ingest-days", "1", "--policies", "3000",
                 "--days", "30", "--sample", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    cgm, meters = report["ingest_cgm"], report["ingest_meters"]
    assert cgm["stored"] == cgm["readings"] == meters["stored"] > 12 * 200
    assert cgm["lost"] == cgm["duplicated"] == meters["lost"] == 0
    assert report["storage"]["bytes_per_reading"] > 0
    assert report["ledgers_equal_on_sample"] is True
    assert 0 < report["summary_rows"] <= 3000 * 30
    for key in ("backtest_policy_days_per_s", "raw_policy_days_per_s", "nightly_seconds",
                "peak_rss_mb"):
        assert report[key] > 0


def test_bench_alerts_small(settings: object, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "alerts", "--rate", "400", "--seconds", "4", "--devices", "400",
                 "--danger-every", "20", "--workers", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["stored"] == 1600
    # Four rounds of the 400 meters, 20 lows each, every one from a meter of its own.
    assert report["dangerous"] == report["alerts"] == 80
    assert report["nightly_batch"]["alerts"] == 80
    latency = report["commit_to_alert"]
    assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    assert report["publish_to_alert"]["p50_ms"] > latency["p50_ms"]
    assert report["nightly_batch"]["p50_ms"] > 12 * 3600 * 1000
