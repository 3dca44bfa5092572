"""A key with a per-minute limit is told where it stands on every answer (contract section 4):
`x-ratelimit-limit-requests`, `x-ratelimit-remaining-requests` (what it may still start at
once) and `x-ratelimit-reset-requests` (until its whole allowance is back, as OpenAI writes
durations), on streams, JSON answers and the 429 that refuses it; a key without such a limit,
and a gateway without keys, get none of them."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import openai
import pytest

from gateway.errors import RateWindow
from gateway.settings.auth import hash_key
from tests.conftest import StartGateway

KEY = "gw-key-rate-0123456789abcdef"
FREE_KEY = "gw-key-free-0123456789abcdef"
MOCK = {
    "upstreams": {"mock": {"kind": "mock", "mock": {"chunk_delay": 0}}},
    "routes": [{"model": "mock", "targets": [{"upstream": "mock"}]}],
}
BODY: dict[str, Any] = {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}
DURATION = re.compile(r"(\d+ms|\d+s|\d+m\d+s)")


def limited_keys(per_minute: int) -> dict[str, Any]:
    return {
        "keys": [FREE_KEY],
        "clients": [
            {"name": "limited", "key_hash": hash_key(KEY), "requests_per_minute": per_minute}
        ],
    }


async def test_every_answer_of_a_limited_key_says_where_it_stands_and_the_429_too(
    start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(None, **MOCK, auth=limited_keys(3))
    headers = {"Authorization": f"Bearer {KEY}"}
    url = f"{gateway.base_url}/chat/completions"
    seen = []
    for stream in (True, False, True):
        async with client.post(url, json={**BODY, "stream": stream}, headers=headers) as answer:
            await answer.read()
            assert answer.status == 200
            seen.append(answer.headers)
    assert [h["x-ratelimit-limit-requests"] for h in seen] == ["3", "3", "3"]
    assert [h["x-ratelimit-remaining-requests"] for h in seen] == ["2", "1", "0"]
    assert all(DURATION.fullmatch(h["x-ratelimit-reset-requests"]) for h in seen)
    async with client.post(url, json=BODY, headers=headers) as refused:
        assert refused.status == 429
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        assert refused.headers["x-ratelimit-limit-requests"] == "3"
        assert refused.headers["x-should-retry"] == "true"


async def test_a_key_without_a_per_minute_limit_and_a_gateway_without_keys_get_no_such_headers(
    start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    limited = await start_gateway(None, **MOCK, auth=limited_keys(3))
    open_gateway = await start_gateway(None, **MOCK)
    for url, headers in (
        (limited.base_url, {"Authorization": f"Bearer {FREE_KEY}"}),
        (open_gateway.base_url, {}),
    ):
        async with client.post(f"{url}/chat/completions", json=BODY, headers=headers) as answer:
            assert answer.status == 200
            assert not [name for name in answer.headers if name.lower().startswith("x-ratelimit")]


async def test_the_openai_sdk_reads_the_headers_of_a_limited_key(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway(None, **MOCK, auth=limited_keys(60))
    async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key=KEY, max_retries=0) as sdk:
        raw = await sdk.chat.completions.with_raw_response.create(**BODY)
    assert raw.headers["x-ratelimit-limit-requests"] == "60"
    assert raw.headers["x-ratelimit-remaining-requests"] == "59"
    assert raw.headers["x-ratelimit-reset-requests"] == "1s"  # one token back in a second


@pytest.mark.parametrize(
    ("seconds", "written"),
    [(0.0, "0ms"), (0.1204, "121ms"), (1.0, "1s"), (7.2, "8s"), (59.5, "1m0s"), (360.0, "6m0s")],
)
def test_durations_are_written_as_openai_writes_them(seconds: float, written: str) -> None:
    assert RateWindow(10, 1, seconds).headers()["x-ratelimit-reset-requests"] == written
