"""Glucose meters: the wire format they speak, their credentials, and a fleet simulator."""
