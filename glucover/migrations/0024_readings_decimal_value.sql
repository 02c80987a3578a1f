-- A reading keeps its value as the decimal the meter sent, digits x 10^exponent
-- (devices/wire/values.py), instead of two doubles (the value as sent and in mmol/L): the same
-- values exactly, and a third of the compressed size on TimescaleDB, where a double of a
-- one-decimal mmol/L value cost ~5.5 bytes (docs/architecture.md, "Storage of a reading's
-- value"). Readers compute the value and mmol/L with the two functions below, which
-- PostgreSQL inlines.

-- The double a stored decimal stands for, exactly as Python's float() of its text: a division
-- of two exact doubles is correctly rounded; past 2^53 digits or 10^22, the text itself.
create function glucose_value(digits bigint, exponent smallint) returns double precision
    language sql immutable parallel safe as $$
    select case when exponent between -22 and 0
                     and digits between -9007199254740992 and 9007199254740992
                then digits::float8 / 10::float8 ^ (-exponent)
                else (digits::text || 'e' || exponent::text)::float8 end
$$;

-- In mmol/L, unrounded: as sent, or mg/dL / {mgdl_per_mmol} (kernel/units.py). The
-- schema is named: TimescaleDB refreshes its aggregates with a search path of pg_catalog only.
create function glucose_mmol(digits bigint, exponent smallint, unit text)
    returns double precision language sql immutable parallel safe as $$
    select case when unit = 'mg/dL'
                then public.glucose_value(digits, exponent) / {mgdl_per_mmol}::float8
                else public.glucose_value(digits, exponent) end
$$;

-- The summaries read the old columns; they are made again below. (On TimescaleDB dropping the
-- summary deletes its refresh job, which the scheduler may be starting: retried as in 0007.)
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

-- The shortest decimal that reads back as the stored double (PostgreSQL's float8 output, as
-- Python's repr), with at least the unit's decimals (kernel/units.py UNIT_DECIMALS).
set local extra_float_digits = 1;
alter table readings add column value_digits bigint, add column value_exponent smallint;
update readings set
    value_exponent = -greatest(scale(value::text::numeric),
                               case unit when 'mmol/L' then 1 else 0 end),
    value_digits = (value::text::numeric
                    * 10::numeric ^ greatest(scale(value::text::numeric),
                                             case unit when 'mmol/L' then 1 else 0 end))::bigint;
alter table readings alter column value_digits set not null,
                     alter column value_exponent set not null,
                     drop column value, drop column value_mmol;

-- The daily summary per meter, as 0008 made it (validity as pricing/glycaemia.py defines it
-- under the default ruleset; time in range as kernel/glucose.py; tests/test_glycaemia.py
-- holds it to the same figures as the dashboard and the workbench).
create materialized view readings_daily {continuous_aggregate} as
    select device_id,
           {day_bucket} as day,
           count(*)                                      as readings,
           count(*) filter (where meal in ('fasting', 'preprandial')) as pre_meal_readings,
           avg(glucose_mmol(value_digits, value_exponent, unit)) as mean_mmol,
           min(glucose_mmol(value_digits, value_exponent, unit)) as min_mmol,
           max(glucose_mmol(value_digits, value_exponent, unit)) as max_mmol,
           count(*) filter (where glucose_mmol(value_digits, value_exponent, unit)
                                  between {fingerstick_low_mmol} and {fingerstick_high_mmol}) as in_range_readings
    from readings
    where sample <> 'control_solution' and source = 'meter'
      and (status & {error_status_mask}) = 0  -- every GLS status bit but battery_low (bit 0)
      and glucose_mmol(value_digits, value_exponent, unit)
          between 20.0::float8 / {mgdl_per_mmol}::float8 and 600.0::float8 / {mgdl_per_mmol}::float8
      and measured_at - received_at <= interval '300 seconds'
      and received_at - measured_at <= interval '604800 seconds'
    group by device_id, {day_bucket}
    with no data;

-- As 0011 made it.
create view policy_daily_summary as
    select l.policy_id, l.day, l.day_status, l.delta, l.bonus, l.sum_insured,
           l.ruleset_name, l.ruleset_version,
           d.readings, d.pre_meal_readings, d.mean_mmol, d.min_mmol, d.max_mmol,
           d.in_range_readings
    from current_ledger l
    left join policy_devices pd
           on pd.policy_id = l.policy_id
          and pd.bound_from <= l.day + interval '1 day'
          and (pd.bound_to is null or pd.bound_to > l.day)
    left join readings_daily d
           on d.device_id = pd.device_id and d.day = l.day::timestamptz at time zone 'UTC';

do $$ begin
    if exists (select 1 from pg_roles where rolname = 'glucover_pricing') then
        grant select on readings_daily, policy_daily_summary to glucover_pricing,
            glucover_dashboard;
    end if;
end $$;
