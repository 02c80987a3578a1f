"""How a device numbers its records, and what an acknowledgement speaks of.

A record's `seq` is a uint16 that wraps (wire format v1, docs/wire-format.md). An
acknowledgement names the stored numbers among the ACK_WINDOW numbers up to the newest one (the
one furthest ahead on the circle): far fewer than SEQ_MODULO, so a number it names cannot be one
from the device's previous wrap. The schema's ack functions (glucover/migrations/0013) take both
from here ({seq_modulo}, {ack_window}).
"""

from __future__ import annotations

SEQ_MODULO = 65536  # sequence numbers are uint16 and wrap
ACK_WINDOW = 4096
