-- Erasure (issue 29; PIPL Art 47, GDPR Art 17; docs/privacy.md, privacy/erasure.py). A
-- policyholder asks on their page; an operator decides and runs `glucover privacy erase`,
-- which deletes the person's rows everywhere but what a legal hold keeps.

-- The append-only tables refuse every change, but for deleting one person's rows inside an
-- erasure: privacy/erasure.py sets glucover.erasure for its transaction only, and only a
-- role that may delete from them (the schema's owner: no service has the grant) gets there.
create or replace function append_only() returns trigger language plpgsql as $$
begin
    if tg_op = 'DELETE' and current_setting('glucover.erasure', true) = 'on' then
        return old;
    end if;
    raise exception '% is append-only: rows are never changed or removed', tg_table_name;
end $$;

create or replace function decided_reviews_final() returns trigger language plpgsql as $$
begin
    if tg_op = 'DELETE' and current_setting('glucover.erasure', true) = 'on' then
        return old;
    end if;
    if old.status <> 'open' then
        raise exception 'review % is decided: it is final', old.review_id;
    end if;
    return case when tg_op = 'DELETE' then old else new end;
end $$;

-- Requests from the page; the policy is forgotten (set null) once erased.
create table erasure_requests (
    request_id   bigserial primary key,
    policy_id    text references policies on delete set null,
    requested_by text not null,
    requested_at timestamptz not null default clock_timestamp(),
    status       text not null default 'open' check (status in ('open', 'erased', 'held')),
    decided_by   text,
    decided_at   timestamptz
);
create unique index erasure_requests_one_open on erasure_requests (policy_id)
    where status = 'open';

-- What was erased, without whom: the access log's subject key (no longer linked), why, by
-- whom, whether a legal hold kept anything, and how many rows went from each table.
create table erasures (
    erasure_id bigserial primary key,
    at         timestamptz not null default clock_timestamp(),
    actor      text not null,
    reason     text not null,
    subject    uuid,
    held       boolean not null,
    counts     jsonb not null
);
create trigger erasures_append_only before update or delete on erasures
    for each row execute function append_only();

do $$ begin
    if exists (select 1 from pg_roles where rolname = 'glucover_dashboard') then
        grant select, insert on erasure_requests to glucover_dashboard;
        grant usage on sequence erasure_requests_request_id_seq to glucover_dashboard;
        grant select on erasures to glucover_dashboard;
    end if;
end $$;
