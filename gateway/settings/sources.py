"""The sources of a configuration: reading them, and knowing where each value came from.

A configuration is built from layers, lowest precedence first: the YAML file, the environment,
keyword arguments from code, command-line flags (contract section 9). `SettingsSources` keeps
each layer's raw data so that, when validation fails, every `ConfigProblem` names the field
(`routes[0].timeouts.idle`) and its origin: `config file gateway.yaml`, `environment variable
GATEWAY_TIMEOUTS__IDLE`, `flag --port` or `default`. Secret files (`api_key_file`,
`auth.keys_file`) are read here too, for the validators in `gateway.settings`.

Invariant: nothing here ever renders a configured value - only field paths, file paths,
variable names and flag names - so a secret cannot leak through an error message.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsError

__all__ = [
    "ConfigError",
    "ConfigProblem",
    "Flag",
    "Layer",
    "Loc",
    "SettingsSources",
    "environment_layer",
    "file_layer",
    "flags_layer",
    "format_loc",
    "invalid",
    "literal_secrets",
    "read_environment",
    "read_secret_file",
]

#: A path into the settings: field names, mapping keys and list indexes.
Loc = tuple[str | int, ...]

#: The key of a `PydanticCustomError` context that places the error below the validator's own
#: location (a model validator that rejects one of its fields sets it to that field's `Loc`).
ERROR_AT = "at"

_MISSING = object()


def format_loc(loc: Sequence[str | int]) -> str:
    """`("routes", 0, "timeouts", "idle")` -> `routes[0].timeouts.idle`."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _same(part: str | int, key: str | int) -> bool:
    return str(part).lower() == str(key).lower()


def _related(loc: Loc, path: Loc) -> bool:
    """One of the two locations lies within the other."""
    return all(_same(a, b) for a, b in zip(loc, path, strict=False))


@dataclass(frozen=True, slots=True)
class Flag:
    """A command-line flag that sets one field, e.g. `Flag("--port", "listen.port", 9000)`."""

    option: str
    field: str  # dotted path into the settings
    value: Any


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One reason a configuration is invalid."""

    field: str  # e.g. "routes[0].timeouts.idle"; empty for a problem with no field
    source: str  # e.g. "config file gateway.yaml", "environment variable GATEWAY_X", "default"
    message: str

    def __str__(self) -> str:
        if not self.field:
            return f"{self.message} ({self.source})"
        return f"{self.field} ({self.source}): {self.message}"


class ConfigError(ValueError):
    """An invalid configuration: a plain message, or problems that each name a field and source.

    `str()` is the whole human-readable text, e.g.::

        invalid configuration:
          timeouts.idle (environment variable GATEWAY_TIMEOUTS__IDLE): Input should be > 0
    """

    def __init__(self, message: str = "", problems: Iterable[ConfigProblem] = ()) -> None:
        self.message = message
        self.problems = tuple(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        if not self.problems:
            return f"invalid configuration: {self.message}"
        lines = [f"invalid configuration{': ' + self.message if self.message else ':'}"]
        lines.extend(f"  {problem}" for problem in self.problems)
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Layer:
    """The raw data one source contributed, and how to name that source at a location."""

    kind: str  # "file", "environment", "arguments" or "flags"
    data: Mapping[str, Any]
    path: str = ""  # kind "file": the config file as the user named it
    #: kind "environment": variable name -> its location; kind "flags": option -> location.
    names: Mapping[str, Loc] = field(default_factory=dict)

    def lookup(self, loc: Loc) -> Any:
        """The value this layer holds at `loc`, or `_MISSING`."""
        value: Any = self.data
        for part in loc:
            if isinstance(value, Mapping):
                matches = [key for key in value if _same(part, key)]
                if not matches:
                    return _MISSING
                value = value[part] if part in value else value[matches[0]]
            elif isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
                value = value[part]
            else:
                return _MISSING
        return value

    def names_at(self, loc: Loc) -> list[str]:
        """The variables or flags that set the value at `loc` or part of it."""
        return sorted(name for name, path in self.names.items() if _related(loc, path))

    def describe(self, loc: Loc) -> str:
        if self.kind == "file":
            return f"config file {self.path}"
        names = self.names_at(loc)
        if self.kind == "environment":
            if not names:
                return "environment"
            plural = "s" if len(names) > 1 else ""
            return f"environment variable{plural} {', '.join(names)}"
        if self.kind == "flags":
            return f"flag {', '.join(names)}" if names else "command-line flags"
        return "keyword argument"


@dataclass(frozen=True, slots=True)
class SettingsSources:
    """The layers of one configuration, lowest precedence first."""

    layers: tuple[Layer, ...]

    def merged(self) -> dict[str, Any]:
        """All layers as one mapping: nested mappings merge, anything else is replaced."""
        result: dict[str, Any] = {}
        for layer in self.layers:
            result = _deep_merge(result, layer.data)
        return result

    def contributors(self, loc: Loc) -> list[Layer]:
        """The layers that gave the value at `loc`, highest precedence first."""
        found: list[Layer] = []
        for layer in reversed(self.layers):
            value = layer.lookup(loc)
            if value is _MISSING:
                continue
            found.append(layer)
            if not isinstance(value, Mapping):
                break  # a scalar or list replaces whatever the lower layers had
        return found

    def origin(self, loc: Loc) -> str:
        """Where the value at `loc` (or the nearest enclosing value given) came from."""
        for depth in range(len(loc), 0, -1):
            found = self.contributors(loc[:depth])
            if found:
                return " and ".join(layer.describe(loc[:depth]) for layer in found)
        return "default"

    def environment_variables(self, loc: Loc) -> list[str]:
        """The environment variables that set the value at `loc` or part of it."""
        return [
            name
            for layer in self.layers
            if layer.kind == "environment"
            for name in layer.names_at(loc)
        ]

    def problems(self, exc: ValidationError) -> list[ConfigProblem]:
        """Each validation error as a problem naming its field and that field's origin."""
        problems = []
        for error in exc.errors(include_url=False, include_input=False):
            loc: Loc = tuple(error["loc"])
            at = (error.get("ctx") or {}).get(ERROR_AT)
            if isinstance(at, tuple):
                loc += at
            problems.append(ConfigProblem(format_loc(loc), self.origin(loc), error["msg"]))
        return problems


