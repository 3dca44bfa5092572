"""`CallTemplate`: the client's request as every target of its route gets it.

The endpoint validates the client's body once; each attempt of the chain - a retry, a failover,
a continuation - turns the template into that target's `UpstreamRequest`: the target's model
name in the body (serialised per call), the fields that ask a stream for the usage its client
did not ask for (the API's `stream_usage`, on a target that takes them), the limits of that
target with the request's own overrides, and the client's forwarded headers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.apis import Api
from gateway.providers import UpstreamRequest
from gateway.routing.router import Route, Target

__all__ = ["CallTemplate"]


@dataclass(frozen=True, slots=True)
class CallTemplate:
    """The client's request as every target gets it, but for the model name and limits."""

    path: str  # relative to the upstream's base URL
    body: Mapping[str, Any]  # the client's JSON body, as validated at the edge
    model: str  # the client's model name
    stream: bool
    api: Api  # the API the client called
    request_id: str = ""
    #: Headers of the client's request to pass on (already filtered: never credentials).
    headers: Mapping[str, str] = field(default_factory=dict)
    #: The request's own `x-gateway-*-timeout` limits.
    overrides: Mapping[str, float] = field(default_factory=dict)
    #: `POST`, or `GET` / `DELETE` of a resource.
    method: str = "POST"
    #: A call about a resource an upstream holds (a stored response): no body, no model.
    resource_call: bool = False

    def without_body(self) -> CallTemplate:
        """This template with an empty body: for a request that makes no more calls."""
        # Spelled out: `dataclasses.replace` costs twice as much, once per request.
        return CallTemplate(
            self.path,
            {},
            self.model,
            self.stream,
            self.api,
            self.request_id,
            self.headers,
            self.overrides,
            self.method,
            self.resource_call,
        )

    def for_target(
        self,
        route: Route,
        target: Target,
        body: Mapping[str, Any] | None = None,
        *,
        on_sent: Callable[[], None] | None = None,
    ) -> UpstreamRequest:
        """The call to `target`: its model name and limits, with `body` (default: the
        client's) serialised once per attempt, reporting to `on_sent` once it is sent. A
        resource call goes as it is: no body, no model name."""
        if self.resource_call:
            return UpstreamRequest(
                path=self.path,
                body=b"",
                model="",
                stream=self.stream,
                timeouts=route.timeouts_for(self.overrides, target),
                api=self.api,
                request_id=self.request_id,
                method=self.method,
                resource_call=True,
                headers=self.headers,
                on_sent=on_sent,
            )
        model = target.upstream_model(self.model)
        source = self.body if body is None else body
        extra = self.usage_fields(target, source)
        if extra is None:
            payload = {**source, "model": model}
        else:
            payload = {**source, **extra, "model": model}
        return UpstreamRequest(
            path=self.path,
            body=_serialise(payload),
            model=model,
            stream=self.stream,
            timeouts=route.timeouts_for(self.overrides, target),
            api=self.api,
            request_id=self.request_id,
            headers=self.headers,
            on_sent=on_sent,
        )

    def usage_fields(
        self, target: Target, body: Mapping[str, Any] | None = None
    ) -> Mapping[str, Any] | None:
        """The fields a call to `target` adds to `body` (default: the client's) to ask for the
        stream's usage, or None: not a stream, an API that reports it unasked, a target that
        does not take them (`stream_usage` off), or a client that asked already."""
        ask = self.api.stream_usage
        if ask is None or not self.stream or not target.stream_usage:
            return None
        return ask(self.body if body is None else body)


def _serialise(payload: Mapping[str, Any]) -> bytes:
    """`payload` as UTF-8 JSON: orjson (compact, several times faster), or `json` for what
    orjson will not write (integers beyond 64 bits, nesting deeper than 254)."""
    try:
        return orjson.dumps(payload)
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(payload, ensure_ascii=False).encode()
