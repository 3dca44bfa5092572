"""Shared test support: the fake upstream and other test doubles."""
