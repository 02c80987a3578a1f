"""The care team: glucose alerts raised as readings are stored, their queue and audit trail,
and notices to policyholders (docs/care.md)."""
