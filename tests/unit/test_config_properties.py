"""Property-based: random and mutated configs either build (and synthesize) or fail cleanly, and
each documented bound is enforced on both sides (an oracle: the value is accepted exactly when it
is within the bound, and a refusal names that setting).

"Cleanly" means a ConfigError whose message is one line naming a key: never another exception
type, which would reach the user as a traceback.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backends import configure
from config import ConfigError, merge_layers
from config.settings import KNOWN_KEYS
from tests.conftest import cdk_json_context, synthesize

DEFAULTS = cdk_json_context()

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=100_000),
    st.text(max_size=12),
    st.sampled_from(
        ["1.35", "m5.large", "t2.micro", "10.0.0.0/16", "us-west-1", "/", "/eks/", "nodejs:1,nodejsv2:1", "strict", "off", "DROP_ALL"]
    ),
)
values = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=6
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, child in node.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += _paths(child, (*prefix, index))
    return found


TOPOLOGY_PATHS = _paths(DEFAULTS["topology"])


@st.composite
def mutated_contexts(draw: st.DrawFn) -> dict[str, Any]:
    context = copy.deepcopy(DEFAULTS)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        choice = draw(st.sampled_from(["setting", "topology", "weights", "unknown"]))
        if choice == "setting":
            context[draw(st.sampled_from(sorted(KNOWN_KEYS - {"config"})))] = draw(values)
        elif choice == "topology":
            path = draw(st.sampled_from(TOPOLOGY_PATHS))
            target = context["topology"]
            try:
                for step in path[:-1]:
                    target = target[step]
                target[path[-1]] = draw(values)
            except (KeyError, IndexError, TypeError):
                pass  # an earlier mutation reshaped this part of the tree
        elif choice == "weights":
            context[f"weights.{draw(st.sampled_from(['nodejs', 'crystal', 'nope']))}"] = draw(
                st.one_of(values, st.just("nodejs:0,nodejsv2:0"))
            )
        else:
            context[draw(st.text(min_size=1, max_size=10).filter(lambda k: not k.startswith("@") and ":" not in k))] = draw(values)
    return context


_OUTCOMES = {"built": 0, "refused": 0}


def _build(context: dict[str, Any]) -> Any:
    return configure(merge_layers(DEFAULTS, context), {})


@settings(
    max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "400")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=os.environ.get("PROPERTY_RANDOM") != "1",
)
@given(mutated_contexts())
def test_every_config_builds_or_fails_with_one_clean_line(context: dict[str, Any]) -> None:
    try:
        _build(context)
        _OUTCOMES["built"] += 1
    except ConfigError as error:
        _OUTCOMES["refused"] += 1
        message = str(error)
        assert message.startswith("config error: ")
        assert "\n" not in message
        assert message.startswith((f"config error: {error.key}=", f"config error: {error.key!r}="))


def test_the_mutations_exercise_both_outcomes() -> None:
    """The property above must not pass by refusing everything (or by mutating nothing)."""
    if sum(_OUTCOMES.values()) == 0:
        test_every_config_builds_or_fails_with_one_clean_line()
    assert _OUTCOMES["built"] >= 10, _OUTCOMES  # 25 of 400 with the derandomized examples
    assert _OUTCOMES["refused"] >= 0.3 * sum(_OUTCOMES.values()), _OUTCOMES


VALID_VARIATIONS = st.fixed_dictionaries(
    {},
    optional={
        "node_desired": st.integers(min_value=2, max_value=4),
        "nat_gateways": st.integers(min_value=1, max_value=2),
        "kubernetes_version": st.sampled_from(["1.35", "1.36"]),
        "mesh_backend": st.sampled_from(["appmesh", "istio"]),
        "weights.nodejs": st.sampled_from(["nodejs:2,nodejsv2:1", "nodejs:1,nodejsv2:1", "nodejs:0,nodejsv2:1", "nodejs:100,nodejsv2:0"]),
        "auto_mode": st.booleans(),
        "endpoint_access": st.sampled_from(["public", "private", "public_and_private"]),
        "services_per_stack": st.integers(min_value=1, max_value=4),
    },
    # The one combination refused on purpose: Istio's metrics scraper needs the private endpoint.
).filter(lambda variation: not (variation.get("mesh_backend") == "istio" and variation.get("endpoint_access") == "public"))


@pytest.mark.integration
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=os.environ.get("PROPERTY_RANDOM") != "1",
)
@given(VALID_VARIATIONS)
def test_valid_configs_synthesize(tmp_path_factory: pytest.TempPathFactory, variation: dict[str, Any]) -> None:
    outdir: Path = tmp_path_factory.mktemp("property")
    result = synthesize(outdir, variation)
    assert result.error is None
    assert list(outdir.glob("*.template.json"))


# -- the oracle: each bound, on both sides -----------------------------------------------------------

# (setting path in the topology or a top-level key, inclusive bounds, settings that isolate it
# from other rules). A value is accepted exactly when low <= value <= high.
BOUNDS: list[tuple[tuple[Any, ...], int, int, dict[str, Any]]] = [
    (("services_per_stack",), 1, 80, {}),
    (("topology", "virtual_services", "nodejs", "routes", 0, "targets", "nodejs"), 0, 100, {}),
    (("topology", "gateway", "port"), 1024, 65535, {}),
    (("topology", "services", "crystal", "health_check", "healthy_threshold"), 2, 10, {}),
    (("topology", "services", "crystal", "outlier_detection", "max_ejection_percent"), 0, 100, {}),
    (("topology", "services", "crystal", "connection_pool", "max_connections"), 1, 100_000, {}),
    (("topology", "virtual_services", "crystal", "routes", 0, "retry", "max_retries"), 0, 10, {"timeout_ms": 100_000}),
    (("node_desired",), 1, 4, {}),
]


def _with(path: tuple[Any, ...], value: Any, isolate: dict[str, Any]) -> dict[str, Any]:
    context = copy.deepcopy(DEFAULTS)
    target: Any = context
    for step in path[:-1]:
        target = target.setdefault(step, {}) if isinstance(step, str) else target[step]
    target[path[-1]] = value
    if isolate:
        target_route = context["topology"]["virtual_services"]["crystal"]["routes"][0]
        target_route.update(isolate)
    return context


def _key(path: tuple[Any, ...]) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.sampled_from(BOUNDS), st.integers(min_value=-3, max_value=100_003))
def test_each_bound_accepts_exactly_its_range(bound: tuple[Any, ...], offset: int) -> None:
    path, low, high, isolate = bound
    # Values near each edge, and anywhere in between.
    value = [low - 1, low, high, high + 1][offset % 4] if offset % 3 else low + offset % (high - low + 2)
    inside = low <= value <= high
    try:
        _build(_with(path, value, isolate))
    except ConfigError as error:
        assert not inside, f"{_key(path)}={value} is within {low}..{high} but was refused: {error}"
        assert error.key.startswith(_key(path).rsplit(".", 1)[0]), f"{_key(path)}={value}: the refusal names {error.key}"
        return
    assert inside, f"{_key(path)}={value} is outside {low}..{high} but was accepted"
