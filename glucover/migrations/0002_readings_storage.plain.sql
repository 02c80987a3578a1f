-- Plain PostgreSQL: the same names. readings stays a table; the daily summary (0008) is a
-- materialized view that the pricing engine refreshes through this function.
-- The daily summary (readings_daily, a materialized view here) is created by 0008, once, as it
-- is now; databases migrated earlier made a first version here, which 0007 drops.

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
