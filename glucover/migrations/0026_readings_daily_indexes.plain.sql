-- Plain PostgreSQL, after 0024 made the daily summary again: its indexes (as 0010 and 0022)
-- and its first refresh.
create unique index readings_daily_key on readings_daily (device_id, day);
create index readings_daily_day on readings_daily (day);
refresh materialized view readings_daily;
