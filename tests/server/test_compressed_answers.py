"""Compressed upstream answers are bounded on what they inflate to, and a refused one is let go.

The fake upstream answers `stream: false` with a gzip bomb: a few hundred KiB on the wire
(`Content-Encoding: gzip`) that inflate to 256 MiB of JSON-ish bytes. The gateway must count
`limits.max_response_bytes` (and `max_error_body_bytes` for an error answer) on the inflated
bytes as they arrive, refuse with a 502, and hold no more than about the limit meanwhile; once
the answer is refused its buffer is gone at once - not when the cyclic garbage collector gets
to a traceback that kept it - which `tracemalloc` sees in this process (the collector is off
while the requests run).
"""

from __future__ import annotations

import gc
import json
import tracemalloc
import zlib
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import StartGateway
from tests.support.fake_upstream import FakeUpstream, UpstreamCall

MODEL = "m"
MiB = 1024 * 1024
LIMIT = 1 * MiB  # limits.max_response_bytes here
INFLATED = 256 * MiB
REQUESTS = 5


def gzip_bomb(size: int) -> bytes:
    """A gzip body that inflates to `size` bytes: an object's start, then spaces."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [packer.compress(b'{"id": "x", "pad": "')]
    block = b" " * MiB
    parts += [packer.compress(block) for _ in range(size // MiB)]
    return b"".join([*parts, packer.flush()])


BOMB = gzip_bomb(INFLATED)


def bomb(status: int) -> object:
    async def behave(request: web.Request, call: UpstreamCall) -> web.StreamResponse:
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        return web.Response(status=status, body=BOMB, headers=headers)

    return behave


@pytest.fixture
def no_collector() -> Iterator[None]:
    """The cyclic garbage collector off: what is freed is freed by reference counts alone."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def post_answers(url: str, count: int) -> list[tuple[int, dict[str, object]]]:
    body = {"model": MODEL, "stream": False, "messages": [{"role": "user", "content": "hi"}]}
    answers = []
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            async with session.post(f"{url}/v1/chat/completions", json=body) as response:
                answers.append((response.status, json.loads(await response.read())))
    return answers


@pytest.mark.parametrize("status", [200, 500], ids=["answer", "error-body"])
async def test_a_gzip_bomb_is_refused_without_holding_its_inflated_body(
    upstream: FakeUpstream, start_gateway: StartGateway, no_collector: None, status: int
) -> None:
    assert len(BOMB) < INFLATED // 500  # small on the wire, huge inflated
    upstream.script(MODEL, bomb(status))  # type: ignore[arg-type]
    gw = await start_gateway(
        upstream, (MODEL,), limits={"max_response_bytes": LIMIT}, retry={"attempts": 1}
    )
    await post_answers(gw.url, 1)  # warm: the first request's allocations are not the bomb's
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        answers = await post_answers(gw.url, REQUESTS)
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert {status for status, _ in answers} == {502}, answers
    codes = {answer["error"]["code"] for _, answer in answers}  # type: ignore[index]
    assert codes == ({"upstream_protocol_error"} if status == 200 else {"upstream_status_5xx"})
    assert peak - before < 3 * LIMIT, f"held {(peak - before) / MiB:.1f} MiB at once"
    assert after - before < LIMIT // 2, f"{(after - before) / MiB:.1f} MiB kept after refusals"
