"""The purposes a policyholder consents to, one by one, and the channels a choice comes
through: named once (the schema's checks in 0050_consent.sql spell the same)."""

from __future__ import annotations

# pricing: readings change the sum insured; care: the care team is alerted and may contact
# the policyholder; research: pseudonymised data in the actuaries' back-tests and reports.
PURPOSES = ("pricing", "care", "research")
# Where a choice was made: the policyholder's page; an operator keying a paper form or a call;
# enrolment (policies/); the simulator's and demo's provisioning; the migration that recorded
# the contract of policies sold before consent records existed.
CHANNELS = ("page", "paper", "call_centre", "enrolment", "provisioning", "migration")
OPERATOR_CHANNELS = ("paper", "call_centre")
