"""The actuary's ruleset editor and the care team's alert-rules page: each form edits the version
it shows (never another ruleset's leftovers), names what a change does before publishing, and
says severities and statuses in words; a back-test advances part by part and colours a rise in
liability as the cost it is."""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

import pandas as pd
import psycopg
import pytest
from streamlit.proto.Metric_pb2 import Metric as MetricProto
from streamlit.testing.v1 import AppTest

from care import store as care_store
from dashboard.auth import create_user
from pricing import store
from pricing.ruleset import load_builtin
from tests.helpers import PASSWORD, START, load_fleet, signed_in


@pytest.fixture
def workbench_db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A priced fleet with both shipped rulesets published (the editor opens on cgm-default,
    the first name), an actuary and two clinicians, the lead and one who is not."""
    from pricing.engine import run_pricing

    load_fleet(db_url, n=6, days=40, seed=6)
    run_pricing(db_url, START + timedelta(days=38))
    with psycopg.connect(db_url) as conn:
        store.current(conn, "default")
        store.current(conn, "cgm-default")
        create_user(conn, "ann", PASSWORD, "actuary", rounds=4)
        conn.commit()
    monkeypatch.setenv("DATABASE_URL", db_url)
    return db_url


def picker(at: AppTest) -> Any:
    return next(s for s in at.selectbox if s.label in ("Ruleset", "规则集"))


def number(at: AppTest, label: str) -> Any:
    return next(n for n in at.number_input if n.label == label)


def multiselect(at: AppTest, label: str) -> Any:
    return next(m for m in at.multiselect if m.label == label)


def test_switching_ruleset_shows_its_own_values_and_validating_changes_nothing(
        workbench_db: str) -> None:
    at = signed_in("ann")
    # The editor opens on the first name.
    assert picker(at).value == "cgm-default"
    assert number(at, "Meter range from (mg/dL)").value == 40.0
    assert number(at, "Meter range to (mg/dL)").value == 400.0
    assert "capillary_whole_blood" in multiselect(at, "Excluded samples").value
    picker(at).set_value("default").run()
    assert not at.exception
    # default's own values, not cgm-default's left in the inputs.
    default = load_builtin("default")
    assert number(at, "Meter range from (mg/dL)").value == default.min_mgdl == 20.0
    assert number(at, "Meter range to (mg/dL)").value == default.max_mgdl == 600.0
    assert multiselect(at, "Excluded samples").value == list(default.excluded_samples)
    assert number(at, "In target from (mmol/L)").value == default.target_low
    next(b for b in at.button if b.label == "Validate").click()
    at.run()
    assert not at.exception
    assert [i.value for i in at.info] == [
        "No changes against the published version: nothing to publish."]
    assert not [b for b in at.button if b.label == "Publish new version"]
    # No list of changes nobody made (the other tabs' tables are drawn too).
    assert not [d for d in at.dataframe if "Parameter" in d.value.columns]
    # Back to cgm-default: its own values again, and validating it changes nothing either.
    picker(at).set_value("cgm-default").run()
    assert number(at, "Meter range from (mg/dL)").value == 40.0
    next(b for b in at.button if b.label == "Validate").click()
    at.run()
    assert not [b for b in at.button if b.label == "Publish new version"]


def test_a_version_published_meanwhile_is_edited_from_its_own_values(workbench_db: str) -> None:
    at = signed_in("ann")
    picker(at).set_value("default").run()
    assert number(at, "Step when in target (RMB)").value == 100.0
    with psycopg.connect(workbench_db) as conn:  # another actuary publishes meanwhile
        published = store.publish(conn, store.in_force(conn, "default").with_parameters(
            delta_in_target=150.0), author="bea")
    at.run()
    assert number(at, "Step when in target (RMB)").value == 150.0
    assert f"Published version {published.version}" in [c.value for c in at.caption]
    next(b for b in at.button if b.label == "Validate").click()
    at.run()
    assert not [b for b in at.button if b.label == "Publish new version"]


def test_the_editor_lists_a_change_in_words_and_publishes_it_after_confirmation(
        workbench_db: str) -> None:
    at = signed_in("ann")
    picker(at).set_value("default").run()
    number(at, "Step when in target (RMB)").set_value(150.0)
    next(b for b in at.button if b.label == "Validate").click()
    at.run()
    changed = at.dataframe[0].value
    assert changed.to_dict("records") == [{
        "Section": "Daily change of the sum insured", "Parameter": "Step when in target",
        "Name in the file": "deltas.in_target", "In force": "100 RMB", "New": "150 RMB"}]
    with psycopg.connect(workbench_db) as conn:  # nothing published before the button
        assert store.published(conn, "default").version == 1  # type: ignore[union-attr]
    next(b for b in at.button if b.label == "Publish new version").click()
    at.run()
    assert not at.exception
    assert "Published default version 2" in [s.value for s in at.success]
    # The form now edits version 2, from its values.
    assert number(at, "Step when in target (RMB)").value == 150.0
    assert not [b for b in at.button if b.label == "Publish new version"]


def test_the_workbench_editor_in_chinese(workbench_db: str) -> None:
    at = signed_in("ann")
    at.selectbox(key="lang_sidebar").set_value("zh").run()
    assert not at.exception
    assert picker(at).label == "规则集"
    statuses = multiselect(at, "排除的仪器状态")
    assert "传感器故障" in statuses.options and "sensor_malfunction" not in statuses.options
    assert "组织间液（CGM）" in multiselect(at, "排除的样本类型").options
    assert {b.label for b in at.button} >= {"校验", "运行回测"}


def test_a_back_test_counts_its_parts_and_a_rise_in_liability_is_not_green(
        workbench_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from dashboard.views import actuary

    # Six policies: a part each (the old page had no parts: raising=False, to fail below).
    monkeypatch.setattr(actuary, "BACKTEST_MIN_PART", 1, raising=False)
    at = signed_in("ann")
    picker(at).set_value("default").run()
    number(at, "Step when in target (RMB)").set_value(300.0)  # more for good days
    next(b for b in at.button if b.label == "Validate").click()
    at.run()
    next(b for b in at.button if b.label == "Run back-test").click()
    at.run()
    assert not at.exception
    bar = at.get("progress")[0].proto
    with psycopg.connect(workbench_db) as conn:
        policies, _ = store.load_policies(conn)
        n = len(store.of_kind(conn, policies, "bgm"))
    assert bar.value == 100
    assert n > 1 and bar.text == f"Back-tested {n} policies ({n} parts)"
    liability = next(m for m in at.metric if m.label == "Expected liability (RMB)")
    assert liability.proto.delta.startswith("+")  # a generous ruleset owes more
    assert liability.proto.color == MetricProto.MetricColor.RED


def test_a_back_test_of_a_portfolio_advances_in_parts() -> None:
    from dashboard.views.actuary import BACKTEST_PARTS, backtest_part_size

    assert backtest_part_size(300) == 25  # the demo portfolio: 12 parts, not one
    assert -(-100_000 // backtest_part_size(100_000)) == BACKTEST_PARTS
    assert backtest_part_size(1_000_000) == 10_000  # never beyond the evaluator's chunk


def _alert_rules_page(username: str, lead: bool, lang: str) -> None:
    import streamlit as st

    from dashboard.auth import User
    from dashboard.views import care

    st.session_state["lang"] = lang
    care.render_rules(User(username, "clinician", None, lead))


def rules_page(username: str, lead: bool, lang: str, monkeypatch: pytest.MonkeyPatch
               ) -> AppTest:
    # AppTest runs a function's page as __main__ from a temporary file and leaves it there:
    # a later spawned process would run that file again. Put it back after.
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])
    at = AppTest.from_function(_alert_rules_page, args=(username, lead, lang),
                               default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def test_alert_rules_are_published_only_after_the_lead_sees_the_changes(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    lead = rules_page("dr_li", True, "en", monkeypatch)
    # Each field under its rule, severities in words.
    assert "Severity · Very low glucose" in {s.label for s in lead.selectbox}
    number(lead, "Level 2 hypoglycaemia below (mmol/L)").set_value(3.2)
    next(s for s in lead.selectbox if s.label == "Severity · Stopped measuring").select("high")
    next(b for b in lead.button if b.label == "Check the changes").click().run()
    assert not lead.exception
    changed = lead.dataframe[0].value
    assert changed.to_dict("records") == [
        {"Rule": "Very low glucose", "Parameter": "Level 2 hypoglycaemia below",
         "Name in the file": "hypo_level2.below_mmol", "In force": "3 mmol/L",
         "New": "3.2 mmol/L"},
        {"Rule": "Stopped measuring", "Parameter": "Severity",
         "Name in the file": "lapsed.severity", "In force": "medium", "New": "high"}]
    with psycopg.connect(db_url) as conn:
        assert conn.execute("select count(*) from alert_rules").fetchone() == (0,)
    lead.text_input[0].input("pilot with the endocrinology team")
    next(b for b in lead.button if b.label == "Publish new version").click().run()
    assert not lead.exception
    assert lead.success[0].value.startswith("Published version 1")
    with psycopg.connect(db_url) as conn:
        rules = care_store.rules_in_force(conn)
        notes = conn.execute("select notes from alert_rules").fetchone()
    assert (rules.version, rules.level2_below, rules.lapsed_severity) == (1, 3.2, "high")
    assert notes == ("pilot with the endocrinology team",)
    # The form edits version 1 now: checking it again changes nothing and offers no publish.
    assert number(lead, "Level 2 hypoglycaemia below (mmol/L)").value == 3.2
    next(b for b in lead.button if b.label == "Check the changes").click().run()
    assert [i.value for i in lead.info] == ["Nothing changed."]
    assert not [b for b in lead.button if b.label == "Publish new version"]


def test_alert_rules_in_chinese_say_rules_severities_and_statuses_in_words(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    reader = rules_page("dr_wu", False, "zh", monkeypatch)
    shown = reader.table[0].value
    rows = {(r["规则"], r["参数"]): r["取值"] for r in shown.to_dict("records")}
    assert rows[("严重低血糖", "严重程度")] == "紧急"
    assert rows[("严重低血糖", "二级低血糖阈值")] == "3 mmol/L"
    statuses = rows[("设备故障", "错误状态")]
    assert "传感器故障" in statuses and "sensor_malfunction" not in statuses
    lead = rules_page("dr_li", True, "zh", monkeypatch)
    severity = next(s for s in lead.selectbox if s.label == "严重程度 · 严重低血糖")
    assert severity.options == ["紧急", "高", "中", "低"]
    errors = multiselect(lead, "错误状态")
    assert "电量低" in errors.options and "battery_low" not in errors.options
    assert [b.label for b in lead.button] == ["检查修改"]


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_change_against_the_baseline_is_said_sign_first(lang: str) -> None:
    """st.metric colours a delta by its text's first character: "较基准 -249" read as a rise."""
    from dashboard.i18n import t

    for key in ("bt_vs_baseline", "bt_pt_vs_baseline"):
        assert t(key, lang, change="-249").startswith("-249")


