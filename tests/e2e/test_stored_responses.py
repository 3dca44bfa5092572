"""Stateful Responses through the gateway (contract section 1, issue 12 item 2), with the
official `openai` SDK in front of two stateful fake upstreams (`east`, `west`: each keeps what it
answered, as OpenAI does).

The promise: every follow-up of a stored response - a new turn (`previous_response_id`),
`retrieve` (and its resumed stream), `delete`, `cancel`, `input_items.list` - reaches the
upstream that made the response and no other, whatever the route's failover would do; an id
the gateway cannot place is a clear error (OpenAI's 400 `previous_response_not_found` for a
turn, a 404 for the rest), and no upstream is asked; another key's response does not exist for
the caller.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from gateway.settings.auth import hash_key
from tests.conftest import UPSTREAM_KEY, RunningGateway, StartGateway
from tests.observability.scrape import total, value
from tests.support.chain_gateway import FAST_RETRY, route, target
from tests.support.stored_responses import StoredResponsesUpstream

KEYS = {"alice": "sk-alice-key-0001", "bob": "sk-bob-key-00002"}


@pytest.fixture
async def east() -> AsyncIterator[StoredResponsesUpstream]:
    async with StoredResponsesUpstream("east", pace=0.05) as upstream:
        yield upstream


@pytest.fixture
async def west() -> AsyncIterator[StoredResponsesUpstream]:
    async with StoredResponsesUpstream("west", pace=0.05) as upstream:
        yield upstream


def settings(*routes: dict[str, Any], **upstreams: StoredResponsesUpstream) -> dict[str, Any]:
    return {
        "upstreams": {
            name: {"kind": "openai", "base_url": upstream.base_url, "api_key": UPSTREAM_KEY}
            for name, upstream in upstreams.items()
        },
        "routes": list(routes),
        "retry": FAST_RETRY,
        "auth": {
            "clients": [{"name": name, "key_hash": hash_key(key)} for name, key in KEYS.items()]
        },
    }


#: `duo` fails over from east to west; `east-only` and `west-only` have one target each.
ROUTES = (
    route("duo", target("m", "east"), target("m", "west")),
    route("east-only", target("m", "east")),
    route("west-only", target("m", "west")),
)


@pytest.fixture
async def gateway(
    start_gateway: StartGateway, east: StoredResponsesUpstream, west: StoredResponsesUpstream
) -> RunningGateway:
    return await start_gateway(None, **settings(*ROUTES, east=east, west=west))


async def drain(stream: openai.AsyncStream[Any], into: list[Any]) -> None:
    async with stream:
        async for event in stream:
            into.append(event)


def sdk_for(gateway: RunningGateway, who: str = "alice") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.base_url, api_key=KEYS[who], max_retries=0)


@pytest.fixture
async def sdk(gateway: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with sdk_for(gateway) as client:
        yield client


async def test_a_new_turn_goes_to_the_upstream_that_made_the_previous_one(
    sdk: openai.AsyncOpenAI, east: StoredResponsesUpstream, west: StoredResponsesUpstream
) -> None:
    east.failing = True  # the first turn fails over to west
    first = await sdk.responses.create(model="duo", input="hello")
    assert first.id.startswith("resp_west_")
    east.failing = False  # east is healthy again and first in the chain...
    east.calls.clear()
    second = await sdk.responses.create(model="duo", input="again", previous_response_id=first.id)
    # ...but only west holds the conversation: the turn went there, and continued it.
    assert east.calls == []
    assert second.id.startswith("resp_west_")
    assert second.output_text == "west turn 2 done."
    assert second.previous_response_id == first.id


async def test_a_streamed_turn_is_remembered_as_its_first_event_names_it(
    sdk: openai.AsyncOpenAI, west: StoredResponsesUpstream, east: StoredResponsesUpstream
) -> None:
    east.failing = True
    stream = await sdk.responses.create(model="duo", input="hello", stream=True)
    async with stream:
        created = None
        async for event in stream:
            if event.type == "response.created":
                created = event.response.id
                break  # the client leaves at once: the owner is known already
    assert created is not None
    assert created.startswith("resp_west_")
    east.failing = False
    again = await sdk.responses.create(model="duo", input="again", previous_response_id=created)
    assert again.output_text == "west turn 2 done."


async def test_a_turn_never_fails_over_to_an_upstream_that_does_not_hold_the_conversation(
    sdk: openai.AsyncOpenAI, east: StoredResponsesUpstream, west: StoredResponsesUpstream
) -> None:
    first = await sdk.responses.create(model="duo", input="hello")
    assert first.id.startswith("resp_east_")
    east.failing = True  # its owner is down now
    with pytest.raises(openai.InternalServerError):
        await sdk.responses.create(model="duo", input="again", previous_response_id=first.id)
    assert west.calls == []  # it would have started a new conversation


async def test_an_unknown_previous_response_on_a_route_of_two_upstreams_is_refused_unasked(
    sdk: openai.AsyncOpenAI, east: StoredResponsesUpstream, west: StoredResponsesUpstream
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await sdk.responses.create(model="duo", input="hi", previous_response_id="resp_nowhere")
    assert raised.value.code == "previous_response_not_found"
    assert raised.value.param == "previous_response_id"
    assert "resp_nowhere" in raised.value.message
    assert east.calls == []
    assert west.calls == []


async def test_an_unknown_previous_response_on_a_one_upstream_route_is_that_upstreams_call(
    sdk: openai.AsyncOpenAI, east: StoredResponsesUpstream
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await sdk.responses.create(
            model="east-only", input="hi", previous_response_id="resp_nowhere"
        )
    # The upstream's own refusal, relayed: it is the only one that could have held it.
    assert raised.value.code == "previous_response_not_found"
    assert east.paths() == ["POST /v1/responses"]


async def test_a_turn_with_a_model_routed_away_from_the_owner_is_refused(
    sdk: openai.AsyncOpenAI, west: StoredResponsesUpstream
) -> None:
    first = await sdk.responses.create(model="east-only", input="hello")
    with pytest.raises(openai.BadRequestError) as raised:
        await sdk.responses.create(model="west-only", input="again", previous_response_id=first.id)
    assert raised.value.code == "previous_response_not_found"
    assert west.calls == []


async def test_retrieve_delete_and_input_items_reach_the_owner(
    sdk: openai.AsyncOpenAI, east: StoredResponsesUpstream, west: StoredResponsesUpstream
) -> None:
    east.failing = True
    made = await sdk.responses.create(model="duo", input="hello")
    east.failing = False
    east.calls.clear()
    west.calls.clear()

    got = await sdk.responses.retrieve(made.id)
    assert got.id == made.id
    assert got.output_text == made.output_text
    items = await sdk.responses.input_items.list(made.id)
    assert [item.content for item in items.data] == ["hello"]  # type: ignore[union-attr]
    await sdk.responses.delete(made.id)

    assert east.calls == []
    assert west.paths() == [
        f"GET /v1/responses/{made.id}",
        f"GET /v1/responses/{made.id}/input_items",
        f"DELETE /v1/responses/{made.id}",
    ]
    # Deleted: forgotten too; with two upstreams serving Responses, nothing is asked.
    west.calls.clear()
    with pytest.raises(openai.NotFoundError):
        await sdk.responses.retrieve(made.id)
    assert west.calls == []
    assert east.calls == []


async def test_an_unknown_response_id_is_a_404_and_no_upstream_is_asked(
    sdk: openai.AsyncOpenAI, east: StoredResponsesUpstream, west: StoredResponsesUpstream
) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        await sdk.responses.retrieve("resp_nowhere")
    assert "resp_nowhere" in raised.value.message
    for call in (sdk.responses.delete, sdk.responses.cancel, sdk.responses.input_items.list):
        with pytest.raises(openai.NotFoundError):
            await call("resp_nowhere")
    assert east.calls == []
    assert west.calls == []


async def test_another_keys_response_does_not_exist_for_the_caller(
    gateway: RunningGateway,
    sdk: openai.AsyncOpenAI,
    east: StoredResponsesUpstream,
) -> None:
    made = await sdk.responses.create(model="east-only", input="hello")
    east.calls.clear()
    async with sdk_for(gateway, "bob") as bob:
        with pytest.raises(openai.NotFoundError):
            await bob.responses.retrieve(made.id)
        with pytest.raises(openai.NotFoundError):
            await bob.responses.delete(made.id)
        with pytest.raises(openai.BadRequestError) as raised:
            await bob.responses.create(
                model="east-only", input="mine now", previous_response_id=made.id
            )
        assert raised.value.code == "previous_response_not_found"
    assert east.calls == []
    assert (await sdk.responses.retrieve(made.id)).id == made.id  # still alice's


async def test_an_upstream_404_for_a_known_id_is_the_clients_404_and_no_fault_of_the_target(
    gateway: RunningGateway, sdk: openai.AsyncOpenAI, east: StoredResponsesUpstream
) -> None:
    made = await sdk.responses.create(model="east-only", input="hello")
    east.stored.clear()  # the upstream expired it
    for _ in range(8):  # more than `circuit.failures`
        with pytest.raises(openai.NotFoundError) as raised:
            await sdk.responses.retrieve(made.id)
        assert made.id in raised.value.message
    # The target stays healthy: a 404 about a resource is the client's business.
    again = await sdk.responses.create(model="east-only", input="still there?")
    assert again.id.startswith("resp_east_")
    assert value(gateway, "gateway_circuit_state", backend="east/m") == 0


async def test_a_background_stream_resumes_after_the_last_event_seen(
    sdk: openai.AsyncOpenAI, west: StoredResponsesUpstream, east: StoredResponsesUpstream
) -> None:
    east.failing = True
    stream = await sdk.responses.create(model="duo", input="hello", stream=True, background=True)
    seen: list[Any] = []
    async with stream:
        async for event in stream:
            seen.append(event)
            if len(seen) == 3:
                break  # the connection drops
    east.failing = False
    answer_id = seen[0].response.id
    last = seen[-1].sequence_number
    resumed = await sdk.responses.retrieve(answer_id, stream=True, starting_after=last)
    rest: list[Any] = []
    async with resumed:
        async for event in resumed:
            rest.append(event)
    numbers = [event.sequence_number for event in seen + rest]
    assert numbers == list(range(len(numbers)))  # no gap, no repeat
    assert rest[-1].type == "response.completed"
    assert rest[-1].response.output_text == "west turn 1 done."
    assert all(method == "POST" for method, _ in east.calls)  # only the failed create
    resumes = [path for method, path in west.calls if method == "GET"]
    assert len(resumes) == 1
    assert resumes[0].startswith(f"/v1/responses/{answer_id}?")
    assert sorted(resumes[0].split("?")[1].split("&")) == [f"starting_after={last}", "stream=true"]


async def test_a_resumed_stream_that_is_cut_raises_and_never_looks_complete(
    sdk: openai.AsyncOpenAI, east: StoredResponsesUpstream
) -> None:
    made = await sdk.responses.create(model="east-only", input="hello", background=True)
    east.cut_resumes = True  # after the first event resumed: a text delta (seq 2)
    resumed = await sdk.responses.retrieve(made.id, stream=True, starting_after=1)
    events: list[Any] = []
    with pytest.raises(openai.APIError) as raised:
        await drain(resumed, events)
    assert not isinstance(raised.value, openai.APIStatusError)
    assert raised.value.code == "upstream_truncated"
    assert "response.completed" not in [event.type for event in events]


async def test_cancel_reaches_the_owner_of_a_background_response(
    sdk: openai.AsyncOpenAI, east: StoredResponsesUpstream, west: StoredResponsesUpstream
) -> None:
    made = await sdk.responses.create(model="west-only", input="hello", background=True)
    assert made.status == "queued"
    cancelled = await sdk.responses.cancel(made.id)
    assert cancelled.status == "cancelled"
    assert west.paths()[-1] == f"POST /v1/responses/{made.id}/cancel"
    assert east.calls == []


async def test_follow_ups_are_counted_by_endpoint_and_admitted_like_any_call(
    gateway: RunningGateway, sdk: openai.AsyncOpenAI
) -> None:
    made = await sdk.responses.create(model="east-only", input="hello")
    await sdk.responses.retrieve(made.id)
    await sdk.responses.input_items.list(made.id)
    with pytest.raises(openai.NotFoundError):
        await sdk.responses.retrieve("resp_nowhere")
    url = f"{gateway.base_url}/responses/{made.id}"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 401  # admission: a gateway key is required here too
    requests = "gateway_requests_total"
    assert total(gateway, requests, endpoint="responses_retrieve", outcome="completed") == 1
    assert total(gateway, requests, endpoint="responses_input_items", outcome="completed") == 1
    # The unknown id and the refused one (no key), each under its own endpoint.
    assert total(gateway, requests, endpoint="responses_retrieve", outcome="api_error") == 2


async def test_the_owners_map_is_bounded(
    start_gateway: StartGateway, east: StoredResponsesUpstream, west: StoredResponsesUpstream
) -> None:
    gateway = await start_gateway(
        None, **settings(*ROUTES, east=east, west=west), state={"max_responses": 2}
    )
    async with sdk_for(gateway) as sdk:
        made = [await sdk.responses.create(model="duo", input=f"n{n}") for n in range(3)]
        await sdk.responses.retrieve(made[2].id)
        with pytest.raises(openai.NotFoundError):  # the oldest was forgotten
            await sdk.responses.retrieve(made[0].id)
