"""The baseline the ingest benchmark compares against: a straightforward bridge that inserts
each message with its own INSERT in autocommit mode, as a first version often does."""

from __future__ import annotations

import json
import sys
import threading
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from devices.wire.topics import TOPIC_ROOT
from devices.wire.values import stored_decimal
from glucover.config import MqttTarget


def run(database_url: str, target: MqttTarget) -> None:
    conn = psycopg.connect(database_url, autocommit=True)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="naive-bridge",
                         protocol=mqtt.MQTTv311, clean_session=True)
    client.username_pw_set(target.username, target.password)
    ready = threading.Event()

    def on_connect(c: mqtt.Client, u: Any, f: Any, reason: Any, p: Any) -> None:
        c.subscribe(f"{TOPIC_ROOT}/+/readings", qos=1)

    def on_subscribe(c: mqtt.Client, u: Any, mid: Any, reasons: Any, p: Any) -> None:
        ready.set()
        print("subscribed", flush=True)

    def on_message(c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        doc = json.loads(msg.payload)
        for r in doc["records"]:
            digits, exponent = stored_decimal(float(r["value"]), r["unit"])
            measured = datetime.fromisoformat(r["measured_at"])
            offset = measured.utcoffset()
            conn.execute(
                "insert into readings (device_id, seq, measured_at, utc_offset_min, received_at,"
                " value_digits, value_exponent, unit, meal, sample, source, status) values (%s,"
                " %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 0) on conflict do nothing",
                (doc["device_id"], r["seq"], measured,
                 int(offset.total_seconds() // 60) if offset else 0, datetime.now(UTC), digits,
                 exponent, r["unit"], r["meal"], r["sample"], r["source"]))

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(target.host, target.port)
    client.loop_forever()


if __name__ == "__main__":
    run(sys.argv[1], MqttTarget.parse(sys.argv[2]))
