"""render_envoy_config: the topology's names, routes and weights, as an Envoy bootstrap (pure)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.topology import Topology, parse_topology
from localmesh.envoy import LocalPorts, allocate_ports, render_envoy_config
from localmesh.runner import LocalMesh, backend_env_name, load_config, validate_envoy_config

ZONE = "appmeshworkshop.hosted.local"


def default_topology(overrides: dict[str, str] | None = None) -> Topology:
    return load_config(overrides).mesh.topology


def fixed_ports(topology: Topology) -> LocalPorts:
    services = {service.name: 10_000 + index for index, service in enumerate(topology.services)}
    client = next(s for s in topology.services if s.backends)
    return LocalPorts(
        services=services, egress=15_001, admin=15_000, gateway=18_088, upstreams={b: 16_000 + i for i, b in enumerate(client.backends)}
    )


def listener(config: dict[str, Any], name: str) -> dict[str, Any]:
    matches = [item for item in config["static_resources"]["listeners"] if item["name"] == name]
    assert len(matches) == 1, [item["name"] for item in config["static_resources"]["listeners"]]
    return matches[0]


def manager(listener_config: dict[str, Any]) -> dict[str, Any]:
    return listener_config["filter_chains"][0]["filters"][0]["typed_config"]  # type: ignore[no-any-return]


def virtual_hosts(config: dict[str, Any], name: str) -> dict[str, dict[str, Any]]:
    return {host["name"]: host for host in manager(listener(config, name))["route_config"]["virtual_hosts"]}


def weights(route: dict[str, Any]) -> dict[str, int]:
    return {c["name"]: c["weight"] for c in route["route"]["weighted_clusters"]["clusters"]}


@pytest.fixture(scope="module")
def topology() -> Topology:
    return default_topology()


@pytest.fixture(scope="module")
def rendered(topology: Topology) -> dict[str, Any]:
    return render_envoy_config(topology, ZONE, fixed_ports(topology))


def test_one_static_cluster_per_service_named_like_its_virtual_node(topology: Topology, rendered: dict[str, Any]) -> None:
    clusters = {c["name"]: c for c in rendered["static_resources"]["clusters"]}
    assert sorted(clusters) == sorted(["frontend-app", "nodejs-app", "nodejsv2-app", "crystal-app"])
    ports = fixed_ports(topology).services
    for service in topology.services:
        cluster = clusters[service.virtual_node]
        assert cluster["type"] == "STATIC"
        (endpoint,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
        assert endpoint["endpoint"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": ports[service.name]}


def test_every_address_is_loopback(rendered: dict[str, Any]) -> None:
    addresses = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "socket_address" in node:
                addresses.append(node["socket_address"]["address"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(rendered)
    assert addresses and set(addresses) == {"127.0.0.1"}


def test_egress_has_exactly_the_frontends_backends_by_mesh_name(rendered: dict[str, Any]) -> None:
    hosts = virtual_hosts(rendered, "egress")
    assert sorted(hosts) == ["crystal", "nodejs"]
    assert hosts["nodejs"]["domains"] == [f"nodejs.{ZONE}", f"nodejs.{ZONE}:3000"]
    assert hosts["crystal"]["domains"] == [f"crystal.{ZONE}", f"crystal.{ZONE}:3000"]
    all_domains = [d for host in hosts.values() for d in host["domains"]]
    assert not any("*" in d for d in all_domains), "no catch-all: an undeclared name must get 404"


def test_egress_routes_carry_the_configured_weights(rendered: dict[str, Any]) -> None:
    hosts = virtual_hosts(rendered, "egress")
    (route,) = hosts["nodejs"]["routes"]
    assert route["name"] == "route-to-nodejs-app"
    assert route["match"] == {"prefix": "/"}
    assert weights(route) == {"nodejs-app": 2, "nodejsv2-app": 1}
    assert weights(hosts["crystal"]["routes"][0]) == {"crystal-app": 1}


def test_weights_follow_the_override_and_zero_weight_targets_are_dropped() -> None:
    for value, expected in [("nodejs:1,nodejsv2:1", {"nodejs-app": 1, "nodejsv2-app": 1}), ("nodejs:0,nodejsv2:1", {"nodejsv2-app": 1})]:
        topology = default_topology({"weights.nodejs": value})
        config = render_envoy_config(topology, ZONE, fixed_ports(topology))
        assert weights(virtual_hosts(config, "egress")["nodejs"]["routes"][0]) == expected
        assert weights(virtual_hosts(config, "ingress-gw")["ingress-gw"]["routes"][0]) == expected


def test_upstream_listeners_alias_each_backend_and_rewrite_host(rendered: dict[str, Any]) -> None:
    hosts = virtual_hosts(rendered, "upstream-nodejs")
    assert list(hosts) == ["nodejs"]
    assert hosts["nodejs"]["domains"] == ["127.0.0.1:16000", "localhost:16000"]
    route = hosts["nodejs"]["routes"][0]
    assert route["route"]["host_rewrite_literal"] == f"nodejs.{ZONE}:3000"
    assert weights(route) == {"nodejs-app": 2, "nodejsv2-app": 1}
    assert listener(rendered, "upstream-crystal")["address"]["socket_address"]["port_value"] == 16001


def test_gateway_rewrites_the_matched_prefix_to_slash(rendered: dict[str, Any]) -> None:
    gateway = listener(rendered, "ingress-gw")
    assert gateway["address"]["socket_address"]["port_value"] == 18088
    (route,) = virtual_hosts(rendered, "ingress-gw")["ingress-gw"]["routes"]
    assert route["name"] == "gateway-route-eks"
    assert route["match"] == {"prefix": "/eks/"}
    assert route["route"]["prefix_rewrite"] == "/"
    assert route["route"]["host_rewrite_literal"] == f"nodejs.{ZONE}"
    assert weights(route) == {"nodejs-app": 2, "nodejsv2-app": 1}


def test_admin_and_listener_names(rendered: dict[str, Any]) -> None:
    assert rendered["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 15000}
    names = [item["name"] for item in rendered["static_resources"]["listeners"]]
    assert names == ["egress", "upstream-nodejs", "upstream-crystal", "ingress-gw"]


CUSTOM = {
    "services": {
        "web": {"backends": ["api", "docs"]},
        "a": {"source": "services/nodejs"},
        "b": {"source": "services/nodejs"},
        "c": {"source": "services/crystal"},
    },
    "virtual_services": {
        "api": {"routes": [{"prefix": "/", "targets": {"a": 1}}, {"prefix": "/v2", "targets": {"b": 3, "c": 0}}]},
        "docs": {"routes": [{"name": "docs-only", "prefix": "/docs", "targets": {"c": 1}}]},
    },
    "gateway": {"routes": [{"prefix": "/api/", "virtual_service": "api"}, {"prefix": "/api/docs/", "virtual_service": "docs"}]},
}


def test_multi_route_virtual_services_and_gateway_composition() -> None:
    topology = parse_topology(copy.deepcopy(CUSTOM))
    ports = LocalPorts(services={"web": 1, "a": 2, "b": 3, "c": 4}, egress=5, admin=6, gateway=7)
    config = render_envoy_config(topology, "example.local", ports, access_log=False)
    api = virtual_hosts(config, "egress")["api"]
    # The longest prefix is tried first.
    assert api["domains"] == ["api.example.local", "api.example.local:3000"]
    assert [r["match"]["prefix"] for r in api["routes"]] == ["/v2", "/"]
    assert weights(api["routes"][0]) == {"b-app": 3}
    gateway_routes = virtual_hosts(config, "ingress-gw")["ingress-gw"]["routes"]
    summary = [(r["match"]["prefix"], r.get("route", {}).get("prefix_rewrite"), "direct_response" in r) for r in gateway_routes]
    # /api/docs/ (longer) first: rewritten to /, then docs' /docs route; docs has no "/" route, so
    # anything else under /api/docs/ is a 404 there rather than falling through to /api/.
    assert summary == [
        ("/api/docs/docs", "/docs", False),
        ("/api/docs/", None, True),
        ("/api/v2", "/v2", False),
        ("/api/", "/", False),
    ]
    assert not any("access_log" in manager(item) for item in config["static_resources"]["listeners"])
    assert [item["name"] for item in config["static_resources"]["listeners"]] == ["egress", "ingress-gw"]


def test_render_is_pure_and_serializable(topology: Topology) -> None:
    ports = fixed_ports(topology)
    first = render_envoy_config(topology, ZONE, ports)
    assert first == render_envoy_config(topology, ZONE, ports)
    assert yaml.safe_load(yaml.safe_dump(first)) == json.loads(json.dumps(first)) == first


def test_allocate_ports_gives_distinct_ports(topology: Topology) -> None:
    ports = allocate_ports(topology, gateway_port=18088)
    values = [*ports.services.values(), ports.egress, ports.admin, ports.gateway, *ports.upstreams.values()]
    assert ports.gateway == 18088
    assert len(values) == len(set(values)) == 4 + 3 + 2
    assert set(ports.upstreams) == {"nodejs", "crystal"}


def test_missing_service_port_is_an_error(topology: Topology) -> None:
    ports = fixed_ports(topology)
    broken = LocalPorts(services={k: v for k, v in ports.services.items() if k != "crystal"}, egress=1, admin=2, gateway=3)
    with pytest.raises(ValueError, match="crystal"):
        render_envoy_config(topology, ZONE, broken)


def test_service_environment_carries_build_args_and_backend_urls() -> None:
    mesh = LocalMesh()  # not started: only names and ports
    env = {s.name: mesh.env_for(s) for s in mesh.topology.services}
    assert env["nodejs"]["APP_VERSION"] == "1" and env["nodejsv2"]["APP_VERSION"] == "2"
    assert env["nodejsv2"]["SERVICE_NAME"] == "nodejsv2" and env["nodejsv2"]["POD_NAME"] == "nodejsv2-local"
    assert env["crystal"]["AVAILABILITY_ZONE"] == "local"
    assert env["frontend"]["NODEJS_URL"] == f"http://nodejs.{ZONE}:3000"
    assert env["frontend"]["CRYSTAL_URL"] == f"http://crystal.{ZONE}:3000"
    assert env["frontend"]["http_proxy"] == mesh.egress_url
    upstreams = LocalMesh(egress_mode="upstreams")
    assert upstreams.env_for(upstreams.topology.service("frontend"))[backend_env_name("nodejs")] == upstreams.upstream_urls["nodejs"]


@pytest.mark.integration
@pytest.mark.parametrize("case", ["default", "custom"])
def test_envoy_validate_accepts_the_rendered_config(case: str, tmp_path: Path) -> None:
    if case == "default":
        topology = default_topology()
        config = render_envoy_config(topology, ZONE, allocate_ports(topology))
    else:
        topology = parse_topology(copy.deepcopy(CUSTOM))
        config = render_envoy_config(topology, "example.local", allocate_ports(topology))
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(config))
    result = validate_envoy_config(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout + result.stderr
