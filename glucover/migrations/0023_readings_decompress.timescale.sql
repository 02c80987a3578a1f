-- TimescaleDB, before 0024 changes the columns of readings: compression comes off for the
-- change (its policy, every compressed chunk, the setting itself) and 0025 puts it back with
-- the same settings. Altering columns of a hypertable with compression enabled is refused.
select remove_compression_policy('readings', if_exists => true);
select decompress_chunk(c, if_compressed => true) from show_chunks('readings') c;
alter table readings set (timescaledb.compress = false);
