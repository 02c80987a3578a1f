-- Ingest asks, in each batch's transaction, which of the batch's meters are revoked
-- (ingest/store.py) and writes none of their readings: this index holds only the revoked few.
create index if not exists devices_revoked on devices (device_id) where revoked_at is not null;
