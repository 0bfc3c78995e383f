"""Istio objects (networking.istio.io, security.istio.io, telemetry.istio.io, all v1) rendered from
the topology model, and read back into the neutral form. Pure; tests validate every object
against Istio 1.31's CRDs.

How the workshop maps onto Istio (sidecar mode, istio-cni):
* a virtual service `<vs>.<hosted zone>` is a ServiceEntry for that host (MESH_INTERNAL, STATIC,
  no endpoints: istiod allocates it an address, and the sidecar's DNS proxy answers for it, so the
  name resolves with no Route 53 record) and a VirtualService on that host whose routes send to the
  targets' Kubernetes Services with the configured weights, timeouts and retries;
* a gateway route is a VirtualService bound to the ingress Gateway, with the prefix rewritten to
  `/`; it lives in its virtual service's manifest, so a canary step changes one manifest;
* a service's listener policies (outlier detection, connection pool) are a DestinationRule on its
  Kubernetes Service, applied by every client's sidecar, as App Mesh's are by every client's Envoy;
* mTLS is a namespace-wide STRICT PeerAuthentication; an exposed service also takes its load
  balancer's plain traffic on its port (PERMISSIVE there), as its App Mesh listener does;
* least privilege is an AuthorizationPolicy per service allowing only the service accounts of
  its declared callers (the gateway's included);
* egress is the mesh's REGISTRY_ONLY plus a Sidecar per workload listing exactly its backends
  (a gateway's is what its gateway routes name: istiod applies no Sidecar to gateways).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from config.policies import retry_events, retry_on
from config.topology import Gateway, Route, Service, Topology, VirtualService
from mesh.names import Manifest, MeshNames

NETWORKING = "networking.istio.io/v1"
SECURITY = "security.istio.io/v1"
TELEMETRY = "telemetry.istio.io/v1"
TRUST_DOMAIN = "cluster.local"
# The OpenTelemetry extension provider istiod is configured with (components/istio.py).
TRACING_PROVIDER = "otel"
# The CloudWatch agent of the amazon-cloudwatch-observability add-on takes OTLP and sends spans to
# X-Ray; it runs in this namespace (components/observability.py).
COLLECTOR_HOST = "cloudwatch-agent.amazon-cloudwatch.svc.cluster.local"
COLLECTOR_NAMESPACE = "amazon-cloudwatch"
# Of the requests a sidecar sees, the share it traces (X-Ray bills per trace recorded).
TRACE_SAMPLING_PERCENT = 10.0


def duration(milliseconds: int) -> str:
    """Istio's protobuf Duration: 15000 -> "15s", 300 -> "0.3s"."""
    return f"{Decimal(milliseconds) / 1000}s"


def milliseconds(value: str | None) -> int | None:
    return None if value is None else int(Decimal(value.removesuffix("s")) * 1000)


def service_host(service: str, names: MeshNames) -> str:
    return f"{service}.{names.namespace}.svc.cluster.local"


def principal(service_account: str, names: MeshNames) -> str:
    return f"{TRUST_DOMAIN}/ns/{names.namespace}/sa/{service_account}"


def version_label(service: Service) -> dict[str, str]:
    """Istio's `version` label, so that the metrics tell v1 from v2: it is the canonical revision
    istiod gives the workload (pkg/kube/labels/labels.go, canonicalServiceRevision), which the
    proxies report as destination_canonical_revision and destination_version. The value is the
    version the service itself reports: its APP_VERSION build argument, 1 when unset
    (services/nodejs/server.js, services/crystal/src/app.cr)."""
    return {"version": f"v{dict(service.build_args).get('APP_VERSION', '1')}"}


def _metadata(name: str, names: MeshNames) -> dict[str, str]:
    return {"name": name, "namespace": names.namespace}


# --------------------------------------------------------------------------------------------
# Routing: one virtual service


