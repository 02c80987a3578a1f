-- The pricing run's watermark (pricing/engine.py): the start of the oldest transaction still
-- running when a run takes its snapshot, or now(). Ingest stamps a batch's readings with its
-- transaction's start (ingested_at = now()), so a reading stamped before this watermark was
-- committed before the run looked, and the next run need only look at readings stamped from
-- it on. (A fixed look-back of five minutes made every run re-rate what the run before had
-- priced: all of the demo's policies, every minute, while its history arrived.)
-- Reading other sessions' transaction starts needs pg_read_all_stats; the function, owned by
-- the migrating role, lends exactly this one figure to the pricing login. Where its owner
-- cannot see other sessions either, it answers null and the engine falls back to a look-back.
create or replace function oldest_running_transaction() returns timestamptz
    language sql stable security definer set search_path = pg_catalog as $$
    select case when pg_has_role(current_user, 'pg_read_all_stats', 'member')
                     or (select rolsuper from pg_roles where rolname = current_user)
                then least(now(), (select min(xact_start) from pg_stat_activity
                                   where backend_type = 'client backend'
                                     and pid <> pg_backend_pid()))
           end
$$;
revoke all on function oldest_running_transaction() from public;
do $$ begin
    if exists (select 1 from pg_roles where rolname = 'glucover_pricing') then
        grant execute on function oldest_running_transaction() to glucover_pricing;
    end if;
end $$;
