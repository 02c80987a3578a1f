-- The portfolio on its last priced day (the workbench's KPIs) without a pass over every
-- policy-day: an index on the ledger's day (issue 18, `glucover bench dashboard` at 100,000
-- policies).
create index sum_insured_ledger_day on sum_insured_ledger (day);
-- The CGM portfolio's last 30 days (the workbench): the CGM rows of the ledger (their figures
-- are set) and the day summaries, each by day.
create index sum_insured_ledger_cgm_day on sum_insured_ledger (day) where coverage is not null;
create index cgm_days_day on cgm_days (day);
