"""The mesh topology: services, routed virtual services, the ingress gateway.

Independent of App Mesh on purpose: charts/ renders it to App Mesh objects, localmesh/ renders it
to an Envoy configuration, and another backend (Gateway API, VPC Lattice) could render it too.
Everything here is validated on construction by `parse_topology`; the dataclasses are frozen.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .canary import Canary, parse_canary
from .errors import ConfigError
from .policies import (
    DEFAULT_CONNECTION_POOL,
    DEFAULT_HEALTH_CHECK,
    DEFAULT_OUTLIER_DETECTION,
    DEFAULT_RETRY,
    ConnectionPool,
    HealthCheck,
    OutlierDetection,
    RetryPolicy,
    parse_connection_pool,
    parse_health_check,
    parse_outlier_detection,
    parse_retry,
    parse_timeout,
)
from .validate import as_list, as_mapping, check_cidr, check_dns_label, check_int, no_duplicates, reject_unknown

PROJECT_ROOT = Path(__file__).resolve().parents[1]

Exposure = Literal["none", "internal", "external"]
Discovery = Literal["cloudmap", "dns"]
Mtls = Literal["strict", "off"]
EXPOSURES: tuple[Exposure, ...] = ("none", "internal", "external")
DISCOVERIES: tuple[Discovery, ...] = ("cloudmap", "dns")

# Longest suffix we append to a service name ("-router"); label values and Service names stop
# at 63 characters (Kubernetes), so service names stop at 63 - len("-router").
MAX_NAME_LENGTH = 63 - len("-router")
# App Mesh: a route has 1..10 weighted targets, each weight 0..100 (API WeightedTarget).
MAX_TARGETS = 10
MAX_WEIGHT = 100
MAX_PREFIX_LENGTH = 255
_PREFIX = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$")


@dataclass(frozen=True)
class Service:
    """A workload: one Deployment, one VirtualNode `<name>-app`, pods labelled `app=<name>-app`."""

    name: str
    source: str
    port: int = 3000
    protocol: Literal["http"] = "http"
    replicas: int = 2
    health_path: str = "/health"
    # The app answers its health check on this second port too, which Envoy does not intercept:
    # kubelet probes have no mesh certificate and would be refused by an mTLS listener.
    health_port: int = 3001
    backends: tuple[str, ...] = ()
    exposure: Exposure = "none"
    source_cidrs: tuple[str, ...] = ()
    build_args: tuple[tuple[str, str], ...] = ()
    # Inbound policies of the service's listener (App Mesh VirtualNode listener); None is `off`.
    timeout_ms: int | None = 15_000
    health_check: HealthCheck = DEFAULT_HEALTH_CHECK
    outlier_detection: OutlierDetection | None = DEFAULT_OUTLIER_DETECTION
    connection_pool: ConnectionPool | None = DEFAULT_CONNECTION_POOL

    @property
    def virtual_node(self) -> str:
        return f"{self.name}-app"

    @property
    def pod_labels(self) -> dict[str, str]:
        return {"app": self.virtual_node}


@dataclass(frozen=True)
class Route:
    name: str
    prefix: str
    # (service name, weight) pairs, in configured order.
    targets: tuple[tuple[str, int], ...]
    timeout_ms: int | None = 15_000
    retry: RetryPolicy | None = DEFAULT_RETRY


@dataclass(frozen=True)
class VirtualService:
    """A name clients call, served by a VirtualRouter `<name>-router` with weighted routes."""

    name: str
    routes: tuple[Route, ...]
    # Steps from the baseline to the candidate, judged by metrics (config/canary.py); None: none.
    canary: Canary | None = None

    @property
    def router(self) -> str:
        return f"{self.name}-router"


@dataclass(frozen=True)
class GatewayRoute:
    name: str
    prefix: str
    virtual_service: str


@dataclass(frozen=True)
class Gateway:
    name: str = "ingress-gw"
    port: int = 8088
    replicas: int = 2
    scheme: Literal["internal", "internet-facing"] = "internal"
    routes: tuple[GatewayRoute, ...] = ()

    @property
    def pod_labels(self) -> dict[str, str]:
        return {"app": self.name}


@dataclass(frozen=True)
class Topology:
    services: tuple[Service, ...]
    virtual_services: tuple[VirtualService, ...]
    gateway: Gateway | None
    discovery: Discovery = "cloudmap"
    # DROP_ALL: a service reaches only the virtual services it declares as backends.
    egress_filter: Literal["ALLOW_ALL", "DROP_ALL"] = "DROP_ALL"
    mtls: Mtls = "strict"
    # Spans from the mesh's proxies (App Mesh: X-Ray daemon; Istio: OpenTelemetry to X-Ray).
    tracing: Literal["on", "off"] = "on"

    def service(self, name: str) -> Service:
        return {s.name: s for s in self.services}[name]

    def virtual_service(self, name: str) -> VirtualService:
        return {v.name: v for v in self.virtual_services}[name]

    def virtual_service_port(self, name: str) -> int:
        """The port a virtual service listens on: its targets' (validation makes them share one)."""
        return self.service(self.virtual_service(name).routes[0].targets[0][0]).port

    def served_by(self, service: str) -> tuple[str, ...]:
        """Names of the virtual services whose routes send traffic to `service`."""
        return tuple(vs.name for vs in self.virtual_services if any(t == service for r in vs.routes for t, _ in r.targets))

    def weights(self) -> dict[str, dict[str, int]]:
        """`{virtual service: {service: weight}}` over all routes, for diffs and tests."""
        return {vs.name: {target: weight for route in vs.routes for target, weight in route.targets} for vs in self.virtual_services}


