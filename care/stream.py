"""The alert service: judges readings as ingest commits them, and the time-based rules on a
schedule.

Ingest writes one alert_inbox row in each transaction that stores readings and NOTIFYs
`glucover_readings` (ingest/store.py). A pass takes inbox rows (FOR UPDATE SKIP LOCKED, so
several services can share the work), loads the readings those transactions stored (by their
ingested_at), and only when one of them could start an alert (low, very high, an error or
battery status) loads the meter's recent history the rules need and judges it. The alerts, the
notices and the deletion of the inbox rows commit together: killed at any point, the service
starts again from the rows still there, and recording a finding twice changes nothing, so every
alert is raised once. Notices are published after the commit (retained, QoS 1) and marked
published when the broker has them.

The schedule (`--sweep-every`) judges `rising` and `lapsed` over every policy in force, and
device_trouble from meters' status reports (battery, clock) and sensors' error codes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pandas as pd
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from care import alerts, store
from care.alerts import Finding, InForce, MeterStatus, SensorErrors
from care.rules import AlertRules
from devices.wire.messages import Notice
from glucover.config import MqttTarget
from kernel import days
from pricing import store as pricing_store
from privacy import consent

log = logging.getLogger("glucover.alerts")

CHANNEL = "glucover_readings"
INBOX_BATCH = 200  # inbox rows (ingest transactions) per pass
NOTICE_BATCH = 500
SWEEP_CHUNK = 2_000  # policies per sweep step
PUBLISH_TIMEOUT_S = 10.0
LAPSED_HISTORY = timedelta(days=400)  # how far back the sweep looks for a lapsed policy's last
RETRY_MIN_S, RETRY_MAX_S = 0.5, 10.0


@dataclass
class PassResult:
    inbox_rows: int = 0
    readings: int = 0
    judged: int = 0  # readings that could start an alert
    raised: list[store.Raised] = field(default_factory=list)


def _triggered(new: pd.DataFrame, rules: AlertRules) -> dict[str, list[str]]:
    """The streaming rules each new reading could start (by its value or status alone),
    per meter: only those meters' histories are loaded."""
    v = new["value_mmol"].to_numpy(dtype=np.float64)
    status = new["status"].to_numpy(dtype=np.int64)
    masks = {
        "hypo_level2": v < rules.level2_below,
        "hypo_level1_repeated": v < rules.level1_below,
        "hyper_severe": v > min(rules.hyper_above, rules.hyper_cgm_above),
        "device_trouble": (status & (rules.error_mask | alerts.BATTERY_LOW)) != 0,
    }
    devices = new["device_id"].astype(str).to_numpy()
    found: dict[str, list[str]] = {}
    for rule, mask in masks.items():
        for device in np.unique(devices[mask]):
            found.setdefault(str(device), []).append(rule)
    return found


def judge_inbox(conn: psycopg.Connection[Any], rules: AlertRules) -> PassResult:
    """One pass over the inbox, in one transaction (committed here)."""
    result = PassResult()
    inbox = conn.execute("select id, ingested_at, committed_at from alert_inbox order by id "
                         "limit %s for update skip locked", (INBOX_BATCH,)).fetchall()
    if not inbox:
        conn.commit()
        return result
    result.inbox_rows = len(inbox)
    new = pricing_store.load_readings(conn, None, ingested_at=[r[1] for r in inbox])
    result.readings = len(new)
    triggered = _triggered(new, rules)
    if triggered:
        result.raised = _judge(conn, rules, new, triggered, min(r[2] for r in inbox), result)
    conn.execute("delete from alert_inbox where id = any(%s)", ([r[0] for r in inbox],))
    conn.commit()
    return result


def _judge(conn: psycopg.Connection[Any], rules: AlertRules, new: pd.DataFrame,
           triggered: dict[str, list[str]], committed_at: datetime, result: PassResult
           ) -> list[store.Raised]:
    new = new[new["device_id"].astype(str).isin(triggered)]
    result.judged = len(new)
    first = new.groupby(new["device_id"].astype(str))["measured_at"].min()
    since = {d: first[d] - max(rules.lookback(r) for r in triggered[d]) for d in triggered}
    history = pricing_store.load_readings(conn, list(triggered), since=min(since.values()))
    device = history["device_id"].astype(str)
    history = history[(history["measured_at"] >= device.map(since)).to_numpy()]
    policy_ids = store.policies_of(conn, triggered)
    policies, bindings = pricing_store.load_policies(conn, policy_ids)
    frame = store.place(history, policies, bindings, store.Rulesets(conn), new=new)
    done = store.settled(conn, policy_ids, min(since.values()))
    findings = alerts.streaming_findings(frame, rules, done)
    return store.record(conn, findings, rules, committed_at)


