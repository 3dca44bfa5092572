"""The transport: one HTTP call to an upstream and its body, without a provider knowing the HTTP
library underneath.

`HTTPClient` / `HTTPResponse` are the interface (`client`), with two implementations:
`Http1Client` (`http1_client`, the default: asyncio protocols and httptools' parser, its one
translation of the OS's and the parser's errors in `http1_errors`) and `AiohttpClient`
(`aiohttp_client`, its translation of aiohttp's exceptions `translate_errors`). Both bound their
connections with a `ConnectionLimiter`. Dependencies point one way: streaming <- transport <-
providers.
"""

from gateway.transport.aiohttp_client import AiohttpClient, AiohttpResponse, create_session
from gateway.transport.aiohttp_errors import translate_errors
from gateway.transport.client import HTTPClient, HTTPResponse, PoolStats
from gateway.transport.http1_client import Http1Client, Http1Response
from gateway.transport.limiter import ConnectionLimiter

__all__ = [
    "AiohttpClient",
    "AiohttpResponse",
    "ConnectionLimiter",
    "HTTPClient",
    "HTTPResponse",
    "Http1Client",
    "Http1Response",
    "PoolStats",
    "create_session",
    "translate_errors",
]
