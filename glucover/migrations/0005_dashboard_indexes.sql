-- Operations looks at recent rejects. (A policyholder's readings over a period need no index of
-- their own: the unique key leads with device_id, a meter has a few thousand readings a year,
-- and on TimescaleDB the time filter excludes chunks. A (device_id, measured_at) index measured
-- a third slower batch inserts into the hypertable.)
create index if not exists rejected_messages_time on rejected_messages (received_at);
