-- End-to-end acknowledgements (docs/wire-format.md#acknowledgements): per meter, the sequence
-- numbers stored so far among the ACK_WINDOW ({ack_window}) up to its newest one (kernel/
-- sequence.py), kept by ingest in each batch's transaction and published on the meter's ack
-- topic after the commit.
-- Unlogged: written on every batch, so no WAL for it (a third of the acknowledgements' cost on
-- the batched benchmark). After a database crash it starts empty, which costs only re-sends:
-- meters send again what no ack covers, and the idempotent key makes that harmless.
-- Fill factor 50: room for HOT updates of each meter's row in place.
create unlogged table device_acks (
    device_id  text primary key,
    stored     int4multirange not null,
    newest_seq integer not null,
    updated_at timestamptz not null default now()
) with (fillfactor = 50);

-- The ACK_WINDOW sequence numbers up to `newest`, wrapping below 0 to the top of uint16.
create function ack_window(newest integer) returns int4multirange language sql immutable as $$
    select case when newest >= {ack_window} - 1
        then int4multirange(int4range(newest - ({ack_window} - 1), newest, '[]'))
        else int4multirange(int4range(0, newest, '[]'),
                            int4range({seq_modulo} - ({ack_window} - 1 - newest),
                                      {seq_modulo} - 1, '[]'))
    end
$$;

-- The newer of two sequence numbers: the one ahead on the uint16 circle (by less than half of
-- it), since a meter numbers its records in order. ingest/store.py newest_seq is the same rule
-- over one batch's numbers.
create function newer_seq(candidate integer, newest integer) returns integer language sql
    immutable as $$
    select case when (candidate - newest + {seq_modulo}) % {seq_modulo}
                     between 1 and {seq_modulo} / 2 - 1
                then candidate else newest end
$$;

do $$ begin
    if exists (select 1 from pg_roles where rolname = 'glucover_ingest') then
        grant select, insert, update on device_acks to glucover_ingest;
        grant select on device_acks to glucover_dashboard;
    end if;
end $$;
