"""App Mesh custom resources (appmesh.k8s.aws/v1beta2) rendered from the topology model, and read
back into the neutral form. Pure: dicts in, dicts out; tests validate every object against the
controller's CRDs."""

from __future__ import annotations

from typing import Any

from config.policies import DEFAULT_TIMEOUT_MS, RetryPolicy
from config.topology import Gateway, GatewayRoute, Service, Topology, VirtualService
from mesh.names import Manifest, MeshNames

from . import certificates

API_VERSION = "appmesh.k8s.aws/v1beta2"
# Envoy's access log: stdout, so the container-logs add-on ships it with the app's own lines.
ACCESS_LOG = {"accessLog": {"file": {"path": "/dev/stdout"}}}
# Where the `appmesh.k8s.aws/secretMounts` annotation mounts a pod's cert-manager secret in
# Envoy (tls.crt, tls.key and the mesh CA's ca.crt).
CERT_DIR = "/certs"
CERTIFICATE_FILES = {"certificateChain": f"{CERT_DIR}/tls.crt", "privateKey": f"{CERT_DIR}/tls.key"}
TRUST_FILES = {"file": {"certificateChain": f"{CERT_DIR}/ca.crt"}}
# Pod annotations the injector reads (aws-app-mesh-controller-for-k8s pkg/inject).
PORTS_ANNOTATION = "appmesh.k8s.aws/ports"
SECRET_MOUNTS_ANNOTATION = "appmesh.k8s.aws/secretMounts"
# Without it the injector replaces a gateway's Envoy image with the controller's sidecar image
# (pkg/inject/virtualgateway_envoy.go): "enabled" keeps the image the Deployment pins.
SKIP_IMAGE_OVERRIDE_ANNOTATION = "appmesh.k8s.aws/virtualGatewaySkipImageOverride"


def _ms(value: int) -> dict[str, Any]:
    return {"unit": "ms", "value": value}


def app_mesh_name(name: str, namespace: str) -> str:
    """The App Mesh resource name the controller uses (`<k8s name>_<namespace>`), set explicitly
    so that IAM policies can name the exact virtual node or gateway."""
    return f"{name}_{namespace}"


def mesh(name: str, egress_filter: str) -> Manifest:
    return {
        "apiVersion": API_VERSION,
        "kind": "Mesh",
        "metadata": {"name": name},
        "spec": {
            "namespaceSelector": {"matchLabels": {"mesh": name}},
            "egressFilter": {"type": egress_filter},
        },
    }


def terminates_mesh_tls(service: Service, topology: Topology) -> bool:
    """Inbound mTLS only where every caller is in the mesh: an exposed service's listener also
    receives its load balancer's plain traffic, which would be refused."""
    return topology.mtls == "strict" and service.exposure == "none"


def client_tls(server_names: list[str]) -> dict[str, Any]:
    """Present our certificate, trust only the mesh CA, and accept only the named server."""
    return {
        "enforce": True,
        "certificate": {"file": CERTIFICATE_FILES},
        "validation": {"trust": TRUST_FILES, "subjectAlternativeNames": {"match": {"exact": server_names}}},
    }


def virtual_node(service: Service, topology: Topology, names: MeshNames) -> Manifest:
    if topology.discovery == "cloudmap":
        discovery: dict[str, Any] = {"awsCloudMap": {"namespaceName": names.cloud_map_namespace, "serviceName": service.name}}
    else:
        discovery = {"dns": {"hostname": f"{service.name}.{names.namespace}.svc.cluster.local"}}
    check = service.health_check
    listener: dict[str, Any] = {
        "portMapping": {"port": service.port, "protocol": service.protocol},
        "healthCheck": {
            "protocol": service.protocol,
            "path": service.health_path,
            "port": service.port,
            "healthyThreshold": check.healthy_threshold,
            "unhealthyThreshold": check.unhealthy_threshold,
            "timeoutMillis": check.timeout_ms,
            "intervalMillis": check.interval_ms,
        },
    }
    if service.timeout_ms is not None:
        listener["timeout"] = {"http": {"perRequest": _ms(service.timeout_ms)}}
    if service.connection_pool is not None:
        pool = service.connection_pool
        listener["connectionPool"] = {"http": {"maxConnections": pool.max_connections, "maxPendingRequests": pool.max_pending_requests}}
    if service.outlier_detection:
        outlier = service.outlier_detection
        listener["outlierDetection"] = {
            "maxServerErrors": outlier.max_server_errors,
            "interval": _ms(outlier.interval_ms),
            "baseEjectionDuration": _ms(outlier.base_ejection_ms),
            "maxEjectionPercent": outlier.max_ejection_percent,
        }
    if terminates_mesh_tls(service, topology):
        listener["tls"] = {
            "mode": "STRICT",
            "certificate": {"file": CERTIFICATE_FILES},
            # Client certificates must come from the mesh CA: a caller without one is refused.
            "validation": {"trust": TRUST_FILES},
        }
    spec: dict[str, Any] = {
        "awsName": app_mesh_name(service.virtual_node, names.namespace),
        "podSelector": {"matchLabels": service.pod_labels},
        "listeners": [listener],
        "serviceDiscovery": discovery,
        "logging": ACCESS_LOG,
    }
    if service.backends:
        backends = []
        for backend in service.backends:
            entry: dict[str, Any] = {"virtualServiceRef": {"name": backend}}
            if topology.mtls == "strict":
                entry["clientPolicy"] = {"tls": client_tls([names.mesh_host(backend)])}
            backends.append({"virtualService": entry})
        spec["backends"] = backends
    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualNode",
        "metadata": {"name": service.virtual_node, "namespace": names.namespace},
        "spec": spec,
    }


