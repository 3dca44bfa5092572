"""An upstream body cut (FIN before the last chunk, or a reset): every byte the gateway received
before the cut is read before the cut's error.

aiohttp's reader raises the end of a connection before handing out the bytes it still holds, so
a relay busy elsewhere (writing to a slow client) when the cut arrived lost complete events the
upstream had sent (found by tests/chaos). Here the reader is slow on purpose: the provider's
response is read only once its transport has seen the cut.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from gateway.errors import UpstreamTruncated
from gateway.streaming import Context
from tests.providers.test_http_errors import openai_provider, request
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import FakeUpstream
from tests.transport.test_client_contract import wait_until_cut_seen

EVENTS = fake.openai_chunks(["Hel", "lo"], finish_reason=None)


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "close-delimited"])
@pytest.mark.parametrize("cut", [fake.cut_fin, fake.cut_rst], ids=["fin", "rst"])
async def test_bytes_received_before_a_cut_are_read_before_its_error(
    upstream: FakeUpstream, cut: Any, chunked: bool
) -> None:
    upstream.script("m", cut(len(EVENTS), chunked=chunked, chunks=EVENTS, half=b"data: {"))
    provider = openai_provider(upstream)
    await provider.start()
    ctx = Context.with_timeout(10)
    try:
        response = await provider.open(ctx, request("m"))
        # The transport's answer under the provider's: only to wait until it saw the cut.
        await wait_until_cut_seen(response._response)  # type: ignore[attr-defined]
        received = bytearray()
        with contextlib.suppress(UpstreamTruncated):  # the cut, once the bytes are read
            async for chunk in response.chunks():
                received += chunk
        await response.aclose()
    finally:
        ctx.close()
        await provider.aclose()
    assert bytes(received) == b"".join(EVENTS) + b"data: {"
