-- The daily per-policy summary: the current ledger beside that day's readings (UTC days of the
-- bound meter; the ledger's days are the policy's local days).
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
