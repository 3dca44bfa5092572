"""OpenAI Responses (`POST /v1/responses`): the API of the `openai` SDK's `responses`, the
OpenAI Agents SDK and the Vercel AI SDK's default OpenAI model. Streams are typed events
ended by `response.completed` / `response.incomplete` / `response.failed`.

A cut Responses stream is not continued by prefill: the API has no way to ask a model to go on
with a partial message, so `splice` is None and a cut ends as one error event."""

from gateway.apis.base import Api
from gateway.apis.openai_responses.dialect import ResponsesDialect, ResponsesTracker
from gateway.apis.openai_responses.follow_ups import FOLLOW_UPS, FollowUp
from gateway.apis.openai_responses.mock_wire import ResponsesMockWire
from gateway.apis.openai_responses.request import ResponsesRequest

__all__ = [
    "FOLLOW_UPS",
    "OPENAI_RESPONSES",
    "FollowUp",
    "ResponsesDialect",
    "ResponsesMockWire",
    "ResponsesRequest",
    "ResponsesTracker",
]

OPENAI_RESPONSES = Api(
    name="responses",
    path="/v1/responses",
    upstream_path="/responses",
    dialect=ResponsesDialect(),
    request=ResponsesRequest,
    mock_wire=ResponsesMockWire,
    stored_answers=True,
)
