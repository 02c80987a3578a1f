"""How a device numbers its records, what an acknowledgement speaks of, how large a message is.

A record's `seq` is a uint16 that wraps (wire format v1, docs/wire-format.md). An
acknowledgement names the stored numbers among the ACK_WINDOW numbers up to the newest one (the
one furthest ahead on the circle): far fewer than SEQ_MODULO, so a number it names cannot be one
from the device's previous wrap. The schema's ack functions (glucover/migrations/0013) take both
from here ({seq_modulo}, {ack_window}).
"""

from __future__ import annotations

SEQ_MODULO = 65536  # sequence numbers are uint16 and wrap
# The largest message a device may send (wire format v1), and the largest MQTT packet the broker
# takes: a message of that size with its topic, header and properties (the broker drops a
# device that sends more, so no worker ever holds it; deploy/mosquitto/mosquitto.conf says the
# same number, tested).
MAX_PAYLOAD_BYTES = 1_048_576
MAX_PACKET_BYTES = MAX_PAYLOAD_BYTES + 1024
ACK_WINDOW = 4096
