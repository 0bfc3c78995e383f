"""Render the mesh topology as Envoy v3 bootstraps: the local stand-in for App Mesh, and the edge
gateway the VPC Lattice backend deploys (`render_edge_gateway`).

Two Envoys play every sidecar of the mesh, as App Mesh's client Envoy talks to the server's Envoy:

* the OUTBOUND Envoy (`render_envoy_config`): the egress client's sidecar (the frontend: the one
  service that declares `backends`) plus the VirtualGateway;
* the INBOUND Envoy (`render_inbound_config`): one ingress listener per service instance (the
  inbound side of that instance's sidecar), forwarding to the instance's process.

Both renderers are pure (no I/O, no clock, no randomness): given the typed topology, the hosted
zone, the local ports and (with mTLS) the certificate file paths they return a dict that
`envoy -c` accepts once dumped as YAML or JSON. They keep the names App Mesh uses, so what you see
in Envoy's admin page matches the charts:

* one STATIC cluster per service, named like its VirtualNode (`<service>-app`), whose endpoints are
  the ingress listeners of the service's instances (not the processes); the gateway has its own
  clusters (`<gateway>-<service>-app`): it is a different client, with its own certificate and its
  own outlier-detection state, as the gateway's Envoy is in the cluster;
* an egress listener, the outbound side of the egress client's sidecar. Its virtual hosts are
  exactly the declared virtual services, by mesh name `<vs>.<hosted zone>` with and without
  `:<port>`; each virtual-service route (path prefix) sends to `weighted_clusters` with the
  configured weights. There is no catch-all virtual host, so an undeclared name answers 404, like
  a sidecar that has no such backend (egress_filter DROP_ALL; see the ALLOW_ALL note in the code);
* one "upstream" listener per declared backend: the same routes on a local port of their own
  (`http://127.0.0.1:<port>` stands for `http://<vs>.<zone>:3000`). A client that will not use an
  HTTP proxy reaches its backends through these, the way a service-mesh sidecar exposes upstreams
  on localhost; Envoy rewrites the Host header to the mesh name on the way out;
* the VirtualGateway listener with the gateway routes: prefix `/eks/` to the virtual service's
  weighted targets, the matched prefix rewritten to `/` (App Mesh's default) and the Host header to
  the virtual service's name; a path no gateway route matches answers 404;
* the admin interface of each Envoy on its own port.

Policies (config/policies.py), mapped the way App Mesh maps them onto its Envoys:

* Route `timeout_ms` -> the route's `timeout` (App Mesh: httpRoute.timeout.perRequest);
  Route `retry` -> `retry_policy` (num_retries, per_try_timeout, retry_on from config.policies.ENVOY_RETRY_ON);
  `retry: off` -> no retry policy at all.
* Service `outlier_detection` -> `outlier_detection` on the clients' `<svc>-app` clusters
  (App Mesh: listener.outlierDetection, enforced by every client's Envoy): consecutive_5xx =
  max_server_errors, interval, base_ejection_time, max_ejection_percent. Only consecutive server
  errors eject (success-rate ejection off), and a passing active health check does not bring an
  ejected host back early: it stays out for the ejection time, as App Mesh documents.
* Service `health_check` -> an active HTTP health check of the `<svc>-app` clusters to the
  service's health_path through its ingress listeners (interval, timeout, thresholds).
* Service `timeout_ms` -> the timeout of the inbound route of each of its ingress listeners
  (App Mesh: listener.timeout.http.perRequest).
* Service `connection_pool` -> `circuit_breakers` (max_connections, max_pending_requests) of the
  inbound cluster to the local process (App Mesh: listener.connectionPool, which limits what the
  sidecar opens to its local application).
* `mtls: strict` -> file-based TLS, as the charts mount cert-manager secrets with the
  `appmesh.k8s.aws/secretMounts` annotation: an ingress listener of a service that is not exposed
  outside the mesh requires a client certificate from the mesh CA (App Mesh listener tls STRICT;
  an exposed service also takes plain traffic from its load balancer, so it does not); a client
  cluster presents the client's certificate, trusts only the mesh CA and accepts only the
  virtual-service names it called (`subjectAlternativeNames.match.exact`). `mtls: off`: plain HTTP.

Zero-weight targets are left out of `weighted_clusters`: Envoy would accept them, but they carry
no traffic, and the model already refuses a route whose weights are all 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import PurePath
from typing import Any

from config.policies import retry_on
from config.topology import Route, Service, Topology, VirtualService

LOCALHOST = "127.0.0.1"
# Below the services' keep-alive timeouts (Node.js closes an idle connection after 5 s): Envoy
# must drop an idle upstream connection before the server does, or a request sent on a connection
# the server is closing fails with a reset.
UPSTREAM_IDLE_TIMEOUT = "4s"
CONNECT_TIMEOUT = "1s"
# Envoy moves its histograms to the admin interface at each stats flush (default every 5 s): the
# local Envoys flush every second, so `python -m canary` reading them sees the requests just sent.
LOCAL_STATS_FLUSH = "1s"
# A bound on open client connections across all listeners (Envoy warns when there is none).
MAX_DOWNSTREAM_CONNECTIONS = 10_000

# With egress_filter ALLOW_ALL, App Mesh's sidecar would also pass traffic to destinations that
# are not in the mesh at all (a catch-all passthrough to the original destination). Locally there
# is nothing outside the mesh to reach, so ALLOW_ALL renders the same virtual hosts as DROP_ALL:
# only declared backends are routed; any other mesh name answers 404 from Envoy. (A faithful
# ALLOW_ALL would add a last, catch-all virtual host to an ORIGINAL_DST cluster, for non-mesh hosts.)

_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
_STDOUT_LOG = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"
_MAX_CONNECTIONS = "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig"
_HTTP_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_DOWNSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
_UPSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"

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

    services: service name -> port of its (first) process; instances: service name -> ports of all
    its processes (default: just `services[name]`); inbound: service name -> the ingress listener
    port of each instance, in the same order; upstreams: virtual service name -> port of the egress
    client's upstream listener for it; gateway is None when the topology has no gateway; admin and
    inbound_admin are the admin ports of the outbound and inbound Envoys.
    """

    services: Mapping[str, int]
    egress: int
    admin: int
    gateway: int | None = None
    upstreams: Mapping[str, int] = field(default_factory=dict)
    instances: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    inbound: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    inbound_admin: int | None = None

    def processes(self, service: str) -> tuple[int, ...]:
        """Ports of every process of `service`, instance 0 first."""
        return tuple(self.instances.get(service) or (self.services[service],))


