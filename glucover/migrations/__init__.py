"""Versioned SQL migrations, applied in order by `glucover migrate` (see glucover/db.py).

`NNNN_name.sql` runs on every backend; `NNNN_name.timescale.sql` and `NNNN_name.plain.sql` are
the two spellings of one step, chosen by whether the TimescaleDB extension is active.
"""
