-- Plain PostgreSQL: the same names. readings stays a table; the daily summary is a materialized
-- view that the pricing engine refreshes (date_bin is the portable time_bucket).
create materialized view readings_daily as
    select device_id,
           date_bin(interval '1 day', measured_at, timestamptz '2000-01-01 00:00+00') as day,
           count(*)                                      as readings,
           count(*) filter (where meal in ('fasting', 'preprandial')) as pre_meal_readings,
           avg(value_mmol)                               as mean_mmol,
           min(value_mmol)                               as min_mmol,
           max(value_mmol)                               as max_mmol,
           count(*) filter (where value_mmol between 3.9 and 10.0) as in_range_readings
    from readings
    where sample <> 'control_solution' and source = 'meter'
    group by device_id, date_bin(interval '1 day', measured_at, timestamptz '2000-01-01 00:00+00')
    with no data;
create unique index readings_daily_key on readings_daily (device_id, day);

-- Refreshing needs ownership; the engine's role calls this instead.
create function refresh_readings_daily() returns void language plpgsql security definer
    set search_path = public as $$
begin
    if (select relispopulated from pg_class where oid = 'readings_daily'::regclass) then
        refresh materialized view concurrently readings_daily;  -- readers are not blocked
    else
        refresh materialized view readings_daily;
    end if;
end $$;
revoke all on function refresh_readings_daily() from public;
