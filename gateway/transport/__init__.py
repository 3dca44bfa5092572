"""The transport: one HTTP call to an upstream and its body, without a provider knowing the HTTP
library underneath.

`HTTPClient` / `HTTPResponse` are the interface (`client`); `AiohttpClient` is the one
implementation (`aiohttp_client`), with its connection bound (`ConnectionLimiter`) and the one
translation of aiohttp's and the OS's exceptions into the gateway's error tree
(`translate_errors`). Dependencies point one way: streaming <- transport <- providers.
"""

from gateway.transport.aiohttp_client import AiohttpClient, AiohttpResponse, create_session
from gateway.transport.aiohttp_errors import translate_errors
from gateway.transport.client import HTTPClient, HTTPResponse
from gateway.transport.limiter import ConnectionLimiter

__all__ = [
    "AiohttpClient",
    "AiohttpResponse",
    "ConnectionLimiter",
    "HTTPClient",
    "HTTPResponse",
    "create_session",
    "translate_errors",
]
