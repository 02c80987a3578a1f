"""The dashboard's database access: one pool per process (st.cache_resource), parameterised
queries only, results as DataFrames."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st
from psycopg_pool import ConnectionPool

from glucover.config import Settings

POOL_MAX = 8
# The operations page's and the workbench's aggregates over a day or two of readings at 100,000
# policies sort and bitmap-scan more than PostgreSQL's default 4 MB: with it their bitmaps went
# lossy and their sorts to disk (`glucover bench dashboard --explain`). Per connection, at most
# POOL_MAX of them.
WORK_MEM = "64MB"


def database_url() -> str:
    return Settings.from_env().require_database_url()


@st.cache_resource(show_spinner=False)
def _pool(url: str) -> ConnectionPool:
    p = ConnectionPool(url, min_size=1, max_size=POOL_MAX, open=True,
                       kwargs={"connect_timeout": 10, "options": f"-c work_mem={WORK_MEM}"})
    p.wait(timeout=15)
    return p


def pool() -> ConnectionPool:
    """The process's one pool for this database (`with pool().connection() as conn:` commits
    on success and rolls back on error)."""
    return _pool(database_url())


def frame(sql: str, params: dict[str, Any] | tuple[Any, ...] | None = None) -> pd.DataFrame:
    with pool().connection() as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        columns = [d.name for d in cur.description or []]
        return pd.DataFrame(cur.fetchall(), columns=columns)


def one(sql: str, params: dict[str, Any] | tuple[Any, ...] | None = None) -> Any:
    with pool().connection() as conn:
        row = conn.execute(sql, params).fetchone()
    return None if row is None else row[0]


def execute(sql: str, params: dict[str, Any] | tuple[Any, ...] | None = None) -> None:
    with pool().connection() as conn:
        conn.execute(sql, params)
