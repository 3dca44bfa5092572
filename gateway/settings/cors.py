"""The `cors` section of the settings: which browser origins may call the API, and how.

No origins by default: the gateway then sends no CORS headers at all. An origin is given as a
browser serialises it, `scheme://host[:port]` (no path, query, user or fragment), or as a
pattern of subdomains, `https://*.example.com` (any subdomain, at any depth, of
`example.com`, not `example.com` itself; same scheme and port). `*` alone allows every
origin, and only without credentials (the Fetch standard never lets `*` carry credentials).
Origins are kept in canonical form (lower case, default port dropped), which is what a
browser's `Origin` header holds, so an allowed origin is matched by plain comparison.

Methods are HTTP method tokens, kept in upper case (what a browser's
`Access-Control-Request-Method` holds for the methods the gateway serves); a preflight is
always answered, so `OPTIONS` needs no listing.

Header names are kept in lower case. `allow_headers` may hold a prefix pattern such as
`x-stainless-*` (the gateway answers a preflight with the names it was asked for, so a pattern
never reaches a browser) or `*` (any header). `expose_headers` holds names, or `*` (every
header) without credentials.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.settings.sources import invalid

__all__ = [
    "DEFAULT_ALLOW_HEADERS",
    "DEFAULT_ALLOW_METHODS",
    "DEFAULT_EXPOSE_HEADERS",
    "CorsSettings",
    "Origin",
    "parse_origin",
]

#: What the official SDKs and the gateway's own clients send (openai and anthropic SDKs, the
#: Vercel AI SDK, the gateway's per-request timeouts and request ids, stream resumption).
DEFAULT_ALLOW_HEADERS: tuple[str, ...] = (
    "authorization",
    "content-type",
    "x-api-key",
    "anthropic-version",
    "anthropic-beta",
    "anthropic-dangerous-direct-browser-access",
    "openai-organization",
    "openai-project",
    "openai-beta",
    "idempotency-key",
    "x-stainless-*",
    "x-request-id",
    "x-gateway-connect-timeout",
    "x-gateway-first-byte-timeout",
    "x-gateway-first-token-timeout",
    "x-gateway-idle-timeout",
    "x-gateway-total-timeout",
    "last-event-id",
)

#: The methods of the API paths.
DEFAULT_ALLOW_METHODS: tuple[str, ...] = ("GET", "POST", "DELETE")

#: The response headers the SDKs read (request ids, retry hints, rate limits).
DEFAULT_EXPOSE_HEADERS: tuple[str, ...] = (
    "x-request-id",
    "request-id",
    "retry-after",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    "x-should-retry",
)

_DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = r"[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?"
_ORIGIN = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.\-]*)://"
    rf"(?P<wildcard>\*\.)?(?P<host>{_LABEL}(?:\.{_LABEL})*|\[[0-9a-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
_NAME = r"[!#$%&'+.^_`|~0-9a-z\-]+"  # an HTTP token without `*`
_METHOD = re.compile(r"[!#$%&'+.^_`|~0-9A-Za-z\-]+")  # the same, any case
_EXPOSED = re.compile(rf"\*|{_NAME}")
_ALLOWED = re.compile(rf"\*|{_NAME}\*?")


@dataclass(frozen=True, slots=True)
class Origin:
    """A parsed origin, or a pattern of subdomains (`wildcard`: `host` is the parent domain)."""

    scheme: str
    host: str
    port: int | None  # None: the scheme's default port
    wildcard: bool = False

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.scheme}://{'*.' if self.wildcard else ''}{self.host}{port}"


def parse_origin(text: str, *, patterns: bool = False) -> Origin | None:
    """`text` as an origin in canonical form, or None when it is not one (a pattern of
    subdomains only with `patterns`; its parent domain must have at least two labels)."""
    match = _ORIGIN.fullmatch(text.lower())
    if match is None:
        return None
    scheme, host, wildcard = match["scheme"], match["host"], match["wildcard"] is not None
    if wildcard and (not patterns or host.startswith("[") or "." not in host):
        return None
    port = int(match["port"]) if match["port"] is not None else None
    if port is not None and not 0 < port < 65536:
        return None
    if port == _DEFAULT_PORTS.get(scheme):
        port = None
    return Origin(scheme, host, port, wildcard)


class CorsSettings(BaseModel):
    """Cross-origin requests from browsers (the Fetch standard's CORS); none by default."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    allow_origins: list[str] = Field(
        default_factory=list,
        description="Origins whose pages may call the API: exact (`https://app.example.com`, "
        "`http://localhost:3000`) or every subdomain of a domain (`https://*.example.com`); "
        "`*`: any origin (not with `allow_credentials`). Empty: no CORS headers at all.",
    )
    allow_headers: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ALLOW_HEADERS),
        description="Request headers a page may send (a preflight asking for another one is "
        "refused); a name, a prefix pattern (`x-stainless-*`) or `*`. Default: what the SDKs "
        f"send: {', '.join(f'`{name}`' for name in DEFAULT_ALLOW_HEADERS)}.",
    )
    allow_methods: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ALLOW_METHODS),
        description="Methods a page may use (a preflight asking for another one is refused); "
        "HTTP method tokens, upper-cased. `OPTIONS` (the preflight itself) needs no listing. "
        f"Default: the gateway's, {', '.join(f'`{name}`' for name in DEFAULT_ALLOW_METHODS)}.",
    )
    expose_headers: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EXPOSE_HEADERS),
        description="Response headers a page may read. Default: "
        f"{', '.join(f'`{name}`' for name in DEFAULT_EXPOSE_HEADERS)}.",
    )
    max_age: int = Field(
        600,
        ge=0,
        le=86400,
        description="Seconds a browser may cache a preflight's answer (Chromium caps it at 7200).",
    )
    allow_credentials: bool = Field(
        False,
        description="Let pages send cookies and HTTP authentication (`credentials: 'include'`); "
        "the gateway then names the origin, never `*`.",
    )
    allow_private_network: bool = Field(
        False,
        description="Answer Private Network Access preflights from allowed origins "
        "(`Access-Control-Request-Private-Network: true`: Chromium's, when a public page calls "
        "a private or loopback address; Chrome 142's Local Network Access permission prompt "
        "replaces them) with `Access-Control-Allow-Private-Network: true`. Off: such a "
        "preflight is refused.",
    )

    @field_validator("allow_origins")
    @classmethod
    def _canonical_origins(cls, values: list[str]) -> list[str]:
        canonical: list[str] = []
        for index, value in enumerate(values):
            origin = None if value == "*" else parse_origin(value.strip(), patterns=True)
            if value != "*" and origin is None:
                raise invalid(
                    (index,),
                    f"cors.allow_origins[{index}] is not an origin: give scheme://host[:port] "
                    "without a path (e.g. https://app.example.com), a pattern of subdomains "
                    "(https://*.example.com) or * alone",
                )
            text = "*" if origin is None else str(origin)
            if text not in canonical:
                canonical.append(text)
        if "*" in canonical and len(canonical) > 1:
            raise invalid((), "cors.allow_origins holds * and other origins: * stands alone")
        return canonical

    @field_validator("allow_headers")
    @classmethod
    def _header_patterns(cls, values: list[str]) -> list[str]:
        return _header_names(values, "allow_headers", _ALLOWED)

    @field_validator("allow_methods")
    @classmethod
    def _method_tokens(cls, values: list[str]) -> list[str]:
        methods: list[str] = []
        for index, value in enumerate(values):
            method = value.strip()
            if _METHOD.fullmatch(method) is None:  # before upper-casing: "ß" would be "SS"
                raise invalid(
                    (index,),
                    f"cors.allow_methods[{index}] is not an HTTP method (a token such as GET "
                    "or POST; * is not supported: name the methods)",
                )
            method = method.upper()
            if method not in methods:
                methods.append(method)
        return methods

    @field_validator("expose_headers")
    @classmethod
    def _exposed_names(cls, values: list[str]) -> list[str]:
        return _header_names(values, "expose_headers", _EXPOSED)

    @model_validator(mode="after")
    def _check_credentials(self) -> Self:
        if self.allow_credentials and "*" in self.allow_origins:
            raise invalid(
                ("allow_origins",),
                "cors.allow_origins is *, but allow_credentials is on: the Fetch standard "
                "never lets * carry credentials; name the origins",
            )
        if self.allow_credentials and "*" in self.expose_headers:
            raise invalid(
                ("expose_headers",),
                "cors.expose_headers holds *, but allow_credentials is on: * would name a "
                "header called *; name the headers",
            )
        return self

    @property
    def enabled(self) -> bool:
        """Whether any origin is allowed (else the gateway sends no CORS headers at all)."""
        return bool(self.allow_origins)


def _header_names(values: list[str], field: str, pattern: re.Pattern[str]) -> list[str]:
    names: list[str] = []
    for index, value in enumerate(values):
        name = value.strip().lower()
        if pattern.fullmatch(name) is None:
            raise invalid((index,), f"cors.{field}[{index}] is not a header name")
        if name not in names:
            names.append(name)
    return names
