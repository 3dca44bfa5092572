"""`GatewayRunner`: a gateway app served through `GatewayRequestHandler` connections with the
limits of the app's settings, and closed by the runner's cleanup like any app's connections.
Real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio

from gateway.server import create_app, start_server
from gateway.server.app import RUNNER_OPTIONS
from gateway.server.connection import GatewayRequestHandler
from gateway.server.runner import GatewayRunner
from tests.conftest import gateway_settings
from tests.support.raw_http import head, parse_responses

GUARD = 10.0  # seconds: only catches hangs


async def test_each_connection_gets_the_limits_of_the_apps_settings() -> None:
    settings = gateway_settings(
        None,
        limits={"head_timeout": 7.5, "max_header_line_bytes": 3000, "max_headers": 40},
        server={"header": "edge"},
    )
    runner = GatewayRunner(create_app(settings), **RUNNER_OPTIONS)
    assert runner.server is None  # before setup()
    await runner.setup()
    try:
        assert runner.server is not None
        assert runner.server.handler_cancellation
        handler = runner.server()
        assert isinstance(handler, GatewayRequestHandler)
        assert handler.keepalive_timeout == 7.5
        assert handler.max_line_size == handler.max_field_size == 3000
        assert handler.max_headers == 80  # header_bound: twice the limit
        assert handler.server_header == "edge"
        assert handler.write_stall == settings.limits.write_stall
        assert handler.access_logger is None  # RUNNER_OPTIONS' access_log=None
    finally:
        await runner.cleanup()
    assert runner.server is None


async def test_cleanup_closes_the_idle_connections_the_runner_served() -> None:
    runner, port = await start_server(create_app(gateway_settings(None)), "127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head("GET", "/healthz"))  # keep-alive: the connection stays open
        async with asyncio.timeout(GUARD):
            top = await reader.readuntil(b"\r\n\r\n")
            length = int(parse_responses(top)[0].headers["content-length"])
            await reader.readexactly(length)
    finally:
        await runner.cleanup()
    try:
        async with asyncio.timeout(GUARD):
            assert await reader.read() == b""  # closed by the server
    finally:
        writer.close()
    with_new_connection = asyncio.open_connection("127.0.0.1", port)
    try:
        await with_new_connection
    except ConnectionRefusedError:
        pass  # the listening socket is closed too
    else:
        raise AssertionError("the port still accepts after cleanup()")
