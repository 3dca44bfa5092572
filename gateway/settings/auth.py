"""The `auth` section of the settings: the gateway keys clients present, and each key's limits.

A key is given either in clear - from the environment (`GATEWAY_AUTH__KEYS`) or `keys_file`,
never the config file - or as its SHA-256 digest, `sha256:<64 hex digits>` (what `gateway
hash-key` prints), which is not a secret and may live anywhere, the config file included.
The gateway only ever keeps digests (`gateway.server.auth.GatewayKeys`).

`clients` are keys given by digest, with a name and limits of their own. The name is the only
identity of a key that logs show; a key of `keys` shows as `key-` and the first 8 hex digits of
its digest (`key_id`), which says which key it was without revealing it. Names are a closed set
from the configuration, so they may become metric labels; key ids are not.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, SecretStr, model_validator

from gateway.settings.sources import invalid, read_secret_file

__all__ = ["AuthSettings", "ClientKeySettings", "hash_key", "key_digest", "key_id"]

_HASH = re.compile(r"sha256:[0-9a-fA-F]{64}")
_HASH_PREFIX = "sha256:"


def hash_key(key: str) -> str:
    """The form of `key` that may be stored anywhere: `sha256:<hex digest>`."""
    return _HASH_PREFIX + hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def key_digest(entry: str) -> bytes:
    """The SHA-256 digest of a configured key: given as `sha256:<hex>`, or computed."""
    if _HASH.fullmatch(entry):
        return bytes.fromhex(entry.removeprefix(_HASH_PREFIX))
    return hashlib.sha256(entry.encode("utf-8", "surrogateescape")).digest()


def key_id(digest: bytes) -> str:
    """A short, non-reversible name of a key for logs: `key-` and 8 hex digits of its digest."""
    return "key-" + digest.hex()[:8]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class ClientKeySettings(_Section):
    """A named gateway key, by digest, with limits of its own."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$",
        description="The key holder's name, shown in logs instead of the key (letters, digits, "
        "`_.-`, at most 64).",
    )
    key_hash: str = Field(
        pattern=r"^sha256:[0-9a-fA-F]{64}$",
        description="The key's SHA-256 digest, `sha256:<64 hex digits>` (`gateway hash-key` "
        "prints it): not a secret, so it may be in the config file.",
    )
    max_streams: PositiveInt | None = Field(
        None,
        description="Requests (streaming or not) in flight with this key (unset: "
        "`auth.max_streams_per_key`).",
    )
    requests_per_minute: PositiveInt | None = Field(
        None,
        description="Requests per minute with this key (unset: "
        "`auth.requests_per_minute_per_key`).",
    )
    tokens_per_minute: PositiveInt | None = Field(
        None,
        description="Tokens (input + output, as reported) per minute with this key (unset: "
        "`auth.tokens_per_minute_per_key`).",
    )


class AuthSettings(_Section):
    """Gateway keys: what clients present to the gateway (never sent upstream)."""

    keys: list[SecretStr] = Field(
        default_factory=list,
        description="Keys clients must present (`Authorization: Bearer` or `x-api-key`); "
        "with no key here nor in `clients`, none is needed. Each in clear or as "
        "`sha256:<hex>`. Never in the config file: from the environment (a JSON list) or "
        "`keys_file`.",
    )
    keys_file: Path | None = Field(
        None,
        description="File with one gateway key per line, in clear or as `sha256:<hex>` (blank "
        "lines, `#` comments ignored).",
    )
    clients: list[ClientKeySettings] = Field(
        default_factory=list,
        description="Named keys, by digest, each with optional limits of its own.",
    )
    max_streams_per_key: PositiveInt | None = Field(
        None,
        description="Requests (streaming or not) in flight with any one key; beyond it 429 "
        "with `Retry-After` (unset: no limit but the global `limits.max_streams`).",
    )
    requests_per_minute_per_key: PositiveInt | None = Field(
        None,
        description="Requests per minute with any one key (a bucket refilled continuously); "
        "beyond it 429 with `Retry-After` (unset: no limit).",
    )
    tokens_per_minute_per_key: PositiveInt | None = Field(
        None,
        description="Tokens (input + output, as the upstreams reported them) per minute with "
        "any one key: a budget refilled continuously, charged when each request ends; a key "
        "below one token left gets 429 with `Retry-After` until it refills (unset: no limit).",
    )

    @property
    def required(self) -> bool:
        """Whether clients must present a key (some key is configured)."""
        return bool(self.keys or self.clients)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.keys_file is not None:
            if "keys" in self.model_fields_set:
                raise invalid((), "the gateway keys are given 2 ways (keys, keys_file): give one")
            object.__setattr__(self, "keys", _read_keys_file(self.keys_file))
        else:
            for index, key in enumerate(self.keys):
                problem = _key_problem(key.get_secret_value())
                if problem:
                    raise invalid(("keys", index), f"keys[{index}] {problem}")
        self._check_unique()
        return self

    def _check_unique(self) -> None:
        """No name twice, no key twice: each key has exactly one identity."""
        names: set[str] = set()
        digests = {key_digest(key.get_secret_value()) for key in self.keys}
        if len(digests) < len(self.keys):
            raise invalid(("keys",), "the same gateway key is given twice")
        for index, client in enumerate(self.clients):
            if client.name in names:
                raise invalid(("clients", index, "name"), f"clients[{index}].name is used twice")
            names.add(client.name)
            digest = key_digest(client.key_hash)
            if digest in digests:
                raise invalid(
                    ("clients", index, "key_hash"),
                    f"clients[{index}] ({client.name}) has a key given elsewhere too",
                )
            digests.add(digest)


def _read_keys_file(path: Path) -> list[SecretStr]:
    keys = []
    for number, line in enumerate(read_secret_file(path, ("keys_file",)).splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        problem = _key_problem(text)
        if problem:
            raise invalid(("keys_file",), f"keys_file {path} line {number} {problem}")
        keys.append(SecretStr(text))
    if not keys:
        raise invalid(("keys_file",), f"keys_file {path} holds no key")
    return keys


def _key_problem(text: str) -> str | None:
    """What makes `text` unusable as a key, if anything (it travels in a header)."""
    if not text:
        return "is empty"
    if not all(char.isprintable() and not char.isspace() for char in text):
        return "holds spaces or control characters"
    if text.startswith(_HASH_PREFIX) and not _HASH.fullmatch(text):
        return "starts with sha256: but is not sha256:<64 hex digits>"
    return None
