"""App Mesh custom resources (appmesh.k8s.aws/v1beta2) rendered from the topology model."""

from __future__ import annotations

from typing import Any

from config.policies import RetryPolicy
from config.topology import Gateway, GatewayRoute, Service, Topology, VirtualService

API_VERSION = "appmesh.k8s.aws/v1beta2"
# Envoy's access log: stdout, so the container-logs add-on ships it with the app's own lines.
ACCESS_LOG = {"accessLog": {"file": {"path": "/dev/stdout"}}}
# Where the `appmesh.k8s.aws/secretMounts` annotation mounts a pod's cert-manager secret in
# Envoy (tls.crt, tls.key and the mesh CA's ca.crt).
CERT_DIR = "/certs"
CERTIFICATE_FILES = {"certificateChain": f"{CERT_DIR}/tls.crt", "privateKey": f"{CERT_DIR}/tls.key"}
TRUST_FILES = {"file": {"certificateChain": f"{CERT_DIR}/ca.crt"}}


def _ms(value: int) -> dict[str, Any]:
    return {"unit": "ms", "value": value}


def app_mesh_name(name: str, namespace: str) -> str:
    """The App Mesh resource name the controller uses (`<k8s name>_<namespace>`), set explicitly
    so that IAM policies can name the exact virtual node or gateway."""
    return f"{name}_{namespace}"


def mesh(name: str, egress_filter: str) -> dict[str, Any]:
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


def virtual_node(service: Service, topology: Topology, *, namespace: str, cloud_map_namespace: str, hosted_zone: str) -> dict[str, Any]:
    if topology.discovery == "cloudmap":
        discovery: dict[str, Any] = {"awsCloudMap": {"namespaceName": cloud_map_namespace, "serviceName": service.name}}
    else:
        discovery = {"dns": {"hostname": f"{service.name}.{namespace}.svc.cluster.local"}}
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
        "timeout": {"http": {"perRequest": _ms(service.timeout_ms)}},
        "connectionPool": {
            "http": {
                "maxConnections": service.connection_pool.max_connections,
                "maxPendingRequests": service.connection_pool.max_pending_requests,
            }
        },
    }
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
        "awsName": app_mesh_name(service.virtual_node, namespace),
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
                entry["clientPolicy"] = {"tls": client_tls([f"{backend}.{hosted_zone}"])}
            backends.append({"virtualService": entry})
        spec["backends"] = backends
    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualNode",
        "metadata": {"name": service.virtual_node, "namespace": namespace},
        "spec": spec,
    }


def _retry(policy: RetryPolicy) -> dict[str, Any]:
    retry: dict[str, Any] = {"maxRetries": policy.max_retries, "perRetryTimeout": _ms(policy.per_retry_timeout_ms)}
    if policy.http_events:
        retry["httpRetryEvents"] = list(policy.http_events)
    if policy.tcp_events:
        retry["tcpRetryEvents"] = list(policy.tcp_events)
    return retry


def virtual_router(virtual_service: VirtualService, topology: Topology, *, namespace: str) -> dict[str, Any]:
    port = topology.service(virtual_service.routes[0].targets[0][0]).port
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
            "timeout": {"perRequest": _ms(route.timeout_ms)},
        }
        if route.retry:
            http_route["retryPolicy"] = _retry(route.retry)
        else:
            # App Mesh applies its own default retries to a route without a policy; "off" has to
            # be an explicit policy of zero retries (the API wants at least one event).
            http_route["retryPolicy"] = {"maxRetries": 0, "perRetryTimeout": _ms(route.timeout_ms), "httpRetryEvents": ["server-error"]}
        routes.append({"name": route.name, "httpRoute": http_route})
    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualRouter",
        "metadata": {"name": virtual_service.router, "namespace": namespace},
        "spec": {"listeners": [{"portMapping": {"port": port, "protocol": "http"}}], "routes": routes},
    }


def virtual_service_object(virtual_service: VirtualService, *, namespace: str, hosted_zone: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualService",
        "metadata": {"name": virtual_service.name, "namespace": namespace},
        "spec": {
            "awsName": f"{virtual_service.name}.{hosted_zone}",
            "provider": {"virtualRouter": {"virtualRouterRef": {"name": virtual_service.router}}},
        },
    }


def virtual_gateway(gateway: Gateway, topology: Topology, *, namespace: str, hosted_zone: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "awsName": app_mesh_name(gateway.name, namespace),
        "namespaceSelector": {"matchLabels": {"gateway": gateway.name}},
        "podSelector": {"matchLabels": gateway.pod_labels},
        "listeners": [{"portMapping": {"port": gateway.port, "protocol": "http"}}],
        "logging": ACCESS_LOG,
    }
    if topology.mtls == "strict" and gateway.routes:
        # The gateway is a client of the virtual services its routes target.
        targets = sorted({f"{route.virtual_service}.{hosted_zone}" for route in gateway.routes})
        spec["backendDefaults"] = {"clientPolicy": {"tls": client_tls(targets)}}
    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualGateway",
        "metadata": {"name": gateway.name, "namespace": namespace},
        "spec": spec,
    }


def gateway_route(route: GatewayRoute, *, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "GatewayRoute",
        "metadata": {"name": route.name, "namespace": namespace},
        "spec": {
            "httpRoute": {
                "match": {"prefix": route.prefix},
                # App Mesh's default rewrite replaces the matched prefix with "/".
                "action": {"target": {"virtualService": {"virtualServiceRef": {"name": route.virtual_service}}}},
            }
        },
    }
