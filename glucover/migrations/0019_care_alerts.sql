-- The care team's alerts (issue 17; docs/care.md): rules in versions, the inbox ingest fills
-- as it commits, alerts with the readings that raised them, an append-only audit of what the
-- care team did, and notices to policyholders.

-- A policyholder's language: notices are written in it.
alter table policies add column language text not null default 'zh'
    check (language in ('en', 'zh'));

-- Published alert rules are immutable: a change is a new version (care/rules.py declares them).
create table alert_rules (
    name         text not null,
    version      integer not null check (version > 0),
    author       text not null,
    notes        text not null default '',
    body         text not null,              -- the TOML, as published
    published_at timestamptz not null default now(),
    primary key (name, version)
);
create function append_only() returns trigger language plpgsql as $$
begin
    raise exception '% is append-only: rows are never changed or removed', tg_table_name;
end $$;
create trigger alert_rules_immutable before update or delete on alert_rules
    for each row execute function append_only();

-- One row per ingest transaction that stored readings, written in that transaction: the
-- readings it stored are those whose ingested_at (the transaction's now()) equals this row's.
-- The alert evaluator takes rows off it and deletes them in the transaction that records what
-- they raised, so a crash in between loses nothing and raises nothing twice.
create table alert_inbox (
    id           bigserial primary key,
    ingested_at  timestamptz not null default now(),
    committed_at timestamptz not null default clock_timestamp()  -- written last before commit
);

create table alerts (
    alert_id          bigserial primary key,
    policy_id         text not null references policies,
    rule              text not null,
    severity          text not null check (severity in ('urgent', 'high', 'medium', 'low')),
    status            text not null default 'open'
                      check (status in ('open', 'acknowledged', 'resolved')),
    detail            text not null,
    trigger_key       text,                  -- what a finding without readings was judged on
    rules_name        text not null,
    rules_version     integer not null,
    raised_at         timestamptz not null default clock_timestamp(),
    evidence_committed_at timestamptz,       -- when the readings that raised it were committed
    updated_at        timestamptz not null default clock_timestamp(),
    reading_count     integer not null default 0,
    first_measured_at timestamptz,
    last_measured_at  timestamptz,
    assigned_to       text,
    acknowledged_at   timestamptz,
    resolved_at       timestamptz,
    outcome           text check (outcome in ('called', 'advised', 'referred', 'no_action')),
    check ((status = 'resolved') = (outcome is not null and resolved_at is not null))
);
-- One open alert per policy and rule: later evidence is attached to it.
create unique index alerts_one_open on alerts (policy_id, rule) where status <> 'resolved';
-- A finding judged on something other than readings (a lapse since a given reading, a status
-- report) raises once.
create unique index alerts_trigger on alerts (policy_id, rule, trigger_key)
    where trigger_key is not null;
create index alerts_queue on alerts (status, raised_at);

create table alert_readings (
    alert_id    bigint not null references alerts,
    device_id   text not null,
    seq         integer not null,
    measured_at timestamptz not null,
    primary key (alert_id, device_id, seq, measured_at)
);
create index alert_readings_reading on alert_readings (device_id, measured_at);

create table alert_audit (
    audit_id bigserial primary key,
    at       timestamptz not null default clock_timestamp(),
    username text not null,
    alert_id bigint not null references alerts,
    action   text not null check (action in ('assign', 'acknowledge', 'note', 'resolve')),
    detail   text not null default ''
);
create trigger alert_audit_append_only before update or delete on alert_audit
    for each row execute function append_only();
create index alert_audit_alert on alert_audit (alert_id, at);

-- What a policyholder is told on their meter's notices topic and on their page.
create table notices (
    notice_id    bigserial primary key,
    policy_id    text not null references policies,
    device_id    text not null,
    alert_id     bigint references alerts,
    kind         text not null,
    language     text not null,
    body         text not null,
    created_at   timestamptz not null default clock_timestamp(),
    state        text not null default 'pending' check (state in ('pending', 'published')),
    published_at timestamptz
);
create index notices_pending on notices (created_at) where state = 'pending';
create index notices_policy on notices (policy_id, created_at);

-- The alert evaluator's group role, beside those of 0004.
do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'glucover_care') then
        create role glucover_care nologin;
    end if;
exception when insufficient_privilege then
    raise notice 'cannot create roles here; run migrate as a role with CREATEROLE to get them';
end $$;

do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'glucover_care') then
        return;
    end if;
    execute format('grant connect on database %I to glucover_care', current_database());
    grant usage on schema public to glucover_care;
    grant insert on alert_inbox to glucover_ingest;
    grant usage on sequence alert_inbox_id_seq to glucover_ingest;

    grant select on devices, policies, policy_devices, readings, rulesets, device_status,
        alert_rules, care_panels to glucover_care;
    -- Taking rows FOR UPDATE needs an update grant; the service never changes a row.
    grant select, delete, update (id) on alert_inbox to glucover_care;
    grant select, insert, update on alerts, notices to glucover_care;
    grant select, insert on alert_readings to glucover_care;
    grant usage on sequence alerts_alert_id_seq, notices_notice_id_seq to glucover_care;

    grant select on alerts, alert_readings, alert_audit, notices, alert_rules, alert_inbox
        to glucover_dashboard;
    grant update (status, assigned_to, acknowledged_at, resolved_at, outcome, updated_at)
        on alerts to glucover_dashboard;
    grant insert on alert_audit, alert_rules to glucover_dashboard;
    grant usage on sequence alert_audit_audit_id_seq to glucover_dashboard;
end $$;