def backend_env_name(virtual_service: str) -> str:
    """`nodejs` -> `NODEJS_URL`: the variable a service reads for a backend's URL (services/
    read these; the charts and the local mesh set them)."""
    return virtual_service.upper().replace("-", "_") + "_URL"


# --------------------------------------------------------------------------------------------
# Parsing and validation


def check_prefix(key: str, value: Any, must_end_with_slash: bool = False) -> str:
    if not isinstance(value, str) or not _PREFIX.match(value) or len(value) > MAX_PREFIX_LENGTH:
        raise ConfigError(
            key,
            value,
            f"must be a URL path prefix that starts with '/', at most {MAX_PREFIX_LENGTH} characters, "
            "with no spaces, '?' or '#' (App Mesh path prefix rules)",
        )
    if must_end_with_slash and not value.endswith("/"):
        raise ConfigError(
            key,
            value,
            "a gateway route prefix must end with '/' (App Mesh rewrites the matched prefix to '/'), e.g. /eks/",
        )
    return value


_SERVICE_KEYS = {
    "source",
    "port",
    "protocol",
    "replicas",
    "health_path",
    "health_port",
    "backends",
    "exposure",
    "source_cidrs",
    "build_args",
    "timeout_ms",
    "health_check",
    "outlier_detection",
    "connection_pool",
}
_ROUTE_KEYS = {"name", "prefix", "targets", "timeout_ms", "retry"}
_GATEWAY_KEYS = {"name", "port", "replicas", "scheme", "routes"}
_GATEWAY_ROUTE_KEYS = {"name", "prefix", "virtual_service"}
_TOPOLOGY_KEYS = {"services", "virtual_services", "gateway", "discovery", "egress_filter", "mtls", "tracing"}