@dataclass(frozen=True)
class CertFiles:
    """One workload's certificate and key, as files (what the secret mount gives Envoy)."""

    certificate: str
    private_key: str


@dataclass(frozen=True)
class MeshTls:
    """The files of the mesh's mTLS: the CA every side trusts, and each workload's certificate.

    identities: service or gateway name -> its files.
    """

    ca: str
    identities: Mapping[str, CertFiles]

    def files(self, name: str) -> CertFiles:
        try:
            return self.identities[name]
        except KeyError:
            raise ValueError(f"no certificate for {name!r}; have {', '.join(sorted(self.identities))}") from None


def mesh_tls_files(directory: str | PurePath, topology: Topology) -> MeshTls:
    """Where `localmesh.certs` writes the certificates under `directory` (pure: no I/O).

    The layout mirrors a cert-manager secret: `ca.crt`, and `<name>/tls.crt` + `<name>/tls.key`.
    """
    root = PurePath(directory)
    names = [service.name for service in topology.services] + ([topology.gateway.name] if topology.gateway else [])
    return MeshTls(
        ca=str(root / "ca.crt"),
        identities={name: CertFiles(str(root / name / "tls.crt"), str(root / name / "tls.key")) for name in names},
    )


def certificate_names(topology: Topology, hosted_zone: str) -> dict[str, list[str]]:
    """DNS names (subject alternative names) of each workload's certificate, as the charts issue them.

    A service: the mesh names of the virtual services that route to it (what its clients match),
    then its own `<service>.<zone>`. The gateway: `<gateway>.<zone>`.
    """
    names: dict[str, list[str]] = {}
    for service in topology.services:
        served = [mesh_host(vs, hosted_zone) for vs in topology.served_by(service.name)]
        own = mesh_host(service.name, hosted_zone)
        names[service.name] = [*served, *([own] if own not in served else [])]
    if topology.gateway is not None:
        names[topology.gateway.name] = [mesh_host(topology.gateway.name, hosted_zone)]
    return names


