"""`glucover api` (the Nightscout-compatible API service) and `glucover nightscout enable`."""

from __future__ import annotations

import argparse
import json
import logging

import psycopg

from glucover.config import Settings
from nightscout.credentials import app_urls, sha1_hex
from nightscout.enrolment import enable


def enable_cli(args: argparse.Namespace, settings: Settings) -> int:
    with psycopg.connect(settings.require_database_url()) as conn:
        creds, changed = enable(conn, settings.key("nightscout_key"), args.policy, args.rotate)
        conn.commit()
    doc = {"policy_id": creds.policy_id, "device_id": creds.device_id,
           "api_secret": creds.api_secret, "api_secret_sha1": sha1_hex(creds.api_secret),
           "token": creds.token, **app_urls(settings.api_url, creds),
           "generation": creds.generation, "changed": changed}
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"Nightscout uploads for policy {creds.policy_id} "
          f"({'new credentials' if changed else 'unchanged; --rotate makes new ones'})")
    for k in ("device_id", "base_url", "api_secret", "token", "xdrip_url"):
        print(f"  {k + ':':12} {doc[k]}")
    return 0


def api_cli(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from nightscout.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s "
                        "%(message)s")
    app = create_app(settings.require_database_url(), settings.key("nightscout_key"))
    print(f"nightscout API on http://{args.host}:{args.port}/api/v1/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                access_log=False)
    return 0