def _http_route(route: Route, topology: Topology, names: MeshNames) -> dict[str, Any]:
    http: dict[str, Any] = {
        "name": route.name,
        "match": [{"uri": {"prefix": route.prefix}}],
        "route": [
            {
                "destination": {"host": service_host(target, names), "port": {"number": topology.service(target).port}},
                "weight": weight,
            }
            for target, weight in route.targets
        ],
    }
    if route.timeout_ms is not None:
        http["timeout"] = duration(route.timeout_ms)
    if route.retry is None:
        # Istio retries twice by default; `off` has to say so.
        http["retries"] = {"attempts": 0}
    else:
        http["retries"] = {
            "attempts": route.retry.max_retries,
            "perTryTimeout": duration(route.retry.per_retry_timeout_ms),
            "retryOn": retry_on(route.retry),
        }
    return http


def service_entry(virtual_service: VirtualService, topology: Topology, names: MeshNames) -> Manifest:
    port = topology.virtual_service_port(virtual_service.name)
    return {
        "apiVersion": NETWORKING,
        "kind": "ServiceEntry",
        "metadata": _metadata(virtual_service.name, names),
        "spec": {
            "hosts": [names.mesh_host(virtual_service.name)],
            "location": "MESH_INTERNAL",
            # An address from istiod's allocator, which the DNS proxy answers with; no endpoints:
            # the VirtualService routes every request on this host to the real services.
            "resolution": "STATIC",
            "ports": [{"number": port, "name": "http", "protocol": "HTTP"}],
            "exportTo": ["."],
        },
    }


def virtual_service_object(virtual_service: VirtualService, topology: Topology, names: MeshNames) -> Manifest:
    return {
        "apiVersion": NETWORKING,
        "kind": "VirtualService",
        "metadata": _metadata(virtual_service.name, names),
        "spec": {
            "hosts": [names.mesh_host(virtual_service.name)],
            "exportTo": ["."],
            "http": [_http_route(route, topology, names) for route in _by_longest_prefix(virtual_service.routes)],
        },
    }


def _by_longest_prefix(routes: tuple[Route, ...]) -> list[Route]:
    # Istio takes the first match, App Mesh the longest prefix: order them so both agree.
    return sorted(routes, key=lambda route: -len(route.prefix))


def gateway_route_objects(virtual_service: VirtualService, topology: Topology, names: MeshNames) -> list[Manifest]:
    """The gateway's routes to this virtual service: the gateway prefix P and the virtual service's
    route prefix R compose to P + R[1:], rewritten to R (App Mesh rewrites P to "/", then routes)."""
    gateway = topology.gateway
    if gateway is None:
        return []
    objects = []
    for gateway_route in gateway.routes:
        if gateway_route.virtual_service != virtual_service.name:
            continue
        http = []
        for route in _by_longest_prefix(virtual_service.routes):
            entry = _http_route(route, topology, names)
            entry["name"] = f"{gateway_route.name}-{route.name}"
            entry["match"] = [{"uri": {"prefix": gateway_route.prefix + route.prefix[1:]}}]
            entry["rewrite"] = {"uri": route.prefix}
            http.append(entry)
        objects.append(
            {
                "apiVersion": NETWORKING,
                "kind": "VirtualService",
                "metadata": _metadata(gateway_route.name, names),
                "spec": {"hosts": ["*"], "gateways": [f"{names.namespace}/{gateway.name}"], "exportTo": ["."], "http": http},
            }
        )
    return objects


def routing_objects(virtual_service: VirtualService, topology: Topology, names: MeshNames) -> list[Manifest]:
    return [
        service_entry(virtual_service, topology, names),
        virtual_service_object(virtual_service, topology, names),
        *gateway_route_objects(virtual_service, topology, names),
    ]


# --------------------------------------------------------------------------------------------
# One service: its clients' policies, who may call it, what it may call


