"""Measurement scripts (the full benchmark harness arrives with the performance work)."""
