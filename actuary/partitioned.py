"""Back-tests partitioned by policy across machines, on dask.distributed.

The policies are cut into partitions; each partition runs `actuary.backtest.backtest_part` on a
worker of the cluster, which reads its own policies' history from the database (the scheduler
ships policy ids and rulesets, never readings), and the client combines the parts
(`actuary.backtest.combine`) into the same result one process gives: a part's figures depend
only on its own policies. `local` starts a LocalCluster of worker processes on this machine;
any other value is a scheduler's address (`tcp://scheduler:8786`), whose workers run this
package and reach the database at the URL given (a read replica does).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import pandas as pd
import psycopg

from actuary import backtest
from pricing import store
from pricing.ruleset import Ruleset

LOCAL = "local"


def partitions(policy_ids: list[str], n: int) -> list[list[str]]:
    """`n` contiguous, near-equal slices of the sorted policy ids (fewer when there are
    fewer policies)."""
    ids = sorted(policy_ids)
    n = max(1, min(n, len(ids)))
    size = -(-len(ids) // n)
    return [ids[i:i + size] for i in range(0, len(ids), size)]


def part_from_database(database_url: str, policy_ids: list[str], candidate: Ruleset,
                       baseline: Ruleset, through: date) -> backtest.BacktestPart:
    """One partition's back-test, where it runs: its policies and their readings from the
    database, a chunk of policies at a time."""
    with psycopg.connect(database_url) as conn:
        policies, bindings = store.load_policies(conn, policy_ids)
        return backtest.backtest_part(policies, bindings,
                                     lambda ids: store.load_readings(conn, ids), candidate,
                                     baseline, through)


@contextmanager
def cluster(scheduler: str, workers: int) -> Iterator[Any]:
    """A dask.distributed Client: of a LocalCluster of `workers` processes (`local`), or of
    the scheduler at an address."""
    from distributed import Client, LocalCluster

    if scheduler == LOCAL:
        # distributed's constructors carry no annotations.
        with LocalCluster(n_workers=workers, threads_per_worker=1,  # type: ignore[no-untyped-call]
                          processes=True, dashboard_address=None) as local, \
                Client(local) as client:  # type: ignore[no-untyped-call]
            yield client
    else:
        with Client(scheduler) as client:  # type: ignore[no-untyped-call]
            yield client


def partitioned_backtest(client: Any, database_url: str, policies: pd.DataFrame,
                         candidate: Ruleset, baseline: Ruleset, through: date,
                         n_partitions: int) -> backtest.BacktestResult:
    """The back-test of `policies`, a partition per task on the client's cluster."""
    parts = partitions([str(p) for p in policies["policy_id"]], n_partitions)
    futures = client.map(part_from_database, [database_url] * len(parts), parts,
                         [candidate] * len(parts), [baseline] * len(parts),
                         [through] * len(parts), pure=False)
    done: list[backtest.BacktestPart] = client.gather(futures)
    return backtest.combine(done, policies, candidate, baseline, through)