def destination_rule(service: Service, names: MeshNames) -> Manifest | None:
    policy: dict[str, Any] = {}
    if service.outlier_detection:
        outlier = service.outlier_detection
        policy["outlierDetection"] = {
            # App Mesh's maxServerErrors counts consecutive 5xx, as Envoy's consecutive_5xx does.
            "consecutive5xxErrors": outlier.max_server_errors,
            "interval": duration(outlier.interval_ms),
            "baseEjectionTime": duration(outlier.base_ejection_ms),
            "maxEjectionPercent": outlier.max_ejection_percent,
        }
    if service.connection_pool:
        pool = service.connection_pool
        policy["connectionPool"] = {
            "tcp": {"maxConnections": pool.max_connections},
            "http": {"http1MaxPendingRequests": pool.max_pending_requests},
        }
    if not policy:
        return None
    # No `tls`: Istio's automatic mTLS stays on (a DestinationRule setting tls would replace it).
    return {
        "apiVersion": NETWORKING,
        "kind": "DestinationRule",
        "metadata": _metadata(service.name, names),
        "spec": {"host": service_host(service.name, names), "exportTo": ["."], "trafficPolicy": policy},
    }


def authorization_policy(service: Service, callers: list[str], names: MeshNames) -> Manifest:
    """Only the declared callers' identities reach the service's port (an ALLOW policy with no
    matching rule denies). The kubelet's probes go to the agent, outside the policy."""
    rules = [
        {
            "from": [{"source": {"principals": [principal(caller, names) for caller in callers]}}],
            "to": [{"operation": {"ports": [str(service.port)]}}],
        }
    ]
    return {
        "apiVersion": SECURITY,
        "kind": "AuthorizationPolicy",
        "metadata": _metadata(service.name, names),
        "spec": {"selector": {"matchLabels": service.pod_labels}, "action": "ALLOW", "rules": rules if callers else []},
    }


def sidecar(service: Service, topology: Topology, names: MeshNames) -> Manifest:
    """What the workload's sidecar knows of, and so may call: its declared backends (the workshop
    name and the Services behind it), the control plane, and the trace collector. The DNS proxy
    answers only for these names."""
    hosts = {"istio-system/*"}
    for backend in service.backends:
        hosts.add(f"./{names.mesh_host(backend)}")
        for route in topology.virtual_service(backend).routes:
            hosts.update(f"./{service_host(target, names)}" for target, _ in route.targets)
    if topology.tracing == "on":
        hosts.add(f"{COLLECTOR_NAMESPACE}/{COLLECTOR_HOST}")
    return {
        "apiVersion": NETWORKING,
        "kind": "Sidecar",
        "metadata": _metadata(service.name, names),
        "spec": {
            "workloadSelector": {"labels": dict(service.pod_labels)},
            "egress": [{"hosts": sorted(hosts)}],
            "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
        },
    }


def exposed_port_permissive(service: Service, names: MeshNames) -> Manifest:
    """An exposed service's port also takes its load balancer's plain traffic (the NLB is not in
    the mesh), as App Mesh leaves an exposed listener without TLS."""
    return {
        "apiVersion": SECURITY,
        "kind": "PeerAuthentication",
        "metadata": _metadata(service.name, names),
        "spec": {
            "selector": {"matchLabels": service.pod_labels},
            "mtls": {"mode": "STRICT"},
            "portLevelMtls": {str(service.port): {"mode": "PERMISSIVE"}},
        },
    }


def service_objects(service: Service, topology: Topology, names: MeshNames, callers: list[str]) -> list[Manifest]:
    objects: list[Manifest] = []
    rule = destination_rule(service, names)
    if rule:
        objects.append(rule)
    if topology.mtls == "strict":
        if service.exposure == "none":
            objects.append(authorization_policy(service, callers, names))
        else:
            objects.append(exposed_port_permissive(service, names))
    if topology.egress_filter == "DROP_ALL":
        objects.append(sidecar(service, topology, names))
    return objects


# --------------------------------------------------------------------------------------------
# The mesh and the gateway


