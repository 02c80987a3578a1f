-- The glucover schema: defined here, once. Portable SQL (PostgreSQL >= 14).
-- Data flows devices -> readings -> sum_insured_ledger; see README "Data flow".

create table devices (
    device_id          text primary key check (device_id ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$'),
    model              text not null default 'gls-meter',
    mqtt_password_hash text,                 -- Mosquitto $7$ hash; the broker file is built from it
    created_at         timestamptz not null default now(),
    revoked_at         timestamptz           -- a revoked meter is dropped from the broker's file
);

create table policies (
    policy_id        text primary key,
    holder_name      text not null,
    birth_year       integer check (birth_year between 1900 and 2100),
    segment          text not null default 'standard',  -- persona in synthetic portfolios
    base_sum_insured numeric(12, 2) not null check (base_sum_insured > 0),
    timezone         text not null,          -- IANA name; policy-days are calendar days here
    start_date       date not null,
    ruleset_name     text not null default 'default',
    created_at       timestamptz not null default now()
);

-- Which meter counts for a policy, over time: [bound_from, bound_to).
create table policy_devices (
    policy_id  text not null references policies on delete cascade,
    device_id  text not null references devices,
    bound_from timestamptz not null,
    bound_to   timestamptz,
    primary key (policy_id, device_id, bound_from),
    check (bound_to is null or bound_to > bound_from)
);
create index policy_devices_device on policy_devices (device_id);

-- One row per meter record, as the device sent it plus the canonical mmol/L value.
-- Identity is the device's: (device_id, seq, measured_at); re-sends are idempotent on it.
create table readings (
    device_id      text not null,
    seq            integer not null check (seq between 0 and {seq_modulo} - 1),
    measured_at    timestamptz not null,     -- UTC; the meter's offset is kept beside it
    utc_offset_min smallint not null,
    received_at    timestamptz not null,     -- when ingest took the message off the broker
    ingested_at    timestamptz not null default now(),
    value          double precision not null,  -- as sent, in `unit`
    unit           text not null check (unit in ('mmol/L', 'mg/dL')),
    value_mmol     double precision not null,  -- mg/dL / MGDL_PER_MMOL, unrounded
    meal           text not null,
    sample         text not null,
    source         text not null,
    status         integer not null default 0, -- GLS annunciation bits (devices/wire.py Status)
    flags          text[] not null default '{}', -- ingest's observations (devices/wire.py Flag)
    unique (device_id, seq, measured_at)
);
create index readings_ingested on readings (ingested_at);

-- Anything ingest refused, with why; never blocks the queue.
create table rejected_messages (
    id           bigserial primary key,
    received_at  timestamptz not null default now(),
    topic        text not null,
    device_id    text,
    reason       text not null,
    detail       text not null,
    payload      bytea not null,             -- raw bytes, capped (see ingest/store.py)
    payload_size integer not null
);
create index rejected_messages_reason on rejected_messages (reason, received_at);

-- Last status each meter announced (retained topic + Last Will).
create table device_status (
    device_id      text primary key,
    state          text not null,
    battery_pct    integer,
    firmware       text,
    clock_offset_s double precision,
    sent_at        timestamptz,
    updated_at     timestamptz not null default now()
);

-- Published rulesets are immutable: a change is a new version.
create table rulesets (
    name         text not null,
    version      integer not null check (version > 0),
    author       text not null,
    notes        text not null default '',
    body         text not null,              -- the TOML, as published
    published_at timestamptz not null default now(),
    primary key (name, version)
);
create function rulesets_immutable() returns trigger language plpgsql as $$
begin
    raise exception 'published ruleset %/% is immutable: publish a new version', old.name, old.version;
end $$;
create trigger rulesets_immutable before update or delete on rulesets
    for each row execute function rulesets_immutable();

create table ruleset_drafts (
    name       text primary key,
    author     text not null,
    body       text not null,
    updated_at timestamptz not null default now()
);

create table pricing_runs (
    run_id      bigserial primary key,
    started_at  timestamptz not null default now(),
    finished_at timestamptz,
    through     date not null,
    policies    integer not null default 0,
    rows_added  integer not null default 0,
    watermark   timestamptz                  -- readings ingested before this were seen
);

-- Append-only: a recomputed day gets a new row from a later run; the old one stays for audit.
create table sum_insured_ledger (
    policy_id       text not null references policies,
    day             date not null,
    run_id          bigint not null references pricing_runs,
    day_status      text not null check (day_status in ('missed', 'in_target', 'high',
                                                        'out_of_target')),
    reading_seq     integer,
    delta           numeric(12, 2) not null,
    bonus           numeric(12, 2) not null,
    sum_insured     numeric(12, 2) not null,
    ruleset_name    text not null,
    ruleset_version integer not null,
    primary key (policy_id, day, run_id),
    foreign key (ruleset_name, ruleset_version) references rulesets (name, version)
);

create view current_ledger as
    select distinct on (policy_id, day) *
    from sum_insured_ledger
    order by policy_id, day, run_id desc;

create table claims (
    claim_id    bigserial primary key,
    policy_id   text not null references policies,
    event_date  date not null,
    reason      text not null,
    basis_day   date not null,               -- the day before the event
    payout      numeric(12, 2) not null,
    filed_at    timestamptz not null default now()
);

create table dashboard_users (
    username      text primary key,
    password_hash text not null,             -- bcrypt
    role          text not null check (role in ('policyholder', 'actuary', 'operations')),
    policy_id     text references policies,
    check ((role = 'policyholder') = (policy_id is not null))
);

create table dashboard_sessions (
    session_id  text primary key,
    username    text not null references dashboard_users,
    created_at  timestamptz not null default now(),
    last_seen   timestamptz not null default now()
);
