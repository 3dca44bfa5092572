"""Redaction by value: the gateway's own secrets never leave it, in any form a fragment takes.

A `Redactor` is built once from every secret the gateway holds (upstream keys, gateway keys in
clear, keys read from files: `GatewaySettings.secret_values()`), and everything that leaves
the process passes through it: error bodies and their `code`/`param`, SSE events and
non-streaming bodies relayed from an upstream, log lines, the metrics exposition. It works on
the value, not on a key's usual shape: a secret's prefix (`sk-proj-`) is not needed to find
it, and neither is the whole of it.

What counts as a fragment. A secret is cut into *pieces* at every character a JSON encoder
could escape (`"`, `\\`, control and non-ASCII characters; real keys have none), so that a
replacement can never break an escape sequence and an event stays valid JSON with its framing.
A piece starts with a prefix that identifies no one (`sk-`, `sk-proj-`, `sk-ant-api03-`) when
the rest is long; the rest is the piece's *body*. A run of text equal to part of a piece is a
fragment when it holds at least `MIN_FRAGMENT` characters of the body (8 characters of a
random key are 47 bits or more: they identify it) and, while shorter than `2 * MIN_FRAGMENT`,
mixes two kinds of characters (lowercase, uppercase, digits): a random key's windows do, while
a word that happens to be part of a made-up key (`upstream` of `sk-upstream-canary-7f3a`) does
not, and redacting it would garble ordinary text. The whole run, prefix included, is replaced
by `[redacted]`. A secret shorter than `MIN_FRAGMENT` is redacted where it occurs whole.

How it stays cheap. Every body is cut into tiles of `_TILE` characters at a stride of `_TILE`;
a run of `2 * _TILE - 1` or more body characters always covers a whole tile, so one
Aho-Corasick scan for the tiles (ahocorasick-rs: one call over the bytes in hand, about 1 us
for a typical event) finds every candidate, and only a hit costs more: extending it both ways
against the secret to find the run. Text without a hit is returned as the same object.

Not covered, by design: a secret transformed before it is echoed (base64, case changes,
`\\uXXXX` escapes of plain ASCII characters, `\\/` for `/`): an upstream that does that is
hostile rather than careless, and one that holds the key can disclose it any way it likes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import ahocorasick_rs

__all__ = ["MIN_FRAGMENT", "REDACTED", "Redactor"]

#: Characters of a secret's body a run must hold to be redacted.
MIN_FRAGMENT = 8
#: The tile length: any run of `2 * _TILE - 1` body characters covers a tile.
_TILE = (MIN_FRAGMENT + 1) // 2
#: What stands where a fragment was (no character a JSON string would need to escape).
REDACTED = "[redacted]"
_REDACTED_BYTES = REDACTED.encode("ascii")
#: The shortest secret the redactor protects (a shorter one would redact common words).
_MIN_SECRET = 4
#: Characters that may stand in a piece: printable ASCII but `"` and `\`.
_PIECE = re.compile(rb"[\x21\x23-\x5b\x5d-\x7e]+")
#: A prefix that names a key's kind rather than the key: letters, up to two short groups of
#: lowercase letters and digits, each ended by `-` or `_` (`sk-`, `sk-proj-`, `sk-ant-api03-`).
_PREFIX = re.compile(rb"[A-Za-z]{1,8}[-_](?:[a-z0-9]{1,8}[-_]){0,2}")
#: A prefix is only taken off when this much of the piece is left (a short key is all body).
_MIN_BODY_AFTER_PREFIX = 16


@dataclass(frozen=True, slots=True)
class _Piece:
    """A piece of a secret: its bytes, and where its body starts."""

    text: bytes
    body: int


@dataclass(frozen=True, slots=True)
class _Tile:
    """A pattern of the scan: which piece, and where in it the pattern starts."""

    piece: int
    offset: int


class Redactor:
    """Removes the fragments of a fixed set of secrets from bytes and text.

    Immutable once built, safe to share by every task and every stream of a process.
    """

    __slots__ = ("_automaton", "_pieces", "_tiles")

    def __init__(self, secrets: Iterable[str]) -> None:
        pieces: list[_Piece] = []
        for secret in dict.fromkeys(secrets):  # once each, in order
            raw = secret.encode("utf-8", "surrogatepass")
            if len(raw) >= _MIN_SECRET:
                pieces.extend(_pieces_of(raw))
        patterns: list[bytes] = []
        tiles: list[_Tile] = []
        for index, piece in enumerate(pieces):
            for offset in _tile_offsets(piece):
                patterns.append(piece.text[offset : offset + _tile_length(piece)])
                tiles.append(_Tile(index, offset))
        self._pieces = tuple(pieces)
        self._tiles = tuple(tiles)
        self._automaton = ahocorasick_rs.BytesAhoCorasick(patterns) if patterns else None

    def __bool__(self) -> bool:
        """Whether there is anything to redact (no secrets: every call returns its input)."""
        return self._automaton is not None

    def redact_bytes(self, data: bytes) -> tuple[bytes, int]:
        """`data` without any fragment of a secret, and how many fragments were replaced.

        `data` itself (the same object) and 0 when it holds none: the usual case is one scan.
        """
        automaton = self._automaton
        if automaton is None:
            return data, 0
        hits = automaton.find_matches_as_indexes(data, overlapping=True)
        if not hits:
            return data, 0
        runs = self._runs(data, hits)
        if not runs:
            return data, 0
        out = bytearray()
        last = 0
        for start, end in runs:
            out += data[last:start]
            out += _REDACTED_BYTES
            last = end
        out += data[last:]
        return bytes(out), len(runs)

    def redact_text(self, text: str) -> str:
        """`text` without any fragment of a secret (the same object when it holds none)."""
        if self._automaton is None:
            return text
        data = text.encode("utf-8", "surrogatepass")
        redacted, count = self.redact_bytes(data)
        if not count:
            return text
        # Only ASCII runs were replaced by ASCII: what was valid UTF-8 still is.
        return redacted.decode("utf-8", "surrogatepass")

    def _runs(self, data: bytes, hits: list[tuple[int, int, int]]) -> list[tuple[int, int]]:
        """The merged [start, end) spans of `data` that are fragments, in order."""
        spans: list[tuple[int, int]] = []
        for pattern, start, end in hits:
            if spans and spans[-1][0] <= start and end <= spans[-1][1]:
                continue  # inside the fragment just found: the same echo, no new span
            tile = self._tiles[pattern]
            piece = self._pieces[tile.piece]
            span = _extend(data, start, piece.text, tile.offset)
            if _is_fragment(data, span, start - tile.offset, piece):
                spans.append(span)
        if not spans:
            return []
        spans.sort()
        merged = [spans[0]]
        for start, end in spans[1:]:
            last_start, last_end = merged[-1]
            if start <= last_end:
                merged[-1] = (last_start, max(last_end, end))
            else:
                merged.append((start, end))
        return merged


def _pieces_of(secret: bytes) -> list[_Piece]:
    """The pieces of a secret worth finding: its runs of characters JSON keeps as they are."""
    pieces = []
    for match in _PIECE.finditer(secret):
        text = match.group()
        whole = match.start() == 0 and match.end() == len(secret)
        if len(text) < MIN_FRAGMENT and not (whole and len(text) >= _MIN_SECRET):
            continue  # too short to identify anything on its own
        body = 0
        if match.start() == 0:
            prefix = _PREFIX.match(text)
            if prefix is not None and len(text) - prefix.end() >= _MIN_BODY_AFTER_PREFIX:
                body = prefix.end()
        pieces.append(_Piece(text, body))
    return pieces


def _tile_length(piece: _Piece) -> int:
    """A short piece (a short secret) is one pattern, the whole of it."""
    return _TILE if len(piece.text) >= MIN_FRAGMENT else len(piece.text)


def _tile_offsets(piece: _Piece) -> range:
    """Where the piece's tiles start: every `_TILE` characters of its body."""
    length = _tile_length(piece)
    return range(piece.body, len(piece.text) - length + 1, length)


