"""What one Envoy runs, read from its admin `/config_dump`: the listeners, routes and clusters istiod
sent and Envoy accepted (a rejected update never reaches the dump), in the terms the mesh's tests
speak (conformance tests compare them with the topology). Pure functions of the dump's JSON.

The dump's shapes are Envoy's v3 API (envoy/admin/v3/config_dump.proto and the listener, route
and filter protos); the names istiod gives (`virtualInbound`, `outbound|<port>||<host>`,
`block_all`, `BlackHoleCluster`) are istiod's (pilot/pkg/networking/core, 1.31).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

HTTP_CONNECTION_MANAGER = "envoy.filters.network.http_connection_manager"
RBAC_FILTERS = ("envoy.filters.http.rbac", "envoy.filters.network.rbac")
TCP_PROXY = "envoy.filters.network.tcp_proxy"
INBOUND_LISTENER = "virtualInbound"
OUTBOUND_LISTENER = "virtualOutbound"
# The inbound chain that refuses traffic addressed to the inbound port itself (a loop guard).
INBOUND_LOOP_GUARD = "virtualInbound-blackhole"


@dataclass(frozen=True)
class Config:
    listeners: dict[str, dict[str, Any]]  # name -> Listener (active)
    routes: dict[str, dict[str, Any]]  # name -> RouteConfiguration
    clusters: dict[str, dict[str, Any]]  # name -> Cluster (dynamic and static)


def read(dump: dict[str, Any]) -> Config:
    sections = {config["@type"].rsplit(".", 1)[-1]: config for config in dump["configs"]}
    listeners = {
        item["name"]: item["active_state"]["listener"]
        for item in sections.get("ListenersConfigDump", {}).get("dynamic_listeners", [])
        if "active_state" in item
    }
    routes = {
        item["route_config"]["name"]: item["route_config"] for item in sections.get("RoutesConfigDump", {}).get("dynamic_route_configs", [])
    }
    cluster_section = sections.get("ClustersConfigDump", {})
    clusters = {
        item["cluster"]["name"]: item["cluster"]
        for key in ("static_clusters", "dynamic_active_clusters")
        for item in cluster_section.get(key, [])
    }
    return Config(listeners, routes, clusters)


def duration_ms(value: str | None) -> int | None:
    """A protobuf Duration ("15s", "0.300s") in milliseconds; "0s" (no timeout) and absent are None."""
    if value is None:
        return None
    milliseconds = int(Decimal(value.removesuffix("s")) * 1000)
    return milliseconds or None


def chains(listener: dict[str, Any]) -> list[dict[str, Any]]:
    default = listener.get("default_filter_chain")
    return [*listener.get("filter_chains", []), *([default] if default else [])]


def http_managers(config: Config) -> Iterator[tuple[str, dict[str, Any]]]:
    """(listener name, HttpConnectionManager) for every HTTP connection manager of every listener."""
    for name, listener in config.listeners.items():
        for chain in chains(listener):
            for network_filter in chain.get("filters", []):
                if network_filter["name"] == HTTP_CONNECTION_MANAGER:
                    yield name, network_filter["typed_config"]


def outbound_host(cluster: str) -> str:
    """`outbound|3000||nodejs.lab-appmesh.svc.cluster.local` -> the host."""
    return cluster.split("|")[3]


def route_form(route: dict[str, Any]) -> dict[str, Any]:
    """One Envoy route as the mesh speaks of a route: its prefix (and the prefix it is rewritten
    to), its targets' hosts and weights, its timeout and retries."""
    action = route["route"]
    if "weighted_clusters" in action:
        targets = {outbound_host(c["name"]): c["weight"] for c in action["weighted_clusters"]["clusters"]}
    else:
        targets = {outbound_host(action["cluster"]): 100}
    retry = action.get("retry_policy")
    form: dict[str, Any] = {
        "prefix": route["match"].get("prefix", route["match"].get("path")),
        "targets": targets,
        "timeout_ms": duration_ms(action.get("timeout")),
        "retry": None
        if not retry or not retry.get("num_retries")
        else {
            "max_retries": retry["num_retries"],
            "per_retry_timeout_ms": duration_ms(retry.get("per_try_timeout")),
            "retry_on": retry["retry_on"],
        },
    }
    if "prefix_rewrite" in action:
        form["rewrite"] = action["prefix_rewrite"]
    return form


def virtual_host(config: Config, route_config: str, name: str) -> dict[str, Any] | None:
    return next((host for host in config.routes.get(route_config, {}).get("virtual_hosts", []) if host["name"] == name), None)