def platform_objects(topology: Topology, names: MeshNames) -> list[Manifest]:
    objects: list[Manifest] = []
    if topology.mtls == "strict":
        objects.append(
            {
                "apiVersion": SECURITY,
                "kind": "PeerAuthentication",
                "metadata": _metadata("default", names),
                "spec": {"mtls": {"mode": "STRICT"}},
            }
        )
    if topology.tracing == "on":
        objects.append(
            {
                "apiVersion": TELEMETRY,
                "kind": "Telemetry",
                "metadata": _metadata("tracing", names),
                "spec": {"tracing": [{"providers": [{"name": TRACING_PROVIDER}], "randomSamplingPercentage": TRACE_SAMPLING_PERCENT}]},
            }
        )
    return objects


def gateway_pod_labels(release: str) -> dict[str, str]:
    """The labels the gateway chart gives its pods: `app: <release>`, `istio: <release without
    "istio-">` (manifests/charts/gateway/templates/_helpers.tpl, gateway.selectorLabels)."""
    return {"app": release, "istio": release.removeprefix("istio-")}


def gateway_selector(gateway: Gateway) -> dict[str, str]:
    """What an Istio Gateway selects the chart's pods by."""
    return {"istio": gateway_pod_labels(gateway.name)["istio"]}


def gateway_object(gateway: Gateway, names: MeshNames) -> Manifest:
    return {
        "apiVersion": NETWORKING,
        "kind": "Gateway",
        "metadata": _metadata(gateway.name, names),
        "spec": {
            "selector": gateway_selector(gateway),
            "servers": [{"port": {"number": gateway.port, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}],
        },
    }


def gateway_objects(gateway: Gateway, names: MeshNames) -> list[Manifest]:
    # No Sidecar: istiod gives every gateway the namespace's default scope whatever Sidecar
    # selects it (PushContext.doGetSidecarScope, 1.31). A gateway forwards only where the
    # VirtualServices bound to its Gateway send, which is what bounds its egress.
    return [gateway_object(gateway, names)]


# --------------------------------------------------------------------------------------------
# Read back: Istio objects -> the neutral form (mesh/parity.py)
#
# What istiod makes of these objects is judged for real in the conformance layer: there, each
# Envoy's config from the real istiod (routes, weights, prefixes and rewrites, timeouts, retries,
# outlier detection and pools, mTLS per inbound chain, RBAC principals, what each sidecar knows)
# is compared with the synthesized topology (tests/conformance/test_istio.py). This read-back
# stays for what that layer does not run: the varied and generated topologies of the parity test,
# on every plain `make test`, without Go or root; and the health checks, which are the pods'
# probes rather than Envoy config.


def _retry_form(retries: dict[str, Any] | None) -> dict[str, Any] | None:
    if retries is None:
        raise ValueError("a route without `retries` gets Istio's default retries, which the topology never asks for")
    if retries["attempts"] == 0:
        return None
    return {
        "max_retries": retries["attempts"],
        "per_retry_timeout_ms": milliseconds(retries["perTryTimeout"]),
        "events": retry_events(retries["retryOn"]),
    }


def _route_form(http: dict[str, Any], targets_of: dict[str, str]) -> dict[str, Any]:
    return {
        "prefix": http["rewrite"]["uri"] if "rewrite" in http else http["match"][0]["uri"]["prefix"],
        "targets": {targets_of[d["destination"]["host"]]: d["weight"] for d in http["route"]},
        "timeout_ms": milliseconds(http.get("timeout")),
        "retry": _retry_form(http.get("retries")),
    }


def read_back(objects: list[Manifest], names: MeshNames) -> dict[str, Any]:
    by_kind: dict[str, list[Manifest]] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    services = [s for s in by_kind.get("Service", []) if s["apiVersion"] == "v1"]
    targets_of = {service_host(s["metadata"]["name"], names): s["metadata"]["name"] for s in services}
    entries = {se["spec"]["hosts"][0] for se in by_kind.get("ServiceEntry", [])}
    istio_virtual_services = [v for v in by_kind.get("VirtualService", []) if v["apiVersion"] == NETWORKING]
    mesh_routes = [v for v in istio_virtual_services if not v["spec"].get("gateways")]
    virtual_services: dict[str, Any] = {}
    for vs in mesh_routes:
        host = vs["spec"]["hosts"][0]
        assert host in entries, f"{host} has no ServiceEntry: it would not resolve"
        routes = sorted((_route_form(http, targets_of) for http in vs["spec"]["http"]), key=lambda route: route["prefix"])
        virtual_services[vs["metadata"]["name"]] = {"host": host, "routes": routes}
    gateway_routes = []
    for vs in (v for v in istio_virtual_services if v["spec"].get("gateways")):
        # Each of the virtual service's routes is one http route here, at P + R[1:] rewritten to R,
        # and its own routes are exactly the virtual service's (same targets, weights, policies).
        prefixes = {http["match"][0]["uri"]["prefix"][: -len(http["rewrite"]["uri"]) or None] + "/" for http in vs["spec"]["http"]}
        routes = sorted((_route_form(http, targets_of) for http in vs["spec"]["http"]), key=lambda route: route["prefix"])
        (owner,) = [name for name, form in virtual_services.items() if form["routes"] == routes]
        gateway_routes += [{"prefix": prefix, "virtual_service": owner, "rewrite": "/"} for prefix in prefixes]
    rules = {dr["spec"]["host"]: dr["spec"]["trafficPolicy"] for dr in by_kind.get("DestinationRule", [])}
    policies = {p["metadata"]["name"]: p for p in by_kind.get("AuthorizationPolicy", [])}
    sidecars = {s["metadata"]["name"]: s for s in by_kind.get("Sidecar", [])}
    peer = {p["metadata"]["name"]: p for p in by_kind.get("PeerAuthentication", [])}
    strict_mesh = peer.get("default", {}).get("spec", {}).get("mtls", {}).get("mode") == "STRICT"
    neutral_services: dict[str, Any] = {}
    for service in services:
        name = service["metadata"]["name"]
        deployment = deployments.get(f"{name}-app")
        if deployment is None:
            continue  # the gateway's Service
        policy = rules.get(service_host(name, names), {})
        outlier, pool = policy.get("outlierDetection"), policy.get("connectionPool")
        probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
        item: dict[str, Any] = {
            "health_check": {
                "path": probe["httpGet"]["path"],
                "interval_ms": probe["periodSeconds"] * 1000,
                "timeout_ms": probe["timeoutSeconds"] * 1000,
                "healthy_threshold": probe["successThreshold"],
                "unhealthy_threshold": probe["failureThreshold"],
            },
            "outlier_detection": None
            if outlier is None
            else {
                "max_server_errors": outlier["consecutive5xxErrors"],
                "interval_ms": milliseconds(outlier["interval"]),
                "base_ejection_ms": milliseconds(outlier["baseEjectionTime"]),
                "max_ejection_percent": outlier["maxEjectionPercent"],
            },
            "connection_pool": None
            if pool is None
            else {"max_connections": pool["tcp"]["maxConnections"], "max_pending_requests": pool["http"]["http1MaxPendingRequests"]},
        }
        if strict_mesh:
            if name in policies:
                principals = [p for rule in policies[name]["spec"]["rules"] for f in rule["from"] for p in f["source"]["principals"]]
                item["callers"] = sorted(p.rsplit("/sa/", 1)[1] for p in principals)
            else:
                item["callers"] = None
        if name in sidecars:
            hosts = sidecars[name]["spec"]["egress"][0]["hosts"]
            item["egress"] = sorted(
                h.removeprefix("./").split(".")[0] for h in hosts if h.startswith("./") and h.endswith(names.hosted_zone)
            )
        neutral_services[name] = item
    registry_only = bool(sidecars) and all(
        s["spec"].get("outboundTrafficPolicy", {}).get("mode") == "REGISTRY_ONLY" for s in sidecars.values()
    )
    return {
        "virtual_services": virtual_services,
        "services": neutral_services,
        "gateway_routes": sorted(gateway_routes, key=lambda route: route["prefix"]),
        "mtls": "strict" if strict_mesh else "off",
        "egress_filter": "DROP_ALL" if registry_only else "ALLOW_ALL",
    }
