-- A device's readings by time (issue 26): the nightly run reads the readings of the days new
-- readings touch, per device and measured_at range (pricing/day_summaries.py). The unique key
-- (device_id, seq, measured_at) has seq between the two, so such a range read every index entry
-- of the device: a year of a CGM is 105,000 of them for the 288 of one day.
create index if not exists readings_device_time on readings (device_id, measured_at);
