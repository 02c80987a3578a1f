-- Terms, renewal and premiums (issue 30; docs/policies.md). A policy under administration has
-- terms: the first from its start, each renewal another from the day after the last ended,
-- with the bonus it opens with (the product's renewal rule) and its premium. Policies the
-- simulator provisioned before enrolment existed have no terms: open-ended, no premiums.
create table policy_terms (
    policy_id     text not null references policies,
    term_number   integer not null check (term_number > 0),
    starts        date not null,
    ends          date not null,                 -- the last day covered
    frequency     text not null check (frequency in ('monthly', 'yearly')),
    instalment    numeric(12, 2) not null check (instalment >= 0),
    adjustment    numeric(6, 4) not null default 0,  -- premium adjustment in force (fraction)
    opening_bonus numeric(12, 2) not null default 0,
    actor         text not null,
    created_at    timestamptz not null default now(),
    primary key (policy_id, term_number),
    check (ends >= starts)
);

-- Premiums as paid; instalments are covered in order (policies/premiums.py).
create table premium_payments (
    payment_id  bigserial primary key,
    policy_id   text not null references policies,
    term_number integer not null,
    amount      numeric(12, 2) not null check (amount > 0),
    paid_on     date not null,
    reference   text not null default '',
    recorded_by text not null,
    recorded_at timestamptz not null default now(),
    foreign key (policy_id, term_number) references policy_terms
);
create index premium_payments_policy on premium_payments (policy_id, term_number);

create trigger policy_terms_append_only before update or delete on policy_terms
    for each row execute function append_only();
create trigger premium_payments_append_only before update or delete on premium_payments
    for each row execute function append_only();

do $$ begin
    if exists (select 1 from pg_roles where rolname = 'glucover_dashboard') then
        grant select, insert on policy_terms, premium_payments to glucover_dashboard,
            glucover_pricing;
        grant usage on sequence premium_payments_payment_id_seq to glucover_dashboard,
            glucover_pricing;
    end if;
end $$;
