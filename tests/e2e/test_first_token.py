"""Failover before the first content (issue 13 item 5; contract sections 2 and 6), end to end:
fake upstreams that send only a preamble (a role chunk, `message_start`, `response.created`,
pings) and then stall, cut or report their own error; the gateway restarts the request on the
next target, and the client - raw bytes, or the real `openai` / `anthropic` SDKs - reads one
seamless stream: the answering target's whole answer, one preamble.

The `first_token` deadline (request sent -> first event with answer content) is set per
request (`x-gateway-first-token-timeout`), per route or per target; unset, nothing waits on
it. The bounds on elapsed time are hang guards, never speed targets.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from tests.conftest import RunningGateway, StartGateway
from tests.support import anthropic_wire as claude
from tests.support import fake_upstream as fake
from tests.support import responses_wire as wire
from tests.support.chain_gateway import Timed, chain, report, route, target
from tests.support.fake_upstream import DONE, FakeUpstream

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
WORDS = ["The ", "quick ", "brown ", "fox."]
LIMIT = 0.4  # seconds: the first-token limit of these tests
SLACK = 2.0  # on top of a limit that should end a wait (scheduling, CI noise)
ROLE = b'"role":"assistant"'


def chat_answer(model: str) -> list[bytes]:
    return fake.openai_chunks(WORDS, model=model)


def role_chunk(model: str) -> bytes:
    return fake.openai_chunks([""], finish_reason=None, model=model)[0]


def whole(model: str) -> bytes:
    return b"".join(chat_answer(model)) + DONE


def restarted(first: str, then: str = "backup") -> bytes:
    """What a client reads of a request restarted before its first content: `first`'s
    preamble (relayed as it came), then `then`'s answer without what the client already had
    of a preamble (its first chunk carries the role beside the first content: it is content,
    and relayed)."""
    return role_chunk(first) + whole(then)


def is_role_only(delta: Any) -> bool:
    return bool(delta.role) and not delta.content


def without_pings(body: bytes) -> bytes:
    return body.replace(b": ping\n\n", b"")


async def post_chat(
    client: aiohttp.ClientSession, gw: RunningGateway, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    body = {"model": "m", "messages": MESSAGES, "stream": True}
    url = f"{gw.url}/v1/chat/completions"
    async with client.post(url, json=body, headers=headers or {}) as response:
        return response.status, await response.read()


async def primary_backup(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    primary: dict[str, Any] | None = None,
    **fields: Any,
) -> RunningGateway:
    """Route `m`: `primary` (with `primary`'s fields), then `backup`."""
    heartbeat = fields.pop("heartbeat", None)
    targets = (target("primary", **(primary or {})), target("backup"))
    return await start_gateway(
        None, heartbeat=heartbeat, **chain(upstream, route("m", *targets, **fields))
    )


# --- the first_token deadline ------------------------------------------------------------------


@pytest.mark.parametrize("where", ["header", "route", "target"])
async def test_a_role_chunk_then_a_stall_fails_over_at_first_token_to_the_backups_whole_answer(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    where: str,
) -> None:
    upstream.script("primary", fake.stall_after(1, [role_chunk("primary")]))
    upstream.script("backup", fake.sse_stream(chat_answer("backup")))
    limit = {"first_token": LIMIT}
    gw = await primary_backup(
        start_gateway,
        upstream,
        {"timeouts": limit} if where == "target" else None,
        **({"timeouts": limit} if where == "route" else {}),
    )
    headers = {"x-gateway-first-token-timeout": str(LIMIT)} if where == "header" else None
    with Timed() as timed:
        status, body = await post_chat(client, gw, headers)
    report(
        f"role chunk then stall, first_token {LIMIT} s ({where})",
        "the backup's answer",
        timed.elapsed,
        upstream.requests,
    )
    assert (status, without_pings(body)) == (200, restarted("primary"))
    assert [call.model for call in upstream.requests] == ["primary", "backup"]  # no retry
    await upstream.calls_for("primary")[0].wait_closed_by_peer()
    assert LIMIT <= timed.elapsed < LIMIT + SLACK


async def test_without_first_token_a_slow_first_token_is_waited_for(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    # Unset (the default), the role chunk meets first_byte and nothing bounds the first text
    # but the idle gap: the primary's slow answer is the client's.
    upstream.script("primary", fake.sse_stream(chat_answer("primary"), delay=0.6))
    gw = await primary_backup(start_gateway, upstream, {"timeouts": {"first_byte": 0.3}})
    status, body = await post_chat(client, gw)
    assert (status, body) == (200, whole("primary"))
    assert upstream.calls_for("backup") == []


async def test_first_token_does_not_fire_once_content_flows(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("primary", fake.sse_stream(chat_answer("primary"), delay=LIMIT / 2))
    gw = await primary_backup(start_gateway, upstream, {"timeouts": {"first_token": LIMIT}})
    with Timed() as timed:
        status, body = await post_chat(client, gw)
    assert (status, body) == (200, whole("primary"))
    assert timed.elapsed > LIMIT  # the answer outlasted the limit, which had been met
    assert upstream.calls_for("backup") == []


async def test_a_request_header_is_clamped_by_the_routes_ceiling(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("primary", fake.stall_after(1, [role_chunk("primary")]))
    upstream.script("backup", fake.sse_stream(chat_answer("backup")))
    gw = await primary_backup(start_gateway, upstream, max_timeouts={"first_token": LIMIT})
    with Timed() as timed:
        status, body = await post_chat(client, gw, {"x-gateway-first-token-timeout": "300"})
    assert (status, without_pings(body)) == (200, restarted("primary"))
    assert timed.elapsed < LIMIT + SLACK


async def test_heartbeats_keep_a_stream_alive_while_its_answer_has_not_begun(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("primary", fake.stall_after(1, [role_chunk("primary")]))
    upstream.script("backup", fake.sse_stream(chat_answer("backup")))
    gw = await primary_backup(
        start_gateway, upstream, {"timeouts": {"first_token": LIMIT}}, heartbeat=0.1
    )
    status, body = await post_chat(client, gw)
    assert status == 200
    assert body.count(b": ping\n\n") >= 2
    assert without_pings(body) == restarted("primary")


# --- any failure before the first content ------------------------------------------------------


@pytest.mark.parametrize(
    "death",
    [
        pytest.param(lambda: fake.cut_fin(1, chunked=False, chunks=[role_chunk("p")]), id="fin"),
        pytest.param(
            lambda: fake.cut_fin(1, chunked=True, chunks=[role_chunk("p")]), id="fin-no-last-chunk"
        ),
        pytest.param(lambda: fake.cut_rst(1, chunked=True, chunks=[role_chunk("p")]), id="rst"),
        pytest.param(lambda: fake.sse_stream([role_chunk("p")], done=False), id="clean-end"),
    ],
)
async def test_a_cut_after_the_preamble_restarts_on_the_next_target(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    death: Any,
) -> None:
    upstream.script("primary", death())
    upstream.script("backup", fake.sse_stream(chat_answer("backup")))
    gw = await primary_backup(start_gateway, upstream)
    status, body = await post_chat(client, gw)
    assert (status, body) == (200, restarted("p"))  # restarted: one preamble, the primary's
    assert len(upstream.calls_for("backup")) == 1


async def test_a_done_marker_after_the_preamble_is_an_empty_answer_not_a_failure(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("primary", fake.sse_stream([role_chunk("primary")], done=True))
    gw = await primary_backup(start_gateway, upstream)
    status, body = await post_chat(client, gw)
    assert (status, body) == (200, role_chunk("primary") + DONE)
    assert upstream.calls_for("backup") == []


async def test_an_idle_stall_after_the_preamble_restarts_on_the_other_target_first(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script(
        "primary",
        fake.sequence(
            fake.stall_after(1, [role_chunk("primary")]), fake.sse_stream(chat_answer("primary"))
        ),
    )
    upstream.script("backup", fake.sse_stream(chat_answer("backup")))
    gw = await primary_backup(start_gateway, upstream, {"timeouts": {"idle": 0.3}})
    status, body = await post_chat(client, gw)
    assert (status, without_pings(body)) == (200, restarted("primary"))
    # The stalled target is asked last, not first: the backup answered.
    assert [call.model for call in upstream.requests] == ["primary", "backup"]


async def test_an_error_chunk_before_any_content_fails_over(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    error = b'data: {"error":{"message":"overloaded","type":"server_error"}}\n\n'
    upstream.script("primary", fake.sse_stream([role_chunk("primary"), error], done=False))
    upstream.script("backup", fake.sse_stream(chat_answer("backup")))
    gw = await primary_backup(start_gateway, upstream)
    status, body = await post_chat(client, gw)
    assert (status, body) == (200, whole("backup"))


async def test_with_nowhere_left_the_upstreams_own_error_is_relayed_as_it_said_it(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    error = b'data: {"error":{"message":"overloaded","type":"server_error"}}\n\n'
    upstream.script("primary", fake.sse_stream([role_chunk("primary"), error], done=False))
    upstream.script("backup", fake.sse_stream([role_chunk("backup"), error], done=False))
    gw = await primary_backup(start_gateway, upstream)
    status, body = await post_chat(client, gw)
    # The primary's role chunk was relayed; of the backup's, nothing new: its error follows.
    assert (status, body) == (200, role_chunk("primary") + error)
    # The backup first, then the primary again, last (the route's retries allow it).
    assert [call.model for call in upstream.requests] == ["primary", "backup", "primary"]


# --- the SDKs, every API -----------------------------------------------------------------------


async def test_openai_sdk_reads_the_backups_answer_with_one_role_chunk(
    start_gateway: StartGateway, upstream: FakeUpstream
) -> None:
    upstream.script("primary", fake.stall_after(1, [role_chunk("primary")]))
    upstream.script("backup", fake.sse_stream(chat_answer("backup")))
    gw = await primary_backup(start_gateway, upstream, {"timeouts": {"first_token": LIMIT}})
    async with openai.AsyncOpenAI(base_url=gw.base_url, api_key="x", max_retries=0) as sdk:
        stream = await sdk.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "".join(WORDS)
    # One role-only chunk (the primary's, relayed at once); the backup's carry the answer.
    role_only = [
        c
        for c in chunks
        if c.choices and c.choices[0].delta.role and not c.choices[0].delta.content
    ]
    assert [c.model for c in role_only] == ["primary"]
    assert {c.model for c in chunks if c.choices and c.choices[0].delta.content} == {"backup"}


async def claude_gateway(
    start_gateway: StartGateway, upstream: FakeUpstream, primary: dict[str, Any] | None = None
) -> RunningGateway:
    targets = (
        target("claude-primary", "claude", **(primary or {})),
        target("claude-backup", "claude"),
    )
    return await start_gateway(None, heartbeat=None, **chain(upstream, route("claude", *targets)))


async def anthropic_final(gw: RunningGateway) -> anthropic.types.Message:
    async with (
        anthropic.AsyncAnthropic(base_url=gw.url, api_key="x", max_retries=0) as sdk,
        sdk.messages.stream(model="claude", max_tokens=64, messages=MESSAGES) as stream,
    ):
        return await stream.get_final_message()


@pytest.mark.parametrize(
    ("sent", "primary"),
    [
        pytest.param(
            [claude.message_start(model="claude-primary"), claude.error_event()],
            None,
            id="message-start-then-error-event",
        ),
        pytest.param(
            [
                claude.message_start(model="claude-primary"),
                claude.content_block_start(),
                claude.PING,
            ],
            {"timeouts": {"first_token": LIMIT}},
            id="preamble-then-stall-past-first-token",
        ),
        pytest.param([claude.PING], {"timeouts": {"first_token": LIMIT}}, id="pings-only"),
        pytest.param([claude.message_start(model="claude-primary")], None, id="cut-after-start"),
    ],
)
async def test_anthropic_sdk_gets_the_backups_message_after_a_primary_without_content(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    sent: list[bytes],
    primary: dict[str, Any] | None,
) -> None:
    if primary is not None:  # a stall: only the deadline ends it
        behaviour = fake.stall_after(len(sent), sent)
    elif sent[-1] == claude.error_event():
        behaviour = fake.sse_stream(sent, done=False)
    else:
        behaviour = fake.cut_fin(len(sent), chunked=False, chunks=sent)
    upstream.script("claude-primary", behaviour)
    answer = claude.anthropic_events(WORDS, model="claude-backup")
    upstream.script("claude-backup", fake.sse_stream(answer, done=False))
    gw = await claude_gateway(start_gateway, upstream, primary)
    message = await anthropic_final(gw)
    assert [block.text for block in message.content if block.type == "text"] == ["".join(WORDS)]
    # The model is that of the `message_start` relayed: the primary's, if it sent one before
    # failing in a read of its own; the backup's otherwise.
    assert message.model in ("claude-primary", "claude-backup")
    assert upstream.calls_for("claude-backup")


async def test_anthropic_client_reads_exactly_one_message_start(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    sent = [claude.message_start(model="claude-primary"), claude.error_event()]
    upstream.script("claude-primary", fake.sse_stream(sent, done=False))
    answer = claude.anthropic_events(WORDS, model="claude-backup")
    upstream.script("claude-backup", fake.sse_stream(answer, done=False))
    gw = await claude_gateway(start_gateway, upstream)
    body = {"model": "claude", "max_tokens": 64, "messages": MESSAGES, "stream": True}
    async with client.post(f"{gw.url}/v1/messages", json=body) as response:
        relayed = await response.read()
    assert relayed == b"".join(answer)
    assert relayed.count(b"event: message_start") == 1


async def test_responses_sdk_gets_the_backups_response_after_a_stalled_preamble(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    preamble = wire.responses_events(WORDS, model="primary")[:4]  # created ... part.added
    upstream.script("primary", fake.stall_after(len(preamble), preamble))
    answer = wire.responses_events(WORDS, model="backup")
    upstream.script("backup", fake.sse_stream(answer, done=False))
    gw = await primary_backup(start_gateway, upstream, {"timeouts": {"first_token": LIMIT}})
    async with (
        openai.AsyncOpenAI(base_url=gw.base_url, api_key="x", max_retries=0) as sdk,
        sdk.responses.stream(model="m", input="hi") as stream,
    ):
        final = await stream.get_final_response()
    assert final.output_text == "".join(WORDS)
    assert final.model == "backup"
    body = {"model": "m", "input": "hi", "stream": True}
    async with client.post(f"{gw.base_url}/responses", json=body) as response:
        relayed = await response.read()
    # The primary's preamble, relayed as it came, then the backup's answer from its content.
    assert relayed == b"".join(preamble + answer[4:])
    assert [call.model for call in upstream.requests] == ["primary", "backup"] * 2


async def test_a_translated_call_fails_over_before_its_first_content_too(
    start_gateway: StartGateway, upstream: FakeUpstream
) -> None:
    # A chat client; the primary is an Anthropic target (translated), the backup an OpenAI one.
    upstream.script("claude-primary", fake.stall_after(2, [claude.message_start(), claude.PING]))
    upstream.script("backup", fake.sse_stream(chat_answer("backup")))
    targets = (
        target("claude-primary", "claude", timeouts={"first_token": LIMIT}),
        target("backup"),
    )
    gw = await start_gateway(None, heartbeat=None, **chain(upstream, route("m", *targets)))
    async with openai.AsyncOpenAI(base_url=gw.base_url, api_key="x", max_retries=0) as sdk:
        stream = await sdk.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "".join(WORDS)
    role_only = [
        c
        for c in chunks
        if c.choices and c.choices[0].delta.role and not c.choices[0].delta.content
    ]
    assert len(role_only) == 1  # the translated primary's: the backup's is not repeated
    assert [call.model for call in upstream.requests] == ["claude-primary", "backup"]
