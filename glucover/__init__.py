"""glucover: shared configuration, database schema, local servers and the command line."""

__version__ = "0.1.0"
