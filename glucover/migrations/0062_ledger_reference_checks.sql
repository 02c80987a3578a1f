-- The ledger's references to its pricing run and ruleset version, checked once per statement
-- instead of once per row (issue 26, docs/benchmarks.md "The nightly run").
--
-- A pricing run appends a row per policy-day: 100,000 rows for one new day of a large
-- portfolio. Their foreign keys were checked row by row, a lookup per row and key: 3.1 s of
-- the 3.7 s the rows took to COPY, a third of the run's budget. Every row of a run names the
-- same run and one or two ruleset versions, and both tables only ever grow (a published
-- version is immutable, 0001; a run is never removed), so the same guarantee is one check per
-- statement: every inserted row names a run and a ruleset version that exist, and neither
-- table gives up a row. The reference to the policy stays a foreign key: an erasure removes
-- policies (privacy/erasure.py), and the key keeps it from leaving their ledger behind.
alter table sum_insured_ledger drop constraint if exists sum_insured_ledger_run_id_fkey;
alter table sum_insured_ledger
    drop constraint if exists sum_insured_ledger_ruleset_name_ruleset_version_fkey;

create function ledger_references_exist() returns trigger language plpgsql as $$
declare
    missing text;
begin
    select n.run_id::text into missing
    from (select distinct run_id from new_rows) n
    where not exists (select 1 from pricing_runs r where r.run_id = n.run_id)
    limit 1;
    if found then
        raise exception using errcode = 'foreign_key_violation',
            message = format('sum_insured_ledger: pricing run %s does not exist', missing);
    end if;
    select n.ruleset_name || ' version ' || n.ruleset_version into missing
    from (select distinct ruleset_name, ruleset_version from new_rows) n
    where not exists (select 1 from rulesets s where s.name = n.ruleset_name
                                                and s.version = n.ruleset_version)
    limit 1;
    if found then
        raise exception using errcode = 'foreign_key_violation',
            message = format('sum_insured_ledger: ruleset %s does not exist', missing);
    end if;
    return null;
end $$;

create trigger sum_insured_ledger_references after insert on sum_insured_ledger
    referencing new table as new_rows
    for each statement execute function ledger_references_exist();

-- What the foreign keys also forbade: removing a run or a version the ledger names. Nothing
-- removes either; now nothing can.
create function only_grows() returns trigger language plpgsql as $$
begin
    raise exception '% only grows: rows are never removed', tg_table_name;
end $$;
create trigger pricing_runs_kept before delete on pricing_runs
    for each row execute function only_grows();
create trigger pricing_runs_no_truncate before truncate on pricing_runs
    for each statement execute function only_grows();
create trigger rulesets_no_truncate before truncate on rulesets
    for each statement execute function only_grows();
