-- Enrolment with Nightscout uploads (issue 30; docs/policies.md): an applicant who uploads from
-- their own CGM app gets the policy's Nightscout device and credentials at acceptance
-- (nightscout/enrolment.py provision). The sign-up page runs as the dashboard's role: it may
-- add a new policy's uploader row (hashes only), never change or rotate one.
do $$ begin
    if exists (select 1 from pg_roles where rolname = 'glucover_dashboard') then
        grant insert on nightscout_uploaders to glucover_dashboard;
    end if;
end $$;
