"""The fields of a Responses request the gateway reads: `model`, `stream`, and what a later
turn or a background run is (`previous_response_id`, `background`); everything else (`input`,
`instructions`, tools...) is forwarded as the client wrote it."""

from __future__ import annotations

from pydantic import Field, StrictBool

from gateway.apis.request import EdgeRequest

__all__ = ["ResponsesRequest"]


class ResponsesRequest(EdgeRequest):
    """The fields of a Responses request that the gateway itself reads."""

    previous_response_id: str | None = Field(default=None, min_length=1, max_length=256)
    background: StrictBool = False

    @property
    def continues(self) -> str | None:
        return self.previous_response_id