# ------------------------------------------------------------------ the schedule


def sweep(conn: psycopg.Connection[Any], rules: AlertRules, now: datetime | None = None
          ) -> list[store.Raised]:
    """rising, lapsed and meters' status reports over every policy in force, a chunk of
    policies per transaction."""
    now = now or datetime.now(UTC)
    # Only the policies whose holders consent to care: the others' readings are not read.
    cared_for = consent.live_policies(conn, None, "care")
    ids = [str(r[0]) for r in conn.execute(
        "select policy_id from policies where start_date <= %s order by policy_id",
        (now.date(),)) if str(r[0]) in cared_for]
    raised: list[store.Raised] = []
    for i in range(0, len(ids), SWEEP_CHUNK):
        raised += store.record(conn, _sweep_findings(conn, rules, ids[i:i + SWEEP_CHUNK], now),
                               rules)
        conn.commit()
    return raised


def _sweep_findings(conn: psycopg.Connection[Any], rules: AlertRules, ids: list[str],
                    now: datetime) -> list[Finding]:
    policies, bindings = pricing_store.load_policies(conn, ids)
    rulesets = store.Rulesets(conn)
    devices = sorted(set(bindings["device_id"].astype(str)))
    since = now - max(timedelta(days=2 * rules.rise_days), timedelta(days=rules.lapsed_days))
    recent = store.place(pricing_store.load_readings(conn, devices, since=since, until=now),
                         policies, bindings, rulesets)
    found = alerts.rising_findings(recent, now, rules, store.settled(conn, ids, since))
    last = recent[recent["valid"]].groupby("policy_id")["measured_at"].max()
    quiet = [p for p in ids if p not in last.index]
    if quiet:
        quiet_devices = sorted(set(bindings[bindings["policy_id"].isin(quiet)]["device_id"]
                                   .astype(str)))
        older = store.place(pricing_store.load_readings(
            conn, quiet_devices, since=now - LAPSED_HISTORY, until=since), policies, bindings,
            rulesets)
        last = pd.concat([last, older[older["valid"]].groupby("policy_id")["measured_at"].max()])
    in_force = []
    last_seen = {str(k): pd.Timestamp(v).to_pydatetime() for k, v in last.items()}
    for policy_id, start_date, zone in zip(policies["policy_id"], policies["start_date"],
                                           policies["timezone"], strict=True):
        start = days.midnight(pd.Timestamp(start_date).date(), str(zone))
        in_force.append(InForce(str(policy_id), start.to_pydatetime(),
                                last_seen.get(str(policy_id))))
    found += alerts.lapsed_findings(in_force, now, rules)
    statuses = conn.execute(
        "select pd.policy_id, s.device_id, s.battery_pct, s.clock_offset_s, s.sent_at "
        "from device_status s join policy_devices pd using (device_id) "
        "where pd.bound_to is null and pd.policy_id = any(%s) and s.sent_at is not null",
        (ids,)).fetchall()
    found += alerts.status_findings([MeterStatus(str(a), str(b), c, d, e)
                                     for a, b, c, d, e in statuses], rules)
    errors = conn.execute(
        "select pd.policy_id, e.device_id, count(*), max(e.measured_at), "
        "array_agg(distinct e.code order by e.code) from sensor_errors e "
        "join policy_devices pd using (device_id) where pd.bound_to is null "
        "and pd.policy_id = any(%s) and e.measured_at > %s and e.measured_at <= %s "
        "group by 1, 2", (ids, now - timedelta(hours=rules.error_hours), now)).fetchall()
    found += alerts.sensor_error_findings([SensorErrors(str(a), str(b), int(c), d, tuple(e))
                                           for a, b, c, d, e in errors], rules)
    return found


# ------------------------------------------------------------------ notices


