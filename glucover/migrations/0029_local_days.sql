-- Local days everywhere (kernel/days.py). A policy-day is a calendar day in the policy's IANA
-- time zone; these two functions are its SQL twins, held to kernel/days.py by tests/test_days.py
-- (DST changes, half-hour zones, midnights that do not happen or happen twice).

-- The local calendar day of an instant in `zone`.
create function local_day(instant timestamptz, zone text) returns date
    language sql immutable parallel safe as $$
    select (instant at time zone zone)::date
$$;

-- The instant at which `day` starts in `zone`: its first instant when the clocks jump over
-- midnight, its first occurrence when they go back over it.
create function local_midnight(day date, zone text) returns timestamptz
    language sql immutable parallel safe as $$
    select case when ((day::timestamp at time zone zone) - interval '1 hour') at time zone zone
                     = day::timestamp
                then (day::timestamp at time zone zone) - interval '1 hour'
                else day::timestamp at time zone zone end
$$;

-- The fingerstick daily summary becomes per policy and local day, under the ruleset in force
-- (pricing/meter_days.py): readings_daily was per meter and UTC day, with the default
-- ruleset's validity written here as literals. policy_daily_summary, which joined the ledger to
-- it, goes too: nothing but tests read it. (On TimescaleDB dropping the continuous
-- aggregate deletes its refresh job, which the scheduler may be starting: retried as in 0007.)
do $$
begin
    for attempt in 1..50 loop
        begin
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
drop function if exists refresh_readings_daily();

create table meter_days (
    policy_id         text not null references policies on delete cascade,
    day               date not null,
    summary_key       text not null,  -- the ruleset parameters the figures were made with
    readings          integer not null,
    pre_meal_readings integer not null,
    mean_mmol         double precision not null,
    min_mmol          double precision not null,
    max_mmol          double precision not null,
    in_range_readings integer not null,
    primary key (policy_id, day)
);
create index meter_days_day on meter_days (day);

do $$ begin
    if exists (select 1 from pg_roles where rolname = 'glucover_pricing') then
        grant select, insert, update, delete on meter_days to glucover_pricing;
        grant select on meter_days to glucover_dashboard;
    end if;
end $$;
