"""The kernel: the facts every stage of glucover shares, each written once.

- `vocabulary`: device kinds, units, meal, sample, source and the GLS status bits (the words of
  the wire format and of the schema);
- `units`: the mg/dL factor and the decimals a meter shows in each unit;
- `glucose`: the clinical thresholds (the consensus bands, the fingerstick band, the
  hypoglycaemia levels) and which status bits are errors;
- `sequence`: a device's record numbering (the modulus) and the window an acknowledgement spans;
- `days`: the policy-day, a calendar day in the policy's IANA time zone, in Python and in SQL.

It imports nothing of ours, so every stage (devices, ingest, pricing, care, records, dashboard,
the CLI) may import it and no import cycle can pass through it. SQL takes these values from
here (glucover/db.py fills a migration's placeholders) or from the ruleset in force, never as a
literal copy; tests/test_kernel.py fails when one is written again elsewhere.
"""