def terminates_mesh_tls(service: Service, topology: Topology) -> bool:
    """Inbound mTLS only where every caller is in the mesh (as charts/appmesh.py decides): an
    exposed service's listener also receives its load balancer's plain traffic."""
    return topology.mtls == "strict" and service.exposure == "none"


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
    return f"http://{mesh_host(virtual_service, hosted_zone)}:{topology.virtual_service_port(virtual_service)}"


def gateway_cluster(gateway: str, service: Service) -> str:
    """The gateway's own cluster for a service: `<gateway>-<service>-app`."""
    return f"{gateway}-{service.virtual_node}"


def client_clusters(topology: Topology, service: Service) -> list[str]:
    """The outbound Envoy's clusters that send to `service`: the egress client's, and the gateway's
    when a gateway route reaches it (the clusters render_envoy_config makes, by the same names)."""
    clusters = [service.virtual_node]
    gateway = topology.gateway
    if gateway is not None and any(service.name in _targets(topology.virtual_service(route.virtual_service)) for route in gateway.routes):
        clusters.append(gateway_cluster(gateway.name, service))
    return clusters


def duration(milliseconds: int) -> str:
    """Envoy's JSON Duration: 15000 -> "15s", 300 -> "0.3s"."""
    return f"{Decimal(milliseconds) / 1000}s"


def render_envoy_config(
    topology: Topology, hosted_zone: str, ports: LocalPorts, access_log: bool = True, tls: MeshTls | None = None
) -> dict[str, Any]:
    """The OUTBOUND Envoy: egress client's sidecar and the gateway. Pure: same input, same dict.

    tls: the certificate files; required when `topology.mtls == "strict"`, ignored when off.
    """
    missing = [s.name for s in topology.services if s.name not in ports.services]
    if missing:
        raise ValueError(f"no local port for service(s) {', '.join(missing)}")
    no_inbound = [s.name for s in topology.services if len(ports.inbound.get(s.name, ())) != len(ports.processes(s.name))]
    if no_inbound:
        raise ValueError(f"no ingress listener port for each instance of service(s) {', '.join(no_inbound)}")
    if topology.gateway is not None and ports.gateway is None:
        raise ValueError("the topology has a gateway but no gateway port was given")
    tls = _required_tls(topology, tls)

    listeners: list[dict[str, Any]] = []
    client = egress_client(topology)
    backends = [topology.virtual_service(name) for name in (client.backends if client else ())]

    def client_cluster(service: Service) -> str:
        return service.virtual_node

    egress_hosts = [_virtual_host(topology, vs, _mesh_domains(topology, vs, hosted_zone), None, client_cluster) for vs in backends]
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
            f"{mesh_host(vs.name, hosted_zone)}:{topology.virtual_service_port(vs.name)}",
            client_cluster,
        )
        name = f"upstream-{vs.name}"
        listeners.append(_listener(name, port, f"upstream_{vs.name}", name, [host], access_log))

    # The egress client's view of every service (what its sidecar would have), by VirtualNode name.
    backend_names = [vs.name for vs in backends]
    clusters = [
        _app_cluster(
            service.virtual_node, topology, service, hosted_zone, ports, tls, client.name if client else service.name, backend_names
        )
        for service in topology.services
    ]

    if topology.gateway is not None and ports.gateway is not None:
        gateway = topology.gateway
        gateway_name = gateway.name

        def via_gateway(service: Service) -> str:
            return gateway_cluster(gateway_name, service)

        gateway_host = {"name": gateway.name, "domains": ["*"], "routes": _gateway_routes(topology, hosted_zone, via_gateway)}
        listeners.append(_listener(gateway.name, ports.gateway, gateway.name.replace("-", "_"), gateway.name, [gateway_host], access_log))
        routed = [route.virtual_service for route in gateway.routes]
        for service in topology.services:
            if any(service.name in _targets(topology.virtual_service(vs)) for vs in routed):
                clusters.append(_app_cluster(via_gateway(service), topology, service, hosted_zone, ports, tls, gateway.name, routed))

    return _bootstrap("localmesh-outbound", ports.admin, listeners, clusters, stats_flush=LOCAL_STATS_FLUSH)


