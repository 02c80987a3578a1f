-- Who looked at whose health data (issue 29; HIPAA 164.312(b), GDPR Art 30, PIPL Art 55;
-- docs/privacy.md, privacy/access_log.py). Every read of one person's data by staff (a
-- clinician opening a policy, an actuary opening one policy, a reviewer opening a review, an
-- export) is a row: who, in which role, when, whose, what, for which purpose. Nobody can
-- change or remove a row: a trigger refuses it for every role, and the services may only add.

-- The log names a person by a random subject key, never by the policy id: erasing the person
-- (privacy/erasure.py) deletes this row, and what is left in the log can no longer be linked
-- to anyone, while who looked, when and why stays on record.
create table policy_subjects (
    policy_id text primary key references policies,
    subject   uuid not null unique default gen_random_uuid()
);

create table access_log (
    access_id bigserial primary key,
    at        timestamptz not null default clock_timestamp(),
    username  text not null,
    role      text not null,
    subject   uuid not null,                 -- policy_subjects.subject
    what      text not null check (what in ('policy_page', 'review', 'fhir_export',
                                            'agp_export', 'readings_csv', 'ledger_csv',
                                            'alert')),
    purpose   text not null check (purpose in ('care', 'underwriting', 'review', 'operations',
                                               'data_rights')),
    detail    text not null default ''
);
create index access_log_subject on access_log (subject, at);
create index access_log_at on access_log (at);
create trigger access_log_append_only before update or delete on access_log
    for each row execute function append_only();

-- The log as the data protection officer reads it: the policy while the person is on record.
create view access_log_named as
    select a.access_id, a.at, a.username, a.role, s.policy_id, a.subject, a.what, a.purpose,
           a.detail
    from access_log a left join policy_subjects s using (subject);

do $$ begin
    if exists (select 1 from pg_roles where rolname = 'glucover_dashboard') then
        grant select, insert on policy_subjects to glucover_dashboard;
        grant insert on access_log to glucover_dashboard;
        grant select on access_log, access_log_named to glucover_dashboard;
        grant usage on sequence access_log_access_id_seq to glucover_dashboard;
    end if;
end $$;

create trigger access_log_no_truncate before truncate on access_log
    for each statement execute function append_only();
