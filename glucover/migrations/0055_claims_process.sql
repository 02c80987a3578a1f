-- Claims as a process, and the policy's states (issue 30; docs/claims.md, docs/policies.md).
-- A claim is filed with its frozen basis (the sum insured of the day before the event as the
-- ledger stood then), then judged by a claims handler; every step is an event. A policy's state
-- (applied, active, lapsed, claimed, cancelled, expired) is its latest event. All append-only.

-- The claims handler: a dashboard role. A handler may hold a policy of their own (an insured
-- employee): policy_id names it, so that they cannot judge their own claims.
alter table dashboard_users drop constraint dashboard_users_role_check;
alter table dashboard_users add constraint dashboard_users_role_check
    check (role in ('policyholder', 'actuary', 'operations', 'clinician', 'claims',
                    'reviewer', 'privacy'));  -- 0050's reviewer and privacy kept
alter table dashboard_users drop constraint dashboard_users_check;
alter table dashboard_users add constraint dashboard_users_policy_check
    check (case role when 'policyholder' then policy_id is not null
                     when 'claims' then true
                     else policy_id is null end);

-- The claim as filed. Claims filed before this migration paid at once: they keep their payout
-- and get the events `filed` and `paid` below.
alter table claims alter column reason drop not null;
alter table claims alter column payout drop not null;
alter table claims
    add column diagnosis         text,               -- ICD-10 code (policies/diagnoses.py)
    add column basis_sum_insured numeric(12, 2),     -- frozen: the ledger as it stood at filing
    add column basis_run_id      bigint,             -- the pricing run whose row it was
    add column flags             text[] not null default '{}',  -- checks at filing
    add column filed_by          text not null default 'cli';
update claims set basis_sum_insured = payout where basis_sum_insured is null;
alter table claims alter column basis_sum_insured set not null;
create index claims_policy on claims (policy_id);

-- Every step of every claim. The claim's status is its latest event's.
create table claim_events (
    event_id    bigserial primary key,
    claim_id    bigint not null references claims,
    at          timestamptz not null default now(),
    kind        text not null check (kind in ('filed', 'documents_added', 'more_information',
                                              'approved', 'declined', 'paid')),
    status      text not null check (status in ('filed', 'more_information', 'approved',
                                                'declined', 'paid')),
    actor       text not null,
    reason_code text,                                -- declines (policies/claims.py)
    words       text not null default '',
    amount      numeric(12, 2)                       -- approved: the payout; paid: as paid
);
create index claim_events_claim on claim_events (claim_id, event_id);
insert into claim_events (claim_id, at, kind, status, actor, words)
    select claim_id, filed_at, 'filed', 'filed', filed_by, coalesce(reason, '') from claims;
insert into claim_events (claim_id, at, kind, status, actor, amount)
    select claim_id, filed_at, 'paid', 'paid', filed_by, payout from claims
    where payout is not null;

create view claim_status as
    select distinct on (claim_id) claim_id, status, at as status_at
    from claim_events order by claim_id, event_id desc;

-- Documents: PDF or images, checked by their first bytes, with a SHA-256 and a size limit.
create table claim_documents (
    document_id bigserial primary key,
    claim_id    bigint not null references claims,
    filename    text not null,
    media_type  text not null check (media_type in ('application/pdf', 'image/png',
                                                    'image/jpeg')),
    size_bytes  integer not null check (size_bytes > 0),
    sha256      text not null check (sha256 ~ '^[0-9a-f]{64}$'),
    content     bytea not null,
    added_by    text not null,
    added_at    timestamptz not null default now(),
    check (octet_length(content) = size_bytes)
);
create index claim_documents_claim on claim_documents (claim_id);

-- The policy's states; a policy with no event is active from its start (those provisioned
-- before this history existed). `effective` is the first day the state holds.
create table policy_events (
    event_id  bigserial primary key,
    policy_id text not null references policies,
    at        timestamptz not null default now(),
    state     text not null check (state in ('applied', 'active', 'lapsed', 'claimed',
                                             'cancelled', 'expired')),
    effective date not null,
    actor     text not null,
    reason    text not null default '',
    claim_id  bigint references claims
);
create index policy_events_policy on policy_events (policy_id, event_id);

create view policy_state as
    select p.policy_id, coalesce(e.state, 'active') as state,
           coalesce(e.effective, p.start_date) as since
    from policies p
    left join lateral (select state, effective from policy_events pe
                       where pe.policy_id = p.policy_id order by event_id desc limit 1) e on true;

-- Append-only: these tables take inserts only; a correction is a new event (append_only():
-- 0019_care_alerts.sql).
create trigger claims_append_only before update or delete on claims
    for each row execute function append_only();
create trigger claim_events_append_only before update or delete on claim_events
    for each row execute function append_only();
create trigger claim_documents_append_only before update or delete on claim_documents
    for each row execute function append_only();
create trigger policy_events_append_only before update or delete on policy_events
    for each row execute function append_only();

do $$ begin
    if exists (select 1 from pg_roles where rolname = 'glucover_dashboard') then
        -- Policyholders file claims and add documents; handlers judge them (dashboard).
        grant select, insert on claims, claim_events, claim_documents, policy_events
            to glucover_dashboard, glucover_pricing;
        grant select on claim_status, policy_state to glucover_dashboard, glucover_pricing;
        grant usage on sequence claims_claim_id_seq, claim_events_event_id_seq,
            claim_documents_document_id_seq, policy_events_event_id_seq
            to glucover_dashboard, glucover_pricing;
    end if;
end $$;