def test_every_section_of_either_editor_has_words_in_both_languages() -> None:
    """A change of any parameter (the ruleset's name included) is listed under its section's
    words: renaming a ruleset crashed the editor when one section had none."""
    from care.rules import AlertRules
    from dashboard.i18n import TEXT
    from glucover.parameters import declaration, declared
    from pricing.ruleset import Ruleset

    for cls, prefix in ((Ruleset, "rs_section_"), (AlertRules, "ar_section_")):
        for f in declared(cls):
            section = declaration(f).section
            keys = [f"{prefix}{section}"] + (["rule_" + section] if cls is AlertRules else [])
            assert any(k in TEXT and {"en", "zh"} <= set(TEXT[k]) for k in keys), (cls, section)


def test_a_validated_change_is_saved_as_a_draft_not_published(workbench_db: str) -> None:
    at = signed_in("ann")
    picker(at).set_value("default").run()
    number(at, "Step when in target (RMB)").set_value(130.0)
    next(b for b in at.button if b.label == "Validate").click()
    at.run()
    next(b for b in at.button if b.label == "Save draft").click()
    at.run()
    assert not at.exception
    assert [t.value for t in at.toast] == ["Draft saved"]
    with psycopg.connect(workbench_db) as conn:
        drafts = conn.execute("select name, author, body from ruleset_drafts").fetchall()
        assert store.published(conn, "default").version == 1  # type: ignore[union-attr]
    assert [(n, a) for n, a, _ in drafts] == [("default", "ann")]
    assert load_builtin("default").with_parameters(delta_in_target=130.0).to_toml() == \
        drafts[0][2]


