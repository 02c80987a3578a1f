-- The care team lead (issue 17): a clinician who may publish new versions of the alert rules.
alter table dashboard_users add column care_lead boolean not null default false;
