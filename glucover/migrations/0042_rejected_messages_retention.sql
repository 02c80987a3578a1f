-- Refused messages are kept for review for a while, not for ever: the ingest worker deletes
-- those past their retention (ingest/rejects.py RETENTION) by the time they were received.
create index if not exists rejected_messages_received on rejected_messages (received_at);
do $$
begin
    if exists (select 1 from pg_roles where rolname = 'glucover_ingest') then
        grant delete, select on rejected_messages to glucover_ingest;
    end if;
end $$;
