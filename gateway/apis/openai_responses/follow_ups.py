"""The follow-ups of a stored Responses response: the endpoints about one response id that only
the upstream holding it can answer (`gateway.server.stored_answers` sends them there).

`GET /v1/responses/{id}` (with `?stream=true&starting_after=N`: a background response's events
after N, then its live tail), `DELETE /v1/responses/{id}`, `POST /v1/responses/{id}/cancel`
and `GET /v1/responses/{id}/input_items`. Each is one `FollowUp` value.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CANCEL", "DELETE", "FOLLOW_UPS", "INPUT_ITEMS", "RETRIEVE", "FollowUp"]


@dataclass(frozen=True, slots=True)
class FollowUp:
    """One follow-up endpoint about a stored response."""

    name: str  # the `endpoint` label of metrics and log lines (a closed set)
    method: str
    suffix: str  # after `/responses/{id}`
    #: It forgets the id once the upstream answered it (a `DELETE`).
    forgets: bool = False
    #: It answers with the response's event stream when asked (`?stream=true`).
    streams: bool = False

    @property
    def path(self) -> str:
        return "/v1/responses/{response_id}" + self.suffix

    @property
    def endpoint(self) -> str:
        return f"{self.method} {self.path.replace('{response_id}', '{id}')}"


RETRIEVE = FollowUp("responses_retrieve", "GET", "", streams=True)
DELETE = FollowUp("responses_delete", "DELETE", "", forgets=True)
CANCEL = FollowUp("responses_cancel", "POST", "/cancel")
INPUT_ITEMS = FollowUp("responses_input_items", "GET", "/input_items")
FOLLOW_UPS = (RETRIEVE, DELETE, CANCEL, INPUT_ITEMS)