def workload_certificate(service: Service, topology: Topology, names: MeshNames) -> Manifest:
    """What its clients match (the virtual services that route to it), its own workshop name, and
    the Cloud Map name App Mesh expects among the SANs when discovery is Cloud Map."""
    dns_names = [names.mesh_host(vs) for vs in topology.served_by(service.name)]
    dns_names.append(names.mesh_host(service.name))
    if topology.discovery == "cloudmap":
        dns_names.append(f"{service.name}.{names.cloud_map_namespace}")
    return certificates.workload_certificate(service.name, list(dict.fromkeys(dns_names)), mesh=names.mesh, namespace=names.namespace)


def _retry(policy: RetryPolicy) -> dict[str, Any]:
    retry: dict[str, Any] = {"maxRetries": policy.max_retries, "perRetryTimeout": _ms(policy.per_retry_timeout_ms)}
    if policy.http_events:
        retry["httpRetryEvents"] = list(policy.http_events)
    if policy.tcp_events:
        retry["tcpRetryEvents"] = list(policy.tcp_events)
    return retry


def virtual_router(virtual_service: VirtualService, topology: Topology, names: MeshNames) -> Manifest:
    port = topology.virtual_service_port(virtual_service.name)
    routes = []
    for route in virtual_service.routes:
        http_route: dict[str, Any] = {
            "match": {"prefix": route.prefix},
            "action": {
                "weightedTargets": [
                    {"virtualNodeRef": {"name": topology.service(target).virtual_node}, "weight": weight}
                    for target, weight in route.targets
                ]
            },
        }
        if route.timeout_ms is not None:
            http_route["timeout"] = {"perRequest": _ms(route.timeout_ms)}
        if route.retry:
            http_route["retryPolicy"] = _retry(route.retry)
        else:
            # App Mesh applies its own default retries to a route without a policy; "off" has to
            # be an explicit policy of zero retries (the API wants at least one event).
            per_try = route.timeout_ms if route.timeout_ms is not None else DEFAULT_TIMEOUT_MS
            http_route["retryPolicy"] = {"maxRetries": 0, "perRetryTimeout": _ms(per_try), "httpRetryEvents": ["server-error"]}
        routes.append({"name": route.name, "httpRoute": http_route})
    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualRouter",
        "metadata": {"name": virtual_service.router, "namespace": names.namespace},
        "spec": {"listeners": [{"portMapping": {"port": port, "protocol": "http"}}], "routes": routes},
    }


def virtual_service_object(virtual_service: VirtualService, names: MeshNames) -> Manifest:
    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualService",
        "metadata": {"name": virtual_service.name, "namespace": names.namespace},
        "spec": {
            "awsName": names.mesh_host(virtual_service.name),
            "provider": {"virtualRouter": {"virtualRouterRef": {"name": virtual_service.router}}},
        },
    }


def virtual_gateway(gateway: Gateway, topology: Topology, names: MeshNames) -> Manifest:
    spec: dict[str, Any] = {
        "awsName": app_mesh_name(gateway.name, names.namespace),
        "namespaceSelector": {"matchLabels": {"gateway": gateway.name}},
        "podSelector": {"matchLabels": gateway.pod_labels},
        "listeners": [{"portMapping": {"port": gateway.port, "protocol": "http"}}],
        "logging": ACCESS_LOG,
    }
    if topology.mtls == "strict" and gateway.routes:
        # The gateway is a client of the virtual services its routes target.
        targets = sorted({names.mesh_host(route.virtual_service) for route in gateway.routes})
        spec["backendDefaults"] = {"clientPolicy": {"tls": client_tls(targets)}}
    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualGateway",
        "metadata": {"name": gateway.name, "namespace": names.namespace},
        "spec": spec,
    }


def gateway_route(route: GatewayRoute, names: MeshNames) -> Manifest:
    return {
        "apiVersion": API_VERSION,
        "kind": "GatewayRoute",
        "metadata": {"name": route.name, "namespace": names.namespace},
        "spec": {
            "httpRoute": {
                "match": {"prefix": route.prefix},
                # App Mesh's default rewrite replaces the matched prefix with "/".
                "action": {"target": {"virtualService": {"virtualServiceRef": {"name": route.virtual_service}}}},
            }
        },
    }


# --------------------------------------------------------------------------------------------
# Read back: App Mesh objects -> the neutral form (mesh/parity.py)


