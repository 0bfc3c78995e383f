"""render_envoy_config / render_inbound_config: the topology's names, routes, weights and policies,
as Envoy bootstraps (pure)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.topology import Topology, backend_env_name, parse_topology
from envoyconfig.render import LocalPorts, MeshTls, certificate_names, mesh_tls_files, render_envoy_config, render_inbound_config, retry_on
from localmesh.certs import generate_mesh_certificates
from localmesh.ports import allocate_ports
from localmesh.runner import REPO_ROOT, LocalMesh, load_config, validate_envoy_config

ZONE = "appmeshworkshop.hosted.local"
TLS_DIR = "/certs"


def default_topology(overrides: dict[str, Any] | None = None) -> Topology:
    return load_config(overrides).mesh.topology


def cdk_topology() -> dict[str, Any]:
    """A deep copy of cdk.json's topology, to edit and pass back as the `topology` override."""
    return copy.deepcopy(json.loads((REPO_ROOT / "cdk.json").read_text())["context"]["topology"])


def tls_for(topology: Topology) -> MeshTls:
    return mesh_tls_files(TLS_DIR, topology)


def fixed_ports(topology: Topology) -> LocalPorts:
    services = {service.name: 10_000 + index for index, service in enumerate(topology.services)}
    client = next(s for s in topology.services if s.backends)
    return LocalPorts(
        services=services,
        egress=15_001,
        admin=15_000,
        gateway=18_088,
        upstreams={b: 16_000 + i for i, b in enumerate(client.backends)},
        inbound={service.name: (11_000 + index,) for index, service in enumerate(topology.services)},
        inbound_admin=15_002,
    )


def render(topology: Topology, ports: LocalPorts | None = None) -> dict[str, Any]:
    return render_envoy_config(topology, ZONE, ports or fixed_ports(topology), tls=tls_for(topology))


def render_inbound(topology: Topology, ports: LocalPorts | None = None) -> dict[str, Any]:
    return render_inbound_config(topology, ZONE, ports or fixed_ports(topology), tls=tls_for(topology))


def clusters_of(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in config["static_resources"]["clusters"]}


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
    return render(topology)


@pytest.fixture(scope="module")
def inbound(topology: Topology) -> dict[str, Any]:
    return render_inbound(topology)


