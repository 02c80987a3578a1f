"""`glucover privacy erase --policy ID --reason TEXT`: erase a policyholder (privacy/erasure.py)
and close their meters' broker accounts. It lives in the composition root because it spans
two stages: the database (privacy/) and the broker's accounts (devices/)."""

from __future__ import annotations

import argparse
import getpass
import sys
import threading

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from devices.provisioning import sync_broker
from devices.wire import topics
from glucover import broker
from glucover.config import MqttTarget, Settings
from privacy import erasure

CLEAR_TIMEOUT_S = 10.0


def clear_retained(target: MqttTarget, secret: str, device_id: str) -> bool:
    """Connect as the meter, with a clean session, and clear its retained status (an empty
    retained message), so the broker keeps nothing of it. False when the broker cannot be
    reached or refuses (the meter's account is then closed anyway)."""
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(device_id, broker.derive_password(secret, device_id))

    def on_connect(c: mqtt.Client, userdata: object, flags: object, reason: object,
                   props: object) -> None:
        if getattr(reason, "is_failure", False):
            done.set()
            return
        c.publish(topics.status_topic(device_id), b"", qos=1, retain=True)

    def on_publish(c: mqtt.Client, userdata: object, mid: int, reason: object,
                   props: object) -> None:
        done.set()

    client.on_connect = on_connect
    client.on_publish = on_publish
    try:
        client.connect(target.host, target.port)
    except OSError:
        return False
    client.loop_start()
    ok = done.wait(CLEAR_TIMEOUT_S)
    client.disconnect()
    client.loop_stop()
    return ok


def erase_cli(args: argparse.Namespace, settings: Settings) -> int:
    with psycopg.connect(settings.require_database_url()) as conn:
        done = erasure.erase(conn, args.policy, args.reason, args.actor or getpass.getuser())
        conn.commit()
    cleared = 0
    if settings.mqtt_url:
        target = settings.require_mqtt()
        cleared = sum(clear_retained(target, settings.key("device_secret"), d)
                      for d in done.devices)
    with psycopg.connect(settings.require_database_url()) as conn:
        result = sync_broker(conn, settings)  # the meters' accounts are gone from its files
    removed = sum(done.counts.values())
    print(f"erased policy {args.policy}: {removed:,} rows "
          f"({', '.join(f'{t} {n}' for t, n in done.counts.items() if n)}); "
          f"{len(done.devices)} meter account(s) closed, {cleared} retained status cleared; "
          f"broker file holds {result.accounts} accounts"
          + ("" if result.reloaded else "; reload the broker to apply"))
    if done.held:
        print(f"legal hold: policy {args.policy} has a claim; its claim, the policy row (name "
              "and birth year removed) and the ledger through the claim's basis day are kept",
              file=sys.stderr)
    return 0
