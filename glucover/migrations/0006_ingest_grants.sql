-- Ingest's conflicting-duplicate check compares the stored copy's content, and its status
-- upsert reads the current row.
do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'glucover_ingest') then
        return;
    end if;
    grant select (device_id, seq, measured_at, value, unit, meal, sample, source, status)
        on readings to glucover_ingest;
    grant select on device_status to glucover_ingest;
end $$;
