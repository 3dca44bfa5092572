"""The HTTP providers' adaptor: `HTTPProvider` (the URL, the key, the API's headers, the call
through the transport) and the one translation of upstream error answers into the gateway's
error tree.

`HTTPProvider` is what the `openai` and `anthropic` providers have in common; a subclass only
says which APIs it speaks, how its API expects the key by default (`Authorization: Bearer`
or `x-api-key`) and which headers the API wants besides (`anthropic-version`). The HTTP call
itself - pooled connections, the bound on them, sending, reading, and the one translation of
the HTTP library's exceptions - is the transport's (`gateway.transport`): a provider knows only
its `HTTPClient` interface.

`raise_for_upstream_status` reads an error answer (bounded) and raises what it stands for, with
a sanitised message for the statuses whose message is the client's business (400/422; OpenAI's
`{"error": {"message", "code", "param"}}` and Anthropic's `{"type": "error", "error": {"type",
"message"}}` are both understood) and the gateway's own message otherwise (no upstream HTML,
URLs or keys reach a client). Anthropic's 529 (overloaded) is a server error like any 5xx,
named as such. A 400 whose code is `content_filter` (Azure OpenAI's shape, with an
`innererror.content_filter_result`) keeps that code and gets the gateway's own message naming
the categories that fired.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar, Literal

from gateway.apis import Api
from gateway.errors import (
    RequestTooLarge,
    ResourceNotFound,
    UpstreamBadRequest,
    UpstreamProtocolError,
)
from gateway.observability import UPSTREAM_TRACE
from gateway.providers.upstream import Provider, UpstreamRequest, UpstreamResponse
from gateway.redaction import Redactor
from gateway.settings import LimitSettings, UpstreamSettings
from gateway.streaming import Context, error_for_status
from gateway.transport import Http1Client, HTTPClient, HTTPResponse

__all__ = [
    "CONTENT_FILTER",
    "HTTPProvider",
    "HTTPUpstreamResponse",
    "raise_for_upstream_status",
    "sanitize_message",
]

_URL = re.compile(r"https?://\S+", re.IGNORECASE)
_KEYLIKE = re.compile(r"\b(sk|pk|rk|key|api)[-_][A-Za-z0-9_\-]{8,}", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_CODE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_RETRY_AFTER = re.compile(
    r"^\s*(\d{1,7}(\.\d+)?|[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} [\d:]{8} GMT)\s*$"
)
_MAX_MESSAGE = 500
#: The code of a prompt refused by a content filter (Azure OpenAI's 400).
CONTENT_FILTER = "content_filter"
_CATEGORY = re.compile(r"^[a-z][a-z_\-]{0,31}$")
_SEVERITIES = frozenset({"safe", "low", "medium", "high"})
_MAX_RETRY_AFTER = 10_000_000  # seconds; the same 7 digits `_RETRY_AFTER` accepts
#: The gateway's own message for statuses that say more than "server error".
_STATUS_MESSAGES = {529: "the upstream is overloaded"}
#: Content types that cannot carry an event stream (an upstream that ignored `stream: true`, or
#: an error page with a 200). Anything else is given the benefit of the doubt and framed as SSE.
_NOT_A_STREAM = frozenset({"application/json", "text/html"})

AuthScheme = Literal["bearer", "x-api-key", "api-key"]


class HTTPProvider(Provider):
    """An upstream API reached over HTTP(S) through its own `HTTPClient` (pooled connections).

    The body is sent as the endpoint built it, to `base_url + request.path`, authenticated with
    the key from the settings only (never the client's). A subclass sets `default_auth_scheme`
    and may add its API's own headers in `api_headers`.
    """

    #: How the key is sent when the upstream's `auth_scheme` is not set.
    default_auth_scheme: ClassVar[AuthScheme] = "bearer"
    #: The APIs of the upstream's family (a subclass says which).
    spoken_apis: ClassVar[tuple[Api, ...]]

    def __init__(
        self,
        name: str,
        settings: UpstreamSettings,
        limits: LimitSettings,
        redactor: Redactor | None = None,
        *,
        client: HTTPClient | None = None,
    ) -> None:
        """`redactor` keeps every secret of the gateway out of the error answers this upstream's
        messages become (default: this upstream's own key). `client` is the transport the calls
        go through (default: an `Http1Client` with the upstream's `max_connections`)."""
        super().__init__(name, *_served(self.spoken_apis, settings.apis))
        assert settings.base_url is not None  # enforced by UpstreamSettings
        self.settings = settings
        self._base_url = str(settings.base_url).rstrip("/")
        if client is None:
            # None: as many as the gateway admits streams, so the pool is never the tighter
            # limit.
            client = Http1Client(settings.max_connections or limits.max_streams)
        self._client = client
        self._max_error_body = limits.max_error_body_bytes
        key = settings.api_key.get_secret_value() if settings.api_key else None
        self._auth = _auth_headers(key, settings.auth_scheme or self.default_auth_scheme)
        self._redactor = redactor if redactor is not None else Redactor([key] if key else [])

    def api_headers(self, request: UpstreamRequest) -> dict[str, str]:
        """Headers this API wants on every call, before the client's forwarded ones."""
        return {}

    def url_for(self, request: UpstreamRequest) -> str:
        """Where `request` goes: `base_url + request.path` unless the API lays out its URLs
        otherwise (Azure's deployment URLs)."""
        return self.base_url + request.path

    @property
    def base_url(self) -> str:
        """The upstream's base URL as configured, without a trailing `/`."""
        return self._base_url

    async def start(self) -> None:
        await self._client.start()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def open(self, ctx: Context, request: UpstreamRequest) -> UpstreamResponse:
        response = await self._client.send(
            request.method,
            self.url_for(request),
            body=request.body,
            headers=self._headers(request),
            stream=request.stream,
            connect=request.timeouts.connect,
            on_sent=request.on_sent,
            ctx=ctx,  # a call whose request ends while its head is awaited is closed at once
        )
        try:
            await raise_for_upstream_status(
                response,
                max_body=self._max_error_body,
                redactor=self._redactor,
                resource_call=request.resource_call,
            )
            if request.stream and response.content_type in _NOT_A_STREAM:
                raise UpstreamProtocolError(
                    f"the upstream answered a streaming request with {response.content_type}"
                )
        except BaseException as exc:
            await response.aclose()  # idempotent, and never waits in the aiohttp transport
            # Raised without the frames below (and this one's answer): the error is kept (the
            # request's record, the chain's last error) and their locals - the answer, its
            # error body, the transport's inflated buffers - would stay alive with it.
            del response
            raise exc.with_traceback(None)  # noqa: B904 - the same error, re-raised
        return HTTPUpstreamResponse(response)

    def _headers(self, request: UpstreamRequest) -> dict[str, str]:
        headers = {
            "Accept": "text/event-stream" if request.stream else "application/json",
            # Compressed SSE would be buffered by the decompressor: ask for identity.
            "Accept-Encoding": "identity" if request.stream else "gzip, deflate",
            **self.api_headers(request),
            **request.headers,
            **self._auth,
        }
        trace = UPSTREAM_TRACE.get()  # W3C trace context: the call's span's, or the client's
        if trace is not None:
            headers.update(trace)
        if request.body:
            headers["Content-Type"] = "application/json"
        if request.request_id:
            headers["X-Request-Id"] = request.request_id
        return headers


def _served(spoken: tuple[Api, ...], wanted: Sequence[str] | None) -> tuple[Api, ...]:
    """The APIs of `spoken` an upstream's `apis` setting keeps (None: all of them; the
    settings hold that it names some of them)."""
    return spoken if wanted is None else tuple(api for api in spoken if api.name in wanted)


def _auth_headers(key: str | None, scheme: AuthScheme) -> dict[str, str]:
    if not key:
        return {}
    if scheme in ("x-api-key", "api-key"):
        return {scheme: key}
    return {"Authorization": f"Bearer {key}"}


class HTTPUpstreamResponse(UpstreamResponse):
    """A 2xx answer of the transport, as the provider interface hands it on."""

    __slots__ = ("_response", "headers", "status")

    def __init__(self, response: HTTPResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers = response.headers

    def chunks(self) -> AsyncIterator[bytes]:
        return self._response.chunks()

    async def aclose(self) -> None:
        await self._response.aclose()

    def abort(self) -> None:
        self._response.abort()


async def raise_for_upstream_status(
    response: HTTPResponse,
    *,
    max_body: int,
    redactor: Redactor | None = None,
    resource_call: bool = False,
) -> None:
    """Raise the error a non-2xx upstream answer stands for, its body read at most `max_body`
    bytes (the caller closes the response). On a `resource_call` a 404 is `ResourceNotFound`
    with the upstream's sanitised message: the resource the client named is not there.

    What of the upstream's text reaches the client (message, code, param) passes `redactor`
    first: a code or param that held a secret's fragment is dropped, not shown redacted.
    """
    status = response.status
    if 200 <= status < 300:
        return
    body = await response.read_bounded(max_body)
    retry_after = _retry_after(response.headers)
    if status == 413:
        raise RequestTooLarge("the upstream rejected the request as too large")
    if status == 404 and resource_call:
        message, _, _ = _error_details(body, redactor)
        raise ResourceNotFound(sanitize_message(message, redactor) if message else None)
    if status in (400, 422):
        message, code, param = _error_details(body, redactor)
        if code == CONTENT_FILTER:
            message = _content_filter_message(body)
        raise UpstreamBadRequest(
            sanitize_message(message, redactor) if message else None,
            upstream_code=code,
            param=param,
        )
    error = error_for_status(status, _STATUS_MESSAGES.get(status), retry_after=retry_after)
    error.retry_delay = _retry_delay(response.headers)
    raise error


def _retry_delay(headers: Any) -> float | None:
    """The upstream's retry hint in seconds, as precise as it gave it: `retry-after-ms` first
    (OpenAI's), else `Retry-After` in seconds or as an HTTP date. None if neither is sane."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            seconds = float(millis) / 1000
        except ValueError:
            seconds = math.nan
        if math.isfinite(seconds) and 0 <= seconds < _MAX_RETRY_AFTER:
            return seconds
    value = headers.get("Retry-After")
    if value is None or not _RETRY_AFTER.match(value):
        return None
    text = str(value).strip()
    if text[0].isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _retry_after(headers: Any) -> str | None:
    """The upstream's retry hint as a `Retry-After` value, if it gave a sane one."""
    value = headers.get("Retry-After")
    if value is not None and _RETRY_AFTER.match(value):
        return str(value).strip()
    millis = headers.get("retry-after-ms")
    if millis is None:
        return None
    try:
        seconds = float(millis) / 1000
    except ValueError:
        return None
    if not (math.isfinite(seconds) and 0 <= seconds < _MAX_RETRY_AFTER):
        return None
    return str(max(1, math.ceil(seconds)))


def _error_details(
    body: bytes, redactor: Redactor | None = None
) -> tuple[str | None, str | None, str | None]:
    """(message, code, param) from an OpenAI- or Anthropic-shaped error body, if present; a
    code or param is kept only if it is a plain identifier with no fragment of a secret."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None, None, None
    if not isinstance(payload, dict):
        return None, None, None
    error = payload.get("error")
    if isinstance(error, str):
        return error, None, None
    if not isinstance(error, dict):
        message = payload.get("message")
        return (message if isinstance(message, str) else None), None, None
    message = error.get("message")
    return (
        message if isinstance(message, str) else None,
        _identifier(error.get("code"), redactor),
        _identifier(error.get("param"), redactor),
    )


def _content_filter_message(body: bytes) -> str:
    """The gateway's own message for a prompt a content filter refused, naming the categories
    that fired: Azure's `error.innererror.content_filter_result` (`{"hate": {"filtered": true,
    "severity": "high"}, "jailbreak": {"filtered": true, "detected": true}, ...}`). Only
    category names of Azure's shape and its four severities are shown."""
    error = json.loads(body)["error"]  # `_error_details` found the code there
    inner = error.get("innererror")
    results = inner.get("content_filter_result") if isinstance(inner, dict) else None
    fired = []
    for name, result in results.items() if isinstance(results, dict) else ():
        if not (_CATEGORY.match(name) and isinstance(result, dict) and result.get("filtered")):
            continue
        severity = result.get("severity")
        fired.append(f"{name} ({severity})" if severity in _SEVERITIES else name)
    message = "the prompt was rejected by the upstream's content filter"
    return f"{message}: {', '.join(fired)}" if fired else message


def _identifier(value: object, redactor: Redactor | None) -> str | None:
    """An upstream's `code` or `param` fit to relay: a short identifier holding no secret."""
    if not isinstance(value, str) or not _CODE.match(value):
        return None
    if redactor is not None and redactor.redact_text(value) is not value:
        return None
    return value


def sanitize_message(message: str, redactor: Redactor | None = None) -> str:
    """A provider message made safe to show: one line, capped, no URLs, no fragment of the
    gateway's secrets (`redactor`, by value) and no other key-like strings (by shape)."""
    if redactor is not None:
        message = redactor.redact_text(message)
    message = _URL.sub("[url]", message)
    message = _KEYLIKE.sub("[redacted]", message)
    message = _CONTROL.sub(" ", message).strip()
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 3] + "..."
    return message
