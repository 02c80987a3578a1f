"""How a device numbers its records, what an acknowledgement speaks of, how large a message is.

A record's `seq` is a uint16 that wraps (wire format v1, docs/wire-format.md). A meter session
holds at most SESSION_READINGS unacknowledged readings: half the circle, so within a session
"ahead by less than half the circle" tells the newer of two numbers and no number comes round
again. An acknowledgement names the stored numbers among the ACK_WINDOW numbers up to the
newest one (the one furthest ahead on the circle); the window spans a whole session, so any
reading a session holds, however old, can be acknowledged (a CGM's 30 days are 8,640 readings;
the window was 4,096 before December 2026, and such a backlog never completed). It is no more
than half the circle, so a number an ack names cannot be one from the device's previous wrap.
The schema's ack functions (glucover/migrations/0013, 0035) take both from here
({seq_modulo}, {ack_window}).
"""

from __future__ import annotations

SEQ_MODULO = 65536  # sequence numbers are uint16 and wrap
# The largest message a device may send (wire format v1), and the largest MQTT packet the broker
# takes: a message of that size with its topic, header and properties (the broker drops a
# device that sends more, so no worker ever holds it; deploy/mosquitto/mosquitto.conf says the
# same number, tested).
MAX_PAYLOAD_BYTES = 1_048_576
MAX_PACKET_BYTES = MAX_PAYLOAD_BYTES + 1024
SESSION_READINGS = SEQ_MODULO // 2  # readings a meter session holds unacknowledged, at most
ACK_WINDOW = SESSION_READINGS  # an ack covers every reading a session can hold
# What an ack without its "window" field spans: one from an ingest older than December 2026.
LEGACY_ACK_WINDOW = 4096
