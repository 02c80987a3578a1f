"""The policyholder's rights over their health data: consent per purpose (consent.py), and
where the law asks for them, reviews of automated decisions, the staff access log and data
rights (docs/privacy.md)."""
