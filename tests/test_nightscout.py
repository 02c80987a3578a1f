"""The Nightscout-compatible API on the real database (and broker, for the alert service's
notices): bodies shaped as xDrip+ and AndroidAPS send them, credentials and tenancy, bad
entries one by one, duplicates, Dexcom error codes, a burst of 10,000, garbage."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
import requests
import uvicorn

from care import store as care_store
from care import stream
from cli.main import main
from devices.fleet import portfolio
from devices.provisioning import add_portfolio
from glucover.db import ensure_login_role, with_credentials
from glucover.servers import free_port, wait_for_port
from nightscout import mapping
from nightscout.app import create_app
from nightscout.credentials import Credentials, sha1_hex, sha512_hex
from nightscout.enrolment import enable
from tests.conftest import Stack
from tests.helpers import TEST_SECRET

NOW = datetime.now(UTC).replace(microsecond=0)
SHANGHAI = timezone(timedelta(hours=8))
API_LOGIN, API_PASSWORD = "glucover_api_svc", "api-test-password"


# ---------------------------------------------------------------- bodies as the apps send them


def _java_date(ts: datetime, zone: timezone = SHANGHAI) -> str:
    """SimpleDateFormat("yyyy-MM-dd'T'HH:mm:ss.SSSZ") in the phone's zone: +0800, no colon."""
    local = ts.astimezone(zone)
    return local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond // 1000:03d}" + \
        local.strftime("%z")


def xdrip_sgv(ts: datetime, mgdl: int, direction: str = "Flat") -> dict[str, Any]:
    """An sgv entry as xDrip+ builds it: NightscoutFoundation/xDrip,
    app/src/main/java/com/eveningoutpost/dexdrip/utilitymodels/NightscoutUploader.java
    (populateV1APIBGEntry): device, date (ms), dateString and sysTime in the phone's zone,
    sgv as an int, delta with 3 decimals, direction, type, filtered/unfiltered x1000, rssi 100,
    noise."""
    return {"device": "xDrip-DexcomG5", "date": int(ts.timestamp() * 1000),
            "dateString": _java_date(ts), "sgv": mgdl, "delta": -1.234,
            "direction": direction, "type": "sgv", "filtered": 118000.0,
            "unfiltered": 120000.0, "rssi": 100, "noise": 1, "sysTime": _java_date(ts)}


def xdrip_mbg(ts: datetime, mgdl: float) -> dict[str, Any]:
    """A meter reading as xDrip+ sends it (populateV1APIMeterReadingEntry, BloodTest)."""
    return {"device": "xDrip-DexcomG5", "type": "mbg", "date": int(ts.timestamp() * 1000),
            "dateString": _java_date(ts), "mbg": mgdl, "sysTime": _java_date(ts)}


def xdrip_cal(ts: datetime) -> dict[str, Any]:
    """A calibration as xDrip+ sends it (populateV1APICalibrationEntry)."""
    return {"device": "xDrip-DexcomG5", "type": "cal", "date": int(ts.timestamp() * 1000),
            "dateString": _java_date(ts), "slope": 846.2, "intercept": 30923.1, "scale": 1,
            "sysTime": _java_date(ts)}


def aaps_sgv(ts: datetime, mgdl: float) -> dict[str, Any]:
    """An sgv as AndroidAPS's NSClientV3 posts it to /api/v3/entries: nightscout/AndroidAPS,
    core/nssdk/src/main/kotlin/app/aaps/core/nssdk/mapper/SvgMapper.kt (toRemoteEntry) over
    remotemodel/RemoteEntry.kt: sgv a Double, utcOffset in minutes, units "mg/dl", nulls left
    out by the serializer."""
    return {"type": "sgv", "date": int(ts.timestamp() * 1000), "device": "AndroidAPS-DexcomG6",
            "utcOffset": 60, "direction": "FortyFiveDown", "sgv": float(mgdl),
            "isReadOnly": False, "isValid": True, "noise": 1.0, "filtered": 120.0,
            "unfiltered": 121.0, "units": "mg/dl", "app": "AAPS"}


def gz(doc: Any) -> bytes:
    return gzip.compress(json.dumps(doc).encode())


