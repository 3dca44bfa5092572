"""A headless Chromium driven through its DevTools protocol, with aiohttp's websocket client.

`Chromium.start(profile)` runs the Debian package's `chromium` (headless, its own profile
folder, no network beyond 127.0.0.1: host names other than it resolve to nothing, background
services off) and connects to the browser's DevTools websocket; `open(url)` opens a page and
`Page.evaluate` runs a script in it and returns its (awaited) value. `aclose()` closes the
browser and waits for it. `chromium_command()` skips a test when Chromium is missing, or fails
it where `SSE_GATEWAY_REQUIRE_BROWSER_TEST=1` (CI, after `.ci/install-browser`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import re
import shutil
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

__all__ = ["Chromium", "Page", "chromium_command"]

_LISTENING = re.compile(rb"DevTools listening on (ws://\S+)")
#: Seconds any one DevTools command (a page load, a whole stream read) may take.
COMMAND_TIMEOUT = 30.0


def chromium_command() -> str:
    path = shutil.which("chromium")
    if path is None:
        missing = "chromium is not installed (Debian package chromium: .ci/install-browser)"
        if os.environ.get("SSE_GATEWAY_REQUIRE_BROWSER_TEST") == "1":
            pytest.fail(f"SSE_GATEWAY_REQUIRE_BROWSER_TEST=1 but {missing}")
        pytest.skip(missing)
    return path


class Chromium:
    """One headless browser process and its DevTools connection."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._stderr: collections.deque[bytes] = collections.deque(maxlen=40)
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def start(cls, profile: Path) -> Chromium:
        process = await asyncio.create_subprocess_exec(
            chromium_command(),
            "--headless=new",
            "--no-sandbox",  # root in a container
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--no-pings",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "about:blank",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group: closed with its helpers
        )
        browser = cls(process)
        try:
            await browser._connect()
        except BaseException:
            await browser.aclose()
            raise
        return browser

    async def _connect(self) -> None:
        listening: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._tasks.append(asyncio.create_task(self._read_stderr(listening)))
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                url = await listening
        except TimeoutError:
            raise AssertionError(f"chromium did not start: {self.stderr()}") from None
        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(url, max_msg_size=0)
        self._tasks.append(asyncio.create_task(self._read_messages(self._ws)))

    async def _read_stderr(self, listening: asyncio.Future[str]) -> None:
        assert self._process.stderr is not None
        async for line in self._process.stderr:  # read to the end: a full pipe would block it
            self._stderr.append(line)
            match = _LISTENING.search(line)
            if match and not listening.done():
                listening.set_result(match[1].decode())
        if not listening.done():
            listening.set_exception(AssertionError(f"chromium exited: {self.stderr()}"))

    async def _read_messages(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            future = self._pending.pop(data.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(data)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(AssertionError(f"DevTools closed: {self.stderr()}"))

    def stderr(self) -> str:
        return b"".join(self._stderr).decode(errors="replace")[-4000:]

    async def send(
        self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None
    ) -> dict[str, Any]:
        """Run one DevTools command and return its result (raise on a protocol error)."""
        assert self._ws is not None
        self._next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = future
        command: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            command["sessionId"] = session
        await self._ws.send_str(json.dumps(command))
        async with asyncio.timeout(COMMAND_TIMEOUT):
            answer = await future
        if "error" in answer:
            raise AssertionError(f"DevTools {method} failed: {answer['error']}")
        result: dict[str, Any] = answer["result"]
        return result

    async def open(self, url: str) -> Page:
        """A new page showing `url` (its document committed: scripts may still be loading)."""
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        page = Page(self, attached["sessionId"])
        navigated = await self.send("Page.navigate", {"url": url}, session=page.session)
        assert "errorText" not in navigated, navigated
        return page

    async def aclose(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
        if self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGTERM)
        try:
            async with asyncio.timeout(10):
                await self._process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            await self._process.wait()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Page:
    """One page of a `Chromium`, by its DevTools session."""

    def __init__(self, browser: Chromium, session: str) -> None:
        self.browser = browser
        self.session = session

    async def evaluate(self, expression: str) -> Any:
        """The value of `expression` run in the page once it has loaded (promises awaited);
        a script error fails the test."""
        loaded = (
            "new Promise(resolve => document.readyState === 'complete' ? resolve() : "
            "addEventListener('load', resolve, {once: true}))"
        )
        answer = await self.browser.send(
            "Runtime.evaluate",
            {
                "expression": f"{loaded}.then(() => {expression})",
                "awaitPromise": True,
                "returnByValue": True,
            },
            session=self.session,
        )
        if "exceptionDetails" in answer:
            raise AssertionError(f"the page's script failed: {answer['exceptionDetails']}")
        return answer["result"].get("value")
