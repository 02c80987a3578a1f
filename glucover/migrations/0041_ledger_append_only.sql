-- The ledger is append-only by a trigger, not by grants alone: an UPDATE or DELETE fails for
-- every role, the superuser's too (as the alert audit and rules are; 0019). A repricing adds
-- rows of a new run; current_ledger shows each day's latest.
create or replace trigger sum_insured_ledger_immutable before update or delete
    on sum_insured_ledger for each row execute function append_only();
create or replace trigger sum_insured_ledger_no_truncate before truncate
    on sum_insured_ledger for each statement execute function append_only();
