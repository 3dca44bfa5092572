"""The built-in mock is a stateful Responses upstream (gateway/providers/mock_responses.py):
opened directly with the `UpstreamRequest`s the gateway sends it, it stores what it answers and
serves `previous_response_id`, `GET`/`DELETE /responses/{id}`, `POST /responses/{id}/cancel`,
`GET /responses/{id}/input_items` and background mode, with OpenAI's shapes and errors.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.apis import APIS, OPENAI_RESPONSES
from gateway.apis.openai_responses import ResponsesMockWire
from gateway.errors import ResourceNotFound, UpstreamBadRequest
from gateway.providers import Provider, UpstreamRequest, UpstreamResponse
from gateway.providers.mock import MockProvider
from gateway.providers.mock_responses import (
    MAX_STORED_RESPONSES,
    MockEvent,
    MockEvents,
    ResponseStore,
)
from gateway.settings import LimitSettings, MockSettings, UpstreamSettings
from gateway.streaming import Context, SSEDecoder, Timeouts

#: The last event a complete Responses stream ends with.
COMPLETED = "response.completed"


def mock_provider(chunk_delay: float = 0.0, slow_chunk_delay: float = 1.0) -> Provider:
    mock = MockSettings(chunk_delay=chunk_delay, slow_chunk_delay=slow_chunk_delay)
    return MockProvider("mock", UpstreamSettings(kind="mock", mock=mock), LimitSettings())


def background_tasks() -> list[asyncio.Task[Any]]:
    return [task for task in asyncio.all_tasks() if task.get_name().startswith("mock resp_")]


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    subject = mock_provider()
    yield subject
    await subject.aclose()
    assert background_tasks() == []  # aclose leaves no background response generating


@pytest.fixture
async def slow() -> AsyncIterator[Provider]:
    """A mock whose `mock-slow` takes 0.2 s a word: a background answer is long in progress."""
    subject = mock_provider(slow_chunk_delay=0.2)
    yield subject
    await subject.aclose()
    assert background_tasks() == []


@pytest.fixture
async def ctx() -> AsyncIterator[Context]:
    context = Context.with_timeout(30)
    yield context
    context.close()


# --- calls, as the gateway sends them ----------------------------------------------------------


def create_call(stream: bool = False, **fields: Any) -> UpstreamRequest:
    body = {"model": "mock", "input": "hello there", "stream": stream, **fields}
    return UpstreamRequest(
        path="/responses",
        body=json.dumps(body).encode(),
        model=body["model"],
        stream=stream,
        timeouts=Timeouts(),
        api=OPENAI_RESPONSES,
    )


def resource_call(method: str, path: str, stream: bool = False) -> UpstreamRequest:
    return UpstreamRequest(
        path=path,
        body=b"",
        model="",
        stream=stream,
        timeouts=Timeouts(),
        api=OPENAI_RESPONSES,
        method=method,
        resource_call=True,
    )


async def read(response: UpstreamResponse) -> bytes:
    try:
        return b"".join([chunk async for chunk in response.chunks()])
    finally:
        await response.aclose()


async def json_of(provider: Provider, ctx: Context, request: UpstreamRequest) -> Any:
    return json.loads(await read(await provider.open(ctx, request)))


async def create(provider: Provider, ctx: Context, **fields: Any) -> dict[str, Any]:
    response: dict[str, Any] = await json_of(provider, ctx, create_call(**fields))
    return response


async def retrieve(provider: Provider, ctx: Context, response_id: str) -> dict[str, Any]:
    response: dict[str, Any] = await json_of(
        provider, ctx, resource_call("GET", f"/responses/{response_id}")
    )
    return response


def events_of(body: bytes) -> list[dict[str, Any]]:
    decoder = SSEDecoder()
    events = [*decoder.feed(body), *decoder.finish()]
    payloads = [json.loads(event.data) for event in events if event.data is not None]
    assert [event.event for event in events] == [payload["type"] for payload in payloads]
    return payloads


async def first_events(response: UpstreamResponse, count: int) -> list[dict[str, Any]]:
    """The first `count` events of a stream, which is then closed."""
    decoder = SSEDecoder()
    payloads: list[dict[str, Any]] = []
    try:
        async for chunk in response.chunks():
            payloads += [json.loads(event.data or "") for event in decoder.feed(chunk)]
            if len(payloads) >= count:
                return payloads[:count]
    finally:
        await response.aclose()
    raise AssertionError(f"the stream ended after {len(payloads)} events")


def text_of(response: dict[str, Any]) -> str:
    text: str = response["output"][0]["content"][0]["text"]
    return text


async def until_status(
    provider: Provider, ctx: Context, response_id: str, status: str
) -> dict[str, Any]:
    """Poll the response as a client does, until its status is `status`."""
    for _attempt in range(1000):
        response = await retrieve(provider, ctx, response_id)
        if response["status"] == status:
            return response
        await asyncio.sleep(0.01)
    raise AssertionError(f"{response_id} never became {status}")


# --- create and retrieve -----------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_a_created_response_is_retrieved_as_it_ended(
    provider: Provider, ctx: Context, stream: bool
) -> None:
    body = await read(await provider.open(ctx, create_call(stream=stream, instructions="Be kind")))
    created = events_of(body)[-1]["response"] if stream else json.loads(body)

    retrieved = await retrieve(provider, ctx, created["id"])

    assert retrieved == created
    assert retrieved["status"] == "completed"
    assert (retrieved["store"], retrieved["background"]) == (True, False)
    assert (retrieved["previous_response_id"], retrieved["instructions"]) == (None, "Be kind")
    assert text_of(retrieved).endswith("You said: hello there")
    assert retrieved["usage"]["output_tokens"] == len(text_of(retrieved).split())


# --- previous_response_id ----------------------------------------------------------------------


async def test_a_continued_conversation_answers_knowing_the_earlier_turns(
    provider: Provider, ctx: Context
) -> None:
    first = await create(provider, ctx, input="what is a gateway")
    second = await create(provider, ctx, input="and a relay", previous_response_id=first["id"])
    third = await create(provider, ctx, input="thanks", previous_response_id=second["id"])
    unrelated = await create(provider, ctx, input="and a relay")

    assert second["previous_response_id"] == first["id"]
    assert text_of(second).endswith(
        "You said: and a relay (turn 2 of our conversation; before, you said: what is a gateway)"
    )
    assert text_of(third).endswith(
        "You said: thanks (turn 3 of our conversation; before, you said: and a relay)"
    )
    assert "turn" not in text_of(first) + text_of(unrelated)
    assert text_of(unrelated) != text_of(second)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_an_unknown_previous_response_is_refused_with_openais_code(
    provider: Provider, ctx: Context, stream: bool
) -> None:
    with pytest.raises(UpstreamBadRequest) as caught:
        await provider.open(ctx, create_call(stream, previous_response_id="resp_nope"))

    assert caught.value.message == "Previous response with id 'resp_nope' not found."
    assert caught.value.upstream_code == "previous_response_not_found"
    assert caught.value.param == "previous_response_id"


# --- delete and unknown ids --------------------------------------------------------------------


async def test_a_deleted_response_is_not_found_afterwards(provider: Provider, ctx: Context) -> None:
    created = await create(provider, ctx)
    path = f"/responses/{created['id']}"

    deleted = await json_of(provider, ctx, resource_call("DELETE", path))

    assert deleted == {"id": created["id"], "object": "response", "deleted": True}
    for method, after in [("GET", ""), ("DELETE", ""), ("GET", "/input_items")]:
        with pytest.raises(ResourceNotFound) as caught:
            await provider.open(ctx, resource_call(method, path + after))
        assert caught.value.message == f"Response with id '{created['id']}' not found."
    with pytest.raises(UpstreamBadRequest, match="Previous response with id"):
        await create(provider, ctx, previous_response_id=created["id"])


@pytest.mark.parametrize(
    ("method", "path", "stream"),
    [
        ("GET", "/responses/resp_nope", False),
        ("GET", "/responses/resp_nope?stream=true&starting_after=3", True),
        ("DELETE", "/responses/resp_nope", False),
        ("POST", "/responses/resp_nope/cancel", False),
        ("GET", "/responses/resp_nope/input_items?limit=2", False),
    ],
)
async def test_an_unknown_id_is_not_found_on_every_resource_call(
    provider: Provider, ctx: Context, method: str, path: str, stream: bool
) -> None:
    with pytest.raises(ResourceNotFound) as caught:
        await provider.open(ctx, resource_call(method, path, stream))

    assert caught.value.message == "Response with id 'resp_nope' not found."
    assert caught.value.http_status == 404


# --- input items -------------------------------------------------------------------------------


async def test_input_items_are_listed_newest_first_in_openais_list_shape(
    provider: Provider, ctx: Context
) -> None:
    created = await create(provider, ctx, input="just this")

    listed = await json_of(
        provider, ctx, resource_call("GET", f"/responses/{created['id']}/input_items")
    )

    [item] = listed["data"]
    assert item["id"].startswith("msg_")
    assert (item["type"], item["role"], item["status"]) == ("message", "user", "completed")
    assert item["content"] == [{"type": "input_text", "text": "just this"}]
    assert listed == {
        "object": "list",
        "data": [item],
        "first_id": item["id"],
        "last_id": item["id"],
        "has_more": False,
    }


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_input_items_paginate_with_limit_and_after_in_either_order(
    provider: Provider, ctx: Context, order: str
) -> None:
    given = [
        {"role": "user", "content": f"message {n}"}
        if n % 2
        else {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": f"message {n}"}],
        }
        for n in range(5)
    ]
    created = await create(provider, ctx, input=given)
    path = f"/responses/{created['id']}/input_items?limit=2&order={order}"

    pages = [await json_of(provider, ctx, resource_call("GET", path))]
    while pages[-1]["has_more"]:
        after = pages[-1]["last_id"]
        pages.append(await json_of(provider, ctx, resource_call("GET", f"{path}&after={after}")))

    texts = [item["content"][0]["text"] for page in pages for item in page["data"]]
    expected = [f"message {n}" for n in range(5)]
    assert texts == (expected if order == "asc" else expected[::-1])
    assert [len(page["data"]) for page in pages] == [2, 2, 1]
    assert [page["has_more"] for page in pages] == [True, True, False]
    assert all(page["first_id"] == page["data"][0]["id"] for page in pages)
    ids = [item["id"] for page in pages for item in page["data"]]
    assert len(set(ids)) == 5


# --- background mode ---------------------------------------------------------------------------


async def test_a_background_create_answers_queued_at_once_then_completes_unread(
    provider: Provider, ctx: Context
) -> None:
    created = await create(provider, ctx, background=True)

    assert (created["status"], created["background"], created["output"]) == ("queued", True, [])
    completed = await until_status(provider, ctx, created["id"], "completed")
    assert text_of(completed).endswith("You said: hello there")
    assert completed["usage"]["output_tokens"] > 0
    replay = events_of(
        await read(
            await provider.open(
                ctx, resource_call("GET", f"/responses/{created['id']}?stream=true", stream=True)
            )
        )
    )
    assert [event["sequence_number"] for event in replay] == list(range(len(replay)))
    assert [event["type"] for event in replay[:3]] == [
        "response.created",
        "response.queued",
        "response.in_progress",
    ]
    assert replay[0]["response"]["status"] == "queued"
    assert replay[-1] == {
        "type": COMPLETED,
        "sequence_number": len(replay) - 1,
        "response": completed,
    }


@pytest.mark.parametrize("model", ["mock", "mock-cut"])
async def test_a_background_stream_resumed_after_its_third_event_gets_exactly_the_rest(
    ctx: Context, model: str
) -> None:
    provider = mock_provider(chunk_delay=0.01)
    try:
        stream = await provider.open(ctx, create_call(stream=True, background=True, model=model))
        head = await first_events(stream, 3)  # the reader goes away after three events
        response_id = head[0]["response"]["id"]
        resume = (
            f"/responses/{response_id}?stream=true&starting_after={head[-1]['sequence_number']}"
        )

        rest = events_of(await read(await provider.open(ctx, resource_call("GET", resume, True))))
        whole = events_of(
            await read(
                await provider.open(
                    ctx, resource_call("GET", f"/responses/{response_id}?stream=true", True)
                )
            )
        )

        numbers = [event["sequence_number"] for event in head + rest]
        assert numbers == list(range(len(numbers)))  # no gap, no duplicate, in order
        assert head + rest == whole
        assert rest[-1]["type"] == COMPLETED
        assert rest[-1]["response"] == await retrieve(provider, ctx, response_id)
    finally:
        await provider.aclose()


async def test_a_misbehaving_model_misbehaves_on_the_background_create_stream_only(
    provider: Provider, ctx: Context
) -> None:
    created = events_of(
        await read(
            await provider.open(ctx, create_call(stream=True, background=True, model="mock-cut"))
        )
    )

    assert COMPLETED not in [event["type"] for event in created]  # cut on its way out
    response_id = created[0]["response"]["id"]
    assert (await until_status(provider, ctx, response_id, "completed"))["usage"] is not None


async def test_cancelling_a_background_response_in_progress_ends_it_and_its_stream(
    slow: Provider, ctx: Context
) -> None:
    stream = await slow.open(ctx, create_call(stream=True, background=True, model="mock-slow"))
    chunks = stream.chunks()
    decoder = SSEDecoder()
    seen: list[dict[str, Any]] = []
    while not any(event["type"] == "response.output_text.delta" for event in seen):
        seen += [json.loads(event.data or "") for event in decoder.feed(await anext(chunks))]
    response_id = seen[0]["response"]["id"]

    cancelled = await json_of(slow, ctx, resource_call("POST", f"/responses/{response_id}/cancel"))

    assert (cancelled["id"], cancelled["status"]) == (response_id, "cancelled")
    rest = events_of(await read(stream))  # the open stream ends, with the cancellation
    assert rest[-1]["type"] == "response.incomplete"
    assert rest[-1]["response"] == cancelled
    numbers = [event["sequence_number"] for event in seen + rest]
    assert numbers == list(range(len(numbers)))
    assert await retrieve(slow, ctx, response_id) == cancelled
    again = await json_of(slow, ctx, resource_call("POST", f"/responses/{response_id}/cancel"))
    assert again == cancelled  # cancelling what is over answers it unchanged
    assert background_tasks() == []


async def test_cancelling_a_queued_background_response_ends_it_cancelled(
    slow: Provider, ctx: Context
) -> None:
    created = await create(slow, ctx, background=True, model="mock-slow")

    cancelled = await json_of(
        slow, ctx, resource_call("POST", f"/responses/{created['id']}/cancel")
    )

    assert (cancelled["status"], cancelled["output"]) == ("cancelled", [])
    replay = events_of(
        await read(
            await slow.open(
                ctx, resource_call("GET", f"/responses/{created['id']}?stream=true", True)
            )
        )
    )
    assert [event["type"] for event in replay] == [
        "response.created",
        "response.queued",
        "response.incomplete",
    ]


async def test_cancelling_a_response_not_created_in_the_background_is_a_bad_request(
    provider: Provider, ctx: Context
) -> None:
    created = await create(provider, ctx)

    with pytest.raises(UpstreamBadRequest) as caught:
        await provider.open(ctx, resource_call("POST", f"/responses/{created['id']}/cancel"))

    assert caught.value.message == "Cannot cancel a synchronous response."
    assert (await retrieve(provider, ctx, created["id"]))["status"] == "completed"


async def test_streaming_a_response_not_created_in_the_background_again_is_a_bad_request(
    provider: Provider, ctx: Context
) -> None:
    created = await create(provider, ctx)
    path = f"/responses/{created['id']}?stream=true&starting_after=2"

    with pytest.raises(UpstreamBadRequest, match="background=true"):
        await provider.open(ctx, resource_call("GET", path, stream=True))


async def test_closing_a_foreground_stream_stops_its_generation(
    provider: Provider, ctx: Context
) -> None:
    head = await first_events(await provider.open(ctx, create_call(stream=True)), 6)
    response_id = head[0]["response"]["id"]
    await asyncio.sleep(0.05)  # time the mock would need to finish, were it still generating

    stopped = await retrieve(provider, ctx, response_id)

    assert stopped["status"] == "cancelled"
    assert stopped["output"][0]["status"] == "incomplete"


async def test_aclose_stops_the_background_responses_and_ends_their_streams(
    ctx: Context,
) -> None:
    provider = mock_provider(slow_chunk_delay=0.2)
    stream = await provider.open(ctx, create_call(stream=True, background=True, model="mock-slow"))
    assert len(background_tasks()) == 1

    await provider.aclose()

    assert background_tasks() == []
    assert "response.completed" not in [event["type"] for event in events_of(await read(stream))]


# --- store -------------------------------------------------------------------------------------


async def test_a_response_created_with_store_false_is_not_kept(
    provider: Provider, ctx: Context
) -> None:
    created = await create(provider, ctx, store=False)

    assert (created["status"], created["store"]) == ("completed", False)
    with pytest.raises(ResourceNotFound):
        await retrieve(provider, ctx, created["id"])
    with pytest.raises(UpstreamBadRequest, match="Previous response"):
        await create(provider, ctx, previous_response_id=created["id"])


async def test_background_mode_with_store_false_is_refused(
    provider: Provider, ctx: Context
) -> None:
    with pytest.raises(UpstreamBadRequest) as caught:
        await provider.open(ctx, create_call(background=True, store=False))

    assert caught.value.param == "store"
    assert background_tasks() == []


async def test_the_store_keeps_its_capacity_and_evicts_the_oldest_first() -> None:
    store = ResponseStore(capacity=2)
    wires = [ResponsesMockWire("mock", {"input": f"turn {n}"}) for n in range(3)]
    stored = [store.begin(wire) for wire in wires]

    assert len(store) == 2
    with pytest.raises(ResourceNotFound):
        store.answer("GET", f"/responses/{stored[0].id}", stream=False)
    for kept in stored[1:]:
        store.answer("GET", f"/responses/{kept.id}", stream=False)


async def test_evicting_a_background_response_in_progress_cancels_it() -> None:
    store = ResponseStore(capacity=1)
    running = store.begin(ResponsesMockWire("mock", {"input": "x", "background": True}))

    async def never_ending() -> MockEvents:
        await asyncio.Event().wait()
        yield MockEvent(b"")

    store.run_in_background(running, never_ending())
    store.begin(ResponsesMockWire("mock", {"input": "y"}))
    await asyncio.gather(running.task or asyncio.sleep(0), return_exceptions=True)

    assert running.wire.status == "cancelled"
    assert running.task is not None
    assert running.task.cancelled()
    await store.aclose()


async def test_the_providers_store_is_bounded(provider: Provider, ctx: Context) -> None:
    ids = [(await create(provider, ctx))["id"] for _ in range(MAX_STORED_RESPONSES + 1)]

    with pytest.raises(ResourceNotFound):
        await retrieve(provider, ctx, ids[0])
    assert (await retrieve(provider, ctx, ids[1]))["id"] == ids[1]


# --- mock-400 on every API ---------------------------------------------------------------------

INPUT_FIELDS = {
    "chat_completions": "messages",
    "messages": "messages",
    "count_tokens": "messages",
    "responses": "input",
    "completions": "prompt",
    "embeddings": "input",
}


@pytest.mark.parametrize("api", APIS, ids=[api.name for api in APIS])
async def test_mock_400_names_the_apis_own_input_field(
    provider: Provider, ctx: Context, api: Any
) -> None:
    body = {"model": "mock-400", INPUT_FIELDS[api.name]: "hi"}
    request = UpstreamRequest(
        path=api.upstream_path,
        body=json.dumps(body).encode(),
        model="mock-400",
        stream=False,
        timeouts=Timeouts(),
        api=api,
    )

    with pytest.raises(UpstreamBadRequest) as caught:
        await provider.open(ctx, request)

    assert (caught.value.upstream_code, caught.value.param) == (
        "context_length_exceeded",
        INPUT_FIELDS[api.name],
    )
