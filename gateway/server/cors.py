"""Browsers: CORS for the configured origins, per the Fetch standard; none by default.

With no origins configured (`cors.allow_origins` empty) nothing here is installed: no CORS
header is ever sent and `OPTIONS` is answered as any unserved method is (405 in the path's
dialect). With origins, for the API paths (`/v1/...` and their forms without `/v1`; `/healthz`,
`/readyz` and `/metrics` serve orchestrators, not pages), every preflight (`OPTIONS` with
`Origin` and `Access-Control-Request-Method`) is answered by `cors_middlewares`, before drain
and admission (a preflight carries no credentials, so it needs no gateway key, and it spends
no capacity) and without reaching a handler or an upstream:

- from an allowed origin, 204. The answer names the origin (`*` only where `*` is configured
  and credentials are off), the methods (`cors.allow_methods`), the requested headers and
  `Access-Control-Max-Age`. A preflight asking for a method or a header that is not allowed
  gets the answer without the `-Allow-Methods` or `-Allow-Headers` (nor `-Max-Age`): the
  browser blocks the request and says which one it was. A Private Network Access preflight
  (`Access-Control-Request-Private-Network: true`, Chromium's) gets
  `Access-Control-Allow-Private-Network: true` only with `cors.allow_private_network`;
  without it, the answer lacks it (and `-Max-Age`) and the browser blocks the request;
- from any other origin, the answer the path has without CORS (405, or 404 where nothing is
  served): no CORS header, and the browser blocks the request;
- each preflight is recorded as a request of its own (`endpoint` `preflight`, route `none`):
  one log line and `gateway_requests_total`, outcome `completed`, or `refused` with the first
  reason the browser will block it for (`origin`, `method`, `headers`, `private_network`) on
  the log line;
- every other answer to an allowed origin (errors and SSE streams included: the headers are
  set by `on_response_prepare`, before the head is written) gets `Access-Control-Allow-Origin`,
  `-Expose-Headers` (and `-Allow-Credentials` when on). A refused origin's request is served
  as it would be without CORS, with no CORS header: a non-browser client is unaffected, a
  browser withholds the answer from the page.

Answers whose CORS headers depend on `Origin` say so (`Vary: Origin`; preflights also vary by
the requested method and headers, and by the private network request when that is allowed),
so a cache never serves one origin's answer to another.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from multidict import istr

from gateway.apis import canonical_path
from gateway.observability import RequestRecord
from gateway.server.app_state import METRICS
from gateway.server.middlewares import REQUEST_ID, http_error_response
from gateway.settings import CorsSettings
from gateway.settings.cors import parse_origin

__all__ = ["PREFLIGHT_ENDPOINT", "CorsPolicy", "cors_middlewares", "send_cors_headers"]

#: The `endpoint` label (and log field) of a CORS preflight.
PREFLIGHT_ENDPOINT = "preflight"

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9a-z\-]+")
_PREFLIGHT_VARY = (
    hdrs.ORIGIN,
    hdrs.ACCESS_CONTROL_REQUEST_METHOD,
    hdrs.ACCESS_CONTROL_REQUEST_HEADERS,
)
#: Private Network Access (WICG): the preflight's question and the answer that allows it.
_REQUEST_PRIVATE_NETWORK = istr("Access-Control-Request-Private-Network")
_ALLOW_PRIVATE_NETWORK = istr("Access-Control-Allow-Private-Network")


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    """Which origins may call the API and what their pages may send and read, from the
    `cors` settings (`from_settings`: None when no origin is allowed)."""

    origins: frozenset[str]  # canonical exact origins
    subdomains: tuple[tuple[str, str, int | None], ...]  # (scheme, ".parent.domain", port)
    any_origin: bool
    headers: frozenset[str]
    header_prefixes: tuple[str, ...]
    any_header: bool
    methods: tuple[str, ...]
    expose: str  # the Access-Control-Expose-Headers value ("" none)
    max_age: str
    credentials: bool
    private_network: bool  # Private Network Access preflights are allowed

    @classmethod
    def from_settings(cls, settings: CorsSettings) -> CorsPolicy | None:
        if not settings.enabled:
            return None
        parsed = [parse_origin(text, patterns=True) for text in settings.allow_origins]
        patterns = [origin for origin in parsed if origin is not None]
        names = settings.allow_headers
        return cls(
            origins=frozenset(str(origin) for origin in patterns if not origin.wildcard),
            subdomains=tuple(
                (origin.scheme, "." + origin.host, origin.port)
                for origin in patterns
                if origin.wildcard
            ),
            any_origin="*" in settings.allow_origins,
            headers=frozenset(name for name in names if not name.endswith("*")),
            header_prefixes=tuple(
                name[:-1] for name in names if name.endswith("*") and name != "*"
            ),
            any_header="*" in names,
            methods=tuple(settings.allow_methods),
            expose=", ".join(settings.expose_headers),
            max_age=str(settings.max_age),
            credentials=settings.allow_credentials,
            private_network=settings.allow_private_network,
        )

    def allows_origin(self, origin: str) -> bool:
        """Whether a page of `origin` (an `Origin` header's value) may call the API."""
        if self.any_origin or origin in self.origins:
            return True
        if not self.subdomains:
            return False
        parsed = parse_origin(origin)
        if parsed is None or str(parsed) != origin:  # a browser sends the canonical form
            return False
        for scheme, parent, port in self.subdomains:
            if (parsed.scheme, parsed.port) == (scheme, port) and parsed.host.endswith(parent):
                return True  # `parent` starts with a dot: the host has a label more
        return False

    def allows_header(self, name: str) -> bool:
        """Whether a page may send the request header `name` (lower case)."""
        if _TOKEN.fullmatch(name) is None:
            return False
        return (
            self.any_header
            or name in self.headers
            or any(name.startswith(prefix) for prefix in self.header_prefixes)
        )

    def allow_origin_value(self, origin: str) -> str:
        """The `Access-Control-Allow-Origin` for an allowed `origin`."""
        return "*" if self.any_origin and not self.credentials else origin

    def preflight(
        self, request: web.Request, origin: str, method: str
    ) -> tuple[web.Response, str | None]:
        """The answer to `request`, a preflight from the allowed `origin` for `method`, and
        the first reason the browser will refuse it for (None: it is allowed)."""
        headers = {hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: self.allow_origin_value(origin)}
        if self.credentials:
            headers[hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS] = "true"
        refusal: str | None = None
        if method in self.methods:
            headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = ", ".join(self.methods)
        else:
            refusal = "method"
        requested = request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_HEADERS, "")
        names = [name.strip().lower() for name in requested.split(",")]
        names = [name for name in names if name]
        if not all(self.allows_header(name) for name in names):
            refusal = refusal or "headers"
        elif names:
            headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = ", ".join(names)
        vary: tuple[str, ...] = _PREFLIGHT_VARY
        if self.private_network:
            vary += (_REQUEST_PRIVATE_NETWORK,)
        if request.headers.get(_REQUEST_PRIVATE_NETWORK, "").strip().lower() == "true":
            if self.private_network:
                headers[_ALLOW_PRIVATE_NETWORK] = "true"
            else:
                refusal = refusal or "private_network"
        if refusal is None:
            headers[hdrs.ACCESS_CONTROL_MAX_AGE] = self.max_age
        headers[hdrs.VARY] = ", ".join(vary)
        return web.Response(status=204, headers=headers), refusal

    async def on_response_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        """Add the CORS headers of an actual request's answer (signal `on_response_prepare`)."""
        if hdrs.ACCESS_CONTROL_ALLOW_ORIGIN in response.headers or not _is_api(request.path):
            return
        if not (self.any_origin and not self.credentials):
            _vary(response, hdrs.ORIGIN)
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is None or not self.allows_origin(origin):
            return
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = self.allow_origin_value(origin)
        if self.credentials:
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS] = "true"
        if self.expose:
            response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = self.expose