def _millis(value: dict[str, Any] | None) -> int | None:
    if value is None:
        return None
    return int(value["value"]) * {"ms": 1, "s": 1000}[value["unit"]]


def _retry_form(retry: dict[str, Any] | None) -> dict[str, Any] | None:
    if retry is None or retry["maxRetries"] == 0:  # "off" is an explicit policy of zero retries
        return None
    return {
        "max_retries": retry["maxRetries"],
        "per_retry_timeout_ms": _millis(retry["perRetryTimeout"]),
        "events": sorted({*retry.get("httpRetryEvents", []), *retry.get("tcpRetryEvents", [])}),
    }


def read_back(objects: list[Manifest], names: MeshNames) -> dict[str, Any]:
    """What the App Mesh objects (and the Services next to them) say, in the neutral form."""
    by_kind: dict[str, list[Manifest]] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    nodes = {node["metadata"]["name"]: node for node in by_kind.get("VirtualNode", [])}
    # A virtual node selects its pods, whose Kubernetes Service has the service's name.
    service_of = {name: name.removesuffix("-app") for name in nodes}
    exposed = {s["metadata"]["name"] for s in by_kind.get("Service", []) if s["spec"].get("type") == "LoadBalancer"}
    routers = {router["metadata"]["name"]: router for router in by_kind.get("VirtualRouter", [])}
    virtual_services: dict[str, Any] = {}
    for vs in by_kind.get("VirtualService", []):
        router = routers[vs["spec"]["provider"]["virtualRouter"]["virtualRouterRef"]["name"]]
        routes = [
            {
                "prefix": route["httpRoute"]["match"]["prefix"],
                "targets": {service_of[t["virtualNodeRef"]["name"]]: t["weight"] for t in route["httpRoute"]["action"]["weightedTargets"]},
                "timeout_ms": _millis(route["httpRoute"].get("timeout", {}).get("perRequest")),
                "retry": _retry_form(route["httpRoute"].get("retryPolicy")),
            }
            for route in router["spec"]["routes"]
        ]
        virtual_services[vs["metadata"]["name"]] = {
            "host": vs["spec"]["awsName"],
            "routes": sorted(routes, key=lambda route: route["prefix"]),
        }
    (mesh_object,) = by_kind["Mesh"]
    egress_filter = mesh_object["spec"]["egressFilter"]["type"]
    services: dict[str, Any] = {}
    tls_seen: list[bool] = []
    for name, node in nodes.items():
        listener = node["spec"]["listeners"][0]
        outlier = listener.get("outlierDetection")
        pool = listener.get("connectionPool", {}).get("http")
        check = listener["healthCheck"]
        backends = node["spec"].get("backends", [])
        service: dict[str, Any] = {
            "timeout_ms": _millis(listener.get("timeout", {}).get("http", {}).get("perRequest")),
            "health_check": {
                "path": check["path"],
                "interval_ms": check["intervalMillis"],
                "timeout_ms": check["timeoutMillis"],
                "healthy_threshold": check["healthyThreshold"],
                "unhealthy_threshold": check["unhealthyThreshold"],
            },
            "outlier_detection": None
            if outlier is None
            else {
                "max_server_errors": outlier["maxServerErrors"],
                "interval_ms": _millis(outlier["interval"]),
                "base_ejection_ms": _millis(outlier["baseEjectionDuration"]),
                "max_ejection_percent": outlier["maxEjectionPercent"],
            },
            "connection_pool": None
            if pool is None
            else {"max_connections": pool["maxConnections"], "max_pending_requests": pool["maxPendingRequests"]},
        }
        if egress_filter == "DROP_ALL":
            service["egress"] = sorted(b["virtualService"]["virtualServiceRef"]["name"] for b in backends)
        services[service_of[name]] = service
        # Every in-mesh listener terminates mTLS, and every call to a backend presents a certificate.
        if service_of[name] not in exposed:
            tls_seen.append(listener.get("tls", {}).get("mode") == "STRICT")
        tls_seen += [b["virtualService"].get("clientPolicy", {}).get("tls", {}).get("enforce") is True for b in backends]
    gateway_routes = [
        {
            "prefix": route["spec"]["httpRoute"]["match"]["prefix"],
            "virtual_service": route["spec"]["httpRoute"]["action"]["target"]["virtualService"]["virtualServiceRef"]["name"],
            # A GatewayRoute rewrites the matched prefix to "/" unless it says otherwise.
            "rewrite": route["spec"]["httpRoute"]["action"].get("rewrite", {}).get("prefix", {}).get("value", "/"),
        }
        for route in by_kind.get("GatewayRoute", [])
    ]
    for gateway in by_kind.get("VirtualGateway", []):
        if gateway_routes:
            tls_seen.append(gateway["spec"].get("backendDefaults", {}).get("clientPolicy", {}).get("tls", {}).get("enforce") is True)
    return {
        "virtual_services": virtual_services,
        "services": services,
        "gateway_routes": sorted(gateway_routes, key=lambda route: route["prefix"]),
        "mtls": "strict" if tls_seen and all(tls_seen) else "off" if not any(tls_seen) else "partly",
        "egress_filter": egress_filter,
    }
