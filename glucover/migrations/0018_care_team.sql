-- The care team (issue 17): clinicians sign in to the dashboard and see only the policyholders
-- on their panel.
alter table dashboard_users drop constraint dashboard_users_role_check;
alter table dashboard_users add constraint dashboard_users_role_check
    check (role in ('policyholder', 'actuary', 'operations', 'clinician'));

create table care_panels (
    username  text not null references dashboard_users on delete cascade,
    policy_id text not null references policies on delete cascade,
    primary key (username, policy_id)
);

do $$ begin
    if exists (select 1 from pg_roles where rolname = 'glucover_dashboard') then
        grant select on care_panels to glucover_dashboard;
    end if;
end $$;
