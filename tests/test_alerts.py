"""The alert rules at their edges, on crafted readings (care/alerts.py; docs/care.md)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from care.alerts import (
    InForce,
    MeterStatus,
    lapsed_findings,
    rising_findings,
    status_findings,
    streaming_findings,
)
from care.rules import AlertRules, AlertRulesError, builtin, markdown_table
from care.store import Rulesets, place
from pricing.evaluator import assign_readings
from pricing.ruleset import Ruleset, load_builtin
from tests.pricing_helpers import random_portfolio

T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)
RULES = builtin()


def frame(rows: Sequence[tuple[float, float]], kind: str = "bgm", status: int = 0,
          valid: bool = True, new: bool = True, policy: str = "P1", device: str = "D1"
          ) -> pd.DataFrame:
    """Readings at (minutes after T0, mmol/L)."""
    return pd.DataFrame({
        "policy_id": policy, "kind": kind, "device_id": device,
        "seq": range(len(rows)),
        "measured_at": pd.to_datetime([T0 + timedelta(minutes=m) for m, _ in rows], utc=True),
        "value_mmol": [v for _, v in rows], "status": status, "valid": valid,
        "qualifying": valid, "new": new})


def rules_of(readings: pd.DataFrame, rules: AlertRules = RULES) -> dict[str, int]:
    """rule -> readings of evidence, of what the readings raise."""
    return {f.rule: len(f.evidence) for f in streaming_findings(readings, rules)}


def cgm(values: list[float], every: float = 5.0) -> pd.DataFrame:
    return frame([(i * every, v) for i, v in enumerate(values)], kind="cgm")


def test_the_shipped_rules_hold_the_issue_thresholds() -> None:
    assert (RULES.level2_below, RULES.level1_below, RULES.hyper_above,
            RULES.hyper_cgm_above) == (3.0, 3.9, 16.7, 13.9)
    assert (RULES.level2_minutes, RULES.hyper_minutes, RULES.level1_count, RULES.level1_days,
            RULES.rise_mmol, RULES.rise_days, RULES.lapsed_days) == (15, 120, 3, 7, 1.0, 7, 3)
    assert AlertRules.from_toml(RULES.to_toml()) == RULES


def test_rules_files_are_validated_naming_the_parameter() -> None:
    with pytest.raises(AlertRulesError, match=r"hypo_level2\.below_mmol must be >= 0"):
        RULES.with_parameters(level2_below=-1.0)
    with pytest.raises(AlertRulesError, match="must not be above"):
        RULES.with_parameters(level2_below=4.5)
    with pytest.raises(AlertRulesError, match=r"unknown parameters: lapsed\.weeks"):
        AlertRules.from_toml(RULES.to_toml().replace("[lapsed]\n", "[lapsed]\nweeks = 1\n"))
    with pytest.raises(AlertRulesError, match="severity: 'dire' is not one of"):
        AlertRules.from_toml(RULES.to_toml().replace('severity = "urgent"', 'severity = "dire"'))
    assert "`hypo_level2.cgm_minutes` | cgm | min | 15" in markdown_table()


def test_level2_fingerstick_edge() -> None:
    assert rules_of(frame([(0, 2.99)])) == {"hypo_level2": 1}
    assert "hypo_level2" not in rules_of(frame([(0, 3.0)]))


def test_level2_cgm_needs_fifteen_minutes_below() -> None:
    assert rules_of(cgm([5.0, 2.9, 2.8, 2.9, 2.9, 5.0]))["hypo_level2"] == 4  # 0..15 min
    assert "hypo_level2" not in rules_of(cgm([5.0, 2.9, 2.8, 2.9, 5.0]))  # 10 minutes
    # A reading at 3.0 breaks the run; so does a gap longer than max_gap_minutes.
    assert "hypo_level2" not in rules_of(cgm([2.9, 2.9, 3.0, 2.9, 2.9]))
    gapped = frame([(0, 2.9), (5, 2.9), (26, 2.9), (31, 2.9)], kind="cgm")
    assert "hypo_level2" not in rules_of(gapped)
    joined = frame([(0, 2.9), (5, 2.9), (25, 2.9), (30, 2.9)], kind="cgm")
    assert rules_of(joined)["hypo_level2"] == 4


def test_invalid_readings_raise_no_glucose_alert() -> None:
    assert rules_of(frame([(0, 2.0)], valid=False)) == {}


def test_level1_repeated_counts_three_episodes_within_seven_days() -> None:
    day = 24 * 60
    three = frame([(0, 3.8), (2 * day, 3.5), (7 * day - 1, 3.8)])
    assert rules_of(three)["hypo_level1_repeated"] == 3
    assert "hypo_level1_repeated" not in rules_of(frame([(0, 3.8), (2 * day, 3.5),
                                                         (7 * day, 3.8)]))
    assert "hypo_level1_repeated" not in rules_of(frame([(0, 3.8), (60, 3.9), (120, 3.5)]))
    # A CGM episode is a run of at least 15 minutes: three short dips are not three episodes.
    dips = [3.8, 3.8, 3.8, 3.8, 6.0] * 3
    assert rules_of(cgm(dips))["hypo_level1_repeated"] == 12
    assert "hypo_level1_repeated" not in rules_of(cgm([3.8, 3.8, 3.8, 6.0] * 3))


def test_hyper_severe_edges() -> None:
    assert rules_of(frame([(0, 16.8)]))["hyper_severe"] == 1
    assert "hyper_severe" not in rules_of(frame([(0, 16.7)]))
    two_hours = [14.0] * 25  # 0..120 minutes
    assert rules_of(cgm(two_hours))["hyper_severe"] == 25
    assert "hyper_severe" not in rules_of(cgm([14.0] * 24))  # 115 minutes
    assert "hyper_severe" not in rules_of(cgm([13.9] * 30))  # at the threshold is not above


def test_device_trouble_from_error_statuses_and_battery() -> None:
    error = 1 << 3  # strip_insertion_error
    hours = [(0, 6.0), (600, 6.0), (1439, 6.0)]
    assert rules_of(frame(hours, status=error, valid=False))["device_trouble"] == 3
    assert "device_trouble" not in rules_of(frame(hours[:2], status=error, valid=False))
    spread = [(0, 6.0), (600, 6.0), (1440, 6.0)]
    assert "device_trouble" not in rules_of(frame(spread, status=error, valid=False))
    assert rules_of(frame([(0, 6.0)], status=1))["device_trouble"] == 1  # battery_low
    statuses = [MeterStatus("P1", "D1", 9, 0.0, T0), MeterStatus("P2", "D2", 10, 601.0, T0),
                MeterStatus("P3", "D3", 50, -600.0, T0)]
    found = {f.policy_id: f.detail for f in status_findings(statuses, RULES)}
    assert found == {"P1": "D1 battery 9%", "P2": "D2 clock off by +601 s"}


def test_only_findings_with_a_new_reading_are_reported() -> None:
    old = frame([(0, 2.5)], new=False)
    assert rules_of(old) == {}
    both = pd.concat([old, frame([(60, 2.6)]).assign(seq=[1])])
    assert rules_of(both)["hypo_level2"] == 2


def test_readings_of_a_resolved_alert_are_judged_no_more() -> None:
    day = 24 * 60
    lows = frame([(0, 3.8), (day, 3.8), (2 * day, 3.8), (3 * day, 3.7)])
    settled = {("hypo_level1_repeated", "P1", "D1", s, m.to_pydatetime())
               for s, m in zip(lows["seq"][:3], lows["measured_at"][:3], strict=True)}
    assert rules_of(lows)["hypo_level1_repeated"] == 4
    assert {f.rule for f in streaming_findings(lows, RULES, settled)} == set()
    # ...for that rule only.
    other = {("hypo_level2", *k[1:]) for k in settled}
    assert {f.rule for f in streaming_findings(lows, RULES, other)} == {"hypo_level1_repeated"}


def test_rising_compares_two_weekly_means() -> None:
    day = 24 * 60
    now = T0 + timedelta(days=14)

    def weeks(before: float, after: float, n: int = 3) -> pd.DataFrame:
        return frame([(d * day, before) for d in range(n)]
                     + [((7 + d) * day, after) for d in range(n)])

    assert [f.rule for f in rising_findings(weeks(6.0, 7.0), now, RULES)] == ["rising"]
    assert rising_findings(weeks(6.0, 6.9), now, RULES) == []
    assert rising_findings(weeks(6.0, 9.0, n=2), now, RULES) == []  # too few readings
    assert len(rising_findings(weeks(6.0, 7.5), now, RULES)[0].evidence) == 3


def test_lapsed_after_three_days_once_per_lapse() -> None:
    start = T0 - timedelta(days=30)
    now = T0 + timedelta(days=3)
    found = lapsed_findings([InForce("P1", start, T0), InForce("P2", start, T0 + timedelta(
        minutes=1)), InForce("P3", T0, None)], now, RULES)
    assert [(f.policy_id, f.key) for f in found] == [("P1", T0.isoformat()),
                                                      ("P3", T0.isoformat())]
    assert found[1].detail == "no valid reading since the policy started"


def test_the_readme_holds_the_alert_rules_table() -> None:
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert markdown_table() in readme, "README's alert table: paste `glucover alerts rules " \
        "parameters`"


@pytest.mark.parametrize("language", ["en", "zh"])
def test_a_notice_is_a_wire_format_message_in_the_policyholders_language(language: str) -> None:
    import json
    from pathlib import Path

    import jsonschema

    from care.notices import NOTICE_OF_RULE, notice_text
    from devices import wire
    from devices.wire.messages import Notice

    schema = json.loads((Path(wire.__file__).parent / "wire_v1.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for kind in NOTICE_OF_RULE.values():
        notice = Notice(7, "M-000001", kind, language, notice_text(kind, language), T0)
        validator.validate(json.loads(notice.encode()))
        assert Notice.decode(notice.encode()) == notice
        assert notice.topic == "glucover/v1/devices/M-000001/notices"
    assert ("15 g" if language == "en" else "15克") in notice_text("very_low", language)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**json.loads(notice.encode()), "kind": "advert"})


class _Builtin(Rulesets):
    """The shipped pricing rulesets by name, without a database."""

    def __init__(self) -> None:
        self.found = {}

    def __call__(self, name: str) -> Ruleset:
        return load_builtin(name)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_readings_are_placed_at_the_policies_their_meter_was_bound_to(seed: int) -> None:
    """Each reading goes to every policy its meter was bound to when it was measured (bindings
    that end and begin mid-history, a meter bound to nobody), valid as pricing rule 1 judges
    it for that policy: against a plain join of readings and bindings."""
    policies, bindings, readings = random_portfolio(seed)
    policies = policies.assign(ruleset_name="default")
    placed = place(readings, policies, bindings, _Builtin())
    joined = readings.merge(bindings, on="device_id")
    joined = joined[(joined["bound_from"].isna() | (joined["measured_at"] >= joined["bound_from"]))
                    & (joined["bound_to"].isna() | (joined["measured_at"] < joined["bound_to"]))]
    key = ["policy_id", "device_id", "seq", "measured_at"]

    def keys(frame: pd.DataFrame) -> list[tuple[str, ...]]:
        return sorted(map(tuple, frame[key].astype(str).to_numpy()))

    assert keys(placed) == keys(joined)
    assert 0 < placed["valid"].sum() < len(placed)  # some of each, from the random exclusions
    assigned, _ = assign_readings(policies, bindings, readings, load_builtin("default"),
                                  np.full(len(policies), 10_000))
    valid = readings.iloc[assigned.row].assign(
        policy_id=policies["policy_id"].to_numpy()[assigned.policy])
    assert keys(placed[placed["valid"]]) == keys(valid)
