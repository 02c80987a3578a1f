-- Reinstatement (issue 30; docs/policies.md): a lapsed policy whose arrears are paid within the
-- product's reinstatement window is active again from the day after the payment, an `active`
-- event after the `lapsed` one in the append-only history (policies/premiums.py). The days
-- between are the lapse: its ledger holds no row for them (the bonus stays as it was the day
-- before the lapse), and no event on them is covered. One home for what a lapse spans: this
-- view, read by the pricing engine (pricing/store.py lapses) and the claims process.
create view policy_lapses as
    select policy_id, effective as lapsed_from,
           case when next_state = 'active' then next_effective end as reinstated_on
    from (select policy_id, state, effective,
                 lead(state) over w as next_state, lead(effective) over w as next_effective
          from policy_events
          window w as (partition by policy_id order by event_id)) e
    where state = 'lapsed';

do $$ begin
    if exists (select 1 from pg_roles where rolname = 'glucover_dashboard') then
        grant select on policy_lapses to glucover_dashboard, glucover_pricing;
    end if;
end $$;
