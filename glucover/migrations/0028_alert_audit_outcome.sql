-- A resolution's outcome in a column of its own in the audit trail, beside the clinician's own
-- note, so the dashboard says it in the reader's language. Until now the trail's detail held
-- English the service wrote ("assigned to dr_li", "referred: left a voicemail"); those rows keep
-- their words (the trail is append-only), later ones hold only what the clinician typed. The
-- outcomes are those of alerts.outcome (0019_care_alerts.sql, care/store.py OUTCOMES).
alter table alert_audit add column outcome text
    check (outcome in ('called', 'advised', 'referred', 'no_action'));