def xdrip_post(base: str, creds: Credentials, entries: list[Any]) -> requests.Response:
    """As xDrip+ posts: gzip body (GzipRequestInterceptor), api-secret = SHA-1 hex."""
    return requests.post(f"{base}/api/v1/entries", data=gz(entries), timeout=60, headers={
        "api-secret": sha1_hex(creds.api_secret), "Content-Type": "application/json",
        "Content-Encoding": "gzip"})


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def tenants(db_url: str) -> tuple[Credentials, Credentials]:
    people = portfolio(3, 11, NOW.date() - timedelta(days=10), gateway_share=0.0)
    with psycopg.connect(db_url) as conn:
        add_portfolio(conn, people, TEST_SECRET)
        a, _ = enable(conn, TEST_SECRET, people[0].policy_id, rotate=False)
        b, _ = enable(conn, TEST_SECRET, people[1].policy_id, rotate=False)
        conn.commit()
    return a, b


def api_login(db_url: str) -> str:
    """The API service's least-privilege login on the test database."""
    ensure_login_role(db_url, "glucover_api", API_LOGIN, API_PASSWORD)
    return with_credentials(db_url, API_LOGIN, API_PASSWORD)


@contextmanager
def serving(db_url: str) -> Iterator[str]:
    app = create_app(api_login(db_url), TEST_SECRET, cache_s=0)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for_port(port, 30)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture
def api(db_url: str, tenants: tuple[Credentials, Credentials]) -> Iterator[str]:
    with serving(db_url) as base:
        yield base


