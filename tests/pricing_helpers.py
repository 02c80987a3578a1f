"""Small builders for evaluator inputs, used by several test modules."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from kernel.vocabulary import Status


def policies(*rows: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    defaults = {"start_date": "2026-03-01", "base_sum_insured": 10_000.0,
                "timezone": "Asia/Shanghai"}
    full = [{**defaults, **r} for r in rows]
    frame = pd.DataFrame({
        "policy_id": [r["policy_id"] for r in full],
        "start_date": pd.to_datetime([r["start_date"] for r in full]),
        "base_sum_insured": [float(r["base_sum_insured"]) for r in full],
        "timezone": [r["timezone"] for r in full],
    })
    bindings = pd.DataFrame({
        "policy_id": [r["policy_id"] for r in full],
        "device_id": [r.get("device_id", "D-" + r["policy_id"]) for r in full],
        "bound_from": pd.to_datetime(pd.Series([r.get("bound_from") for r in full]), utc=True),
        "bound_to": pd.to_datetime(pd.Series([r.get("bound_to") for r in full]), utc=True),
    })
    return frame, bindings


def reading(device_id: str, measured_at: str, value_mmol: float, *, seq: int = 1,
            received_at: str | None = None, meal: str = "fasting",
            sample: str = "capillary_plasma", source: str = "meter",
            status: tuple[str, ...] = ()) -> dict[str, Any]:
    bits = 0
    for name in status:
        bits |= 1 << Status[name].value
    measured = pd.Timestamp(measured_at).tz_convert("UTC")
    received = pd.Timestamp(received_at).tz_convert("UTC") if received_at else measured
    return {"device_id": device_id, "seq": seq, "measured_at": measured,
            "received_at": received, "value_mmol": value_mmol, "meal": meal,
            "sample": sample, "source": source, "status": bits}


def readings(*rows: dict[str, Any]) -> pd.DataFrame:
    columns = ["device_id", "seq", "measured_at", "received_at", "value_mmol", "meal", "sample",
               "source", "status"]
    if not rows:
        frame = pd.DataFrame({c: [] for c in columns})
        frame["measured_at"] = pd.to_datetime(frame["measured_at"], utc=True)
        frame["received_at"] = pd.to_datetime(frame["received_at"], utc=True)
        frame["status"] = frame["status"].astype(np.int64)
        frame["seq"] = frame["seq"].astype(np.int64)
        frame["value_mmol"] = frame["value_mmol"].astype(float)
        return frame
    return pd.DataFrame(list(rows), columns=columns)


def random_portfolio(seed: int, n_policies: int = 12, n_readings: int = 1500, days: int = 40
                     ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Random, adversarial data: several zones (DST ones too), ties, every exclusion."""
    rng = np.random.default_rng(seed)
    zones = ["Asia/Shanghai", "America/New_York", "Europe/London", "Australia/Lord_Howe",
             "Pacific/Chatham", "UTC"]
    starts = pd.Timestamp("2026-03-01") + pd.to_timedelta(rng.integers(0, 10, n_policies), "D")
    pol = pd.DataFrame({
        "policy_id": [f"P{i}" for i in range(n_policies)],
        "start_date": starts,
        "base_sum_insured": rng.choice([10_000.0, 20_000.0, 5_000.5], n_policies),
        "timezone": rng.choice(zones, n_policies),
    })
    # Some policies change meter half way; one meter is bound to nobody.
    switch = pd.Timestamp("2026-03-20", tz="UTC")
    bind_rows: list[tuple[str, str, Any, Any]] = []
    for i in range(n_policies):
        if i % 4 == 0:
            bind_rows.append((f"P{i}", f"D{i}", pd.NaT, switch))
            bind_rows.append((f"P{i}", f"D{i}b", switch, pd.NaT))
        else:
            bind_rows.append((f"P{i}", f"D{i}", pd.NaT, pd.NaT))
    bindings = pd.DataFrame(bind_rows, columns=["policy_id", "device_id", "bound_from",
                                                "bound_to"])
    bindings["bound_from"] = pd.to_datetime(bindings["bound_from"], utc=True)
    bindings["bound_to"] = pd.to_datetime(bindings["bound_to"], utc=True)
    devices = [*bindings["device_id"], "D-stray"]
    measured = (pd.Timestamp("2026-02-27", tz="UTC")
                + pd.to_timedelta(rng.integers(0, days * 86400, n_readings) // 1800 * 1800, "s"))
    lag = rng.choice([0, 60, 400, -200, -400, 3 * 86400, 8 * 86400], n_readings,
                     p=[.5, .2, .05, .1, .05, .05, .05])
    frame = pd.DataFrame({
        "device_id": rng.choice(devices, n_readings),
        "seq": rng.integers(0, 4, n_readings),  # few seqs: ties on measured_at get broken by seq
        "measured_at": measured,
        "received_at": measured + pd.to_timedelta(lag, "s"),
        "value_mmol": np.round(rng.choice([rng.uniform(0.5, 40.0), 4.4, 7.0, 10.0, 10.0001],
                                          n_readings) * rng.uniform(0.8, 1.2, n_readings), 4),
        "meal": rng.choice(["fasting", "preprandial", "postprandial", "bedtime"], n_readings),
        "sample": rng.choice(["capillary_plasma", "control_solution"], n_readings, p=[.9, .1]),
        "source": rng.choice(["meter", "manual"], n_readings, p=[.9, .1]),
        "status": rng.choice([0, 1, 2, 1 << 11], n_readings, p=[.85, .05, .05, .05]),
    })
    frame["value_mmol"] = np.where(rng.random(n_readings) < 0.2,
                                   rng.choice([4.4, 7.0, 10.0, 4.39999, 10.00001], n_readings),
                                   frame["value_mmol"])
    frame = frame.drop_duplicates(["device_id", "seq", "measured_at"]).reset_index(drop=True)
    return pol, bindings, frame
