"""The names the gateway's spans use: OpenTelemetry's GenAI, HTTP and database semantic
conventions, and the gateway's own (`gateway.*`).

One table of GenAI operations by the gateway's endpoint names (`gen_ai.operation.name`); an
endpoint it does not name (a stored response's follow-up, `count_tokens`) is its own operation.
"""

from __future__ import annotations

__all__ = [
    "ERROR_TYPE",
    "GATEWAY_ATTEMPT",
    "GATEWAY_ATTEMPTS",
    "GATEWAY_ATTEMPT_REASON",
    "GATEWAY_CONTINUATIONS",
    "GATEWAY_ERROR_CATEGORY",
    "GATEWAY_FAILOVERS",
    "GATEWAY_OUTCOME",
    "GATEWAY_REQUEST_ID",
    "GATEWAY_ROUTE",
    "GATEWAY_UPSTREAM",
    "GEN_AI_INPUT_MESSAGES",
    "GEN_AI_OPERATION",
    "GEN_AI_PROVIDER",
    "GEN_AI_REQUEST_MODEL",
    "GEN_AI_REQUEST_STREAM",
    "GEN_AI_RESPONSE_MODEL",
    "GEN_AI_SYSTEM",
    "GEN_AI_SYSTEM_INSTRUCTIONS",
    "GEN_AI_TIME_TO_FIRST_CHUNK",
    "GEN_AI_USAGE",
    "HTTP_METHOD",
    "HTTP_ROUTE",
    "HTTP_STATUS",
    "operation_of",
]

GEN_AI_OPERATION = "gen_ai.operation.name"
GEN_AI_PROVIDER = "gen_ai.provider.name"
GEN_AI_SYSTEM = "gen_ai.system"  # the older name of the provider, for backends that read it
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_REQUEST_STREAM = "gen_ai.request.stream"
GEN_AI_TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"  # seconds
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
#: The gateway's token kinds (`gateway.streaming.TOKEN_KINDS`) as GenAI usage attributes.
GEN_AI_USAGE = {
    "input": "gen_ai.usage.input_tokens",
    "output": "gen_ai.usage.output_tokens",
    "cached": "gen_ai.usage.cache_read.input_tokens",
    "reasoning": "gen_ai.usage.reasoning.output_tokens",
}

HTTP_METHOD = "http.request.method"
HTTP_ROUTE = "http.route"
HTTP_STATUS = "http.response.status_code"
ERROR_TYPE = "error.type"  # the gateway's error code (closed set)

GATEWAY_ROUTE = "gateway.route"
GATEWAY_UPSTREAM = "gateway.upstream"
GATEWAY_OUTCOME = "gateway.outcome"
GATEWAY_ERROR_CATEGORY = "gateway.error.category"
GATEWAY_REQUEST_ID = "gateway.request_id"
GATEWAY_ATTEMPTS = "gateway.attempts"
GATEWAY_FAILOVERS = "gateway.failovers"
GATEWAY_CONTINUATIONS = "gateway.continuations"
#: The call's number in its request (1: the first) and why it was made.
GATEWAY_ATTEMPT = "gateway.attempt"
GATEWAY_ATTEMPT_REASON = "gateway.attempt.reason"  # first, retry, failover, continuation

_OPERATIONS = {
    "chat_completions": "chat",
    "messages": "chat",
    "responses": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
}


def operation_of(endpoint: str) -> str:
    """The GenAI operation of a request to `endpoint` (the record's endpoint name)."""
    return _OPERATIONS.get(endpoint, endpoint)
