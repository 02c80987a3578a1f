"""The alert service on real servers: readings stored by ingest raise alerts once, through
restarts and replays; the schedule; notices to the meter's own account; the CLI and roles."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from care import store, stream
from care.cli import care_target
from cli.main import main
from devices.fleet import Policyholder, portfolio
from devices.provisioning import add_portfolio
from devices.wire.messages import Notice, ReadingsMessage, Record
from devices.wire.topics import notices_topic
from glucover import broker
from kernel.vocabulary import Meal, Sample
from tests.conftest import Stack
from tests.helpers import TEST_SECRET, store_messages, wait_until
from tests.ingest_helpers import provision, start_worker

NOW = datetime.now(UTC).replace(microsecond=0)


def people(db_url: str, n: int, seed: int = 5) -> list[Policyholder]:
    found = portfolio(n, seed, NOW.date() - timedelta(days=20), gateway_share=0.0)
    with psycopg.connect(db_url) as conn:
        add_portfolio(conn, found, TEST_SECRET)
        conn.commit()
    return found


def send(db_url: str, device: str, *readings: tuple[int, timedelta, float], **kw: Any) -> None:
    """One ingest transaction storing (seq, how long ago, mmol/L) readings of a meter."""
    records = tuple(Record(seq, NOW - ago, value, meal=Meal.FASTING, **kw)
                    for seq, ago, value in readings)
    message = ReadingsMessage(device, NOW, records)
    store_messages(db_url, [(message.topic, message.encode(), NOW)])


def judge(db_url: str) -> stream.PassResult:
    with psycopg.connect(db_url) as conn:
        return stream.judge_inbox(conn, store.rules_in_force(conn))


def alerts(db_url: str) -> list[tuple[str, str, str, int]]:
    with psycopg.connect(db_url) as conn:
        return [(str(p), str(r), str(s), int(n)) for p, r, s, n in conn.execute(
            "select policy_id, rule, status, reading_count from alerts order by alert_id")]


def test_one_open_alert_per_policy_and_rule_later_evidence_attached(db_url: str) -> None:
    p, q = people(db_url, 2)
    send(db_url, p.device_id, (1, timedelta(hours=3), 2.5))
    send(db_url, q.device_id, (1, timedelta(hours=3), 6.0), (2, timedelta(hours=2), 7.0))
    first = judge(db_url)
    assert (first.inbox_rows, first.readings, first.judged) == (2, 3, 1)
    assert alerts(db_url) == [(p.policy_id, "hypo_level2", "open", 1)]
    send(db_url, p.device_id, (2, timedelta(hours=2), 2.7))
    judge(db_url)
    assert alerts(db_url) == [(p.policy_id, "hypo_level2", "open", 2)]
    send(db_url, p.device_id, (3, timedelta(hours=1), 3.5))
    judge(db_url)
    assert alerts(db_url) == [(p.policy_id, "hypo_level2", "open", 2),
                              (p.policy_id, "hypo_level1_repeated", "open", 3)]
    # The same readings judged again (ingest transactions replayed) change nothing.
    with psycopg.connect(db_url) as conn:
        conn.execute("insert into alert_inbox (ingested_at) select distinct ingested_at "
                     "from readings")
        conn.commit()
    assert judge(db_url).inbox_rows == 4
    assert alerts(db_url) == [(p.policy_id, "hypo_level2", "open", 2),
                              (p.policy_id, "hypo_level1_repeated", "open", 3)]
    with psycopg.connect(db_url) as conn:
        assert conn.execute("select count(*) from alert_inbox").fetchone() == (0,)
        notices = conn.execute("select policy_id, device_id, kind, language, state "
                               "from notices").fetchall()
    assert notices == [(p.policy_id, p.device_id, "very_low", "zh", "pending")]


def test_a_resolved_alert_closes_its_episode(db_url: str) -> None:
    (p,) = people(db_url, 1)
    send(db_url, p.device_id, (1, timedelta(hours=3), 2.5))
    judge(db_url)
    with psycopg.connect(db_url) as conn:
        (alert_id,) = conn.execute("select alert_id from alerts").fetchone() or (0,)
        store.act(conn, "dr_li", int(str(alert_id)), "resolve", "called, ate", "called")
        conn.commit()
    # Replayed, the resolved alert's reading raises nothing; a new low raises a new alert.
    with psycopg.connect(db_url) as conn:
        conn.execute("insert into alert_inbox (ingested_at) select ingested_at from readings")
        conn.commit()
    judge(db_url)
    assert alerts(db_url) == [(p.policy_id, "hypo_level2", "resolved", 1)]
    send(db_url, p.device_id, (2, timedelta(hours=1), 2.8))
    judge(db_url)
    assert alerts(db_url) == [(p.policy_id, "hypo_level2", "resolved", 1),
                              (p.policy_id, "hypo_level2", "open", 1)]


def test_an_alert_shows_its_newest_evidence_within_its_rules_window(db_url: str) -> None:
    """A repeated-low alert left open since long ago gathers each later episode; its age in the
    queue is the newest evidence's, and the care team sees the readings of the rule's window
    (7 days up to the newest), newest first, with a count of the earlier ones."""
    from dashboard.views.care import queue_table

    (p,) = people(db_url, 1, seed=14)
    episodes = [[19, 18.5, 18], [11, 10.5, 10], [3, 1, 1 / 24]]  # days ago, 3 lows each
    for i, days in enumerate(episodes):
        for j, ago in enumerate(days):  # each sent as measured
            at = NOW - timedelta(days=ago)
            message = ReadingsMessage(p.device_id, at, (Record(3 * i + j + 1, at, 3.5,
                                                               meal=Meal.FASTING),))
            store_messages(db_url, [(message.topic, message.encode(), at)])
        judge(db_url)
        if i == 0:  # raised long ago
            with psycopg.connect(db_url) as conn:
                conn.execute("update alerts set raised_at = raised_at - interval '19 days'")
                conn.commit()
    assert alerts(db_url) == [(p.policy_id, "hypo_level1_repeated", "open", 9)]
    with psycopg.connect(db_url) as conn:
        queue = store.list_alerts(conn)
        shown = store.evidence(conn, int(queue["alert_id"].iloc[0]))
    newest = NOW - timedelta(hours=1)
    assert queue["evidence_at"].iloc[0] == newest
    assert list(queue_table(queue, "en", NOW)["Age"]) == ["1 h"]
    assert list(shown.readings["measured_at"]) == [NOW - timedelta(days=d)
                                                   for d in sorted(episodes[2])]
    assert list(shown.readings["value_mmol"]) == pytest.approx([3.5] * 3)
    assert shown.earlier == 6


def test_control_solution_and_other_policies_raise_nothing(db_url: str) -> None:
    (p,) = people(db_url, 1)
    send(db_url, p.device_id, (1, timedelta(hours=3), 2.0), sample=Sample.CONTROL_SOLUTION)
    assert judge(db_url).judged == 1
    assert alerts(db_url) == []


def _service(db_url: str, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "alerts", "run", "--no-notices",
         "--sweep-every", "0"], env={**__import__("os").environ, "DATABASE_URL": db_url},
        stdout=out, stderr=subprocess.STDOUT)
    out.close()
    return proc


def test_killed_mid_stream_the_service_raises_every_alert_once(db_url: str, tmp_path: Path
                                                               ) -> None:
    fleet = people(db_url, 30, seed=9)
    log = tmp_path / "alerts.log"
    proc = _service(db_url, log)
    sent = threading.Event()

    def feed() -> None:
        for round_ in range(4):
            for i, p in enumerate(fleet):
                send(db_url, p.device_id, (round_ + 1, timedelta(hours=8 - round_), 2.0 + i / 100))
        sent.set()

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        assert wait_until(lambda: len(alerts(db_url)) > 0, 30), log.read_text()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed_mid_stream = not sent.is_set()
        proc = _service(db_url, log)
        feeder.join(120)
        assert sent.is_set()

        def drained() -> bool:
            with psycopg.connect(db_url) as conn:
                return conn.execute("select count(*) from alert_inbox").fetchone() == (0,)

        assert wait_until(drained, 60), log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert killed_mid_stream
    found = alerts(db_url)
    hypo = sorted(a for a in found if a[1] == "hypo_level2")
    assert hypo == sorted((p.policy_id, "hypo_level2", "open", 4) for p in fleet)
    assert sorted(a for a in found if a[1] == "hypo_level1_repeated") == sorted(
        (p.policy_id, "hypo_level1_repeated", "open", 4) for p in fleet)


def test_sweep_raises_lapsed_and_meter_status_once(db_url: str) -> None:
    p, q = people(db_url, 2, seed=11)
    send(db_url, p.device_id, (1, timedelta(days=4), 6.0))
    send(db_url, q.device_id, (1, timedelta(hours=4), 6.0))
    judge(db_url)
    with psycopg.connect(db_url) as conn:
        conn.execute("insert into device_status (device_id, state, battery_pct, sent_at) "
                     "values (%s, 'online', 5, %s)", (q.device_id, NOW))
        rules = store.rules_in_force(conn)
        first = stream.sweep(conn, rules, NOW)
        again = stream.sweep(conn, rules, NOW + timedelta(hours=1))
        notices = conn.execute("select policy_id, kind from notices").fetchall()
        conn.commit()
    assert sorted((r.policy_id, r.rule) for r in first) == sorted(
        [(p.policy_id, "lapsed"), (q.policy_id, "device_trouble")])
    assert again == []
    assert notices == [(p.policy_id, "measure_reminder")]
    with psycopg.connect(db_url) as conn:
        for r in first:
            store.act(conn, "dr_li", r.alert_id, "resolve", outcome="advised")
        conn.commit()
        assert stream.sweep(conn, rules, NOW + timedelta(hours=2)) == []  # the same lapse


def test_cli_lists_alerts_as_json_and_publishes_rules(db_url: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    p, q = people(db_url, 2, seed=12)
    send(db_url, p.device_id, (1, timedelta(hours=3), 2.5))
    send(db_url, q.device_id, (1, timedelta(hours=3), 18.0))
    judge(db_url)
    monkeypatch.setenv("DATABASE_URL", db_url)
    assert main(["alerts", "list", "--json", "--policy", p.policy_id, "--open"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert {k: row[k] for k in ("policy_id", "rule", "severity", "status", "reading_count")} == {
        "policy_id": p.policy_id, "rule": "hypo_level2", "severity": "urgent",
        "status": "open", "reading_count": 1}
    assert datetime.fromisoformat(row["raised_at"]) > NOW - timedelta(minutes=5)
    assert main(["alerts", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["urgent", "high"]
    changed = tmp_path / "rules.toml"
    with psycopg.connect(db_url) as conn:
        rules = store.rules_in_force(conn)
    changed.write_text(rules.with_parameters(level2_below=3.3).to_toml())
    assert main(["alerts", "rules", "publish", str(changed), "--author", "lead"]) == 0
    assert "version 1" in capsys.readouterr().out
    assert main(["alerts", "rules", "show"]) == 0
    assert "below_mmol = 3.3" in capsys.readouterr().out
    (bad := tmp_path / "bad.toml").write_text("[lapsed]\ndays = 0\n")
    assert main(["alerts", "rules", "publish", str(bad), "--author", "lead"]) == 2
    assert "rules.name is missing" in capsys.readouterr().err


def test_alert_audit_is_append_only_and_every_action_is_audited(db_url: str) -> None:
    (p,) = people(db_url, 1, seed=13)
    send(db_url, p.device_id, (1, timedelta(hours=3), 2.5))
    judge(db_url)
    with psycopg.connect(db_url) as conn:
        (alert_id,) = conn.execute("select alert_id from alerts").fetchone() or (0,)
        alert_id = int(str(alert_id))
        for action, detail, outcome in [("assign", "", None), ("acknowledge", "", None),
                                        ("note", "left a voicemail", None),
                                        ("resolve", "ate 15 g", "called")]:
            store.act(conn, "dr_li", alert_id, action, detail, outcome, allowed=[p.policy_id])
        with pytest.raises(store.ActionError, match=r"no such alert on your panel"):
            store.act(conn, "dr_wu", alert_id, "note", "x", allowed=["someone-else"])
        conn.commit()
        trail = store.audit_trail(conn, alert_id)
        assert list(trail["action"]) == ["assign", "acknowledge", "note", "resolve"]
        assert list(trail["detail"])[2:] == ["left a voicemail", "ate 15 g"]
        assert list(trail["outcome"].fillna("")) == ["", "", "", "called"]
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("update alert_audit set detail = 'nothing happened'")
        conn.rollback()
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("delete from alert_audit")


def test_a_low_published_through_the_broker_raises_its_alert_and_notice(stack: Stack) -> None:
    p, other = provision(stack, 2, seed=14)
    with psycopg.connect(stack.db_url) as conn:
        conn.execute("update policies set language = 'en' where policy_id = %s", (p.policy_id,))
        conn.commit()
    worker = start_worker(stack)
    service = stream.AlertService(stream.ServiceConfig(
        stack.db_url, care_target(stack.settings), sweep_every_s=0, wait_s=0.2))
    runner = threading.Thread(target=service.run)
    runner.start()
    got: dict[str, list[tuple[str, bytes]]] = {p.device_id: [], other.device_id: []}
    subscribed: list[str] = []

    def subscriber(account: str) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"notices-{account}")
        client.username_pw_set(account, broker.derive_password(TEST_SECRET, account))
        client.on_message = lambda c, u, m: got[account].append((m.topic, bytes(m.payload)))
        client.on_subscribe = lambda *a: subscribed.append(account)
        client.connect("127.0.0.1", stack.broker.port)
        # Each its own notices and p's: the broker grants both, the ACL delivers only its own.
        client.subscribe([(notices_topic(account), 1), (notices_topic(p.device_id), 1)])
        client.loop_start()
        return client

    clients = [subscriber(p.device_id), subscriber(other.device_id)]
    assert wait_until(lambda: len(subscribed) == 2, 10)
    try:
        device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="meter")
        device.username_pw_set(p.device_id, broker.derive_password(TEST_SECRET, p.device_id))
        device.connect("127.0.0.1", stack.broker.port)
        device.loop_start()
        message = ReadingsMessage(p.device_id, datetime.now(UTC), (Record(
            1, datetime.now(UTC) - timedelta(minutes=1), 2.4, meal=Meal.FASTING),))
        device.publish(message.topic, message.encode(), qos=1).wait_for_publish(5)
        assert wait_until(lambda: alerts(stack.db_url) == [
            (p.policy_id, "hypo_level2", "open", 1)], 20)
        assert wait_until(lambda: bool(got[p.device_id]), 20)
        assert got[p.device_id][0][0] == notices_topic(p.device_id)
        notice = Notice.decode(got[p.device_id][0][1])
        assert (notice.kind, notice.language) == ("very_low", "en")
        assert notice.text.startswith("Your glucose was very low: eat 15 g of fast sugar")
        with psycopg.connect(stack.db_url) as conn:
            assert conn.execute("select state from notices").fetchone() == ("published",)
        # A notice to the other meter, sent after p's reached p: the broker delivers a
        # client's messages in order, so p's would have reached the other one before it.
        care = care_target(stack.settings)
        sender = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="care-marker")
        sender.username_pw_set(care.username, care.password)
        sender.connect(care.host, care.port)
        sender.loop_start()
        sender.publish(notices_topic(other.device_id), b"marker", qos=1).wait_for_publish(5)
        sender.loop_stop()
        sender.disconnect()
        assert wait_until(lambda: bool(got[other.device_id]), 20)
        # The ACL refuses another meter's notices.
        assert got[other.device_id] == [(notices_topic(other.device_id), b"marker")]
        device.loop_stop()
        device.disconnect()
    finally:
        for c in clients:
            c.loop_stop()
            c.disconnect()
        service.stop.set()
        runner.join(10)
        worker.stop()


def test_history_synced_late_reaches_the_care_team_but_sends_no_notice(db_url: str) -> None:
    (p,) = people(db_url, 1, seed=15)
    send(db_url, p.device_id, (1, timedelta(days=2), 2.5))
    judge(db_url)
    assert alerts(db_url) == [(p.policy_id, "hypo_level2", "open", 1)]
    with psycopg.connect(db_url) as conn:
        assert conn.execute("select count(*) from notices").fetchone() == (0,)


def test_doctor_says_when_the_alert_service_falls_behind(db_url: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.doctor import run_doctor
    from glucover.config import Settings

    (p,) = people(db_url, 1, seed=16)
    send(db_url, p.device_id, (1, timedelta(hours=1), 2.5))
    with psycopg.connect(db_url) as conn:
        conn.execute("update alert_inbox set committed_at = now() - interval '2 minutes'")
        conn.commit()
    monkeypatch.setenv("DATABASE_URL", db_url)
    (check,) = [c for c in run_doctor(Settings.from_env()).checks if c.name == "alerts"]
    assert not check.ok and check.detail.startswith("1 ingest transactions waiting 1")
    judge(db_url)
    report = run_doctor(Settings.from_env())
    (check,) = [c for c in report.checks if c.name == "alerts"]
    assert check.ok and check.detail == "1 open; the alert service keeps up with ingest"
    assert report.facts["alerts"] == {"open": 1, "inbox_waiting": 0, "oldest_waiting_s": 0.0}
