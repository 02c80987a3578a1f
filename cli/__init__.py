"""The `glucover` command: the composition root. It stands above the stages (devices, ingest,
pricing, care, records, dashboard, actuary, policies) and the ground floor they share
(`glucover/`: settings, database, servers; `kernel/`: the shared rules), parses the command
line and hands each subcommand to its stage's handler, loaded only when it runs (`main.py`);
`glucover up` provisions the demo portfolio and starts every service as a process (`up.py`);
`glucover doctor` checks an installation (`doctor.py`). Nothing below imports it.
"""
