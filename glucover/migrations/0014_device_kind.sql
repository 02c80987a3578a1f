-- A meter's kind (docs/domain.md#device-kinds): `bgm`, a fingerstick blood glucose meter, or
-- `cgm`, a continuous glucose monitor. Readings travel the same way for both; what differs is
-- how they are priced (a policy's ruleset: `default` for meters, `cgm-default` for CGMs), how
-- they are summarised, and how they are exported (their LOINC codes, records/fhir.py).
alter table devices add column kind text not null default 'bgm' check (kind in ('bgm', 'cgm'));
