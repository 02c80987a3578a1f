-- Enrolment (issue 30; docs/policies.md): every application as received, with its outcome.
-- An accepted one names the policy it became; a refused one says why. Its consents stay in
-- the application (body -> 'consents') until the consent register takes them.
create sequence policy_number_seq;
create table policy_applications (
    application_id bigserial primary key,
    received_at    timestamptz not null default now(),
    body           jsonb not null,
    outcome        text not null check (outcome in ('accepted', 'refused')),
    reasons        text[] not null default '{}',
    policy_id      text references policies,
    actor          text not null,
    check ((outcome = 'accepted') = (policy_id is not null))
);
create trigger policy_applications_append_only before update or delete on policy_applications
    for each row execute function append_only();

-- The sign-up page gives the new policyholder a login, and nothing more: the dashboard's role
-- may not insert dashboard users (it could make an actuary), only call this.
create function create_policyholder_login(name text, hash text, policy text) returns void
    language sql security definer set search_path = public as $$
    insert into dashboard_users (username, password_hash, role, policy_id)
    values (name, hash, 'policyholder', policy)
$$;
revoke all on function create_policyholder_login(text, text, text) from public;

do $$ begin
    if exists (select 1 from pg_roles where rolname = 'glucover_dashboard') then
        -- The sign-up page enrols: a policy, its device and binding, the application.
        grant select, insert on policy_applications to glucover_dashboard, glucover_pricing;
        grant insert on policies, devices, policy_devices to glucover_dashboard;
        grant usage on sequence policy_applications_application_id_seq, policy_number_seq
            to glucover_dashboard, glucover_pricing;
        grant execute on function create_policyholder_login(text, text, text)
            to glucover_dashboard;
    end if;
end $$;
