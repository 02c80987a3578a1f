-- TimescaleDB: the daily summary's refresh policy covers all time, not the last 10 days.
-- A refresh materialises only the days whose readings changed since the last one (TimescaleDB's
-- invalidation log), so a window from the first reading costs nothing for days that got no new
-- reading. The 10-day window (0009, 0025) left out for good every reading stored more than 10
-- days after its day: history replayed or imported after migrating (glucover simulate's
-- history, a gateway's back-fill of a long offline stretch), which plain PostgreSQL's summary
-- has after the next pricing run (it refreshes the whole view).
select remove_continuous_aggregate_policy('readings_daily', if_exists => true);
select add_continuous_aggregate_policy('readings_daily',
    start_offset => null, end_offset => interval '1 hour',
    schedule_interval => interval '15 minutes');
