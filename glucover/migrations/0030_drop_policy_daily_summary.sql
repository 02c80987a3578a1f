-- policy_daily_summary (0011, remade by later migrations) joined each ledger row to its meter's
-- daily summary; no stage reads it, only tests did: the dashboard and the workbench read the
-- ledger and the daily summary themselves. Dead code goes.
drop view if exists policy_daily_summary;
