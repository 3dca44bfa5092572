"""`Router`: model names and glob patterns -> routes, each a chain of targets with its limits.

Exact names win over patterns; patterns are tried in configuration order; a route's label is
its configured name or pattern. A target's own limits sit between the route's and the
request's; targets naming the same upstream and model share their backend's state (in-flight
slots, circuit) from the store.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gateway.apis import ANTHROPIC_MESSAGES, OPENAI_CHAT, OPENAI_EMBEDDINGS, OPENAI_RESPONSES
from gateway.errors import GatewayOverloaded, InvalidRequest, UnknownModel
from gateway.providers import build_providers
from gateway.routing import Router, build_routes, is_pattern
from gateway.settings import GatewaySettings
from gateway.state import MemoryBackend, MemoryStore
from gateway.streaming import Timeouts

UPSTREAMS: dict[str, Any] = {
    "primary": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"},
    "backup": {"kind": "openai", "base_url": "http://127.0.0.1:10/v1"},
    "claude": {"kind": "anthropic", "base_url": "http://127.0.0.1:11"},
    "mock": {"kind": "mock"},
}


def router(*routes: dict[str, Any], **settings: Any) -> Router:
    config = GatewaySettings(upstreams=UPSTREAMS, routes=list(routes), **settings)
    store = MemoryStore(max_streams=config.limits.max_streams)
    return Router(build_routes(config, build_providers(config), store))


def test_exact_name_wins_over_a_pattern_listed_before_it() -> None:
    routes = router(
        {"model": "gpt-*", "targets": [{"upstream": "backup"}]},
        {"model": "gpt-4o", "targets": [{"upstream": "primary"}]},
    )
    assert routes.resolve("gpt-4o").targets[0].provider.name == "primary"
    assert routes.resolve("gpt-4o-mini").targets[0].provider.name == "backup"


def test_patterns_are_tried_in_configuration_order() -> None:
    routes = router(
        {"model": "gpt-4o*", "targets": [{"upstream": "primary"}]},
        {"model": "gpt-*", "targets": [{"upstream": "backup"}]},
        {"model": "[ab]?", "targets": [{"upstream": "mock"}]},
    )
    assert routes.resolve("gpt-4o-mini").name == "gpt-4o*"
    assert routes.resolve("gpt-3.5").name == "gpt-*"
    assert routes.resolve("b1").name == "[ab]?"
    with pytest.raises(UnknownModel):
        routes.resolve("c1")
    with pytest.raises(UnknownModel):
        routes.resolve("GPT-4O")  # case-sensitive, like model names


def test_models_lists_exact_names_and_patterns_apart() -> None:
    routes = router(
        {"model": "a", "targets": [{"upstream": "mock"}]},
        {"model": "gpt-*", "targets": [{"upstream": "primary"}]},
        {"model": "b", "targets": [{"upstream": "mock"}]},
    )
    assert routes.models() == ["a", "b"]
    assert routes.patterns() == ["gpt-*"]
    assert [is_pattern(name) for name in ("a", "gpt-*", "x?", "[ab]")] == [
        False,
        True,
        True,
        True,
    ]


def test_target_without_model_sends_the_clients_name() -> None:
    targets = [{"upstream": "primary"}, {"upstream": "backup", "model": "x"}]
    route = router({"model": "gpt-*", "targets": targets}).resolve("gpt-4o")
    assert [t.upstream_model("gpt-4o") for t in route.targets] == ["gpt-4o", "x"]
    assert [t.name for t in route.targets] == ["primary/*", "backup/x"]


def test_target_limits_sit_between_the_routes_and_the_requests() -> None:
    route = router(
        {
            "model": "m",
            "targets": [
                {"upstream": "primary", "timeouts": {"first_byte": 5, "idle": 7}},
                {"upstream": "backup"},
            ],
            "timeouts": {"first_byte": 20, "total": 100},
            "max_timeouts": {"first_byte": 30},
        },
        timeouts={"connect": 2},
    ).resolve("m")
    primary, backup = route.targets
    assert route.timeouts_for({}, primary) == Timeouts(connect=2, first_byte=5, idle=7, total=100)
    assert route.timeouts_for({}, backup) == Timeouts(connect=2, first_byte=20, idle=120, total=100)
    # The request's header wins over the target's own limit, up to the route's ceiling.
    assert route.timeouts_for({"first_byte": 60}, primary).first_byte == 30
    assert route.timeouts_for({"idle": 1}, primary).idle == 1


async def test_targets_naming_the_same_backend_share_their_slots() -> None:
    routes = router(
        {"model": "a", "targets": [{"upstream": "primary", "model": "x", "max_streams": 3}]},
        {"model": "b", "targets": [{"upstream": "primary", "model": "x", "max_streams": 2}]},
        {"model": "c", "targets": [{"upstream": "primary", "model": "y", "max_streams": 2}]},
    )
    a, b, c = (routes.resolve(name).targets[0] for name in "abc")
    assert a.backend is b.backend
    assert isinstance(a.backend, MemoryBackend)
    assert a.backend.slots.limit == 2  # the tighter limit holds
    assert c.backend is not a.backend
    assert routes.backends() == [a.backend, c.backend]  # each backend once
    first, _ = await a.backend.acquire(), await b.backend.acquire()
    with pytest.raises(GatewayOverloaded):
        await a.backend.acquire()
    first.release()
    await b.backend.acquire()


def test_a_backends_limit_is_the_tightest_any_of_its_targets_sets() -> None:
    routes = router(
        {"model": "a", "targets": [{"upstream": "primary", "model": "x"}]},
        {"model": "b", "targets": [{"upstream": "primary", "model": "x", "max_streams": 4}]},
        {"model": "c", "targets": [{"upstream": "primary", "model": "x"}]},
        {"model": "d", "targets": [{"upstream": "primary", "model": "y"}]},
    )
    limits = {}
    for name in "abcd":
        backend = routes.resolve(name).targets[0].backend
        assert isinstance(backend, MemoryBackend)
        limits[name] = backend.slots.limit
    assert limits == {"a": 4, "b": 4, "c": 4, "d": None}  # none set: unlimited


def test_a_chain_may_mix_the_openai_and_anthropic_apis_each_target_in_its_own() -> None:
    routes = router({"model": "m", "targets": [{"upstream": "primary"}, {"upstream": "claude"}]})
    for api in (OPENAI_CHAT, OPENAI_RESPONSES, ANTHROPIC_MESSAGES):
        route = routes.resolve("m", api)
        spoken = [target.api_for(api) for target in route.targets]
        # Each target in the client's API where it speaks it, else translated to its own.
        assert spoken[0] is (OPENAI_CHAT if api is ANTHROPIC_MESSAGES else api)
        assert spoken[1] is ANTHROPIC_MESSAGES
    # Embeddings have no translation: the Anthropic target cannot serve them.
    with pytest.raises(InvalidRequest, match="does not translate"):
        routes.resolve("m", OPENAI_EMBEDDINGS)


def test_a_target_cannot_set_the_total_deadline() -> None:
    with pytest.raises(ValidationError, match="total"):
        router({"model": "m", "targets": [{"upstream": "primary", "timeouts": {"total": 5}}]})


def test_a_chain_has_at_most_eight_targets() -> None:
    targets = [{"upstream": "primary", "model": str(n)} for n in range(9)]
    with pytest.raises(ValidationError, match="at most 8"):
        router({"model": "m", "targets": targets})
    router({"model": "m", "targets": targets[:8]})
