"""The fields of a client's request that the gateway reads at the edge, for every API.

Each API's request model (`gateway.apis.<api>.request`) subclasses `EdgeRequest`: a pydantic
model that names the fields the gateway relies on (`model`, `stream`) or that the API requires,
and allows every other field, which is forwarded as the client wrote it. `validated` turns the
first problem into a 400 naming its place.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

from gateway.errors import InvalidRequest

__all__ = ["EdgeRequest", "WholeAnswerRequest", "validated"]

Fields = TypeVar("Fields", bound=BaseModel)


class EdgeRequest(BaseModel):
    """What the gateway reads of any API's request: the model routed on, and whether the
    answer streams."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256)
    stream: StrictBool = False

    @property
    def continues(self) -> str | None:
        """The id of the stored answer this request continues (Responses'
        `previous_response_id`): only the upstream holding it may answer. None: a new one."""
        return None


class WholeAnswerRequest(EdgeRequest):
    """A request of an API that never streams (embeddings, token counts): `stream: true` is a
    400, not a stream that would never come."""

    @field_validator("stream")
    @classmethod
    def _never_streams(cls, stream: bool) -> bool:
        if stream:
            raise ValueError("this endpoint does not stream")
        return stream


def validated(fields: type[Fields], body: dict[str, Any]) -> Fields:
    """`body` validated as `fields`; the first problem, with its place, becomes a 400."""
    try:
        return fields.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise InvalidRequest(f"invalid request: {where}: {first['msg']}") from None
