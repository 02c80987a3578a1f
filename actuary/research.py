"""The stored portfolio as the actuaries may use it: only the policies whose holders consent to
research today (privacy/consent.py; docs/privacy.md). Back-tests, the gaming report and their
pages and commands take their policies from here and say how many were left out."""

from __future__ import annotations

from typing import Any

import pandas as pd
import psycopg

from privacy import consent

LEFT_OUT_KEY = "left_out_without_research_consent"  # the JSON key every report uses


def consenting(conn: psycopg.Connection[Any], policies: pd.DataFrame
               ) -> tuple[pd.DataFrame, int]:
    """Those of `policies` consenting to research today, and how many were left out."""
    if policies.empty:
        return policies, 0
    ids = list(policies["policy_id"].astype(str))
    live = consent.live_policies(conn, ids, "research")
    kept = policies[policies["policy_id"].astype(str).isin(live)].reset_index(drop=True)
    return kept, len(policies) - len(kept)
