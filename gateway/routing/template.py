"""`CallTemplate`: the client's request as every target of its route gets it.

The endpoint validates the client's body once; each attempt of the chain - a retry, a failover,
a continuation - turns the template into that target's `UpstreamRequest`: the target's model
name in the body (serialised per call), the fields that ask a stream for the usage its client
did not ask for (the API's `stream_usage`, on a target that takes them), the limits of that
target with the request's own overrides, and the client's forwarded headers. A target that
speaks another API than the client's gets the request translated into its own
(`gateway.translation`: the body encoded for its API, its API's path, no forwarded headers,
and the `TranslatedCall` its answer is translated back with).
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
from gateway.translation import EncodeOptions, translation_for

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
        upstream_api = target.api_for(self.api)
        if upstream_api is not None and upstream_api is not self.api:
            return self._translated(route, target, upstream_api, model, source, extra, on_sent)
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

    def _translated(
        self,
        route: Route,
        target: Target,
        upstream_api: Api,
        model: str,
        source: Mapping[str, Any],
        extra: Mapping[str, Any] | None,
        on_sent: Callable[[], None] | None,
    ) -> UpstreamRequest:
        """The call to `target` in `upstream_api`, translated from the client's API."""
        translation = translation_for(self.api, upstream_api)
        assert translation is not None  # `Target.api_for` found one
        options = EncodeOptions(
            drop_params=route.drop_params,
            default_max_tokens=target.default_max_tokens,
            prefill=target.prefill,
        )
        body = source if extra is None else {**source, **extra}
        translated, payload = translation.prepare(body, model=model, options=options)
        return UpstreamRequest(
            path=upstream_api.upstream_path,
            body=_serialise(payload),
            model=model,
            stream=self.stream,
            timeouts=route.timeouts_for(self.overrides, target),
            api=upstream_api,
            request_id=self.request_id,
            on_sent=on_sent,
            translated=translated,
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