def _deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = _deep_merge(result[key], value)
        else:
            result[key] = value
    return result


def flags_layer(flags: Sequence[Flag]) -> Layer:
    """The command-line flags as nested data, e.g. `--metrics-port` -> `{"metrics": {...}}`."""
    data: dict[str, Any] = {}
    names: dict[str, Loc] = {}
    for flag in flags:
        parts = flag.field.split(".")
        nested: Any = flag.value
        for part in reversed(parts):
            nested = {part: nested}
        data = _deep_merge(data, nested)
        names[flag.option] = tuple(parts)
    return Layer("flags", data, names=names)


def environment_layer(
    data: Mapping[str, Any], environ: Mapping[str, str], prefix: str, delimiter: str
) -> Layer:
    """The environment source's data, with the variables (under `prefix`) that gave it."""
    names: dict[str, Loc] = {
        name: tuple(name[len(prefix) :].lower().split(delimiter))
        for name in environ
        if name.upper().startswith(prefix.upper()) and len(name) > len(prefix)
    }
    return Layer("environment", data, names=names)


def invalid(at: Loc, message: str) -> PydanticCustomError:
    """A validation error about the field `at` (relative to the model being validated).

    `message` names the field itself (a `ValidationError` read directly shows only the
    validator's location) and must never contain a configured value: it may be a secret.
    """
    return PydanticCustomError("invalid_setting", "{message}", {"message": message, ERROR_AT: at})


def read_secret_file(path: Path, at: Loc) -> str:
    """The file's text without surrounding whitespace; errors name the path, never the text."""
    name = format_loc(at)
    try:
        text = path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        raise invalid(at, f"{name} {path} is not UTF-8 text") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise invalid(at, f"{name} {path} cannot be read: {reason}") from None
    if not text:
        raise invalid(at, f"{name} {path} is empty")
    return text


def file_layer(path: Path, named_by: str) -> Layer:
    """A YAML config file's settings, or a plain `ConfigError` (missing, not YAML, a list...)."""
    try:
        with path.open(encoding="utf-8") as file:  # a file, so YAML's marks name it
            data = yaml.safe_load(file)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path} (named by {named_by})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read config file {path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must be a mapping of settings, not a {type(data).__name__}"
        )
    return Layer("file", data or {}, path=str(path))


def read_environment(settings_cls: type[BaseSettings], prefix: str, delimiter: str) -> Layer:
    """The `prefix` variables as nested data, parsed as pydantic-settings parses them."""
    try:
        data = EnvSettingsSource(settings_cls)()
    except SettingsError as exc:
        raise ConfigError(problems=[_environment_problem(exc, prefix, delimiter)]) from None
    return environment_layer(data, os.environ, prefix, delimiter)


def _environment_problem(exc: SettingsError, prefix: str, delimiter: str) -> ConfigProblem:
    """A variable pydantic-settings could not parse (bad JSON for a list or a mapping)."""
    cause = exc.__cause__
    layer = environment_layer({}, os.environ, prefix, delimiter)
    for name, loc in layer.names.items():
        if cause is not None and getattr(cause, "doc", None) == os.environ[name]:
            reason = getattr(cause, "msg", "cannot be parsed")
            line, column = getattr(cause, "lineno", 0), getattr(cause, "colno", 0)
            return ConfigProblem(
                format_loc(loc),
                f"environment variable {name}",
                f"is not valid JSON ({reason} at line {line} column {column})",
            )
    return ConfigProblem("", "environment", f"a {prefix}* variable cannot be parsed")


def literal_secrets(layer: Layer, secret_fields: Mapping[Loc, str]) -> Iterator[ConfigProblem]:
    """Secrets written into a config file: each one rejected, saying where it belongs instead.

    `secret_fields` maps a location (`*` matches any mapping key, `[]` any list index) to that
    advice.
    """
    if layer.kind != "file":
        return
    for pattern, instead in secret_fields.items():
        for loc in _matches(layer.data, pattern):
            yield ConfigProblem(
                format_loc(loc),
                f"config file {layer.path}",
                f"a secret may not be written in the config file: {instead}",
            )


def _matches(data: Any, pattern: Loc, prefix: Loc = ()) -> Iterator[Loc]:
    if not pattern:
        yield prefix
        return
    head, rest = pattern[0], pattern[1:]
    keys: list[Any]
    if isinstance(data, list):  # `[]` matches every index of a list
        keys = list(range(len(data))) if head == "[]" else []
    elif isinstance(data, Mapping):
        keys = list(data) if head == "*" else [head] if head in data else []
    else:
        return
    for key in keys:
        yield from _matches(data[key], rest, (*prefix, key))
