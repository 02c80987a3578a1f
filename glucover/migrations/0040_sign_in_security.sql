-- Signing in, safe from other sites and from guessing (issue 27; dashboard/sessions.py,
-- dashboard/throttle.py).
-- A session's cookie is set once, in exchange for a short-lived grant the page posts: the
-- session token itself never reaches the page, and a grant used once is spent.
alter table dashboard_sessions add column if not exists cookie_issued_at timestamptz;

-- Failed sign-ins, per account name and per client address, for the throttle. Kept for a
-- day at most (the throttle's longest window); the dashboard deletes older rows as it adds.
create table if not exists sign_in_failures (
    id        bigserial primary key,
    username  text not null,              -- lower-cased, as typed: unknown names count too
    address   text not null,
    failed_at timestamptz not null default now()
);
create index if not exists sign_in_failures_user on sign_in_failures (username, failed_at);
create index if not exists sign_in_failures_address on sign_in_failures (address, failed_at);

do $$
begin
    if exists (select 1 from pg_roles where rolname = 'glucover_dashboard') then
        grant select, insert, delete on sign_in_failures to glucover_dashboard;
        grant usage on sequence sign_in_failures_id_seq to glucover_dashboard;
    end if;
end $$;
