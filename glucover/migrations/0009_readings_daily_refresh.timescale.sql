-- TimescaleDB keeps the rebuilt daily summary (0008) current with a refresh policy; real-time
-- aggregation covers the last hour.
select add_continuous_aggregate_policy('readings_daily',
    start_offset => interval '10 days', end_offset => interval '1 hour',
    schedule_interval => interval '15 minutes', if_not_exists => true);