def cors_middlewares(policy: CorsPolicy | None) -> list[Middleware]:
    """The middleware answering the preflights `policy` allows; none without a policy."""
    if policy is None:
        return []

    @web.middleware
    async def preflight_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get(hdrs.ORIGIN)
        method = request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_METHOD)
        if (
            request.method != hdrs.METH_OPTIONS
            or origin is None
            or method is None
            or not _is_api(request.path)
        ):
            return await handler(request)
        refusal: str | None
        if policy.allows_origin(origin):
            response, refusal = policy.preflight(request, origin, method)
        else:
            # What the path answers OPTIONS without CORS: the router's own 405 (or 404).
            unserved = request.match_info.http_exception
            if unserved is None:  # a route serving OPTIONS itself (no API path has one)
                return await handler(request)
            response, refusal = http_error_response(request, unserved), "origin"
        record = RequestRecord(
            request_id=request[REQUEST_ID],
            endpoint=PREFLIGHT_ENDPOINT,
            metrics=request.app[METRICS],
        )
        record.answered(response)
        if refusal is not None:
            record.refuse(refusal)
        record.finish()
        return response

    return [preflight_middleware]


def send_cors_headers(app: web.Application, policy: CorsPolicy | None) -> None:
    """Have every answer of `app` to an allowed origin carry its CORS headers."""
    if policy is not None:
        app.on_response_prepare.append(policy.on_response_prepare)


def _is_api(path: str) -> bool:
    return canonical_path(path).startswith("/v1/")


def _vary(response: web.StreamResponse, name: str) -> None:
    """Add `name` to the response's `Vary` (unless it is there already, or `*`)."""
    current = response.headers.get(hdrs.VARY)
    if current is None:
        response.headers[hdrs.VARY] = name
        return
    present = {part.strip().lower() for part in current.split(",")}
    if "*" not in present and name.lower() not in present:
        response.headers[hdrs.VARY] = f"{current}, {name}"
