"""The ground floor every stage stands on: settings, the database schema and its migrations,
private servers, broker credentials, declared parameters, errors. The `glucover` command and
`glucover up` stand above the stages, in `cli/`."""

__version__ = "0.1.0"
