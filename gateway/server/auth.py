"""`GatewayKeys`: who a client is, by the gateway key it presents.

A client presents its key as `Authorization: Bearer <key>` (the OpenAI SDKs) or `x-api-key`
(the Anthropic SDK). Only SHA-256 digests of the configured keys are kept in memory (a key may
be configured as its digest in the first place, `sha256:<hex>`), and the digest of a presented
key is compared with every one of them with `hmac.compare_digest`, without stopping at a match,
so neither the comparison nor the position of the matching key shows in the timing.

A request presents one key or none: two `Authorization` fields, two `x-api-key` fields, or both
headers with different keys (a bearer `Authorization` and an `x-api-key` holding the same key
are one key, as SDKs configured with both send them) raise `InvalidRequest` (400), whatever the
values. HTTP clients and proxies merge or pick among repeated fields differently, so which key
"counts" would depend on the hop that looked: the gateway refuses to guess. (Checked only where
keys are checked: with gateway keys configured, and on `/metrics` when it asks for one.)

A key's holder is a `Client`: a name for logs - the configured name, or `key-` and 8 hex digits
of the key's digest - and the limits that apply to it. The presented key itself is never
logged, echoed or kept.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import hdrs, web
from multidict import MultiMapping

from gateway.errors import InvalidRequest
from gateway.settings.auth import AuthSettings, key_digest, key_id

__all__ = ["CLIENT", "Client", "GatewayKeys", "presented_key"]


@dataclass(frozen=True, slots=True)
class Client:
    """The holder of one gateway key: its name in logs, and its limits (None: none)."""

    name: str
    max_streams: int | None = None
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


#: The holder of the key a request presented (set by admission; absent without gateway keys).
CLIENT = web.RequestKey("client", Client)


class GatewayKeys:
    """The configured gateway keys, as digests, each with the client it identifies."""

    def __init__(self, entries: Iterable[tuple[bytes, Client]] = ()) -> None:
        self._entries = tuple(entries)

    @classmethod
    def from_settings(cls, auth: AuthSettings) -> GatewayKeys:
        entries = []
        for key in auth.keys:
            digest = key_digest(key.get_secret_value())
            client = Client(
                key_id(digest),
                auth.max_streams_per_key,
                auth.requests_per_minute_per_key,
                auth.tokens_per_minute_per_key,
            )
            entries.append((digest, client))
        for named in auth.clients:
            client = Client(
                named.name,
                named.max_streams or auth.max_streams_per_key,
                named.requests_per_minute or auth.requests_per_minute_per_key,
                named.tokens_per_minute or auth.tokens_per_minute_per_key,
            )
            entries.append((key_digest(named.key_hash), client))
        return cls(entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def identify(self, headers: MultiMapping[str]) -> Client | None:
        """The client whose key `headers` carry, or None (no key, or not one of ours).

        Raises `InvalidRequest` when `headers` present more than one key."""
        presented = presented_key(headers)
        if presented is None:
            return None
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found: Client | None = None
        for known, client in self._entries:
            if hmac.compare_digest(digest, known):
                found = client
        return found

    def accepts(self, request: web.Request) -> bool:
        """Whether `request` carries one of the keys (`InvalidRequest`: several keys)."""
        return self.identify(request.headers) is not None


_X_API_KEY = "x-api-key"


def presented_key(headers: MultiMapping[str]) -> str | None:
    """The key a request presents: `Authorization: Bearer <key>`, else `x-api-key`.

    Raises `InvalidRequest` for a repeated field, or both headers with different keys."""
    authorizations = headers.getall(hdrs.AUTHORIZATION, ())
    api_keys = headers.getall(_X_API_KEY, ())
    if len(authorizations) > 1 or len(api_keys) > 1:
        name = hdrs.AUTHORIZATION if len(authorizations) > 1 else _X_API_KEY
        raise InvalidRequest(f"the request has several {name} header fields: send one")
    api_key = api_keys[0] if api_keys else None
    if not authorizations:
        return api_key or None
    scheme, _, credentials = authorizations[0].partition(" ")
    bearer = credentials.strip() if scheme.lower() == "bearer" else ""
    if api_key is not None and api_key != bearer:
        raise InvalidRequest(
            "the request presents different keys in Authorization and x-api-key: send one"
        )
    return bearer or None