def rows(db_url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(sql, params).fetchall()


# ---------------------------------------------------------------- mapping (pure)


def test_mapping_keeps_the_instant_and_the_offset_and_refuses_error_codes() -> None:
    at = NOW - timedelta(minutes=3)
    got = mapping.map_entry(xdrip_sgv(at, 123), 0, "ns-x", NOW)
    assert isinstance(got, mapping.Accepted)
    r = got.reading
    assert (r.seq, r.measured_at, r.utc_offset_min, r.value, r.unit, r.sample) == (
        0, at, 480, 123.0, "mg/dL", "interstitial_fluid")
    assert got.direction == "Flat" and got.app_device == "xDrip-DexcomG5"
    v3 = mapping.map_entry(aaps_sgv(at, 99), 0, "ns-x", NOW)
    assert isinstance(v3, mapping.Accepted) and v3.reading.utc_offset_min == 60
    mbg = mapping.map_entry(xdrip_mbg(at, 101.5), 0, "ns-x", NOW)
    assert isinstance(mbg, mapping.Accepted)
    assert (mbg.reading.seq, mbg.reading.sample, mbg.reading.value) == (
        1, "capillary_plasma", 101.5)
    error = mapping.map_entry(xdrip_sgv(at, 5), 0, "ns-x", NOW)
    assert error == mapping.SensorError(at, 5, "sensor not calibrated")
    assert isinstance(mapping.map_entry(xdrip_sgv(at, 39), 0, "ns-x", NOW), mapping.Accepted)
    assert mapping.map_entry(xdrip_cal(at), 0, "ns-x", NOW) == mapping.Ignored("cal")
    bad = mapping.map_entry({"type": "sgv", "sgv": 100}, 3, "ns-x", NOW)
    assert isinstance(bad, mapping.Refused) and bad.reason == "invalid_record"
    assert bad.detail.startswith("$[3].date")


def test_the_typed_and_the_thorough_decoding_agree() -> None:
    """An upload whose entries all have the expected field types decodes in C into Entry
    structs; any other goes entry by entry through the parsed JSON. Both map alike."""
    at = NOW - timedelta(minutes=9)
    entries: list[Any] = [
        xdrip_sgv(at, 123), xdrip_mbg(at, 99.5), xdrip_cal(at), xdrip_sgv(at, 3),
        aaps_sgv(at, 77), {**xdrip_sgv(at, 150), "dateString": "Sun Nov 22 23:27:50 EET 2015"},
        {"type": "sgv", "sgv": 100, "dateString": "2026-12-03T10:00:00+05:30"},
        {"type": "sgv", "sgv": 100}, {"sgv": 2500, "date": 1}, {"mbg": 88, "date": 10**13}]
    typed = mapping.decode_entries(json.dumps(entries).encode())
    assert all(isinstance(e, mapping.Entry) for e in typed)
    fast = [mapping.map_entry(e, i, "ns-x", NOW) for i, e in enumerate(typed)]
    slow = [mapping.map_entry(e, i, "ns-x", NOW) for i, e in enumerate(entries)]
    assert fast == slow
    assert [type(m).__name__ for m in fast] == [
        "Accepted", "Accepted", "Ignored", "SensorError", "Accepted", "Accepted", "Accepted",
        "Refused", "Refused", "Refused"]
    mixed = mapping.decode_entries(json.dumps([*entries, {"sgv": "high"}]).encode())
    assert all(isinstance(e, dict) for e in mixed)
    with pytest.raises(mapping.NotEntries):
        mapping.decode_entries(b"{not json")


# ---------------------------------------------------------------- v1


def test_xdrip_gzip_upload_is_stored_once_and_read_back(
        db_url: str, api: str, tenants: tuple[Credentials, Credentials]) -> None:
    a, _ = tenants
    times = [NOW - timedelta(minutes=5 * i) for i in range(12)]
    body = [xdrip_sgv(t, 100 + i) for i, t in enumerate(times)]
    body += [xdrip_mbg(NOW - timedelta(minutes=72), 104.0), xdrip_cal(NOW),
             xdrip_sgv(NOW - timedelta(minutes=2), 5)]
    first = xdrip_post(api, a, body)
    assert first.status_code == 200, first.text
    assert first.json() | {"rejected": []} == {
        "status": "ok", "stored": 13, "duplicates": 0, "sensor_errors": 1, "ignored": 1,
        "rejected": []}
    again = xdrip_post(api, a, body)
    assert (again.json()["stored"], again.json()["duplicates"]) == (0, 13)
    assert rows(db_url, "select count(*) from readings where device_id = %s",
                a.device_id) == [(13,)]
    assert rows(db_url, "select code, meaning from sensor_errors where device_id = %s",
                a.device_id) == [(5, "sensor not calibrated")]
    assert rows(db_url, "select distinct sample, utc_offset_min from readings where "
                "device_id = %s and seq = 0", a.device_id) == [("interstitial_fluid", 480)]

    headers = {"api-secret": sha1_hex(a.api_secret)}
    got = requests.get(f"{api}/api/v1/entries.json", params={"count": 3}, headers=headers,
                       timeout=10).json()
    assert [e["date"] for e in got] == [int(t.timestamp() * 1000) for t in times[:3]]
    newest = got[0]
    assert newest["type"] == "sgv" and newest["sgv"] == 100
    assert newest["direction"] == "Flat" and newest["device"] == "xDrip-DexcomG5"
    assert newest["dateString"] == times[0].astimezone(SHANGHAI).isoformat(
        timespec="milliseconds")
    assert len(newest["_id"]) == 24
    assert len(requests.get(f"{api}/api/v1/entries", headers=headers, timeout=10).json()) == 10
    window: dict[str, str | int] = {"find[date][$gte]": str(int(times[5].timestamp() * 1000)),
              "find[date][$lte]": str(int(times[2].timestamp() * 1000)), "count": 100}
    sgv = requests.get(f"{api}/api/v1/entries/sgv.json", params=window, headers=headers,
                       timeout=10).json()
    assert [e["sgv"] for e in sgv] == [102, 103, 104, 105]
    current = requests.get(f"{api}/api/v1/entries/current.json", headers=headers,
                           timeout=10).json()
    assert [e["date"] for e in current] == [int(times[0].timestamp() * 1000)]
    mbg = requests.get(f"{api}/api/v1/entries/mbg", headers=headers, timeout=10).json()
    assert [e["mbg"] for e in mbg] == [104]
    assert requests.get(f"{api}/api/v1/entries/cal.json", headers=headers,
                        timeout=10).status_code == 404
    everything = requests.get(f"{api}/api/v1/entries.json", params={"count": 100},
                              headers=headers, timeout=10).json()
    assert [e["mbg"] for e in everything if e["type"] == "mbg"] == [104]
    status = requests.get(f"{api}/api/v1/status.json", timeout=10).json()
    assert status["status"] == "ok" and status["version"].split(".")[0] >= "1"


def test_the_credentials_decide_the_tenant(
        db_url: str, api: str, tenants: tuple[Credentials, Credentials]) -> None:
    a, b = tenants
    entries = [xdrip_sgv(NOW - timedelta(minutes=1), 140)]
    no_auth = requests.post(f"{api}/api/v1/entries", json=entries, timeout=10)
    assert no_auth.status_code == 401
    wrong = requests.post(f"{api}/api/v1/entries", json=entries, timeout=10,
                          headers={"api-secret": sha1_hex("not-the-secret-at-all")})
    assert wrong.status_code == 401
    plain = requests.get(f"{api}/api/v1/entries.json", timeout=10,
                         headers={"api-secret": a.api_secret})  # the secret itself: no hash
    assert plain.status_code == 401
    assert xdrip_post(api, a, entries).json()["stored"] == 1
    # B's credentials, whatever the body says, write B's device and read only B's data.
    claims_a = [{**xdrip_sgv(NOW - timedelta(minutes=2), 150), "device": a.device_id}]
    by_b = requests.post(f"{api}/api/v1/entries", json=claims_a, timeout=10,
                         headers={"api-secret": sha512_hex(b.api_secret)})
    assert by_b.json()["stored"] == 1
    assert rows(db_url, "select device_id, count(*) from readings where device_id like 'ns-%%' "
                "group by 1 order by 1") == sorted([(a.device_id, 1), (b.device_id, 1)])
    seen_by_b = requests.get(f"{api}/api/v1/entries.json", params={"token": b.token},
                             timeout=10).json()
    assert [e["sgv"] for e in seen_by_b] == [150]
    assert requests.get(f"{api}/api/v1/entries.json", params={"token": "glucover-nope"},
                        timeout=10).status_code == 401
    # A rotated secret stops working; the new one works.
    with psycopg.connect(db_url) as conn:
        new_a, changed = enable(conn, TEST_SECRET, a.policy_id, rotate=True)
        conn.commit()
    assert changed and new_a.api_secret != a.api_secret
    assert xdrip_post(api, a, entries).status_code == 401
    assert xdrip_post(api, new_a, entries).status_code == 200


def test_bad_entries_are_refused_one_by_one_with_reasons(
        db_url: str, api: str, tenants: tuple[Credentials, Credentials]) -> None:
    a, _ = tenants
    good = xdrip_sgv(NOW - timedelta(minutes=10), 120)
    clash = {**xdrip_sgv(NOW - timedelta(minutes=10), 180)}  # same time and type, other value
    body = [good, {**good, "sgv": "high"}, {"type": "sgv", "sgv": 100},
            xdrip_sgv(NOW - timedelta(minutes=15), 2500), xdrip_sgv(datetime(1990, 1, 1,
                                                                             tzinfo=UTC), 90),
            "not an object", clash, xdrip_sgv(NOW - timedelta(minutes=20), 88)]
    answer = xdrip_post(api, a, body).json()
    assert answer["stored"] == 2
    assert [(r["index"], r["reason"]) for r in answer["rejected"]] == [
        (1, "invalid_record"), (2, "invalid_record"), (3, "value_out_of_range"),
        (4, "timestamp_implausible"), (5, "invalid_record"), (6, "conflicting_duplicate")]
    stored = rows(db_url, "select reason, topic from rejected_messages where device_id = %s "
                  "order by id", a.device_id)
    assert [r for r, _ in stored] == [r["reason"] for r in answer["rejected"]]
    assert stored[0][1] == "nightscout/entries#1"
    # Against what is stored, a changed value is refused too, and nothing is stored twice.
    later = xdrip_post(api, a, [good, {**good, "sgv": 121}]).json()
    assert (later["stored"], later["duplicates"]) == (0, 1)
    assert [r["reason"] for r in later["rejected"]] == ["conflicting_duplicate"]
    changed = xdrip_post(api, a, [{**good, "sgv": 121}]).json()
    assert [(r["index"], r["reason"]) for r in changed["rejected"]] == [
        (0, "conflicting_duplicate")]
    headers = {"api-secret": sha1_hex(a.api_secret), "Content-Type": "application/json"}
    garbage = requests.post(f"{api}/api/v1/entries", data=b'[{"sgv": 1', headers=headers,
                            timeout=10)
    assert garbage.status_code == 400 and "JSON" in garbage.json()["message"]
    bad_gzip = requests.post(f"{api}/api/v1/entries", data=b"\x1f\x8b garbage", timeout=10,
                             headers={**headers, "Content-Encoding": "gzip"})
    assert bad_gzip.status_code == 400
    not_a_list = requests.post(f"{api}/api/v1/entries", data=b'"sgv"', headers=headers,
                               timeout=10)
    assert not_a_list.status_code == 400
    assert rows(db_url, "select reason from rejected_messages where device_id = %s "
                "and topic = 'nightscout/entries' order by id", a.device_id) == [
        ("invalid_json",), ("invalid_json",), ("invalid_envelope",)]


def test_a_burst_of_ten_thousand_entries_in_one_post(
        db_url: str, api: str, tenants: tuple[Credentials, Credentials]) -> None:
    a, _ = tenants
    body = [xdrip_sgv(NOW - timedelta(minutes=5 * i), 60 + i % 200) for i in range(10_000)]
    answer = xdrip_post(api, a, body)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["stored"], answer.json()["rejected"]) == (10_000, [])
    assert rows(db_url, "select count(*), count(distinct measured_at) from readings "
                "where device_id = %s", a.device_id) == [(10_000, 10_000)]
    assert rows(db_url, "select count(*) from nightscout_entries where device_id = %s",
                a.device_id) == [(10_000,)]


