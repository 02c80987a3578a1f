"""The Nightscout-compatible upload API: the apps people already run (xDrip+, AndroidAPS, ...)
upload CGM data to glucover as they would to a Nightscout site, one tenant per policy.

- `mapping`: pure: a Nightscout entry -> a glucover reading (or a sensor error code, or why not);
  and a stored reading -> the document Nightscout returns.
- `credentials`: the api secret, access token and JWT of a policy, derived and hashed.
- `store`: the database side (readings through ingest's own store, one transaction a request).
- `app`: the ASGI app (Starlette), `cli`: `glucover api` and `glucover nightscout enable`.

docs/nightscout.md says what is supported and why the rest is not.
"""
