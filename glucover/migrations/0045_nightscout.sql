-- The Nightscout-compatible upload API (nightscout/, docs/nightscout.md): one tenant per policy.
-- A policy's uploads are readings of a device of its own (kind cgm, model 'nightscout'); this
-- file keeps what the readings table does not: the credentials (hashes only), what an app sent
-- beside a glucose value (trend arrow, its own device name), Dexcom error codes (device trouble,
-- never glucose), treatments and the uploader's status documents.

-- Credentials. The secret and token are derived from the deployment secret and the generation
-- (nightscout/credentials.py), so they can be shown again but are stored only as SHA-256 of what
-- an app sends: the SHA-1 and SHA-512 hex of the secret (the api-secret header) and the token.
create table nightscout_uploaders (
    policy_id       text primary key references policies,
    device_id       text not null unique references devices,
    generation      integer not null default 1 check (generation > 0),
    secret_sha1_key text not null unique,    -- sha256(sha1_hex(secret))
    secret_sha512_key text not null unique,  -- sha256(sha512_hex(secret))
    token_key       text not null unique,    -- sha256(token)
    created_at      timestamptz not null default now(),
    rotated_at      timestamptz not null default now(),
    -- When each collection last changed (API v3 lastModified): the storing transaction's now(),
    -- which is also the ingested_at of the readings it stored.
    entries_modified_at      timestamptz,
    treatments_modified_at   timestamptz,
    devicestatus_modified_at timestamptz
);

-- What came with an uploaded glucose entry that readings has no column for, keyed like the
-- reading it belongs to (seq is the entry's type: nightscout/mapping.py).
create table nightscout_entries (
    device_id   text not null,
    seq         integer not null,
    measured_at timestamptz not null,
    direction   text,
    app_device  text,                        -- the uploader's own name ("xDrip-DexcomG5")
    primary key (device_id, seq, measured_at)
);

-- A Dexcom special value (an sgv below 39) is a sensor's error code, not glucose.
create table sensor_errors (
    device_id   text not null,
    measured_at timestamptz not null,
    code        integer not null,
    meaning     text not null,
    received_at timestamptz not null default now(),
    primary key (device_id, measured_at, code)
);

-- Carbs, insulin and notes as the apps upload them; the care team reads them beside an alert.
create table nightscout_treatments (
    policy_id   text not null references policies,
    treatment_key text not null,             -- the app's identifier/uuid/_id, else derived
    created_at  timestamptz not null,
    event_type  text,
    carbs_g     double precision,
    insulin_u   double precision,
    notes       text,
    entered_by  text,
    doc         jsonb not null,
    received_at timestamptz not null default now(),
    primary key (policy_id, treatment_key)
);
create index nightscout_treatments_time on nightscout_treatments (policy_id, created_at);

create table nightscout_devicestatus (
    id          bigserial primary key,
    policy_id   text not null references policies,
    created_at  timestamptz not null,
    battery_pct integer,
    doc         jsonb not null,
    received_at timestamptz not null default now()
);
create index nightscout_devicestatus_time on nightscout_devicestatus (policy_id, received_at);

-- The API service's group role: it reads credentials and devices, writes readings (and what
-- ingest writes with them) and the tables above; nothing else.
do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'glucover_api') then
        create role glucover_api nologin;
    end if;
exception when insufficient_privilege then
    raise notice 'cannot create roles here; run migrate as a role with CREATEROLE to get them';
end $$;

do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'glucover_api') then
        return;
    end if;
    execute format('grant connect, temporary on database %I to glucover_api',
                   current_database());
    grant usage on schema public to glucover_api;
    grant select on nightscout_uploaders, devices to glucover_api;
    grant update (entries_modified_at, treatments_modified_at, devicestatus_modified_at)
        on nightscout_uploaders to glucover_api;
    grant select, insert on readings, nightscout_entries, sensor_errors to glucover_api;
    grant insert on rejected_messages, alert_inbox to glucover_api;
    grant usage on sequence rejected_messages_id_seq, alert_inbox_id_seq,
        nightscout_devicestatus_id_seq to glucover_api;
    grant select, insert, update on device_status, nightscout_treatments to glucover_api;
    grant select, insert on nightscout_devicestatus to glucover_api;
    if exists (select 1 from pg_roles where rolname = 'glucover_dashboard') then
        grant select on nightscout_uploaders, nightscout_entries, sensor_errors,
            nightscout_treatments, nightscout_devicestatus to glucover_dashboard;
    end if;
    if exists (select 1 from pg_roles where rolname = 'glucover_care') then
        grant select on sensor_errors, nightscout_treatments to glucover_care;
    end if;
end $$;
