"""`glucover bench ...`: benchmarks that print figures measured side by side with a baseline in
the same run. Kept out of the product packages: `harness` has what they share (private servers,
spawning, timing, JSON output), `loadgen` and `naive` are the load generator and the naive
bridge the ingest benchmark compares against, and `reference` is the per-policy loop that the
pricing benchmark and the tests hold the vectorised evaluator to."""
