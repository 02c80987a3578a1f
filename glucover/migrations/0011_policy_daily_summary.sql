-- The daily per-policy summary over the rebuilt readings_daily (as in 0003, dropped by 0007),
-- and the grants the dropped objects had (0004).
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
