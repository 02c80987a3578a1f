-- CGM day summaries (pricing/cgm_days.py): per policy and local calendar day, what the CGM
-- rules need (pricing/cgm_rules.py rules 1-2): covered slots and counts of valid readings
-- by band, so nightly pricing and back-tests never reload a CGM's 288 readings a day.
-- Kept by the pricing engine: each run recomputes, from the readings, the policy-days that
-- readings ingested since its last run touch (late and out-of-order arrivals included), so a
-- row is always what the readings say. A plain table on both backends: the day is local to the
-- policy's time zone and the device must be bound to it, a join no continuous aggregate makes.
-- summary_key names the rule parameters the counts were made with; rows made with others are
-- recomputed before use.
create table cgm_days (
    policy_id   text not null references policies on delete cascade,
    day         date not null,
    summary_key text not null,
    covered     integer not null,
    readings    integer not null,
    in_range    integer not null,
    low         integer not null,
    very_high   integer not null,
    primary key (policy_id, day)
);

do $$ begin
    if exists (select 1 from pg_roles where rolname = 'glucover_pricing') then
        grant select, insert, update, delete on cgm_days to glucover_pricing;
        grant select on cgm_days to glucover_dashboard;
    end if;
end $$;
