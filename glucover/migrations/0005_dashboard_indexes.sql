-- A policyholder's readings over a period: the unique key has seq between device and time.
create index if not exists readings_device_time on readings (device_id, measured_at);
create index if not exists rejected_messages_time on rejected_messages (received_at);
