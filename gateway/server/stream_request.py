"""`KeptRequest`: what a resumable stream keeps of the request it answers, so that a replica
that takes the stream over (its producer died, `gateway.server.stream_takeover`) can continue
the answer on the route's targets.

It is the client's request as its targets get it (`CallTemplate`: the body as validated at
the edge, the client's API and model name, the forwarded headers - never credentials - and the
request's timeout overrides) and the route's name, encoded as one JSON object. The key that
owns it is the stream's own (`StreamInfo.owner`). It is kept only for a stream the route could
continue (targets with `prefill` and `continuations` left: else nothing could use it) and
only within `limits.max_request_bytes`; the store keeps it as long as the stream's events.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.apis import APIS, Api
from gateway.routing import CallTemplate, Route
from gateway.routing.continuation import splice_for

__all__ = ["KeptRequest", "keep_request"]


def keep_request(template: CallTemplate, route: Route, limit: int) -> bytes:
    """`template` encoded to be kept with its stream; b"": not worth keeping (the route cannot
    continue its stream) or over `limit` bytes."""
    if splice_for(route, template) is None:
        return b""
    value = {
        "api": template.api.name,
        "route": route.name,
        "model": template.model,
        "path": template.path,
        "body": template.body,
        "headers": dict(template.headers),
        "overrides": dict(template.overrides),
    }
    try:
        data = orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: integers beyond 64 bits, deep nesting
        data = json.dumps(value, ensure_ascii=False).encode()
    return data if len(data) <= limit else b""


@dataclass(frozen=True, slots=True)
class KeptRequest:
    """A kept request, read back (`read`)."""

    api: Api
    route: str
    template: CallTemplate

    @classmethod
    def read(cls, data: bytes, request_id: str) -> KeptRequest | None:
        """The request `keep_request` encoded as `data` (made again for the call
        `request_id`); None: none was kept, or it is not one (another version wrote it)."""
        if not data:
            return None
        try:
            value = json.loads(data)
            api = next(api for api in APIS if api.name == value["api"])
            body, headers, overrides = value["body"], value["headers"], value["overrides"]
            if not (_mapping(body) and _mapping(headers) and _mapping(overrides)):
                return None
            template = CallTemplate(
                path=str(value["path"]),
                body=body,
                model=str(value["model"]),
                stream=True,
                api=api,
                request_id=request_id,
                headers={str(k): str(v) for k, v in headers.items()},
                overrides={str(k): float(v) for k, v in overrides.items()},
            )
            route = str(value["route"])
        except (ValueError, KeyError, TypeError, StopIteration):
            return None
        return cls(api, route, template)


def _mapping(value: Any) -> bool:
    return isinstance(value, Mapping)
