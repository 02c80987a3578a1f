-- TimescaleDB: readings become a hypertable and old chunks are compressed. {compress_after} is
-- filled in by glucover/db.py.
select create_hypertable('readings', 'measured_at', chunk_time_interval => interval '7 days',
                         if_not_exists => true, migrate_data => true);

-- The daily summary (readings_daily) is created by 0008, once, as it is now: it was created here
-- and rebuilt by 0007-0011 until a fresh database stopped making the first version only to drop
-- it (TimescaleDB's refresh job could crash on the dropped view). Databases migrated earlier
-- keep their history; 0007 drops the old summary there.

alter table readings set (timescaledb.compress, timescaledb.compress_segmentby = 'device_id',
                          timescaledb.compress_orderby = 'measured_at, seq');
select add_compression_policy('readings', interval '{compress_after}', if_not_exists => true);

-- The refresh policy keeps the aggregate current (and real-time aggregation covers the rest),
-- so the engine's refresh is a no-op here; the name exists on both backends.
create function refresh_readings_daily() returns void language sql security definer
    set search_path = public as $$ select $$;
revoke all on function refresh_readings_daily() from public;
