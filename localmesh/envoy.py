"""Render the mesh topology as one Envoy v3 bootstrap: the local stand-in for App Mesh.

`render_envoy_config` is pure (no I/O, no clock, no randomness): given the typed topology, the
hosted zone and the local ports it returns a dict that `envoy -c` accepts once dumped as YAML or
JSON. It keeps the names App Mesh uses, so what you see in Envoy's admin page matches the charts:

* one STATIC cluster per service, named like its VirtualNode (`<service>-app`), whose single
  endpoint is the service's process on 127.0.0.1;
* an egress listener, the outbound side of one client's sidecar (the frontend: the one service
  that declares `backends`). Its virtual hosts are exactly the declared virtual services, by mesh
  name `<vs>.<hosted zone>` with and without `:<port>`; each virtual-service route (path prefix)
  sends to `weighted_clusters` with the configured weights. There is no catch-all virtual host,
  so an undeclared name answers 404, like a sidecar that has no such backend;
* one "upstream" listener per declared backend: the same routes on a local port of their own
  (`http://127.0.0.1:<port>` stands for `http://<vs>.<zone>:3000`). A client that will not use an
  HTTP proxy reaches its backends through these, the way a service-mesh sidecar exposes upstreams
  on localhost; Envoy rewrites the Host header to the mesh name on the way out;
* the VirtualGateway listener with the gateway routes: prefix `/eks/` to the virtual service's
  weighted targets, the matched prefix rewritten to `/` (App Mesh's default) and the Host header to
  the virtual service's name; a path no gateway route matches answers 404;
* the admin interface on its own port.

Zero-weight targets are left out of `weighted_clusters`: Envoy would accept them, but they carry
no traffic, and the model already refuses a route whose weights are all 0.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from config.topology import Route, Service, Topology, VirtualService

LOCALHOST = "127.0.0.1"
# App Mesh's defaults for an HTTP route: 15 s request timeout; its default retry policy retries
# resets and 5xx gateway errors twice. Envoy's defaults differ, so they are spelled out.
ROUTE_TIMEOUT = "15s"
RETRY_ON = "connect-failure,reset,gateway-error"
NUM_RETRIES = 2
# Below the services' keep-alive timeouts (Node.js closes an idle connection after 5 s): Envoy
# must drop an idle upstream connection before the server does, or a request sent on a connection
# the server is closing fails with a reset.
UPSTREAM_IDLE_TIMEOUT = "4s"
CONNECT_TIMEOUT = "1s"
# A bound on open client connections across all listeners (Envoy warns when there is none).
MAX_DOWNSTREAM_CONNECTIONS = 10_000

_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
_STDOUT_LOG = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"
_MAX_CONNECTIONS = "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig"
_HTTP_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

# One JSON object per request on Envoy's stdout.
ACCESS_LOG_FORMAT: dict[str, str] = {
    "time": "%START_TIME%",
    "method": "%REQ(:METHOD)%",
    "authority": "%REQ(:AUTHORITY)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "upstream_path": "%REQ(:PATH)%",
    "status": "%RESPONSE_CODE%",
    "flags": "%RESPONSE_FLAGS%",
    "route": "%ROUTE_NAME%",
    "upstream_cluster": "%UPSTREAM_CLUSTER%",
    "upstream_host": "%UPSTREAM_HOST%",
    "duration_ms": "%DURATION%",
    "request_id": "%REQ(X-REQUEST-ID)%",
}


@dataclass(frozen=True)
class LocalPorts:
    """Where everything listens on 127.0.0.1.

    services: service name -> port of its process; upstreams: virtual service name -> port of the
    egress client's upstream listener for it; gateway is None when the topology has no gateway.
    """

    services: Mapping[str, int]
    egress: int
    admin: int
    gateway: int | None = None
    upstreams: Mapping[str, int] = field(default_factory=dict)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def allocate_ports(topology: Topology, gateway_port: int | None = None) -> LocalPorts:
    """Free local ports for every process and listener; `gateway_port` pins the gateway's.

    Ports are unique within the result (the kernel could hand a just-released port out twice).
    """
    taken: set[int] = set() if gateway_port is None else {gateway_port}

    def pick() -> int:
        for _ in range(100):
            port = free_port()
            if port not in taken:
                taken.add(port)
                return port
        raise RuntimeError("could not find a free local port")

    client = egress_client(topology)
    return LocalPorts(
        services={service.name: pick() for service in topology.services},
        egress=pick(),
        admin=pick(),
        gateway=None if topology.gateway is None else (gateway_port if gateway_port is not None else pick()),
        upstreams={backend: pick() for backend in (client.backends if client else ())},
    )


def egress_client(topology: Topology) -> Service | None:
    """The service whose outbound side the egress listener plays: the first declaring backends."""
    return next((service for service in topology.services if service.backends), None)


def mesh_host(virtual_service: str, hosted_zone: str) -> str:
    """The name clients call: `<virtual service>.<hosted zone>` (the Route 53 private zone)."""
    return f"{virtual_service}.{hosted_zone}"


def virtual_service_ports(topology: Topology, virtual_service: VirtualService) -> list[int]:
    """Ports a client may put after the mesh name: the ports of the services it routes to."""
    return sorted({topology.service(target).port for route in virtual_service.routes for target, _ in route.targets})


def mesh_url(topology: Topology, hosted_zone: str, virtual_service: str) -> str:
    """`http://<vs>.<zone>:<port>`: what a client inside the mesh is configured with."""
    vs = topology.virtual_service(virtual_service)
    return f"http://{mesh_host(vs.name, hosted_zone)}:{virtual_service_ports(topology, vs)[0]}"


def render_envoy_config(topology: Topology, hosted_zone: str, ports: LocalPorts, access_log: bool = True) -> dict[str, Any]:
    """The Envoy v3 bootstrap for the local mesh. Pure: same input, same dict."""
    missing = [s.name for s in topology.services if s.name not in ports.services]
    if missing:
        raise ValueError(f"no local port for service(s) {', '.join(missing)}")
    if topology.gateway is not None and ports.gateway is None:
        raise ValueError("the topology has a gateway but no gateway port was given")

    listeners: list[dict[str, Any]] = []
    client = egress_client(topology)
    backends = [topology.virtual_service(name) for name in (client.backends if client else ())]
    egress_hosts = [_virtual_host(topology, vs, _mesh_domains(topology, vs, hosted_zone), host_rewrite=None) for vs in backends]
    client_name = client.name if client else "none"
    listeners.append(_listener("egress", ports.egress, f"egress_{client_name}", "egress", egress_hosts, access_log))

    for vs in backends:
        port = ports.upstreams.get(vs.name)
        if port is None:
            continue
        host = _virtual_host(
            topology,
            vs,
            [f"{LOCALHOST}:{port}", f"localhost:{port}"],
            host_rewrite=f"{mesh_host(vs.name, hosted_zone)}:{virtual_service_ports(topology, vs)[0]}",
        )
        name = f"upstream-{vs.name}"
        listeners.append(_listener(name, port, f"upstream_{vs.name}", name, [host], access_log))

    if topology.gateway is not None and ports.gateway is not None:
        gateway = topology.gateway
        gateway_host = {"name": gateway.name, "domains": ["*"], "routes": _gateway_routes(topology, hosted_zone)}
        listeners.append(_listener(gateway.name, ports.gateway, gateway.name.replace("-", "_"), gateway.name, [gateway_host], access_log))

    clusters = [_cluster(service.virtual_node, ports.services[service.name]) for service in topology.services]
    return {
        "node": {"id": "localmesh", "cluster": "localmesh"},
        "admin": {"address": _address(ports.admin)},
        "static_resources": {"listeners": listeners, "clusters": clusters},
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {"@type": _MAX_CONNECTIONS, "max_active_downstream_connections": MAX_DOWNSTREAM_CONNECTIONS},
                }
            ]
        },
    }


# --------------------------------------------------------------------------------------------


def _address(port: int) -> dict[str, Any]:
    return {"socket_address": {"address": LOCALHOST, "port_value": port}}


def _mesh_domains(topology: Topology, vs: VirtualService, hosted_zone: str) -> list[str]:
    host = mesh_host(vs.name, hosted_zone)
    return [host, *(f"{host}:{port}" for port in virtual_service_ports(topology, vs))]


def _by_longest_prefix(routes: tuple[Route, ...]) -> list[Route]:
    """Most specific prefix first: Envoy takes the first match, App Mesh the longest."""
    return sorted(routes, key=lambda route: -len(route.prefix))


def _weighted_action(topology: Topology, route: Route) -> dict[str, Any]:
    clusters = [{"name": topology.service(target).virtual_node, "weight": weight} for target, weight in route.targets if weight > 0]
    return {
        "weighted_clusters": {"clusters": clusters},
        "timeout": ROUTE_TIMEOUT,
        "retry_policy": {"retry_on": RETRY_ON, "num_retries": NUM_RETRIES},
    }


def _virtual_host(topology: Topology, vs: VirtualService, domains: list[str], host_rewrite: str | None) -> dict[str, Any]:
    routes = []
    for route in _by_longest_prefix(vs.routes):
        action = _weighted_action(topology, route)
        if host_rewrite is not None:
            action["host_rewrite_literal"] = host_rewrite
        routes.append({"name": route.name, "match": {"prefix": route.prefix}, "route": action})
    return {"name": vs.name, "domains": domains, "routes": routes}


def _gateway_routes(topology: Topology, hosted_zone: str) -> list[dict[str, Any]]:
    """Gateway route (prefix P -> virtual service V) composed with V's own routes.

    App Mesh first picks the gateway route (longest P), rewrites P to `/`, then V's router picks
    its route on the rewritten path. A rewritten path `/rest` starts with V's prefix R exactly
    when the original starts with P + R[1:], so each pair becomes one Envoy route matching
    P + R[1:] whose matched part is rewritten to R. A path under P that none of V's routes
    matches is answered 404 right there, not handed to a shorter gateway route.
    """
    assert topology.gateway is not None
    routes: list[dict[str, Any]] = []
    for gateway_route in sorted(topology.gateway.routes, key=lambda r: -len(r.prefix)):
        vs = topology.virtual_service(gateway_route.virtual_service)
        catches_all = False
        for route in _by_longest_prefix(vs.routes):
            action = _weighted_action(topology, route)
            action["prefix_rewrite"] = route.prefix
            action["host_rewrite_literal"] = mesh_host(vs.name, hosted_zone)
            routes.append({"name": gateway_route.name, "match": {"prefix": gateway_route.prefix + route.prefix[1:]}, "route": action})
            catches_all = catches_all or route.prefix == "/"
        if not catches_all:
            routes.append({"name": gateway_route.name, "match": {"prefix": gateway_route.prefix}, "direct_response": {"status": 404}})
    return routes


def _listener(
    name: str, port: int, stat_prefix: str, route_config: str, virtual_hosts: list[dict[str, Any]], access_log: bool
) -> dict[str, Any]:
    manager: dict[str, Any] = {
        "@type": _HCM,
        "stat_prefix": stat_prefix,
        "route_config": {"name": route_config, "virtual_hosts": virtual_hosts},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": _ROUTER}}],
    }
    if access_log:
        manager["access_log"] = [
            {
                "name": "envoy.access_loggers.stdout",
                "typed_config": {"@type": _STDOUT_LOG, "log_format": {"json_format": {**ACCESS_LOG_FORMAT, "listener": name}}},
            }
        ]
    return {
        "name": name,
        "address": _address(port),
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}],
    }


def _cluster(name: str, port: int) -> dict[str, Any]:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": CONNECT_TIMEOUT,
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(port)}}]}],
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _HTTP_OPTIONS,
                "common_http_protocol_options": {"idle_timeout": UPSTREAM_IDLE_TIMEOUT},
                "explicit_http_config": {"http_protocol_options": {}},
            }
        },
    }
