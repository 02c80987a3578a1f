-- Ingest refuses a revoked meter's readings in the insert itself (ingest/store.py), by an
-- anti-join on the few revoked meters: this index holds only those.
create index if not exists devices_revoked on devices (device_id) where revoked_at is not null;
