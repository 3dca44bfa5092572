"""`Inflater`: a gzip or deflate body inflated as it is read, at most a read's size at a time.

`decompressobj.decompress(data, max_length)` never returns more than it is asked for and keeps
the input it did not get to (`unconsumed_tail`): whatever the ratio (a bomb of gigabytes of
zeros in a few KiB), what is held inflated is at most one read. An encoding the client cannot
decode (`br`, `zstd`, several codings) fails at the body's first read, its head returned.
"""

from __future__ import annotations

import zlib

from gateway.transport.http1_errors import UnsupportedEncoding, translate

__all__ = ["Inflater"]


class Inflater:
    """A gzip or deflate body inflated at most `limit` bytes per step."""

    __slots__ = ("_deflate", "_more", "_zlib")

    def __init__(self, deflate: bool) -> None:
        self._deflate = deflate
        self._zlib: zlib._Decompress | None = (
            None if deflate else zlib.decompressobj(16 + zlib.MAX_WBITS)
        )
        self._more = False  # the last step filled its limit: there may be more to inflate

    @classmethod
    def for_encoding(cls, encoding: str | None) -> Inflater | None:
        if encoding is None:
            return None
        coding = encoding.strip().lower()
        if coding in ("", "identity"):
            return None
        if coding in ("gzip", "x-gzip"):
            return cls(deflate=False)
        if coding == "deflate":
            return cls(deflate=True)
        return _Undecodable()

    def feed(self, data: bytes, limit: int) -> bytes:
        decompressor = self._zlib
        if decompressor is None:
            # "deflate" is zlib-wrapped by the RFC, raw by many servers: a zlib stream's first
            # byte says method 8 in its low nibble (aiohttp's test as well).
            raw = len(data) > 0 and data[0] & 0x0F != 8
            decompressor = self._zlib = zlib.decompressobj(
                -zlib.MAX_WBITS if raw else zlib.MAX_WBITS
            )
        try:
            out = decompressor.decompress(data, limit)
        except zlib.error as exc:
            raise translate(exc, "body") from exc
        self._more = len(out) == limit or bool(decompressor.unconsumed_tail)
        return out

    def pending(self, limit: int) -> bytes:
        if not self._more or self._zlib is None:
            return b""
        return self.feed(self._zlib.unconsumed_tail, limit)


class _Undecodable(Inflater):
    """A body in an encoding the client cannot decode: its first read fails."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(deflate=True)

    def feed(self, data: bytes, limit: int) -> bytes:
        exc = UnsupportedEncoding()
        raise translate(exc, "body") from exc
