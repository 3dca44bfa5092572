"""The one place the transport reaches into aiohttp's private internals; each use has a test
(tests/transport/test_aiohttp_internals.py) that fails by name if an aiohttp upgrade removes or
changes it.

- `held_bytes`: the bytes a response's `StreamReader` still holds once it stored a cut or reset
  connection's exception. Every public read of a `StreamReader` (`read`, `readany`,
  `readchunk`, `readexactly`, `readline`, `readuntil`, `read_nowait`, the `iter_*` iterators)
  raises the stored exception before it looks at the buffer, so bytes the upstream did send -
  complete events, maybe - would be lost whenever the relay was busy elsewhere (writing to a
  slow client) when the cut arrived. `StreamReader._read_nowait(n)` is the buffer's read
  without that check; there is no public equivalent (aiohttp 3.14).
- `acquired_count`, `idle_count`: the connections a `BaseConnector` has handed out and those it
  keeps idle (`_acquired`, `_conns`), for `AiohttpClient.pool_stats`; aiohttp says neither
  publicly.
"""

from __future__ import annotations

import aiohttp

__all__ = ["acquired_count", "held_bytes", "idle_count"]


def held_bytes(content: aiohttp.StreamReader) -> bytes:
    """What `content` still holds, taken out of it, even after it stored an exception."""
    return content._read_nowait(-1)


def acquired_count(connector: aiohttp.BaseConnector) -> int:
    """The connections `connector` has handed out and not yet got back."""
    return len(connector._acquired)


def idle_count(connector: aiohttp.BaseConnector) -> int:
    """The idle connections `connector` keeps for reuse."""
    return sum(len(conns) for conns in connector._conns.values())
