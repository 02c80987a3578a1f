-- The portfolio's time in range over the last 30 days (the workbench) reads the daily summary
-- by day (issue 18); TimescaleDB's continuous aggregate is indexed by its time bucket already.
create index readings_daily_day on readings_daily (day);
