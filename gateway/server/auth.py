"""`GatewayKeys`: checking the key a client presents to the gateway.

A client presents its key as `Authorization: Bearer <key>` (the OpenAI SDKs) or `x-api-key`
(the Anthropic SDK). Only SHA-256 digests of the configured keys are kept in memory, and a
presented key is compared with every one of them with `hmac.compare_digest`, without stopping
at a match, so neither the comparison nor the position of the matching key shows in the timing.
The presented key is never logged or echoed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from aiohttp import web
from pydantic import SecretStr

__all__ = ["GatewayKeys"]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


class GatewayKeys:
    """The configured gateway keys, as digests."""

    def __init__(self, keys: Iterable[SecretStr]) -> None:
        self._digests = tuple(_digest(key.get_secret_value()) for key in keys)

    def __bool__(self) -> bool:
        return bool(self._digests)

    def accepts(self, request: web.Request) -> bool:
        """Whether `request` carries one of the keys."""
        presented = _presented_key(request)
        if presented is None:
            return False
        digest = _digest(presented)
        found = False
        for known in self._digests:
            found |= hmac.compare_digest(digest, known)
        return found


def _presented_key(request: web.Request) -> str | None:
    authorization = request.headers.get("Authorization")
    if authorization is not None:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
        return None
    return request.headers.get("x-api-key") or None
