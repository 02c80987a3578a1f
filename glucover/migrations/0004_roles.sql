-- Least-privilege group roles; login users are members of exactly one (glucover up makes them).
--   glucover_ingest:    read devices, insert readings, rejects and device status (COPY staging
--                       needs TEMP).
--   glucover_pricing:   reads readings and policies, owns the ledger, runs, claims.
--   glucover_dashboard: reads; writes only ruleset drafts and sessions, and publishes rulesets.
do $$
declare r text;
begin
    foreach r in array array['glucover_ingest', 'glucover_pricing', 'glucover_dashboard'] loop
        if not exists (select 1 from pg_roles where rolname = r) then
            execute format('create role %I nologin', r);
        end if;
    end loop;
exception when insufficient_privilege then
    raise notice 'cannot create roles here; run migrate as a role with CREATEROLE to get them';
end $$;

do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'glucover_ingest') then
        return;
    end if;
    execute format('grant connect, temporary on database %I to glucover_ingest, '
                   'glucover_pricing, glucover_dashboard', current_database());
    grant usage on schema public to glucover_ingest, glucover_pricing, glucover_dashboard;

    grant select on devices, policy_devices to glucover_ingest;
    grant insert on readings, rejected_messages to glucover_ingest;
    -- Ingest compares a re-sent record with the stored copy (conflicting duplicates). A
    -- table-level grant: TimescaleDB copies column grants onto its internal compressed
    -- hypertable, which does not have those columns.
    grant select on readings to glucover_ingest;
    grant select, insert, update on device_status to glucover_ingest;
    grant usage on sequence rejected_messages_id_seq to glucover_ingest;

    grant select on devices, policies, policy_devices, readings, rulesets to glucover_pricing;
    grant select, insert on sum_insured_ledger, pricing_runs, claims to glucover_pricing;
    grant update on pricing_runs to glucover_pricing;
    grant insert on rulesets to glucover_pricing;
    grant usage on sequence pricing_runs_run_id_seq, claims_claim_id_seq to glucover_pricing;
    grant select on current_ledger to glucover_pricing;

    grant select on devices, policies, policy_devices, readings, rulesets,
        sum_insured_ledger, current_ledger, claims, device_status,
        rejected_messages, pricing_runs, dashboard_users to glucover_dashboard;
    grant select, insert, update, delete on ruleset_drafts, dashboard_sessions
        to glucover_dashboard;
    grant insert on rulesets to glucover_dashboard;  -- actuaries publish new versions
    grant execute on function refresh_readings_daily() to glucover_pricing;
end $$;
