"""The configuration reference in the README is generated from `GatewaySettings` and kept in sync.

The table lists every field with its type, default, environment variable, flag and description;
these tests fail when the README's copy is stale, when a field has no description, and when a
documented environment variable or flag does not actually set its field.
"""

from __future__ import annotations

import os
from functools import reduce
from pathlib import Path
from typing import Any

import pytest

from gateway.settings import FLAGS, SECRET_FIELDS, GatewaySettings, load_settings
from gateway.settings.reference import (
    BEGIN_MARKER,
    END_MARKER,
    REGENERATE,
    field_at,
    field_docs,
    render_table,
    replace_table,
)

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("GATEWAY_"):
            monkeypatch.delenv(name)


def test_readme_reference_matches_the_settings_model() -> None:
    text = README.read_text(encoding="utf-8")
    assert BEGIN_MARKER in text, f"README.md lost its marker {BEGIN_MARKER}"

    current = text[text.index(BEGIN_MARKER) + len(BEGIN_MARKER) : text.index(END_MARKER)]

    assert current.strip() == render_table().strip(), (
        f"README.md's settings reference is out of date: run `{REGENERATE}` (in .venv)"
    )


def test_every_field_has_a_description() -> None:
    undocumented = [doc.path for doc in field_docs() if not doc.description.strip()]

    assert undocumented == []


def test_reference_rows_give_type_default_environment_and_flag() -> None:
    port = field_at("listen.port")
    key_file = field_at("upstreams.<name>.api_key_file")
    route_model = field_at("routes[].model")

    assert (port.type, port.default, port.env, port.flag) == (
        "int 0..65535",
        "`8080`",
        "GATEWAY_LISTEN__PORT",
        "--port",
    )
    assert (key_file.type, key_file.default) == ("path or null", "null")
    assert key_file.env == "GATEWAY_UPSTREAMS__<NAME>__API_KEY_FILE"
    assert (route_model.default, route_model.env) == ("required", "")  # set with GATEWAY_ROUTES
    assert "| `listen.port` | int 0..65535 | `8080` | `GATEWAY_LISTEN__PORT`, `--port` |" in (
        render_table()
    )


def test_replacing_the_table_keeps_the_rest_of_the_text() -> None:
    text = f"# Title\n\nbefore\n{BEGIN_MARKER}\n| old |\n{END_MARKER}\nafter\n"

    replaced = replace_table(text, "| new |\n")

    assert replaced == f"# Title\n\nbefore\n{BEGIN_MARKER}\n| new |\n{END_MARKER}\nafter\n"
    with pytest.raises(ValueError, match="markers"):
        replace_table("no markers here", "| new |\n")


def _integer_rows() -> list[str]:
    return [
        doc.path
        for doc in field_docs()
        if doc.env and "<NAME>" not in doc.env and doc.type.startswith("int")
    ]


@pytest.mark.parametrize("path", _integer_rows())
def test_documented_environment_variable_sets_its_field(
    monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    monkeypatch.setenv(field_at(path).env, "7")

    settings = load_settings()

    assert _value_at(settings, path) == 7


@pytest.mark.parametrize("option", sorted(FLAGS))
def test_every_flag_names_a_documented_field(option: str) -> None:
    doc = field_at(FLAGS[option])

    assert doc.flag == option


def test_every_secret_field_is_kept_out_of_the_config_file() -> None:
    secret_paths = {doc.path for doc in field_docs() if "secret" in doc.type}
    guarded = {
        ".".join(p if p != "*" else "<name>" for p in loc).replace(".[]", "[]")
        for loc in SECRET_FIELDS
    }

    assert secret_paths == guarded  # a new secret field must be added to SECRET_FIELDS


def _value_at(settings: GatewaySettings, path: str) -> Any:
    return reduce(getattr, path.split("."), settings)
