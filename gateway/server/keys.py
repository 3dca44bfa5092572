"""Typed application state keys: everything an app holds lives behind one of these."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from gateway.providers import Provider
from gateway.routing import Router
from gateway.settings import GatewaySettings

__all__ = ["PROVIDERS", "ROUTER", "SETTINGS"]

SETTINGS = web.AppKey("settings", GatewaySettings)
PROVIDERS = web.AppKey("providers", Mapping[str, Provider])
ROUTER = web.AppKey("router", Router)
