"""The `openai` provider: any OpenAI-compatible Chat Completions endpoint.

OpenAI itself, vLLM, Ollama, llama.cpp, LM Studio, Groq, Together, OpenRouter... all take the
same request at `{base_url}/chat/completions` and stream the same SSE chunks. The provider
forwards the client's body (with the target's model name, set by the router), authenticates
with the key from its settings (never the client's), and reads the answer through one pooled
`aiohttp.ClientSession` per upstream. Errors are translated in `gateway.providers.http`.
"""

from __future__ import annotations

import aiohttp

from gateway.errors import UpstreamProtocolError
from gateway.providers.http import (
    HTTPUpstreamResponse,
    create_session,
    raise_for_upstream_status,
    translate_errors,
)
from gateway.providers.upstream import Provider, UpstreamRequest, UpstreamResponse
from gateway.settings import LimitSettings, UpstreamSettings
from gateway.streaming import Context, OpenAIDialect

__all__ = ["OpenAIProvider"]

#: Content types that cannot carry an event stream (an upstream that ignored `stream: true`, or
#: an error page with a 200). Anything else is given the benefit of the doubt and framed as SSE.
_NOT_A_STREAM = frozenset({"application/json", "text/html"})


class OpenAIProvider(Provider):
    """An OpenAI-compatible upstream reached over HTTP(S)."""

    def __init__(self, name: str, settings: UpstreamSettings, limits: LimitSettings) -> None:
        super().__init__(name, OpenAIDialect())
        assert settings.base_url is not None  # enforced by UpstreamSettings
        self._base_url = str(settings.base_url).rstrip("/")
        self._max_connections = settings.max_connections
        self._max_error_body = limits.max_error_body_bytes
        key = settings.api_key.get_secret_value() if settings.api_key else None
        self._auth = {"Authorization": f"Bearer {key}"} if key else {}
        self._secrets = (key,) if key else ()
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = create_session(self._max_connections)

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def open(self, ctx: Context, request: UpstreamRequest) -> UpstreamResponse:
        await self.start()
        assert self._session is not None
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if request.stream else "application/json",
            # Compressed SSE would be buffered by the decompressor: ask for identity.
            "Accept-Encoding": "identity" if request.stream else "gzip, deflate",
            **self._auth,
        }
        if request.request_id:
            headers["X-Request-Id"] = request.request_id
        connect = request.timeouts.connect
        with translate_errors(connect_limit=connect):
            response = await self._session.post(
                self._base_url + request.path,
                data=request.body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=connect, sock_connect=connect, sock_read=None
                ),
                trace_request_ctx=request.on_sent,
            )
        try:
            await raise_for_upstream_status(
                response, max_body=self._max_error_body, secrets=self._secrets
            )
            if request.stream and response.content_type in _NOT_A_STREAM:
                raise UpstreamProtocolError(
                    f"the upstream answered a streaming request with {response.content_type}"
                )
        except BaseException:
            response.close()
            raise
        return HTTPUpstreamResponse(response)