def test_one_static_cluster_per_service_named_like_its_virtual_node(topology: Topology, rendered: dict[str, Any]) -> None:
    clusters = clusters_of(rendered)
    # The egress client's clusters, plus the gateway's own for what its routes reach.
    assert sorted(clusters) == sorted(
        ["frontend-app", "nodejs-app", "nodejsv2-app", "crystal-app", "ingress-gw-nodejs-app", "ingress-gw-nodejsv2-app"]
    )
    ports = fixed_ports(topology)
    for service in topology.services:
        cluster = clusters[service.virtual_node]
        assert cluster["type"] == "STATIC"
        (endpoint,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
        # The client's Envoy talks to the server's Envoy (its ingress listener), not to the process.
        assert endpoint["endpoint"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": ports.inbound[service.name][0]}


def test_each_instance_has_an_ingress_listener_to_its_process(topology: Topology, inbound: dict[str, Any]) -> None:
    ports = fixed_ports(topology)
    listeners = {item["name"]: item for item in inbound["static_resources"]["listeners"]}
    assert sorted(listeners) == sorted(f"inbound-{s.name}-0" for s in topology.services)
    clusters = clusters_of(inbound)
    for service in topology.services:
        item = listeners[f"inbound-{service.name}-0"]
        assert item["address"]["socket_address"]["port_value"] == ports.inbound[service.name][0]
        (route,) = manager(item)["route_config"]["virtual_hosts"][0]["routes"]
        assert route["route"] == {"cluster": f"{service.name}-local-0", "timeout": "15s"}  # the service's timeout_ms
        local = clusters[f"{service.name}-local-0"]
        (endpoint,) = local["load_assignment"]["endpoints"][0]["lb_endpoints"]
        assert endpoint["endpoint"]["address"]["socket_address"]["port_value"] == ports.services[service.name]
        assert local["circuit_breakers"] == {"thresholds": [{"priority": "DEFAULT", "max_connections": 1024, "max_pending_requests": 1024}]}
    assert inbound["admin"]["address"]["socket_address"]["port_value"] == 15_002


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
    walk(render_inbound(default_topology()))
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
        config = render(topology)
        assert weights(virtual_hosts(config, "egress")["nodejs"]["routes"][0]) == expected
        via_gateway = {f"ingress-gw-{name}": weight for name, weight in expected.items()}
        assert weights(virtual_hosts(config, "ingress-gw")["ingress-gw"]["routes"][0]) == via_gateway


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
    assert weights(route) == {"ingress-gw-nodejs-app": 2, "ingress-gw-nodejsv2-app": 1}


def test_admin_and_listener_names(rendered: dict[str, Any]) -> None:
    assert rendered["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 15000}
    names = [item["name"] for item in rendered["static_resources"]["listeners"]]
    assert names == ["egress", "upstream-nodejs", "upstream-crystal", "ingress-gw"]


CUSTOM = {
    "services": {
        "web": {"source": "services/frontend", "backends": ["api", "docs"]},
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
    inbound_ports = {"web": (11,), "a": (12,), "b": (13,), "c": (14,)}
    ports = LocalPorts(services={"web": 1, "a": 2, "b": 3, "c": 4}, egress=5, admin=6, gateway=7, inbound=inbound_ports, inbound_admin=8)
    config = render_envoy_config(topology, "example.local", ports, access_log=False, tls=tls_for(topology))
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
    for renderer in (render, render_inbound):
        first = renderer(topology)
        assert first == renderer(topology)
        assert yaml.safe_load(yaml.safe_dump(first)) == json.loads(json.dumps(first)) == first


def test_allocate_ports_gives_distinct_ports(topology: Topology) -> None:
    ports = allocate_ports(topology, gateway_port=18088, instances={"crystal": 3})
    processes = [port for name in ports.services for port in ports.processes(name)]
    listeners = [port for group in ports.inbound.values() for port in group]
    values = [*processes, *listeners, ports.egress, ports.admin, ports.inbound_admin, ports.gateway, *ports.upstreams.values()]
    assert ports.gateway == 18088
    assert len(values) == len(set(values)) == 6 + 6 + 4 + 2
    assert set(ports.upstreams) == {"nodejs", "crystal"}
    assert (
        len(ports.processes("crystal")) == len(ports.inbound["crystal"]) == 3 and ports.processes("crystal")[0] == ports.services["crystal"]
    )


def test_missing_service_port_is_an_error(topology: Topology) -> None:
    ports = fixed_ports(topology)
    broken = LocalPorts(services={k: v for k, v in ports.services.items() if k != "crystal"}, egress=1, admin=2, gateway=3)
    with pytest.raises(ValueError, match="crystal"):
        render_envoy_config(topology, ZONE, broken, tls=tls_for(topology))
    with pytest.raises(ValueError, match="mtls is strict"):
        render_envoy_config(topology, ZONE, ports)


def test_service_environment_carries_build_args_and_backend_urls() -> None:
    mesh = LocalMesh()  # not started: only names and ports
    env = {s.name: mesh.env_for(s) for s in mesh.topology.services}
    assert env["nodejs"]["APP_VERSION"] == "1" and env["nodejsv2"]["APP_VERSION"] == "2"
    assert env["nodejsv2"]["SERVICE_NAME"] == "nodejsv2" and env["nodejsv2"]["POD_NAME"] == "nodejsv2-local"
    assert env["crystal"]["AVAILABILITY_ZONE"] == "local"
    assert env["frontend"]["NODEJS_URL"] == f"http://nodejs.{ZONE}:3000"
    assert env["frontend"]["CRYSTAL_URL"] == f"http://crystal.{ZONE}:3000"
    assert env["frontend"]["http_proxy"] == mesh.egress_url
    several = LocalMesh(instances={"crystal": 3}, instance_env={"crystal": {2: {"FAIL_EVERY": "1"}}}, service_env={"crystal": {"X": "1"}})
    crystal = several.topology.service("crystal")
    envs = [several.env_for(crystal, index) for index in range(3)]
    assert [e["POD_NAME"] for e in envs] == ["crystal-local-0", "crystal-local-1", "crystal-local-2"]
    assert [e.get("FAIL_EVERY") for e in envs] == [None, None, "1"] and all(e["X"] == "1" for e in envs)
    assert len(several.ports.inbound["crystal"]) == len(several.ports.processes("crystal")) == 3
    with pytest.raises(ValueError, match="no instance 3"):
        LocalMesh(instances={"crystal": 3}, instance_env={"crystal": {3: {}}})
    assert LocalMesh(instances="replicas").instance_counts == {"frontend": 2, "nodejs": 2, "nodejsv2": 2, "crystal": 2}
    upstreams = LocalMesh(egress_mode="upstreams")
    assert upstreams.env_for(upstreams.topology.service("frontend"))[backend_env_name("nodejs")] == upstreams.upstream_urls["nodejs"]


@pytest.mark.integration
@pytest.mark.parametrize("mtls", ["strict", "off"])
@pytest.mark.parametrize("case", ["default", "custom"])
def test_envoy_validate_accepts_the_rendered_configs(case: str, mtls: str, tmp_path: Path) -> None:
    if case == "default":
        raw, zone = cdk_topology(), ZONE
    else:
        raw, zone = copy.deepcopy(CUSTOM), "example.local"
    raw["mtls"] = mtls
    topology = parse_topology(raw)
    tls = generate_mesh_certificates(tmp_path / "certs", topology, zone) if mtls == "strict" else None
    ports = allocate_ports(topology, instances={topology.services[-1].name: 2})
    for name, config in [
        ("outbound", render_envoy_config(topology, zone, ports, tls=tls)),
        ("inbound", render_inbound_config(topology, zone, ports, tls=tls)),
    ]:
        text = yaml.safe_dump(config)
        assert ("DownstreamTlsContext" in text or "UpstreamTlsContext" in text) == (mtls == "strict"), name
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        result = validate_envoy_config(path)
        assert result.returncode == 0, name + result.stdout + result.stderr
        assert "OK" in result.stdout + result.stderr


# ------------------------------------------------------------------ policies


def with_nodejs_route(**route: Any) -> Topology:
    raw = cdk_topology()
    raw["virtual_services"]["nodejs"]["routes"][0].update(route)
    return parse_topology(raw)


def test_default_route_policy_is_app_mesh_default_timeout_and_retries(rendered: dict[str, Any]) -> None:
    for listener_name, host in [("egress", "nodejs"), ("upstream-nodejs", "nodejs"), ("ingress-gw", "ingress-gw")]:
        action = virtual_hosts(rendered, listener_name)[host]["routes"][0]["route"]
        assert action["timeout"] == "15s"
        # server-error, gateway-error (HTTP) and connection-error (TCP), twice, 2 s per try.
        assert action["retry_policy"] == {"retry_on": "5xx,gateway-error,connect-failure,reset", "num_retries": 2, "per_try_timeout": "2s"}


def test_route_timeout_and_retry_follow_the_model() -> None:
    retry = {"max_retries": 3, "per_retry_timeout_ms": 250, "http_events": ["client-error", "stream-error"], "tcp_events": []}
    topology = with_nodejs_route(timeout_ms=1500, retry=retry)
    config = render(topology)
    for listener_name, host in [("egress", "nodejs"), ("ingress-gw", "ingress-gw")]:
        action = virtual_hosts(config, listener_name)[host]["routes"][0]["route"]
        assert action["timeout"] == "1.5s"
        assert action["retry_policy"] == {"retry_on": "retriable-4xx,refused-stream", "num_retries": 3, "per_try_timeout": "0.25s"}
    # The other virtual service keeps the defaults.
    assert virtual_hosts(config, "egress")["crystal"]["routes"][0]["route"]["timeout"] == "15s"


def test_retry_off_renders_no_retry_policy() -> None:
    config = render(with_nodejs_route(retry="off"))
    action = virtual_hosts(config, "egress")["nodejs"]["routes"][0]["route"]
    assert "retry_policy" not in action and action["timeout"] == "15s"


def test_retry_event_mapping() -> None:
    from config.policies import RetryPolicy

    every = RetryPolicy(http_events=("server-error", "gateway-error", "client-error", "stream-error"), tcp_events=("connection-error",))
    assert retry_on(every) == "5xx,gateway-error,retriable-4xx,refused-stream,connect-failure,reset"
    assert retry_on(RetryPolicy(http_events=("gateway-error",), tcp_events=())) == "gateway-error"


def test_outlier_detection_and_health_checks_on_the_client_clusters(rendered: dict[str, Any]) -> None:
    clusters = clusters_of(rendered)
    for name in ("nodejs-app", "crystal-app", "ingress-gw-nodejsv2-app"):
        cluster = clusters[name]
        assert cluster["outlier_detection"] == {
            "consecutive_5xx": 5,
            "enforcing_consecutive_5xx": 100,
            "interval": "10s",
            "base_ejection_time": "30s",
            "max_ejection_percent": 50,
            "enforcing_success_rate": 0,
            "enforcing_consecutive_gateway_failure": 0,
            "successful_active_health_check_uneject_host": False,
        }
        (check,) = cluster["health_checks"]
        assert check == {
            "timeout": "2s",
            "interval": "5s",
            "healthy_threshold": 2,
            "unhealthy_threshold": 2,
            "http_health_check": {"path": "/health"},
        }


def test_service_policies_follow_the_model() -> None:
    raw = cdk_topology()
    raw["services"]["crystal"].update(
        {
            "timeout_ms": 750,
            "health_check": {"interval_ms": 6000, "timeout_ms": 3000, "healthy_threshold": 3, "unhealthy_threshold": 4},
            "outlier_detection": {"max_server_errors": 2, "interval_ms": 500, "base_ejection_ms": 60000, "max_ejection_percent": 34},
            "connection_pool": {"max_connections": 7, "max_pending_requests": 3},
        }
    )
    raw["services"]["nodejs"]["outlier_detection"] = "off"
    topology = parse_topology(raw)
    clusters = clusters_of(render(topology))
    crystal = clusters["crystal-app"]
    assert {k: crystal["outlier_detection"][k] for k in ("consecutive_5xx", "interval", "base_ejection_time", "max_ejection_percent")} == {
        "consecutive_5xx": 2,
        "interval": "0.5s",
        "base_ejection_time": "60s",
        "max_ejection_percent": 34,
    }
    check = crystal["health_checks"][0]
    assert (check["interval"], check["timeout"], check["healthy_threshold"], check["unhealthy_threshold"]) == ("6s", "3s", 3, 4)
    assert "outlier_detection" not in clusters["nodejs-app"] and "outlier_detection" in clusters["nodejsv2-app"]
    inbound = render_inbound(topology)
    (route,) = virtual_hosts(inbound, "inbound-crystal-0")["crystal"]["routes"]
    assert route["route"]["timeout"] == "0.75s"
    assert clusters_of(inbound)["crystal-local-0"]["circuit_breakers"]["thresholds"] == [
        {"priority": "DEFAULT", "max_connections": 7, "max_pending_requests": 3}
    ]


def test_several_instances_are_all_endpoints_of_the_cluster() -> None:
    topology = default_topology()
    ports = allocate_ports(topology, instances={"crystal": 3})
    config = render(topology, ports)
    endpoints = clusters_of(config)["crystal-app"]["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert [e["endpoint"]["address"]["socket_address"]["port_value"] for e in endpoints] == list(ports.inbound["crystal"])
    inbound = render_inbound(topology, ports)
    names = [item["name"] for item in inbound["static_resources"]["listeners"] if item["name"].startswith("inbound-crystal")]
    assert names == ["inbound-crystal-0", "inbound-crystal-1", "inbound-crystal-2"]
    locals_ = clusters_of(inbound)
    for index, port in enumerate(ports.processes("crystal")):
        endpoint = locals_[f"crystal-local-{index}"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
        assert endpoint["endpoint"]["address"]["socket_address"]["port_value"] == port


# ------------------------------------------------------------------ mTLS


def test_certificate_names_are_the_served_virtual_services_then_the_own_name(topology: Topology) -> None:
    assert certificate_names(topology, ZONE) == {
        "frontend": [f"frontend.{ZONE}"],
        "nodejs": [f"nodejs.{ZONE}"],
        "nodejsv2": [f"nodejs.{ZONE}", f"nodejsv2.{ZONE}"],
        "crystal": [f"crystal.{ZONE}"],
        "ingress-gw": [f"ingress-gw.{ZONE}"],
    }


def test_mtls_strict_ingress_listeners_require_mesh_client_certificates(topology: Topology, inbound: dict[str, Any]) -> None:
    assert topology.mtls == "strict"
    for service in ("nodejs", "nodejsv2", "crystal"):
        socket = listener(inbound, f"inbound-{service}-0")["filter_chains"][0]["transport_socket"]
        context = socket["typed_config"]
        assert context["@type"].endswith("DownstreamTlsContext")
        assert context["require_client_certificate"] is True
        common = context["common_tls_context"]
        assert common["tls_certificates"] == [
            {"certificate_chain": {"filename": f"{TLS_DIR}/{service}/tls.crt"}, "private_key": {"filename": f"{TLS_DIR}/{service}/tls.key"}}
        ]
        assert common["validation_context"] == {"trusted_ca": {"filename": f"{TLS_DIR}/ca.crt"}}
    # The frontend is exposed: its load balancer sends plain HTTP, as in the charts.
    assert "transport_socket" not in listener(inbound, "inbound-frontend-0")["filter_chains"][0]


def test_mtls_strict_clients_present_their_certificate_and_match_the_virtual_service(rendered: dict[str, Any]) -> None:
    clusters = clusters_of(rendered)
    expected = {
        "nodejs-app": ("frontend", [f"nodejs.{ZONE}"]),
        "nodejsv2-app": ("frontend", [f"nodejs.{ZONE}"]),
        "crystal-app": ("frontend", [f"crystal.{ZONE}"]),
        "ingress-gw-nodejs-app": ("ingress-gw", [f"nodejs.{ZONE}"]),
        "ingress-gw-nodejsv2-app": ("ingress-gw", [f"nodejs.{ZONE}"]),
    }
    for name, (client, server_names) in expected.items():
        context = clusters[name]["transport_socket"]["typed_config"]
        assert context["@type"].endswith("UpstreamTlsContext")
        assert context["sni"] == server_names[0]
        common = context["common_tls_context"]
        assert common["tls_certificates"][0]["certificate_chain"] == {"filename": f"{TLS_DIR}/{client}/tls.crt"}
        assert common["validation_context"]["trusted_ca"] == {"filename": f"{TLS_DIR}/ca.crt"}
        assert common["validation_context"]["match_typed_subject_alt_names"] == [
            {"san_type": "DNS", "matcher": {"exact": n}} for n in server_names
        ]
    assert "transport_socket" not in clusters["frontend-app"]


def test_mtls_off_renders_plain_http() -> None:
    raw = cdk_topology()
    raw["mtls"] = "off"
    topology = parse_topology(raw)
    ports = fixed_ports(topology)
    for config in (render_envoy_config(topology, ZONE, ports), render_inbound_config(topology, ZONE, ports)):
        assert "transport_socket" not in json.dumps(config)