def parse_topology(raw: Any, key: str = "topology") -> Topology:
    raw = as_mapping(key, raw)
    reject_unknown(key, raw, _TOPOLOGY_KEYS)
    services = tuple(
        _parse_service(f"{key}.services.{name}", name, spec)
        for name, spec in as_mapping(f"{key}.services", raw.get("services", {})).items()
    )
    if not services:
        raise ConfigError(f"{key}.services", raw.get("services"), "define at least one service")
    virtual_services = tuple(
        _parse_virtual_service(f"{key}.virtual_services.{name}", name, spec)
        for name, spec in as_mapping(f"{key}.virtual_services", raw.get("virtual_services", {})).items()
    )
    gateway_raw = raw.get("gateway")
    gateway = None if gateway_raw in (None, False) else _parse_gateway(f"{key}.gateway", gateway_raw)
    discovery = raw.get("discovery", "cloudmap")
    if discovery not in DISCOVERIES:
        raise ConfigError(f"{key}.discovery", discovery, f"must be one of {', '.join(DISCOVERIES)}")
    egress = raw.get("egress_filter", "DROP_ALL")
    if egress not in ("ALLOW_ALL", "DROP_ALL"):
        raise ConfigError(f"{key}.egress_filter", egress, "must be ALLOW_ALL or DROP_ALL")
    mtls = raw.get("mtls", "strict")
    if mtls not in ("strict", "off"):
        raise ConfigError(f"{key}.mtls", mtls, "must be strict (mutual TLS between all services) or off")
    tracing = raw.get("tracing", "on")
    if tracing not in ("on", "off"):
        raise ConfigError(f"{key}.tracing", tracing, "must be on (the mesh's proxies send spans to X-Ray) or off")
    topology = Topology(services, virtual_services, gateway, discovery, egress, mtls, tracing)
    canaries = [vs.name for vs in virtual_services if vs.canary]
    if len(canaries) > 1:
        raise ConfigError(
            f"{key}.virtual_services.{canaries[1]}.canary",
            canaries[1],
            f"only one virtual service may declare canary steps ({canaries[0]} does): a pipeline shifts one canary at a time",
        )
    _check_references(key, topology)
    return topology


def _parse_service(key: str, name: str, spec: Any) -> Service:
    check_dns_label(key, name, MAX_NAME_LENGTH)
    spec = as_mapping(key, spec or {})
    reject_unknown(key, spec, _SERVICE_KEYS)
    source = spec.get("source", f"services/{name}")
    if not isinstance(source, str) or not re.match(r"^services/[A-Za-z0-9_.-]+$", source):
        raise ConfigError(f"{key}.source", source, "must be a folder under services/, e.g. services/nodejs")
    if not (PROJECT_ROOT / source / "Dockerfile").is_file():
        # The image asset would otherwise fail deep inside jsii with a 50-line traceback.
        present = ", ".join(sorted(p.parent.name for p in (PROJECT_ROOT / "services").glob("*/Dockerfile")))
        raise ConfigError(f"{key}.source", source, f"has no Dockerfile (looked in {PROJECT_ROOT / source}); folders with one: {present}")
    protocol = spec.get("protocol", "http")
    if protocol != "http":
        raise ConfigError(f"{key}.protocol", protocol, "only http is supported by the services and the gateway")
    health_path = spec.get("health_path", "/health")
    check_prefix(f"{key}.health_path", health_path)
    port = check_int(f"{key}.port", spec.get("port", 3000), 1, 65535)
    health_port = check_int(f"{key}.health_port", spec.get("health_port", port + 1 if port < 65535 else port - 1), 1, 65535)
    if health_port == port:
        raise ConfigError(f"{key}.health_port", health_port, f"must differ from port ({port}): probes must bypass Envoy's listener")
    exposure = spec.get("exposure", "none")
    if exposure not in EXPOSURES:
        raise ConfigError(f"{key}.exposure", exposure, f"must be one of {', '.join(EXPOSURES)}")
    cidrs = tuple(check_cidr(f"{key}.source_cidrs", c) for c in as_list(f"{key}.source_cidrs", spec.get("source_cidrs")))
    if exposure != "none" and not cidrs:
        raise ConfigError(
            f"{key}.source_cidrs",
            [],
            f"a service with exposure={exposure} needs a source-CIDR allowlist, e.g. [203.0.113.0/24] (0.0.0.0/0 for anyone)",
        )
    build_args = as_mapping(f"{key}.build_args", spec.get("build_args", {}))
    backends = tuple(as_list(f"{key}.backends", spec.get("backends")))
    for backend in backends:
        if not isinstance(backend, str):
            raise ConfigError(f"{key}.backends", backend, "list virtual service names, e.g. [nodejs, crystal]")
    if len(set(backends)) != len(backends):
        raise ConfigError(f"{key}.backends", list(backends), "lists a backend twice")
    return Service(
        name=name,
        source=source,
        port=port,
        protocol="http",
        replicas=check_int(f"{key}.replicas", spec.get("replicas", 2), 1, 100),
        health_path=health_path,
        health_port=health_port,
        backends=backends,
        exposure=exposure,
        source_cidrs=cidrs,
        build_args=tuple(sorted((str(k), str(v)) for k, v in build_args.items())),
        timeout_ms=parse_timeout(f"{key}.timeout_ms", spec.get("timeout_ms")),
        health_check=parse_health_check(f"{key}.health_check", spec.get("health_check")),
        outlier_detection=parse_outlier_detection(f"{key}.outlier_detection", spec.get("outlier_detection")),
        connection_pool=parse_connection_pool(f"{key}.connection_pool", spec.get("connection_pool")),
    )


