-- Dashboard sessions expire (dashboard/sessions.py signs the expiry into the cookie's token and
-- checks it here too); signing out deletes the row, which revokes the token.
alter table dashboard_sessions
    add column if not exists expires_at timestamptz not null default now() + interval '14 days';
create index if not exists dashboard_sessions_user on dashboard_sessions (username);
