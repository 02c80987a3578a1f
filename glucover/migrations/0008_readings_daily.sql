-- The daily summary per meter, counting only the readings that count under the default ruleset
-- (pricing/rulesets/default.toml; validity as pricing/glycaemia.py defines it) and time in range
-- with its band (kernel/glucose.py). tests/test_glycaemia.py holds this view, the
-- dashboard and the workbench to the same figures for the same policy.
-- On TimescaleDB a continuous aggregate (its refresh policy: 0009); on plain PostgreSQL a
-- materialized view the pricing engine refreshes. glucover/db.py fills in {day_bucket}
-- (time_bucket, or the portable date_bin) and {continuous_aggregate}.
create materialized view readings_daily {continuous_aggregate} as
    select device_id,
           {day_bucket} as day,
           count(*)                                      as readings,
           count(*) filter (where meal in ('fasting', 'preprandial')) as pre_meal_readings,
           avg(value_mmol)                               as mean_mmol,
           min(value_mmol)                               as min_mmol,
           max(value_mmol)                               as max_mmol,
           count(*) filter (where value_mmol between {fingerstick_low_mmol} and {fingerstick_high_mmol}) as in_range_readings
    from readings
    where sample <> 'control_solution' and source = 'meter'
      and (status & {error_status_mask}) = 0  -- every GLS status bit but battery_low (bit 0)
      and value_mmol between 20.0::float8 / {mgdl_per_mmol}::float8 and 600.0::float8 / {mgdl_per_mmol}::float8
      and measured_at - received_at <= interval '300 seconds'
      and received_at - measured_at <= interval '604800 seconds'
    group by device_id, {day_bucket}
    with no data;