class NoticePublisher:
    """Publishes pending notices, retained with QoS 1, on each meter's notices topic, and marks
    each published when the broker has acknowledged it."""

    def __init__(self, target: MqttTarget, client_id: str = "glucover-care") -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        if target.username:
            self.client.username_pw_set(target.username, target.password)
        self.client.connect_async(target.host, target.port, keepalive=30)
        self.client.loop_start()

    def publish(self, conn: psycopg.Connection[Any]) -> int:
        rows = conn.execute(
            "select notice_id, device_id, kind, language, body, created_at from notices "
            "where state = 'pending' order by notice_id limit %s", (NOTICE_BATCH,)).fetchall()
        conn.commit()
        done = []
        for notice_id, device_id, kind, language, body, created_at in rows:
            notice = Notice(int(notice_id), str(device_id), str(kind), str(language), str(body),
                            created_at)
            info = self.client.publish(notice.topic, notice.encode(), qos=1, retain=True)
            try:
                info.wait_for_publish(PUBLISH_TIMEOUT_S)
            except (RuntimeError, ValueError) as exc:
                log.warning("notice %s not published (%s); kept pending", notice_id, exc)
                break
            if not info.is_published():
                log.warning("broker did not take notice %s; kept pending", notice_id)
                break
            done.append(int(notice_id))
        if done:
            conn.execute("update notices set state = 'published', published_at = "
                         "clock_timestamp() where notice_id = any(%s)", (done,))
            conn.commit()
        return len(done)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# ------------------------------------------------------------------ the service


@dataclass
class ServiceConfig:
    database_url: str
    mqtt: MqttTarget | None
    sweep_every_s: float = 900.0
    rules_refresh_s: float = 60.0
    wait_s: float = 1.0  # longest sleep without a notification


class AlertService:
    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.stop = threading.Event()
        self.raised = 0

    def run(self) -> None:
        """Until stopped; through database outages (reconnecting, the inbox waits). The
        schedule runs in a thread of its own, so a long sweep never holds back the stream."""
        publisher = NoticePublisher(self.config.mqtt) if self.config.mqtt else None
        sweeper = threading.Thread(target=self._retrying, args=(self._sweeps,),
                                   name="alerts-sweep", daemon=True)
        if self.config.sweep_every_s:
            sweeper.start()
        try:
            self._retrying(lambda: self._serve(publisher))
        finally:
            if sweeper.is_alive():
                sweeper.join(30)
            if publisher is not None:
                publisher.close()

    def _retrying(self, serve: Callable[[], None]) -> None:
        delay = RETRY_MIN_S
        while not self.stop.is_set():
            try:
                serve()
            except psycopg.OperationalError as exc:
                log.warning("database unreachable (%s); retrying in %.1fs", exc, delay)
                self.stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    def _serve(self, publisher: NoticePublisher | None) -> None:
        cfg = self.config
        with psycopg.connect(cfg.database_url, autocommit=True) as listener, \
                psycopg.connect(cfg.database_url) as conn:
            listener.execute(f"listen {CHANNEL}")
            rules, rules_at = store.rules_in_force(conn), time.monotonic()
            conn.commit()
            log.info("alert rules %s v%d; listening on %s", rules.name, rules.version, CHANNEL)
            while not self.stop.is_set():
                if time.monotonic() - rules_at > cfg.rules_refresh_s:
                    rules, rules_at = store.rules_in_force(conn), time.monotonic()
                    conn.commit()
                while (result := judge_inbox(conn, rules)).inbox_rows:
                    self._report(result.raised)
                if publisher is not None:
                    publisher.publish(conn)
                for _ in listener.notifies(timeout=cfg.wait_s, stop_after=1):
                    pass

    def _sweeps(self) -> None:
        """The time-based rules every `sweep_every_s`, the first one interval after starting:
        a service started beside a fleet still syncing its history would find every policy
        lapsed. Notices it queues are published by the stream's loop."""
        with psycopg.connect(self.config.database_url) as conn:
            while not self.stop.wait(self.config.sweep_every_s):
                self._report(sweep(conn, store.rules_in_force(conn)))

    def _report(self, raised: list[store.Raised]) -> None:
        self.raised += len(raised)
        for r in raised:
            log.info("alert %d raised: %s for %s", r.alert_id, r.rule, r.policy_id)
