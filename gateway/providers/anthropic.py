"""The `anthropic` provider: Anthropic's Messages API, and the servers compatible with it.

The client's Messages request is sent as the endpoint built it (the target's model name set) to
`{base_url}/v1/messages` - `base_url` is the API root the `anthropic` SDK takes, e.g.
`https://api.anthropic.com` - authenticated with the key from the settings (never the client's):
`x-api-key` unless the upstream's `auth_scheme` says `bearer`. `anthropic-version` is the
client's (passed on by the endpoint when it is sane) or else the upstream's `anthropic_version`
setting; `anthropic-beta` is passed on as the client sent it. The answer is relayed byte-exact;
error answers are translated in `gateway.providers.http`, which understands Anthropic's error
bodies.
"""

from __future__ import annotations

from gateway.apis import ANTHROPIC_COUNT_TOKENS, ANTHROPIC_MESSAGES
from gateway.providers.http import HTTPProvider
from gateway.providers.upstream import UpstreamRequest

__all__ = ["AnthropicProvider"]


class AnthropicProvider(HTTPProvider):
    """An Anthropic Messages upstream reached over HTTP(S)."""

    default_auth_scheme = "x-api-key"
    vendor = "anthropic"
    spoken_apis = (ANTHROPIC_MESSAGES, ANTHROPIC_COUNT_TOKENS)

    def api_headers(self, request: UpstreamRequest) -> dict[str, str]:
        return {"anthropic-version": self.settings.anthropic_version}