def _parse_virtual_service(key: str, name: str, spec: Any) -> VirtualService:
    check_dns_label(key, name, MAX_NAME_LENGTH)
    spec = as_mapping(key, spec)
    reject_unknown(key, spec, {"routes", "canary"})
    routes_raw = as_list(f"{key}.routes", spec.get("routes"))
    if not routes_raw:
        raise ConfigError(f"{key}.routes", spec.get("routes"), "define at least one route with a prefix and weighted targets")
    routes = []
    for index, route_raw in enumerate(routes_raw):
        route_key = f"{key}.routes[{index}]"
        route_raw = as_mapping(route_key, route_raw)
        reject_unknown(route_key, route_raw, _ROUTE_KEYS)
        default_name = f"route-to-{name}-app" + ("" if index == 0 else f"-{index + 1}")
        route_name = check_dns_label(f"{route_key}.name", route_raw.get("name", default_name))
        prefix = check_prefix(f"{route_key}.prefix", route_raw.get("prefix", "/"))
        targets = _parse_targets(f"{route_key}.targets", route_raw.get("targets"))
        timeout_ms = parse_timeout(f"{route_key}.timeout_ms", route_raw.get("timeout_ms"))
        retry = parse_retry(f"{route_key}.retry", route_raw.get("retry"), timeout_ms)
        routes.append(Route(route_name, prefix, targets, timeout_ms, retry))
    no_duplicates(f"{key}.routes", [r.name for r in routes], "route name")
    no_duplicates(f"{key}.routes", [r.prefix for r in routes], "route prefix")
    canary = None if spec.get("canary") is None else parse_canary(f"{key}.canary", spec["canary"], routes[0].targets, len(routes))
    return VirtualService(name, tuple(routes), canary)


def parse_weights(key: str, value: Any) -> tuple[tuple[str, int], ...]:
    """`{svc: weight}` or the command-line form `svc:weight,svc:weight`."""
    return _parse_targets(key, value)


def _parse_targets(key: str, value: Any) -> tuple[tuple[str, int], ...]:
    if isinstance(value, str):
        pairs: list[tuple[str, Any]] = []
        for part in (p.strip() for p in value.split(",") if p.strip()):
            target, sep, weight = part.partition(":")
            if not sep:
                raise ConfigError(key, value, "write weighted targets as service:weight[,service:weight...], e.g. nodejs:1,nodejsv2:1")
            pairs.append((target.strip(), weight.strip()))
    elif isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        raise ConfigError(key, value, "must map target service names to weights, e.g. {nodejs: 2, nodejsv2: 1}")
    if not 1 <= len(pairs) <= MAX_TARGETS:
        raise ConfigError(key, value, f"App Mesh accepts 1 to {MAX_TARGETS} weighted targets per route")
    targets = tuple((str(t), check_int(f"{key}.{t}", w, 0, MAX_WEIGHT)) for t, w in pairs)
    if sum(w for _, w in targets) == 0:
        raise ConfigError(
            key, value, "all weights are 0, so the route would send traffic nowhere; give at least one target a weight above 0"
        )
    no_duplicates(key, [t for t, _ in targets], "target")
    return targets


