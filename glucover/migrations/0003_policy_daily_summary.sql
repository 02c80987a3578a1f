-- The daily per-policy summary (policy_daily_summary) is created by 0011, over the daily summary
-- of 0008. Databases migrated earlier made a first version here, which 0007 drops.
select 1;