def _extend(data: bytes, start: int, piece: bytes, offset: int) -> tuple[int, int]:
    """The span of `data` around a tile hit at `start` that equals part of `piece`, where the
    tile's `offset` in `piece` lines the two up."""
    left, right = start, start + (len(piece) if len(piece) < MIN_FRAGMENT else _TILE)
    at = offset
    while left > 0 and at > 0 and data[left - 1] == piece[at - 1]:
        left -= 1
        at -= 1
    at = offset + (right - start)
    while right < len(data) and at < len(piece) and data[right] == piece[at]:
        right += 1
        at += 1
    return left, right


def _is_fragment(data: bytes, span: tuple[int, int], piece_start: int, piece: _Piece) -> bool:
    """Whether a matching span of `data` identifies the secret: a whole short piece, or
    enough of the piece's body (long, or mixing kinds of characters).

    `piece_start` is where the piece would begin in the data for this alignment.
    """
    start, end = span
    if len(piece.text) < MIN_FRAGMENT:
        return end - start == len(piece.text)
    body = data[max(start, piece_start + piece.body) : end]
    if len(body) < MIN_FRAGMENT:
        return False
    return len(body) >= 2 * MIN_FRAGMENT or _kinds(body) >= 2


def _kinds(text: bytes) -> int:
    """How many of lowercase letters, uppercase letters and digits `text` holds."""
    return (
        (text.upper() != text)  # some lowercase
        + (text.lower() != text)  # some uppercase
        + any(48 <= byte <= 57 for byte in text)
    )
