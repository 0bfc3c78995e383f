"""Round-trip parity: each backend's objects, read back into the neutral form, equal the topology
for every feature the backend carries, on the default topology and on a generated larger one. A
policy one backend drops, or renders wrong, fails here."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from backends import backend_named
from backends.render import all_objects, render
from config.settings import patch_between
from mesh.capabilities import Feature
from mesh.names import mesh_names
from mesh.parity import neutral_form
from scripts.scale import generated_topology
from tests.conftest import cdk_json_context
from tests.unit.test_settings import backend_config, config_with

BACKENDS = ["appmesh", "istio", "lattice"]


def _lattice_compatible(topology: dict[str, Any]) -> dict[str, Any]:
    """The same topology with every setting Lattice cannot express turned off."""
    topology = copy.deepcopy(topology)
    topology.update(mtls="off", egress_filter="ALLOW_ALL", tracing="off")
    for service in topology["services"].values():
        service.update(timeout_ms="off", outlier_detection="off", connection_pool="off")
    for vs in topology["virtual_services"].values():
        for route in vs["routes"]:
            route.update(timeout_ms="off", retry="off")
    return topology


def _varied(topology: dict[str, Any]) -> dict[str, Any]:
    """Policies that differ from the defaults, so a renderer that ignores them cannot pass."""
    topology = copy.deepcopy(topology)
    names = sorted(topology["services"])
    for index, name in enumerate(names):
        service = topology["services"][name]
        service["health_check"] = {
            "interval_ms": 5000 + 1000 * (index % 7),
            "timeout_ms": 2000 + 1000 * (index % 3),
            "healthy_threshold": 2 + index % 5,
        }
        if index % 3 == 0:
            service["outlier_detection"] = "off"
        else:
            service["outlier_detection"] = {
                "max_server_errors": 1 + index % 9,
                "interval_ms": 1000 * (1 + index % 4),
                "max_ejection_percent": 10 * (index % 11),
            }
        service["connection_pool"] = "off" if index % 4 == 0 else {"max_connections": 10 + index, "max_pending_requests": 5 + index}
    for index, (_, vs) in enumerate(sorted(topology["virtual_services"].items())):
        for route in vs["routes"]:
            route["timeout_ms"] = 3000 + 500 * (index % 5)
            if index % 2:
                route["retry"] = "off"
            else:
                route["retry"] = {
                    "max_retries": 1,
                    "per_retry_timeout_ms": 1000,
                    "http_events": ["gateway-error"],
                    "tcp_events": ["connection-error"],
                }
    return topology


def _topologies() -> dict[str, dict[str, Any]]:
    default = cdk_json_context()["topology"]
    larger = generated_topology(40)
    larger["virtual_services"]["svc-002"] = {
        "routes": [
            {"prefix": "/", "targets": {"svc-002": 3, "svc-003": 1}},
            {"prefix": "/api/", "targets": {"svc-003": 1}},
        ]
    }
    return {"default": default, "varied": _varied(default), "generated": _varied(larger)}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", ["default", "varied", "generated"])
def test_each_backend_reads_back_the_topology(backend: str, shape: str) -> None:
    raw = _topologies()[shape]
    if backend == "lattice":
        raw = _lattice_compatible(raw)
    overrides: dict[str, Any] = {"mesh_backend": backend, "topology": patch_between(cdk_json_context()["topology"], raw)}
    if shape == "generated":
        overrides.update(node_desired=4, node_max=100, node_max_pods=737)
    config = config_with(**overrides)
    implementation = backend_named(backend)
    names = mesh_names(config)
    read = implementation.read_back(all_objects(render(config, implementation)), names)
    assert read == neutral_form(config.mesh.topology, names, implementation.round_trip)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_backend_carries_every_feature_it_claims(backend: str) -> None:
    """What the capability table says is expressed (`yes`) is read back, except what the neutral
    form has no place for (where traces and logs go, the discovery setting, and how a canary is
    judged: by the analysis project, tests/stacks/test_canary_stacks.py, not by mesh objects)."""
    implementation = backend_named(backend)
    outside_the_form = {Feature.TRACING, Feature.ACCESS_LOGS, Feature.DISCOVERY, Feature.CANARY_ANALYSIS}
    claimed = {f for f, c in implementation.capabilities.items() if c.support == "yes"} - outside_the_form
    assert claimed <= implementation.round_trip, claimed - implementation.round_trip


def test_a_dropped_policy_fails_the_round_trip() -> None:
    """The read-back is not an echo: an Istio route whose retries were lost reads back differently."""
    config = backend_config("istio")
    implementation = backend_named("istio")
    names = mesh_names(config)
    objects = all_objects(render(config, implementation))
    for obj in objects:
        if obj["kind"] == "VirtualService" and obj["metadata"]["name"] == "crystal":
            obj["spec"]["http"][0]["retries"] = {"attempts": 0}
    assert implementation.read_back(objects, names) != neutral_form(config.mesh.topology, names, implementation.round_trip)
