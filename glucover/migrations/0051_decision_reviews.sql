-- Human review of an automated decision (issue 29; PIPL Art 24, GDPR Art 22; docs/privacy.md,
-- privacy/reviews.py). A policyholder asks for a person to review a day's change of the sum
-- insured, in their own words; a reviewer (an underwriter) upholds it or corrects it with a
-- reason. A correction is an adjustment of the bonus on that day which pricing applies from
-- then on (pricing/evaluator.py rule 8): a new ledger row naming the review, never an edit.
create table decision_reviews (
    review_id       bigserial primary key,
    policy_id       text not null references policies,
    day             date not null,
    view            text not null check (length(trim(view)) > 0),  -- the policyholder's words
    requested_by    text not null,
    requested_at    timestamptz not null default clock_timestamp(),
    ruleset_name    text not null,           -- the decision as it stood when asked
    ruleset_version integer not null,
    day_status      text not null,
    delta           numeric(12, 2) not null,
    status          text not null default 'open' check (status in ('open', 'upheld',
                                                                   'corrected')),
    decided_by      text,
    decided_at      timestamptz,
    reason          text,
    adjustment      numeric(12, 2),          -- added to the day's change when corrected
    check ((status = 'open') = (decided_at is null)),
    check (status = 'open' or length(trim(reason)) > 0),
    check ((status = 'corrected') = (adjustment is not null and adjustment <> 0))
);
create index decision_reviews_queue on decision_reviews (status, requested_at);
create index decision_reviews_policy on decision_reviews (policy_id, day);
-- One open request per policy-day.
create unique index decision_reviews_one_open on decision_reviews (policy_id, day)
    where status = 'open';

-- What happened to each review, like the care team's actions (0019 alert_audit).
create table review_audit (
    audit_id  bigserial primary key,
    at        timestamptz not null default clock_timestamp(),
    username  text not null,
    review_id bigint not null references decision_reviews,
    action    text not null check (action in ('request', 'uphold', 'correct')),
    detail    text not null default ''
);
create trigger review_audit_append_only before update or delete on review_audit
    for each row execute function append_only();

-- A decided review is final.
create function decided_reviews_final() returns trigger language plpgsql as $$
begin
    if old.status <> 'open' then
        raise exception 'review % is decided: it is final', old.review_id;
    end if;
    return new;
end $$;
create trigger decision_reviews_final before update or delete on decision_reviews
    for each row execute function decided_reviews_final();

-- The ledger row a correction made names its review.
alter table sum_insured_ledger add column review_id bigint references decision_reviews;
create or replace view current_ledger as
    select distinct on (policy_id, day) *
    from sum_insured_ledger
    order by policy_id, day, run_id desc;

-- A corrected review's ledger row: the day's current row again, its change, bonus and sum
-- insured moved by the adjustment, naming the review, from a pricing run of its own. It runs
-- with its owner's rights, so the dashboard may write this row and no other.
create function correct_ledger(review bigint) returns void
    language plpgsql security definer set search_path = public, pg_temp as $$
declare
    r decision_reviews;
    run bigint;
begin
    select * into r from decision_reviews where review_id = review;
    if r.status is distinct from 'corrected' then
        raise exception 'review % is not corrected', review;
    end if;
    if exists (select 1 from sum_insured_ledger where review_id = review) then
        return;  -- written already
    end if;
    insert into pricing_runs (through, finished_at, policies, rows_added)
        values (r.day, now(), 1, 1) returning run_id into run;
    insert into sum_insured_ledger (policy_id, day, run_id, day_status, reading_seq, delta,
                                    bonus, sum_insured, ruleset_name, ruleset_version,
                                    coverage, time_in_range, below, very_high, review_id)
        select policy_id, day, run, day_status, reading_seq, delta + r.adjustment,
               bonus + r.adjustment, sum_insured + r.adjustment, ruleset_name,
               ruleset_version, coverage, time_in_range, below, very_high, review
        from current_ledger where policy_id = r.policy_id and day = r.day;
end $$;

do $$ begin
    if exists (select 1 from pg_roles where rolname = 'glucover_dashboard') then
        grant select on decision_reviews, review_audit to glucover_dashboard, glucover_pricing;
        grant insert on decision_reviews, review_audit to glucover_dashboard;
        grant update (status, decided_by, decided_at, reason, adjustment)
            on decision_reviews to glucover_dashboard;
        grant usage on sequence decision_reviews_review_id_seq, review_audit_audit_id_seq
            to glucover_dashboard;
        grant select on current_ledger to glucover_pricing, glucover_dashboard;
        -- The dashboard writes no ledger row itself: only this function's correction row.
        revoke all on function correct_ledger(bigint) from public;
        grant execute on function correct_ledger(bigint) to glucover_dashboard;
    end if;
end $$;