def sends_to(config: Config, cluster: str) -> list[str]:
    """Where a listener or a route names `cluster` (as a tcp_proxy's, a route's or a weighted
    target's cluster): one line each."""
    found = []
    for name, listener in config.listeners.items():
        for chain in chains(listener):
            for network_filter in chain.get("filters", []):
                if network_filter["name"] == TCP_PROXY and network_filter["typed_config"].get("cluster") == cluster:
                    found.append(f"listener {name} chain {chain.get('name', '')}")
    for name, route_config in config.routes.items():
        for host in route_config.get("virtual_hosts", []):
            for route in host.get("routes", []):
                action = route.get("route", {})
                names = [action.get("cluster")] + [c["name"] for c in action.get("weighted_clusters", {}).get("clusters", [])]
                if cluster in names:
                    found.append(f"route {name} host {host['name']}")
    return found


@dataclass(frozen=True)
class InboundChain:
    name: str
    port: int | None  # None: every port (a catch-all chain)
    transport: str | None  # "tls", "raw_buffer" or None (either)
    client_certificate_required: bool  # mTLS: the peer must present a certificate of the mesh
    rbac: tuple[dict[str, Any], ...]  # the RBAC filters' rules (HTTP and network), in order


def inbound_chains(config: Config) -> list[InboundChain]:
    """The chains of the sidecar's inbound listener (all traffic to the pod), but its loop guard."""
    found = []
    for chain in chains(config.listeners.get(INBOUND_LISTENER, {})):
        if chain.get("name") == INBOUND_LOOP_GUARD:
            continue
        match = chain.get("filter_chain_match", {})
        tls = chain.get("transport_socket", {}).get("typed_config", {})
        rbac = []
        for network_filter in chain.get("filters", []):
            if network_filter["name"] in RBAC_FILTERS:
                rbac.append(network_filter["typed_config"].get("rules", {}))
            if network_filter["name"] == HTTP_CONNECTION_MANAGER:
                rbac += [
                    f["typed_config"].get("rules", {})
                    for f in network_filter["typed_config"].get("http_filters", [])
                    if f["name"] in RBAC_FILTERS
                ]
        found.append(
            InboundChain(
                chain.get("name", ""),
                match.get("destination_port"),
                match.get("transport_protocol"),
                bool(tls.get("require_client_certificate")),
                tuple(rbac),
            )
        )
    return found


def _every(node: Any, key: str) -> list[Any]:
    """Every value of `key` anywhere in a nested config (an RBAC policy's trees of and/or rules)."""
    if isinstance(node, dict):
        return ([node[key]] if key in node else []) + [found for value in node.values() for found in _every(value, key)]
    if isinstance(node, list):
        return [found for value in node for found in _every(value, key)]
    return []


def principals(rules: dict[str, Any]) -> set[str]:
    """Every exact principal (SPIFFE identity) an RBAC policy set names."""
    policies = rules.get("policies", {}).values()
    return {found["principal_name"]["exact"] for policy in policies for found in _every(policy.get("principals", []), "authenticated")}


def destination_ports(rules: dict[str, Any]) -> set[int]:
    """Every destination port an RBAC policy set's permissions name."""
    policies = rules.get("policies", {}).values()
    return {int(port) for policy in policies for port in _every(policy.get("permissions", []), "destination_port")}


def tracing(manager: dict[str, Any]) -> dict[str, Any] | None:
    """The tracer of an HTTP connection manager: provider name, collector URI, cluster, timeout
    and sampling percentage."""
    configuration = manager.get("tracing")
    if not configuration:
        return None
    provider = configuration.get("provider", {})
    http_uri = provider.get("typed_config", {}).get("http_service", {}).get("http_uri", {})
    return {
        "provider": provider.get("name"),
        "uri": http_uri.get("uri"),
        "cluster": http_uri.get("cluster"),
        "timeout": http_uri.get("timeout"),
        "sampling": configuration.get("random_sampling", {}).get("value"),
    }


def access_logs(manager: dict[str, Any]) -> list[dict[str, Any]]:
    """Each access log of an HTTP connection manager: logger name, path, and whether JSON."""
    found = []
    for log in manager.get("access_log", []):
        typed = log.get("typed_config", {})
        found.append({"logger": log["name"], "path": typed.get("path"), "json": "json_format" in typed.get("log_format", {})})
    return found


def text(config: Config) -> str:
    """The listeners and routes as one string (for a failing assertion's message)."""
    return json.dumps({"listeners": sorted(config.listeners), "routes": sorted(config.routes)})