def render_inbound_config(
    topology: Topology, hosted_zone: str, ports: LocalPorts, access_log: bool = True, tls: MeshTls | None = None
) -> dict[str, Any]:
    """The INBOUND Envoy: one ingress listener per service instance, `inbound-<service>-<i>`, that
    forwards to that instance's process through the cluster `<service>-local-<i>`. Pure."""
    if ports.inbound_admin is None:
        raise ValueError("no admin port for the inbound Envoy (ports.inbound_admin)")
    tls = _required_tls(topology, tls)
    listeners: list[dict[str, Any]] = []
    clusters: list[dict[str, Any]] = []
    for service in topology.services:
        processes = ports.processes(service.name)
        inbound = tuple(ports.inbound.get(service.name, ()))
        if len(inbound) != len(processes):
            raise ValueError(f"service {service.name} has {len(processes)} instance(s) but {len(inbound)} ingress listener port(s)")
        for index, (listen, process) in enumerate(zip(inbound, processes, strict=True)):
            local = f"{service.name}-local-{index}"
            # The service's own request timeout (`off`: Envoy's default, 15 s, as App Mesh's); no
            # retries on the inbound side (App Mesh has none).
            action: dict[str, Any] = {"cluster": local}
            if service.timeout_ms is not None:
                action["timeout"] = duration(service.timeout_ms)
            route = {"name": f"inbound-{service.name}", "match": {"prefix": "/"}, "route": action}
            host = {"name": service.name, "domains": ["*"], "routes": [route]}
            name = f"inbound-{service.name}-{index}"
            item = _listener(name, listen, f"inbound_{service.name}_{index}".replace("-", "_"), name, [host], access_log)
            if terminates_mesh_tls(service, topology):
                assert tls is not None
                item["filter_chains"][0]["transport_socket"] = _downstream_tls(tls, service.name)
            listeners.append(item)
            cluster = _static_cluster(local, [process])
            pool = service.connection_pool
            if pool is not None:
                limits = {"max_connections": pool.max_connections, "max_pending_requests": pool.max_pending_requests}
                cluster["circuit_breakers"] = {"thresholds": [{"priority": "DEFAULT", **limits}]}
            clusters.append(cluster)
    return _bootstrap("localmesh-inbound", ports.inbound_admin, listeners, clusters, stats_flush=LOCAL_STATS_FLUSH)


# --------------------------------------------------------------------------------------------


def _required_tls(topology: Topology, tls: MeshTls | None) -> MeshTls | None:
    if topology.mtls != "strict":
        return None
    if tls is None:
        raise ValueError("mtls is strict: pass the certificate files (tls=mesh_tls_files(...)), or set topology.mtls to off")
    return tls


