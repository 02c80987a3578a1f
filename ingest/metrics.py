"""Prometheus metrics of the ingest worker (served by `glucover ingest --metrics-port P`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

MESSAGES = Counter("glucover_ingest_messages_total", "MQTT messages processed and acknowledged")
READINGS = Counter("glucover_ingest_readings_total", "readings stored (rate() = readings/s)")
DUPLICATES = Counter("glucover_ingest_duplicates_total", "identical re-sends ignored")
REJECTS = Counter("glucover_ingest_rejects_total", "records or messages refused", ["reason"])
MERGED_BATCHES = Counter("glucover_ingest_merged_batches_total",
                         "batches holding an already-stored reading (slow path: ON CONFLICT)")
DB_ERRORS = Counter("glucover_ingest_db_errors_total", "failed database writes (retried)")
BATCH_SECONDS = Histogram("glucover_ingest_batch_seconds", "decode + write + ack per batch",
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
ACKS = Counter("glucover_ingest_acks_total", "end-to-end acknowledgements published")
QUEUE_DEPTH = Gauge("glucover_ingest_queue_depth", "messages received, not yet written")
LAG_SECONDS = Gauge("glucover_ingest_lag_seconds", "receive-to-commit delay of the last batch")


def serve(port: int) -> None:
    start_http_server(port, addr="0.0.0.0")  # noqa: S104 - a container's metrics port