def _parse_gateway(key: str, spec: Any) -> Gateway:
    spec = as_mapping(key, spec)
    reject_unknown(key, spec, _GATEWAY_KEYS)
    name = check_dns_label(f"{key}.name", spec.get("name", "ingress-gw"), MAX_NAME_LENGTH)
    scheme = spec.get("scheme", "internal")
    if scheme not in ("internal", "internet-facing"):
        raise ConfigError(f"{key}.scheme", scheme, "must be internal or internet-facing")
    routes = []
    for index, raw in enumerate(as_list(f"{key}.routes", spec.get("routes"))):
        route_key = f"{key}.routes[{index}]"
        raw = as_mapping(route_key, raw)
        reject_unknown(route_key, raw, _GATEWAY_ROUTE_KEYS)
        virtual_service = raw.get("virtual_service")
        if not isinstance(virtual_service, str):
            raise ConfigError(f"{route_key}.virtual_service", virtual_service, "name the virtual service this route sends to")
        routes.append(
            GatewayRoute(
                name=check_dns_label(f"{route_key}.name", raw.get("name", f"gateway-route-{virtual_service}")),
                prefix=check_prefix(f"{route_key}.prefix", raw.get("prefix"), must_end_with_slash=True),
                virtual_service=virtual_service,
            )
        )
    no_duplicates(f"{key}.routes", [r.name for r in routes], "gateway route name")
    no_duplicates(f"{key}.routes", [r.prefix for r in routes], "gateway route prefix")
    return Gateway(
        name=name,
        port=check_int(f"{key}.port", spec.get("port", 8088), 1024, 65535),
        replicas=check_int(f"{key}.replicas", spec.get("replicas", 2), 1, 20),
        scheme=scheme,
        routes=tuple(routes),
    )


def _check_references(key: str, topology: Topology) -> None:
    service_names = {s.name for s in topology.services}
    vs_names = {v.name for v in topology.virtual_services}
    for vs in topology.virtual_services:
        first = vs.routes[0].targets[0][0]
        for index, route in enumerate(vs.routes):
            for target, _ in route.targets:
                target_key = f"{key}.virtual_services.{vs.name}.routes[{index}].targets"
                if target not in service_names:
                    raise ConfigError(target_key, target, f"unknown target service; defined services: {', '.join(sorted(service_names))}")
                port, first_port = topology.service(target).port, topology.service(first).port if first in service_names else None
                if first_port is not None and port != first_port:
                    raise ConfigError(
                        target_key, target, f"listens on {port}, but {first} listens on {first_port}; a router has one listener port"
                    )
    for service in topology.services:
        for backend in service.backends:
            if backend not in vs_names:
                raise ConfigError(
                    f"{key}.services.{service.name}.backends",
                    backend,
                    f"unknown virtual service; defined virtual services: {', '.join(sorted(vs_names)) or '(none)'}",
                )
            targets = {target for route in topology.virtual_service(backend).routes for target, _ in route.targets}
            if service.name in targets:
                raise ConfigError(
                    f"{key}.services.{service.name}.backends",
                    backend,
                    f"routes to {service.name} itself: a service cannot call itself through the mesh",
                )
    if topology.gateway:
        for index, gateway_route in enumerate(topology.gateway.routes):
            if gateway_route.virtual_service not in vs_names:
                raise ConfigError(
                    f"{key}.gateway.routes[{index}].virtual_service",
                    gateway_route.virtual_service,
                    f"unknown virtual service; defined virtual services: {', '.join(sorted(vs_names)) or '(none)'}",
                )
    _check_pod_selection(key, topology)


def _check_pod_selection(key: str, topology: Topology) -> None:
    """Every pod template must be selected by exactly one VirtualNode or VirtualGateway.

    The App Mesh sidecar injector refuses a pod that two selectors match, and a pod that none
    matches runs without Envoy; names derive the labels, so a clash means two names collide
    (e.g. a gateway named `nodejs-app`).
    """
    selectors: list[tuple[str, dict[str, str]]] = [(f"VirtualNode {s.virtual_node}", s.pod_labels) for s in topology.services]
    pods: list[tuple[str, dict[str, str]]] = [(f"service {s.name}", s.pod_labels) for s in topology.services]
    if topology.gateway:
        selectors.append((f"VirtualGateway {topology.gateway.name}", topology.gateway.pod_labels))
        pods.append((f"gateway {topology.gateway.name}", topology.gateway.pod_labels))
    for owner, labels in pods:
        matched = [name for name, selector in selectors if selector.items() <= labels.items()]
        if len(matched) != 1:
            problem = "no VirtualNode or VirtualGateway" if not matched else " and ".join(matched)
            raise ConfigError(
                key,
                owner,
                f"its pods (labels {labels}) are selected by {problem}; rename so each pod set has exactly one selector",
            )
