"""Records out in standard forms: FHIR R4 (records/fhir.py, records/export.py)."""