def test_uploads_arriving_together_are_answered_each_for_its_own(
        db_url: str, api: str, tenants: tuple[Credentials, Credentials]) -> None:
    """Concurrent uploads share transactions (group commit); each answer still counts its
    own entries, a group holding re-sent ones included."""
    a, b = tenants
    bodies = [(creds, [xdrip_sgv(NOW - timedelta(minutes=5 * (20 * k + i)), 90 + i)
                       for i in range(20)]) for k in range(6) for creds in (a, b)]
    bodies.append((a, [*bodies[0][1][:5], xdrip_sgv(NOW - timedelta(days=3), 10)]))

    def post_all() -> list[dict[str, Any]]:
        answers: list[dict[str, Any]] = [{} for _ in bodies]

        def post(i: int) -> None:
            answers[i] = xdrip_post(api, bodies[i][0], bodies[i][1]).json()

        threads = [threading.Thread(target=post, args=(i,)) for i in range(len(bodies))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return answers

    first = post_all()
    assert sum(x["stored"] + x["duplicates"] for x in first) == 12 * 20 + 5
    assert sum(x["stored"] for x in first) == 12 * 20
    assert sum(x["sensor_errors"] for x in first) == 1
    again = post_all()
    assert [(x["stored"], x["duplicates"]) for x in again] == [(0, 20)] * 12 + [(0, 5)]
    assert rows(db_url, "select device_id, count(*) from readings where device_id like 'ns-%%' "
                "group by 1 order by 1") == sorted([(a.device_id, 120), (b.device_id, 120)])


def test_an_uploaded_run_below_54_raises_hypo_level2(
        db_url: str, api: str, tenants: tuple[Credentials, Credentials]) -> None:
    a, b = tenants
    run = [xdrip_sgv(NOW - timedelta(minutes=5 * i), 48, "SingleDown") for i in range(6)]
    assert xdrip_post(api, a, run).json()["stored"] == 6
    assert xdrip_post(api, b, [xdrip_sgv(NOW, 110)]).json()["stored"] == 1
    with psycopg.connect(db_url) as conn:
        result = stream.judge_inbox(conn, care_store.rules_in_force(conn))
    assert result.inbox_rows == 2 and result.readings == 7
    assert [(r.policy_id, r.rule) for r in result.raised] == [(a.policy_id, "hypo_level2")]


def test_a_day_of_uploads_is_priced_by_the_cgm_ruleset(
        db_url: str, api: str, tenants: tuple[Credentials, Credentials]) -> None:
    from kernel import days
    from pricing.engine import run_pricing

    a, _ = tenants
    zone = rows(db_url, "select timezone from policies where policy_id = %s", a.policy_id)[0][0]
    yesterday = days.today(zone) - timedelta(days=1)
    start = days.midnight(yesterday, zone).to_pydatetime()
    day = [xdrip_sgv(start + timedelta(minutes=5 * i, seconds=30), 120) for i in range(288)]
    assert xdrip_post(api, a, day).json()["stored"] == 288
    run_pricing(db_url, yesterday)
    assert rows(db_url, "select ruleset_name, day_status from current_ledger where "
                "policy_id = %s and day = %s", a.policy_id, yesterday) == [
        ("cgm-default", "in_target")]


def test_uploaded_readings_are_exported_as_fhir(
        db_url: str, api: str, tenants: tuple[Credentials, Credentials]) -> None:
    from records.export import policy_bundle, pseudonym_key

    a, _ = tenants
    values = [101, 102, 103]
    run = [xdrip_sgv(NOW - timedelta(minutes=5 * i), v) for i, v in enumerate(values)]
    assert xdrip_post(api, a, run).json()["stored"] == 3
    with psycopg.connect(db_url) as conn:
        bundle = json.loads(policy_bundle(conn, a.policy_id, pseudonym_key(TEST_SECRET))
                            .to_json())
    found = sorted(round(r["resource"]["valueQuantity"]["value"])
                   for r in bundle["entry"] if r["resource"]["resourceType"] == "Observation"
                   and "effectiveDateTime" in r["resource"]  # a reading, not a summary
                   and r["resource"]["valueQuantity"].get("unit") == "mg/dL")
    assert found == values


def test_sensor_error_codes_are_device_trouble_on_the_schedule(
        db_url: str, api: str, tenants: tuple[Credentials, Credentials]) -> None:
    a, b = tenants
    codes = [xdrip_sgv(NOW - timedelta(minutes=5 * i), code) for i, code in enumerate((5, 9, 12))]
    assert xdrip_post(api, a, codes).json()["sensor_errors"] == 3
    assert xdrip_post(api, b, codes[:2]).json()["sensor_errors"] == 2  # fewer than the rule's 3
    with psycopg.connect(db_url) as conn:
        rules = care_store.rules_in_force(conn)
        raised = stream.sweep(conn, rules, NOW + timedelta(minutes=1))
        again = stream.sweep(conn, rules, NOW + timedelta(minutes=2))
    trouble = [r.policy_id for r in raised if r.rule == "device_trouble"]
    assert trouble == [a.policy_id]
    assert not [r for r in again if r.rule == "device_trouble"]
    assert rows(db_url, "select count(*) from readings where device_id = %s", a.device_id) \
        == [(0,)]


def test_the_alert_service_raises_an_uploaded_low_within_seconds(
        stack: Stack, tenants: tuple[Credentials, Credentials]) -> None:
    """The running alert service, woken by the upload's commit as by ingest's, raises the
    alert and publishes the policyholder's notice through the broker."""
    from care.cli import care_target
    from tests.helpers import wait_until

    a, _ = tenants
    service = stream.AlertService(stream.ServiceConfig(
        stack.db_url, care_target(stack.settings), sweep_every_s=0, wait_s=0.2))
    runner = threading.Thread(target=service.run)
    runner.start()
    try:
        with serving(stack.db_url) as base:
            run = [xdrip_sgv(NOW - timedelta(minutes=5 * i), 50) for i in range(5)]
            assert xdrip_post(base, a, run).json()["stored"] == 5
            assert wait_until(lambda: rows(
                stack.db_url, "select policy_id, rule from alerts") == [
                    (a.policy_id, "hypo_level2")], 15)
            assert wait_until(lambda: rows(
                stack.db_url, "select device_id, kind, state from notices") == [
                    (a.device_id, "very_low", "published")], 15)
    finally:
        service.stop.set()
        runner.join(30)


def test_treatments_and_device_status(
        db_url: str, api: str, tenants: tuple[Credentials, Credentials]) -> None:
    a, _ = tenants
    headers = {"api-secret": sha1_hex(a.api_secret)}
    # xDrip+ upserts one treatment a request with PUT, its uuid as the key
    # (NightscoutUploader.java populateV1APITreatmentEntry / postTreatments).
    treatment: dict[str, Any] = {
                 "timestamp": int(NOW.timestamp() * 1000), "eventType": "Meal Bolus",
                 "enteredBy": "xdrip", "notes": "lunch", "uuid": "8e1c0c4e-aaaa-bbbb",
                 "carbs": 45, "insulin": 4.5, "created_at": NOW.isoformat(),
                 "sysTime": _java_date(NOW)}
    assert requests.put(f"{api}/api/v1/treatments", json=treatment, headers=headers,
                        timeout=10).status_code == 200
    assert requests.put(f"{api}/api/v1/treatments", json={**treatment, "carbs": 50},
                        headers=headers, timeout=10).status_code == 200
    assert requests.post(f"{api}/api/v1/treatments", json=[{**treatment, "carbs": 60}],
                         headers=headers, timeout=10).status_code == 200  # POST keeps first
    assert rows(db_url, "select event_type, carbs_g, insulin_u, notes from "
                "nightscout_treatments where policy_id = %s", a.policy_id) == [
        ("Meal Bolus", 50.0, 4.5, "lunch")]
    status = requests.post(f"{api}/api/v1/devicestatus", headers=headers, timeout=10,
                           json={"uploaderBattery": 7, "device": "xDrip-DexcomG5"})
    assert status.status_code == 200
    assert rows(db_url, "select battery_pct from device_status where device_id = %s",
                a.device_id) == [(7,)]


# ---------------------------------------------------------------- v3 (AndroidAPS)


def test_androidaps_v3_jwt_create_dedup_and_history(
        db_url: str, api: str, tenants: tuple[Credentials, Credentials]) -> None:
    a, b = tenants
    auth = requests.get(f"{api}/api/v2/authorization/request/{a.token}", timeout=10)
    assert auth.status_code == 200
    jwt = auth.json()["token"]
    assert auth.json()["exp"] > auth.json()["iat"]
    bearer = {"Authorization": f"Bearer {jwt}"}
    entry = aaps_sgv(NOW - timedelta(minutes=4), 50)
    created = requests.post(f"{api}/api/v3/entries", json=entry, headers=bearer, timeout=10)
    assert created.status_code == 201, created.text
    ident = created.json()["identifier"]
    again = requests.post(f"{api}/api/v3/entries", json=entry, headers=bearer, timeout=10)
    assert again.status_code == 200
    assert again.json()["isDeduplication"] is True and again.json()["identifier"] == ident
    modified = requests.get(f"{api}/api/v3/lastModified", headers=bearer, timeout=10).json()
    last = modified["result"]["collections"]["entries"]
    assert last == created.json()["lastModified"] > 0
    history = requests.get(f"{api}/api/v3/entries/history/0", headers=bearer,
                           timeout=10).json()["result"]
    assert [(d["identifier"], d["sgv"], d["utcOffset"], d["srvModified"]) for d in history] \
        == [(ident, 50, 60, last)]
    assert requests.get(f"{api}/api/v3/entries/history/{last}", headers=bearer,
                        timeout=10).json()["result"] == []
    refused = requests.post(f"{api}/api/v3/entries", json={**entry, "sgv": "x"},
                            headers=bearer, timeout=10)
    assert refused.status_code == 400
    assert requests.get(f"{api}/api/v3/lastModified", timeout=10).status_code == 401
    forged = jwt[:-4] + ("AAAA" if not jwt.endswith("AAAA") else "BBBB")
    assert requests.get(f"{api}/api/v3/lastModified", timeout=10,
                        headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    jwt_b = requests.get(f"{api}/api/v2/authorization/request/{b.token}",
                         timeout=10).json()["token"]
    assert requests.get(f"{api}/api/v3/entries/history/0", timeout=10, headers={
        "Authorization": f"Bearer {jwt_b}"}).json()["result"] == []
    assert requests.get(f"{api}/api/v2/authorization/request/glucover-unknown",
                        timeout=10).status_code == 401


# ---------------------------------------------------------------- the dashboard


def test_the_policyholder_page_and_the_care_page(
        db_url: str, api: str, tenants: tuple[Credentials, Credentials],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from dashboard.auth import add_to_panel, create_user
    from tests.helpers import PASSWORD, signed_in

    a, _ = tenants
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("GLUCOVER_API_URL", "https://ns.example.com")
    run = [xdrip_sgv(NOW - timedelta(minutes=5 * i), 45) for i in range(5)]
    assert xdrip_post(api, a, run).json()["stored"] == 5
    meal: dict[str, Any] = {"eventType": "Carb Correction", "carbs": 30, "enteredBy": "xdrip",
            "uuid": "c0ffee00-1111", "created_at": (NOW - timedelta(minutes=40)).isoformat()}
    assert requests.post(f"{api}/api/v1/treatments", json=[meal], timeout=10, headers={
        "api-secret": sha1_hex(a.api_secret)}).status_code == 200
    with psycopg.connect(db_url) as conn:
        stream.judge_inbox(conn, care_store.rules_in_force(conn))
        other = conn.execute("select policy_id from policies where policy_id not in "
                             "(select policy_id from nightscout_uploaders)").fetchone()
        assert other is not None
        create_user(conn, "holder_a", PASSWORD, "policyholder", a.policy_id, rounds=4)
        create_user(conn, "holder_c", PASSWORD, "policyholder", str(other[0]), rounds=4)
        create_user(conn, "dr_wu", PASSWORD, "clinician", rounds=4)
        add_to_panel(conn, "dr_wu", [a.policy_id])
        conn.commit()
    at = signed_in("holder_a")
    shown = [c.value for c in at.code]
    assert shown == ["https://ns.example.com", a.api_secret, a.token,
                     f"https://{a.api_secret}@ns.example.com/api/v1/"]
    assert any("xDrip+" in m.value and "Cloud Upload" in m.value for m in at.markdown)
    assert any("NSClientV3" in m.value for m in at.markdown)
    at = signed_in("holder_c", {"lang": "zh"})
    assert not at.code
    assert any("尚未开通" in c.value for c in at.caption)
    at = signed_in("dr_wu")
    treatments = next(d.value for d in at.dataframe if "Carbs (g)" in d.value.columns)
    assert list(treatments["Carbs (g)"]) == [30.0]
    assert list(treatments["Event"]) == ["Carb Correction"]


# ---------------------------------------------------------------- the commands


def test_enable_prints_the_credentials_and_rotates(
        stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    people = portfolio(1, 3, NOW.date() - timedelta(days=3), gateway_share=0.0)
    with psycopg.connect(stack.db_url) as conn:
        add_portfolio(conn, people, TEST_SECRET)
        conn.commit()
    policy = people[0].policy_id
    assert main(["nightscout", "enable", "--policy", policy, "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert {"policy_id", "device_id", "api_secret", "token", "base_url"} <= first.keys()
    assert first["policy_id"] == policy and len(first["api_secret"]) >= 12
    assert first["api_secret_sha1"] == hashlib.sha1(  # noqa: S324
        first["api_secret"].encode()).hexdigest()
    assert main(["nightscout", "enable", "--policy", policy, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["api_secret"] == first["api_secret"]
    assert main(["nightscout", "enable", "--policy", policy, "--json", "--rotate"]) == 0
    rotated = json.loads(capsys.readouterr().out)
    assert rotated["api_secret"] != first["api_secret"] and rotated["token"] != first["token"]
    stored = rows(stack.db_url, "select secret_sha1_key, token_key, generation from "
                  "nightscout_uploaders")
    assert stored[0][2] == 2
    assert not {rotated["api_secret"], rotated["token"], rotated["api_secret_sha1"]} & set(
        stored[0])  # only hashes of what apps send
    assert rows(stack.db_url, "select ruleset_name from policies") == [("cgm-default",)]
    assert rows(stack.db_url, "select device_id from policy_devices where bound_to is null") \
        == [(first["device_id"],)]
    assert main(["nightscout", "enable", "--policy", "nobody", "--json"]) == 2


def test_the_api_command_serves_with_its_own_login(
        stack: Stack, tenants: tuple[Credentials, Credentials]) -> None:
    a, _ = tenants
    port = free_port()
    env = {**stack.env(), "DATABASE_URL": api_login(stack.db_url)}
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "api", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, 60, proc)
        base = f"http://127.0.0.1:{port}"
        assert xdrip_post(base, a, [xdrip_sgv(NOW, 130)]).json()["stored"] == 1
        got = requests.get(f"{base}/api/v1/entries.json", timeout=10,
                           headers={"api-secret": sha1_hex(a.api_secret)}).json()
        assert [e["sgv"] for e in got] == [130]
    finally:
        proc.terminate()
        proc.wait(20)
    with psycopg.connect(api_login(stack.db_url)) as conn, pytest.raises(
            psycopg.errors.InsufficientPrivilege):
        conn.execute("select * from dashboard_users")