def render_edge_gateway(
    topology: Topology,
    hosted_zone: str,
    *,
    admin_port: int = 9901,
    bind: str = "0.0.0.0",
    upstream: Callable[[VirtualService], tuple[str, int]] | None = None,
) -> dict[str, Any]:
    """The gateway alone, in front of virtual services that a DNS name reaches and that split
    traffic themselves (VPC Lattice): each gateway route sends its prefix, rewritten to `/` as
    App Mesh's gateway does, to its virtual service's workshop name, with that name as the Host.
    The virtual service (not this Envoy) then matches its own routes and applies its weights.

    upstream: where a virtual service is reached (default: its workshop name and port); the local
    tests point it at a process on 127.0.0.1.
    """
    gateway = topology.gateway
    if gateway is None:
        raise ValueError("the topology has no gateway")
    reach = upstream or (lambda vs: (mesh_host(vs.name, hosted_zone), topology.virtual_service_port(vs.name)))
    routes = []
    clusters: dict[str, dict[str, Any]] = {}
    for gateway_route in sorted(gateway.routes, key=lambda route: -len(route.prefix)):
        vs = topology.virtual_service(gateway_route.virtual_service)
        name = f"vs-{vs.name}"
        action = {"cluster": name, "prefix_rewrite": "/", "host_rewrite_literal": mesh_host(vs.name, hosted_zone)}
        routes.append({"name": gateway_route.name, "match": {"prefix": gateway_route.prefix}, "route": action})
        address, port = reach(vs)
        clusters[name] = {
            "name": name,
            # Re-resolved as DNS changes (a Lattice service's addresses are not fixed).
            "type": "STRICT_DNS",
            "dns_lookup_family": "V4_ONLY",
            "connect_timeout": CONNECT_TIMEOUT,
            "load_assignment": {
                "cluster_name": name,
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(port, address)}}]}],
            },
            "typed_extension_protocol_options": _protocol_options(),
        }
    host = {"name": gateway.name, "domains": ["*"], "routes": routes}
    listener = _listener(gateway.name, gateway.port, gateway.name.replace("-", "_"), gateway.name, [host], True, bind=bind)
    return _bootstrap(gateway.name, admin_port, [listener], list(clusters.values()))


def _bootstrap(
    node: str, admin_port: int, listeners: list[dict[str, Any]], clusters: list[dict[str, Any]], stats_flush: str | None = None
) -> dict[str, Any]:
    bootstrap = {
        "node": {"id": node, "cluster": "localmesh"},
        "admin": {"address": _address(admin_port)},
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
    if stats_flush:
        bootstrap["stats_flush_interval"] = stats_flush
    return bootstrap


def _address(port: int, address: str = LOCALHOST) -> dict[str, Any]:
    return {"socket_address": {"address": address, "port_value": port}}


def _targets(vs: VirtualService) -> set[str]:
    return {target for route in vs.routes for target, weight in route.targets}


def _mesh_domains(topology: Topology, vs: VirtualService, hosted_zone: str) -> list[str]:
    host = mesh_host(vs.name, hosted_zone)
    return [host, *(f"{host}:{port}" for port in virtual_service_ports(topology, vs))]


def _by_longest_prefix(routes: tuple[Route, ...]) -> list[Route]:
    """Most specific prefix first: Envoy takes the first match, App Mesh the longest."""
    return sorted(routes, key=lambda route: -len(route.prefix))


def _weighted_action(topology: Topology, route: Route, cluster_of: Any) -> dict[str, Any]:
    clusters = [{"name": cluster_of(topology.service(target)), "weight": weight} for target, weight in route.targets if weight > 0]
    action: dict[str, Any] = {"weighted_clusters": {"clusters": clusters}}
    if route.timeout_ms is not None:  # `off`: Envoy's default route timeout (15 s), as App Mesh's
        action["timeout"] = duration(route.timeout_ms)
    if route.retry is not None:
        action["retry_policy"] = {
            "retry_on": retry_on(route.retry),
            "num_retries": route.retry.max_retries,
            "per_try_timeout": duration(route.retry.per_retry_timeout_ms),
        }
    return action


def _virtual_host(topology: Topology, vs: VirtualService, domains: list[str], host_rewrite: str | None, cluster_of: Any) -> dict[str, Any]:
    routes = []
    for route in _by_longest_prefix(vs.routes):
        action = _weighted_action(topology, route, cluster_of)
        if host_rewrite is not None:
            action["host_rewrite_literal"] = host_rewrite
        routes.append({"name": route.name, "match": {"prefix": route.prefix}, "route": action})
    return {"name": vs.name, "domains": domains, "routes": routes}


def _gateway_routes(topology: Topology, hosted_zone: str, cluster_of: Any) -> list[dict[str, Any]]:
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
            action = _weighted_action(topology, route, cluster_of)
            action["prefix_rewrite"] = route.prefix
            action["host_rewrite_literal"] = mesh_host(vs.name, hosted_zone)
            routes.append({"name": gateway_route.name, "match": {"prefix": gateway_route.prefix + route.prefix[1:]}, "route": action})
            catches_all = catches_all or route.prefix == "/"
        if not catches_all:
            routes.append({"name": gateway_route.name, "match": {"prefix": gateway_route.prefix}, "direct_response": {"status": 404}})
    return routes


def _listener(
    name: str, port: int, stat_prefix: str, route_config: str, virtual_hosts: list[dict[str, Any]], access_log: bool, bind: str = LOCALHOST
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
        "address": _address(port, bind),
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}],
    }


