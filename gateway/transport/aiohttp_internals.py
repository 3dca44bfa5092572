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
"""

from __future__ import annotations

import aiohttp

__all__ = ["held_bytes"]


def held_bytes(content: aiohttp.StreamReader) -> bytes:
    """What `content` still holds, taken out of it, even after it stored an exception."""
    return content._read_nowait(-1)
