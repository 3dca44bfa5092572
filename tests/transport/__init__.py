"""The transport: the aiohttp client behind `HTTPClient`, against real sockets on 127.0.0.1."""
