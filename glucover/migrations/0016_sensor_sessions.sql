-- A CGM's sensor sessions, as the device reports them on its status topic
-- (docs/wire-format.md#status): one row per sensor, updated as it warms up and ends.
create table sensor_sessions (
    device_id       text not null references devices,
    sensor_id       text not null,
    state           text not null check (state in ('warming_up', 'active', 'ended', 'failed')),
    started_at      timestamptz not null,
    warmup_ends_at  timestamptz not null,
    expected_end_at timestamptz not null,
    ended_at        timestamptz,
    sent_at         timestamptz not null,     -- of the status message that said so
    primary key (device_id, sensor_id)
);

do $$ begin
    if exists (select 1 from pg_roles where rolname = 'glucover_ingest') then
        grant select, insert, update on sensor_sessions to glucover_ingest;
        grant select on sensor_sessions to glucover_pricing, glucover_dashboard;
    end if;
end $$;
