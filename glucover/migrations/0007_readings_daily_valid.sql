-- readings.flags held ingest's guesses at what pricing would exclude, under names of its own, and
-- nothing read them: whether a reading counts is the ruleset's business (pricing/glycaemia.py).
-- The daily summary is rebuilt (0008) to count only the readings that count. On a fresh
-- database there is nothing here to drop (0002 and 0003 no longer make the first versions).
--
-- On TimescaleDB, dropping the summary deletes its refresh job, which the job scheduler may be
-- starting at that moment on a database migrated a moment ago ("tuple concurrently updated",
-- SQLSTATE XX000); the statements are retried in a subtransaction until the scheduler is done.
do $$
begin
    for attempt in 1..50 loop
        begin
            alter table readings drop column if exists flags;
            drop view if exists policy_daily_summary;
            drop materialized view if exists readings_daily;
            return;
        exception when internal_error then
            if attempt = 50 then
                raise;
            end if;
            perform pg_sleep(0.1);
        end;
    end loop;
end $$;
