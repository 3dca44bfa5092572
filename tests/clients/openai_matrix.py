"""What one installed openai-python sees of the gateway, printed as one JSON object.

    python openai_matrix.py BASE_URL GROUP

run by `tests/e2e/test_openai_versions.py` with the python of each openai major's virtualenv
(`.ci/install-openai-matrix`), so it imports nothing but `openai` and the standard library, and
uses only the API that openai 1.66 and later share. GROUP picks the calls:

- `answers`: a chat stream, a chat completion, `responses.create(stream=True)` and
  `responses.stream()` on the mock, each as its text and how it ended;
- `errors`: calls the gateway refuses before the first byte (`mock-429`, `mock-400`, a model
  no route serves), on chat and on responses, each as the exception raised;
- `cuts`: streams the mock cuts mid-answer (`mock-cut`), on chat and on both Responses
  streaming calls, each as the text received before the exception raised - or, were it to
  end quietly, as a completed stream;
- `embeddings`: one input of 8 dimensions as floats, as base64 (the SDK leaves it encoded)
  and with no `encoding_format` (the SDK asks for base64 and decodes it).

The output has `version` (`openai.__version__`) and one entry per call. A call that raises
gives `raised`: its class's name, whether it is an `APIError` / an `APIStatusError`, its status
and `code`. The client never retries and never leaves 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import struct
import sys
from collections.abc import Callable
from typing import Any

import openai

PROMPT = "hi there"
MESSAGES: Any = [{"role": "user", "content": PROMPT}]
DIMENSIONS = 8


def raised(error: Exception) -> dict[str, Any]:
    return {
        "type": type(error).__name__,
        "api_error": isinstance(error, openai.APIError),
        "status_error": isinstance(error, openai.APIStatusError),
        "status": getattr(error, "status_code", None),
        "code": getattr(error, "code", None),
    }


def run(call: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """`call` fills in what it saw; an exception it raises is recorded beside that."""
    seen: dict[str, Any] = {"text": ""}
    try:
        call(seen)
    except Exception as error:
        seen["raised"] = raised(error)
    return seen


def chat_stream(client: openai.OpenAI, model: str) -> Callable[[dict[str, Any]], None]:
    def call(seen: dict[str, Any]) -> None:
        seen["finish_reason"] = None
        seen["completed"] = False
        with client.chat.completions.create(model=model, messages=MESSAGES, stream=True) as stream:
            for chunk in stream:
                for choice in chunk.choices:
                    seen["text"] += choice.delta.content or ""
                    seen["finish_reason"] = choice.finish_reason or seen["finish_reason"]
        seen["completed"] = True

    return call


def chat_json(client: openai.OpenAI, model: str) -> Callable[[dict[str, Any]], None]:
    def call(seen: dict[str, Any]) -> None:
        completion = client.chat.completions.create(model=model, messages=MESSAGES)
        seen["text"] = completion.choices[0].message.content
        seen["finish_reason"] = completion.choices[0].finish_reason
        seen["completion_tokens"] = completion.usage.completion_tokens if completion.usage else None

    return call


def responses_create_stream(client: openai.OpenAI, model: str) -> Callable[[dict[str, Any]], None]:
    def call(seen: dict[str, Any]) -> None:
        seen["last_event"] = None
        seen["completed"] = False
        with client.responses.create(model=model, input=PROMPT, stream=True) as stream:
            for event in stream:
                seen["last_event"] = event.type
                if event.type == "response.output_text.delta":
                    seen["text"] += event.delta
        seen["completed"] = True

    return call


def responses_stream(client: openai.OpenAI, model: str) -> Callable[[dict[str, Any]], None]:
    def call(seen: dict[str, Any]) -> None:
        seen["completed"] = False
        with client.responses.stream(model=model, input=PROMPT) as stream:
            for event in stream:
                if event.type == "response.output_text.delta":
                    seen["text"] += event.delta
            final = stream.get_final_response()
        seen["completed"] = True
        seen["final_text"] = final.output_text
        seen["status"] = final.status

    return call


def embeddings(client: openai.OpenAI, encoding: str | None) -> Callable[[dict[str, Any]], None]:
    def call(seen: dict[str, Any]) -> None:
        extra: Any = {} if encoding is None else {"encoding_format": encoding}
        answer = client.embeddings.create(
            model="mock", input=PROMPT, dimensions=DIMENSIONS, **extra
        )
        embedding: Any = answer.data[0].embedding
        seen["as_given"] = type(embedding).__name__
        if isinstance(embedding, str):  # base64 asked for: little-endian float32s
            raw = base64.b64decode(embedding)
            embedding = list(struct.unpack(f"<{len(raw) // 4}f", raw))
        seen["embedding"] = [float(value) for value in embedding]
        seen["prompt_tokens"] = answer.usage.prompt_tokens

    return call


def calls(client: openai.OpenAI, group: str) -> dict[str, Callable[[dict[str, Any]], None]]:
    if group == "answers":
        return {
            "chat_stream": chat_stream(client, "mock"),
            "chat_json": chat_json(client, "mock"),
            "responses_create_stream": responses_create_stream(client, "mock"),
            "responses_stream": responses_stream(client, "mock"),
        }
    if group == "errors":
        return {
            f"{api}:{model}": call(client, model)
            for model in ("mock-429", "mock-400", "no-such-model")
            for api, call in (("chat", chat_stream), ("responses", responses_create_stream))
        }
    if group == "cuts":
        return {
            "chat_stream": chat_stream(client, "mock-cut"),
            "responses_create_stream": responses_create_stream(client, "mock-cut"),
            "responses_stream": responses_stream(client, "mock-cut"),
        }
    if group == "embeddings":
        return {
            "float": embeddings(client, "float"),
            "base64": embeddings(client, "base64"),
            "default": embeddings(client, None),
        }
    raise SystemExit(f"unknown group {group!r}")


def main(base_url: str, group: str) -> None:
    report: dict[str, Any] = {"version": openai.__version__}
    with openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=20) as client:
        for name, call in calls(client, group).items():
            report[name] = run(call)
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main(*sys.argv[1:])
