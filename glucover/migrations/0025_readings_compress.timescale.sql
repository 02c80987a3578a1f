-- TimescaleDB, after 0024: the daily summary's refresh policy (as 0009) and compression as
-- 0002 set it up (0023 took it off). The summary is made with no data; glucover migrate
-- refreshes it over all time once this has committed (a refresh cannot run in a transaction).
select add_continuous_aggregate_policy('readings_daily',
    start_offset => interval '10 days', end_offset => interval '1 hour',
    schedule_interval => interval '15 minutes', if_not_exists => true);
alter table readings set (timescaledb.compress, timescaledb.compress_segmentby = 'device_id',
                          timescaledb.compress_orderby = 'measured_at, seq');
select add_compression_policy('readings', interval '{compress_after}', if_not_exists => true);
--! after commit: call refresh_continuous_aggregate('readings_daily', null, null)
