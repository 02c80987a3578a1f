"""Ingest: MQTT readings into the database, losslessly and idempotently."""