def test_the_gaming_report_runs_from_its_button_with_the_flagged_policies_as_csv(
        workbench_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The button runs the report over the stored portfolio: a row for each of the fleet's
    segments, and the flagged policies offered as CSV. Beside the fleet (which games nothing),
    a meter that measured only control solution, in target, each morning of the two weeks
    through yesterday (the report's last day): counted, +100 a day, 1,400; excluded, no day
    measured, -200 for each week: -400. It alone is flagged, for a gap of 1,800."""
    import io
    from datetime import UTC, datetime, time
    from zoneinfo import ZoneInfo

    from devices.wire.messages import ReadingsMessage, Record
    from kernel.vocabulary import Meal, Sample
    from privacy import consent
    from tests.helpers import served_files, store_messages

    through = datetime.now(UTC).date() - timedelta(days=1)
    start = through - timedelta(days=13)
    zone = ZoneInfo("Asia/Shanghai")
    with psycopg.connect(workbench_db) as conn:
        conn.execute("insert into devices (device_id, kind) values ('GM-CTRL', 'bgm')")
        conn.execute("insert into policies (policy_id, holder_name, base_sum_insured, timezone,"
                     " start_date, ruleset_name, segment) values ('POL-CTRL', 'C', 10000, "
                     "'Asia/Shanghai', %s, 'default', 'gamer_control_solution')", (start,))
        conn.execute("insert into policy_devices values ('POL-CTRL', 'GM-CTRL', %s, null)",
                     (datetime.combine(start, time(), zone),))
        consent.record_all(conn, ["POL-CTRL"], actor="test", channel="provisioning")
        conn.commit()
    mornings = [datetime.combine(start + timedelta(days=i), time(6), zone) for i in range(14)]
    store_messages(workbench_db, [(m.topic, m.encode(), m.sent_at) for m in (
        ReadingsMessage("GM-CTRL", at + timedelta(minutes=1), (Record(
            i + 1, at, 5.6, meal=Meal.FASTING, sample=Sample.CONTROL_SOLUTION),))
        for i, at in enumerate(mornings))])
    files = served_files(monkeypatch)
    at = signed_in("ann")
    assert not [d for d in at.dataframe if "segment" in d.value]
    next(b for b in at.button if b.label == "Run gaming report").click()
    at.run(timeout=180)
    assert not at.exception
    with psycopg.connect(workbench_db) as conn:
        fleet = {str(s) for (s,) in conn.execute("select distinct segment from policies")}
    by_segment = next(d.value for d in at.dataframe if "segment" in d.value)
    assert len(by_segment) == len(fleet) > 1
    downloads = {e.proto.label: e.proto for e in at.get("download_button")}
    assert downloads["Flagged policies (CSV)"].url  # the file is served
    flagged = pd.read_csv(io.BytesIO(files["gaming_flagged.csv"]))
    assert flagged.to_dict("records") == [{
        "policy_id": "POL-CTRL", "bonus": -400.0, "bonus_without_exclusions": 1400.0,
        "segment": "gamer_control_solution", "gap": 1800.0}]
