"""What the built-in mock answers on embeddings: one deterministic unit vector per input.

Each vector depends only on the model, the input's text and its `dimensions` (1536 unless
the request says, at most 4096), so a test can compare answers; `encoding_format: base64`
gives the little-endian float32 bytes in base64, as OpenAI does. Usage counts the inputs'
words as prompt tokens.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from typing import Any

from gateway.apis.mock_wire import MockWire, dumps

__all__ = ["EmbeddingsMockWire"]

_DEFAULT_DIMENSIONS = 1536
_MAX_DIMENSIONS = 4096


class EmbeddingsMockWire(MockWire):
    """The whole answer only: embeddings never stream."""

    garbage = b""
    input_field = "input"

    def said(self) -> str:
        return " ".join(self._inputs())

    def _inputs(self) -> list[str]:
        given = self.body.get("input")
        if isinstance(given, str):
            return [given]
        if isinstance(given, list) and given and all(isinstance(x, int) for x in given):
            return [" ".join(str(token) for token in given)]  # one input as token ids
        if isinstance(given, list):
            return [item if isinstance(item, str) else dumps(item).decode() for item in given]
        return [dumps(given).decode()]

    def _dimensions(self) -> int:
        asked = self.body.get("dimensions")
        if isinstance(asked, int) and not isinstance(asked, bool) and asked >= 1:
            return min(asked, _MAX_DIMENSIONS)
        return _DEFAULT_DIMENSIONS

    def _vector(self, text: str, dimensions: int) -> list[float]:
        seed = f"{self.model}\x00{text}".encode()
        raw: list[float] = []
        counter = 0
        while len(raw) < dimensions:
            digest = hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
            raw += [(byte - 127.5) / 127.5 for byte in digest]
            counter += 1
        values = raw[:dimensions]
        norm = math.sqrt(sum(v * v for v in values)) or 1.0
        return [round(v / norm, 6) for v in values]

    def completion(self, text: str) -> bytes:
        dimensions = self._dimensions()
        as_base64 = self.body.get("encoding_format") == "base64"
        data: list[dict[str, Any]] = []
        inputs = self._inputs()
        for index, each in enumerate(inputs):
            vector = self._vector(each, dimensions)
            embedding: Any = vector
            if as_base64:
                packed = struct.pack(f"<{len(vector)}f", *vector)
                embedding = base64.b64encode(packed).decode("ascii")
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(len(each.split()) for each in inputs)
        return dumps(
            {
                "object": "list",
                "data": data,
                "model": self.model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )
