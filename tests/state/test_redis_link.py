"""`RedisLink` against a real Redis: what a batch carries reaches Redis byte for byte, and its
replies come back to their own commands, in order, whatever one of them answers."""

from __future__ import annotations

import asyncio

import pytest

from gateway.state.redis_link import RedisLink, RedisUnavailable, Script
from gateway.state.redis_store import redis_client
from tests.support.redis_server import RedisServer

_ECHO = Script("echo", "return {KEYS[1], ARGV[1], ARGV[2], ARGV[3]}")


def _link(redis: RedisServer, *, retry_after_failure: float = 0.5) -> RedisLink:
    client = redis_client(redis.url, timeout=1.0)
    return RedisLink(client, timeout=1.0, retry_after_failure=retry_after_failure)


async def test_arguments_reach_redis_as_redis_py_encodes_them(redis: RedisServer) -> None:
    link = _link(redis)
    try:
        values = {"float": 1765100000.1234567, "int": -42, "text": "é\r\n ok", "bytes": b"\x00\r\n"}
        for name, value in values.items():
            link.send("set", "SET", name, value)
        answers = await asyncio.gather(*(link.call("get", "GET", name) for name in values))
        assert answers == [b"1765100000.1234567", b"-42", "é\r\n ok".encode(), b"\x00\r\n"]
        echoed = await link.call("echo", 1, "k:é", 0.5, 7, b"\r\n", script=_ECHO)
        assert echoed == ["k:é".encode(), b"0.5", b"7", b"\r\n"]
    finally:
        await link.aclose()


async def test_an_error_reply_fails_its_own_call_and_not_the_rest_of_the_batch(
    redis: RedisServer,
) -> None:
    link = _link(redis)
    try:
        await link.call("set", "SET", "word", "not a number")
        before, refused, after = await asyncio.gather(
            link.call("incr", "INCR", "counter"),
            link.call("incr", "INCR", "word"),
            link.call("incr", "INCR", "counter"),
            return_exceptions=True,
        )
        assert (before, after) == (1, 2)
        assert isinstance(refused, RedisUnavailable)
        assert not link.down
        assert await link.call("flush", "PING") == b"PONG"
    finally:
        await link.aclose()


async def test_a_connection_redis_closed_is_opened_again_after_the_pause(
    redis: RedisServer,
) -> None:
    link = _link(redis, retry_after_failure=0.05)
    try:
        await link.call("set", "SET", "kept", "yes")
        await link.call("kill", "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "no")
        with pytest.raises(RedisUnavailable):
            await link.call("get", "GET", "kept")
        assert link.down
        await asyncio.sleep(0.06)
        assert await link.call("get", "GET", "kept") == b"yes"
    finally:
        await link.aclose()


async def test_a_command_that_cannot_be_encoded_fails_its_batch_and_not_the_link(
    redis: RedisServer,
) -> None:
    link = _link(redis, retry_after_failure=0.05)
    try:
        with pytest.raises(RedisUnavailable):
            await link.call("set", "SET", "flag", True)
        await asyncio.sleep(0.06)
        assert await link.call("get", "GET", "flag") is None
    finally:
        await link.aclose()
