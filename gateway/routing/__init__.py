"""Routing: model name -> route -> chain of targets (retries and failover build on this)."""

from gateway.routing.router import Route, Router, Target

__all__ = ["Route", "Router", "Target"]