def _static_cluster(name: str, ports: list[int] | tuple[int, ...]) -> dict[str, Any]:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": CONNECT_TIMEOUT,
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(port)}} for port in ports]}],
        },
        "typed_extension_protocol_options": _protocol_options(),
    }


def _protocol_options() -> dict[str, Any]:
    """HTTP/1.1 upstream, idle connections dropped before the server drops them."""
    return {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": _HTTP_OPTIONS,
            "common_http_protocol_options": {"idle_timeout": UPSTREAM_IDLE_TIMEOUT},
            "explicit_http_config": {"http_protocol_options": {}},
        }
    }


def _app_cluster(
    name: str,
    topology: Topology,
    service: Service,
    hosted_zone: str,
    ports: LocalPorts,
    tls: MeshTls | None,
    client: str,
    called: list[str],
) -> dict[str, Any]:
    """A client's cluster for `service`: its instances' ingress listeners, with the service's
    health check and outlier detection, and (mTLS) the client's certificate.

    called: the virtual services this client reaches the service by; the server certificate must
    name one of them (or, for a service the client never calls by a virtual service, the names
    its certificate carries).
    """
    cluster = _static_cluster(name, ports.inbound[service.name])
    check = service.health_check
    cluster["health_checks"] = [
        {
            "timeout": duration(check.timeout_ms),
            "interval": duration(check.interval_ms),
            "healthy_threshold": check.healthy_threshold,
            "unhealthy_threshold": check.unhealthy_threshold,
            "http_health_check": {"path": service.health_path},
        }
    ]
    outlier = service.outlier_detection
    if outlier is not None:
        cluster["outlier_detection"] = {
            "consecutive_5xx": outlier.max_server_errors,
            "enforcing_consecutive_5xx": 100,
            "interval": duration(outlier.interval_ms),
            "base_ejection_time": duration(outlier.base_ejection_ms),
            "max_ejection_percent": outlier.max_ejection_percent,
            # App Mesh's outlier detection is consecutive server errors only.
            "enforcing_success_rate": 0,
            "enforcing_consecutive_gateway_failure": 0,
            # An ejected host stays out for the ejection time even while its /health passes.
            "successful_active_health_check_uneject_host": False,
        }
    if tls is not None and terminates_mesh_tls(service, topology):
        served = [mesh_host(vs, hosted_zone) for vs in called if service.name in _targets(topology.virtual_service(vs))]
        server_names = served or certificate_names(topology, hosted_zone)[service.name]
        cluster["transport_socket"] = _upstream_tls(tls, client, server_names)
    return cluster


def _certificate(tls: MeshTls, name: str) -> dict[str, Any]:
    files = tls.files(name)
    return {"certificate_chain": {"filename": files.certificate}, "private_key": {"filename": files.private_key}}


def _downstream_tls(tls: MeshTls, server: str) -> dict[str, Any]:
    """STRICT: present the service's certificate; require a client certificate from the mesh CA."""
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": _DOWNSTREAM_TLS,
            "require_client_certificate": True,
            "common_tls_context": {
                "tls_certificates": [_certificate(tls, server)],
                "validation_context": {"trusted_ca": {"filename": tls.ca}},
            },
        },
    }


def _upstream_tls(tls: MeshTls, client: str, server_names: list[str]) -> dict[str, Any]:
    """Present the client's certificate; trust only the mesh CA; accept only the named server."""
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": _UPSTREAM_TLS,
            "sni": server_names[0],
            "common_tls_context": {
                "tls_certificates": [_certificate(tls, client)],
                "validation_context": {
                    "trusted_ca": {"filename": tls.ca},
                    "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": name}} for name in server_names],
                },
            },
        },
    }
