-- Consent per purpose (issue 29; docs/privacy.md, privacy/consent.py). PIPL Art 29-30 asks a
-- separate consent for sensitive (health) data, GDPR Art 9 an explicit one: each purpose a
-- policy's readings serve has its own choice, recorded as an append-only event.
--   pricing:  readings change the sum insured (pricing/engine.py)
--   care:     the care team is alerted and may contact the policyholder (care/)
--   research: pseudonymised data in the actuaries' back-tests and reports (actuary/)

-- Every version of each purpose's text, as the policyholder was shown it (privacy/
-- consent_texts.toml holds the current ones; a changed text is a new version, PIPL Art 14).
create table consent_texts (
    purpose      text not null check (purpose in ('pricing', 'care', 'research')),
    version      integer not null check (version > 0),
    body_en      text not null,
    body_zh      text not null,
    published_at timestamptz not null default now(),
    primary key (purpose, version)
);
create trigger consent_texts_immutable before update or delete on consent_texts
    for each row execute function append_only();

-- One row per choice: given or withdrawn, by whom, when it takes effect, under which text,
-- through which channel. Never changed or removed (trigger and grants).
create table consent_events (
    event_id     bigserial primary key,
    policy_id    text not null references policies,
    purpose      text not null check (purpose in ('pricing', 'care', 'research')),
    given        boolean not null,
    at           timestamptz not null default clock_timestamp(),  -- when it takes effect
    recorded_at  timestamptz not null default clock_timestamp(),
    actor        text not null,              -- the login or operator who recorded it
    channel      text not null check (channel in ('page', 'paper', 'call_centre',
                                                  'enrolment', 'provisioning', 'migration')),
    text_version integer not null check (text_version >= 0)  -- 0: before consent records
);
create index consent_events_policy on consent_events (policy_id, purpose, at);
create trigger consent_events_append_only before update or delete on consent_events
    for each row execute function append_only();
create trigger consent_events_no_truncate before truncate on consent_events
    for each statement execute function append_only();

-- The days each purpose is consented to, per policy: [from_day, to_day) in the policy's local
-- days (to_day null: still). A withdrawal takes effect on its whole local day; a consent
-- given on a day counts from that day, unless the day also saw a withdrawal (then from the
-- next). privacy/consent.py reads it; so do pricing, care and the actuaries' tools.
create view consent_periods as
    with by_day as (
        select e.policy_id, e.purpose, local_day(e.at, p.timezone) as day,
               bool_or(not e.given) as withdrawn,
               (array_agg(e.given order by e.at desc, e.event_id desc))[1] as given_at_end
        from consent_events e join policies p using (policy_id)
        group by e.policy_id, e.purpose, local_day(e.at, p.timezone)
    ), ordered as (
        select *, day + case when withdrawn then 1 else 0 end as from_day,
               lead(day) over (partition by policy_id, purpose order by day) as to_day
        from by_day
    )
    select policy_id, purpose, from_day, to_day from ordered
    where given_at_end and (to_day is null or from_day < to_day);

create function consent_live(policy text, what text, on_day date) returns boolean
    language sql stable as $$
    select exists (select 1 from consent_periods c where c.policy_id = policy
                   and c.purpose = what and c.from_day <= on_day
                   and (c.to_day is null or on_day < c.to_day))
$$;

-- Policies sold before consent was recorded keep being served: the contract they signed is
-- recorded as consent to every purpose from their start (text version 0), and their page asks
-- them to confirm under the current texts (docs/privacy.md "Existing policies").
insert into consent_events (policy_id, purpose, given, at, actor, channel, text_version)
select p.policy_id, purpose, true, local_midnight(p.start_date, p.timezone),
       'glucover migrate', 'migration', 0
from policies p cross join unnest(array['pricing', 'care', 'research']) as purpose;

-- The dashboard's new roles: reviewers (underwriters who review automated decisions) and the
-- data protection officer (privacy), who reads the access log.
alter table dashboard_users drop constraint dashboard_users_role_check;
alter table dashboard_users add constraint dashboard_users_role_check
    check (role in ('policyholder', 'actuary', 'operations', 'clinician', 'reviewer',
                    'privacy'));

do $$ begin
    if exists (select 1 from pg_roles where rolname = 'glucover_dashboard') then
        grant select on consent_texts, consent_events, consent_periods to glucover_pricing,
            glucover_care, glucover_dashboard;
        grant execute on function consent_live(text, text, date) to glucover_pricing,
            glucover_care, glucover_dashboard;
        -- Policyholders give and withdraw on their page; the texts are stored as first shown.
        grant insert on consent_events, consent_texts to glucover_dashboard;
        grant usage on sequence consent_events_event_id_seq to glucover_dashboard;
    end if;
end $$;

-- A day priced without consent to pricing: no_consent (pricing/evaluator.py rule 7).
alter table sum_insured_ledger drop constraint sum_insured_ledger_day_status_check;
alter table sum_insured_ledger add constraint sum_insured_ledger_day_status_check
    check (day_status in ('missed', 'in_target', 'high', 'out_of_target', 'insufficient',
                          'hypo_risk', 'no_consent'));
