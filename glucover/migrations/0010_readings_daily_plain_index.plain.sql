-- Plain PostgreSQL refreshes the rebuilt daily summary (0008) concurrently, which needs a unique
-- index.
create unique index readings_daily_key on readings_daily (device_id, day);
