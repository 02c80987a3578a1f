-- End-to-end acknowledgements (docs/wire-format.md#acknowledgements): per meter, the sequence
-- numbers stored so far within ACK_WINDOW (4,096) of the newest reading's (devices/wire/
-- messages.py), kept by ingest in each batch's transaction and published on the meter's ack
-- topic after the commit.
-- Unlogged: written on every batch, so no WAL for it (a third of the acknowledgements' cost on
-- the batched benchmark). After a database crash it starts empty, which costs only re-sends:
-- meters send again what no ack covers, and the idempotent key makes that harmless.
-- Fill factor 50: room for HOT updates of each meter's row in place.
create unlogged table device_acks (
    device_id  text primary key,
    stored     int4multirange not null,
    newest_seq integer not null,
    newest_at  timestamptz not null,
    updated_at timestamptz not null default now()
) with (fillfactor = 50);

-- The sequence numbers within 4,096 of `newest` (below and above: a meter whose clock went back
-- may number a reading after the newest by time), wrapping at the ends of uint16.
create function ack_window(newest integer) returns int4multirange language sql immutable as $$
    select int4multirange(int4range(greatest(newest - 4096, 0), least(newest + 4096, 65535),
                                    '[]'))
         + case when newest - 4096 < 0
                then int4multirange(int4range(65536 + newest - 4096, 65535, '[]'))
                else '{}'::int4multirange end
         + case when newest + 4096 > 65535
                then int4multirange(int4range(0, newest + 4096 - 65536, '[]'))
                else '{}'::int4multirange end
$$;

do $$ begin
    if exists (select 1 from pg_roles where rolname = 'glucover_ingest') then
        grant select, insert, update on device_acks to glucover_ingest;
        grant select on device_acks to glucover_dashboard;
    end if;
end $$;
