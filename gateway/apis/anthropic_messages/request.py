"""The client's Anthropic Messages request at the edge (`POST /v1/messages`).

The gateway reads the fields it relies on or Anthropic requires (`model`, non-empty
`messages`, `max_tokens`, optional `stream`); everything else is forwarded as the client wrote
it.

Of the client's headers only Anthropic's protocol headers go upstream, and only when they are
sane: `anthropic-version` (a date; otherwise the upstream's configured version is sent) and
`anthropic-beta` (comma-separated feature names). The client's `x-api-key` and
`Authorization` never do: the provider authenticates with the gateway's own key.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pydantic import Field, StrictInt

from gateway.apis.request import EdgeRequest

if TYPE_CHECKING:
    from gateway.apis.base import Headers

__all__ = ["MessagesRequest", "forwarded_anthropic_headers"]

_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}")
_BETA = re.compile(r"[A-Za-z0-9._\-]+(?: *, *[A-Za-z0-9._\-]+)*")
_MAX_BETA = 1024


class MessagesRequest(EdgeRequest):
    """The fields of a Messages request that the gateway itself reads or Anthropic requires."""

    messages: list[Any] = Field(min_length=1)
    max_tokens: StrictInt = Field(ge=1)


def forwarded_anthropic_headers(headers: Headers) -> dict[str, str]:
    """The client's sane `anthropic-version` and `anthropic-beta`, to pass upstream."""
    forwarded: dict[str, str] = {}
    version = headers.get("anthropic-version", "").strip()
    if _VERSION.fullmatch(version):
        forwarded["anthropic-version"] = version
    betas = ",".join(value.strip() for value in headers.getall("anthropic-beta", []))
    if betas and len(betas) <= _MAX_BETA and _BETA.fullmatch(betas):
        forwarded["anthropic-beta"] = betas
    return forwarded
