-- TimescaleDB: readings become a hypertable, the daily summary a continuous aggregate with a
-- refresh policy, and old chunks are compressed. {compress_after} is filled in by glucover/db.py.
select create_hypertable('readings', 'measured_at', chunk_time_interval => interval '7 days',
                         if_not_exists => true, migrate_data => true);

create materialized view readings_daily with (timescaledb.continuous, timescaledb.materialized_only = false) as
    select device_id,
           time_bucket(interval '1 day', measured_at) as day,
           count(*)                                      as readings,
           count(*) filter (where meal in ('fasting', 'preprandial')) as pre_meal_readings,
           avg(value_mmol)                               as mean_mmol,
           min(value_mmol)                               as min_mmol,
           max(value_mmol)                               as max_mmol,
           count(*) filter (where value_mmol between 3.9 and 10.0) as in_range_readings
    from readings
    where sample <> 'control_solution' and source = 'meter'
    group by device_id, time_bucket(interval '1 day', measured_at)
    with no data;

-- Its refresh policy was added here until the summary was rebuilt (0007-0009): a fresh database
-- no longer starts a refresh job for a summary that 0007 drops a moment later (TimescaleDB's
-- job could crash on the dropped view). Databases migrated earlier have the policy; 0007 drops
-- it with the view.

alter table readings set (timescaledb.compress, timescaledb.compress_segmentby = 'device_id',
                          timescaledb.compress_orderby = 'measured_at, seq');
select add_compression_policy('readings', interval '{compress_after}', if_not_exists => true);

-- The refresh policy keeps the aggregate current (and real-time aggregation covers the rest),
-- so the engine's refresh is a no-op here; the name exists on both backends.
create function refresh_readings_daily() returns void language sql security definer
    set search_path = public as $$ select $$;
revoke all on function refresh_readings_daily() from public;
