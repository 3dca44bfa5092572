"""Shared state of the gateway: the limits, circuits and leases replicas would share.

`gateway.state.lease.Lease` is the one vocabulary of every limiter.
"""

from gateway.state.lease import Lease

__all__ = ["Lease"]
