-- CGM pricing (pricing/cgm_rules.py): two more day statuses, and the day's figures beside
-- each CGM ledger row so the ledger explains itself ("time in range 74%, below 54 0.3%, sensor
-- worn 92% of the day: in target"). Percentages; null on fingerstick rows.
alter table sum_insured_ledger drop constraint sum_insured_ledger_day_status_check;
alter table sum_insured_ledger add constraint sum_insured_ledger_day_status_check
    check (day_status in ('missed', 'in_target', 'high', 'out_of_target', 'insufficient',
                          'hypo_risk'));
alter table sum_insured_ledger
    add column coverage      real,  -- covered slots / slots of the day
    add column time_in_range real,  -- share of the day's valid readings in range
    add column below         real,  -- ... below the level 2 hypoglycaemia threshold
    add column very_high     real;  -- ... above the very high threshold

-- The view expanded `*` when it was made; made again, it carries the new columns (appended).
create or replace view current_ledger as
    select distinct on (policy_id, day) *
    from sum_insured_ledger
    order by policy_id, day, run_id desc;
