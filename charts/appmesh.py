"""App Mesh custom resources (appmesh.k8s.aws/v1beta2) rendered from the topology model."""

from __future__ import annotations

from typing import Any

from config.topology import Gateway, GatewayRoute, Service, Topology, VirtualService

API_VERSION = "appmesh.k8s.aws/v1beta2"
# Envoy's access log: stdout, so the container-logs add-on ships it with the app's own lines.
ACCESS_LOG = {"accessLog": {"file": {"path": "/dev/stdout"}}}


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


def virtual_node(service: Service, topology: Topology, *, namespace: str, cloud_map_namespace: str) -> dict[str, Any]:
    if topology.discovery == "cloudmap":
        discovery: dict[str, Any] = {"awsCloudMap": {"namespaceName": cloud_map_namespace, "serviceName": service.name}}
    else:
        discovery = {"dns": {"hostname": f"{service.name}.{namespace}.svc.cluster.local"}}
    spec: dict[str, Any] = {
        "awsName": app_mesh_name(service.virtual_node, namespace),
        "podSelector": {"matchLabels": service.pod_labels},
        "listeners": [
            {
                "portMapping": {"port": service.port, "protocol": service.protocol},
                "healthCheck": {
                    "protocol": service.protocol,
                    "path": service.health_path,
                    "port": service.port,
                    "healthyThreshold": 2,
                    "unhealthyThreshold": 2,
                    "timeoutMillis": 2000,
                    "intervalMillis": 5000,
                },
            }
        ],
        "serviceDiscovery": discovery,
        "logging": ACCESS_LOG,
    }
    if service.backends:
        spec["backends"] = [{"virtualService": {"virtualServiceRef": {"name": backend}}} for backend in service.backends]
    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualNode",
        "metadata": {"name": service.virtual_node, "namespace": namespace},
        "spec": spec,
    }


def virtual_router(virtual_service: VirtualService, topology: Topology, *, namespace: str) -> dict[str, Any]:
    port = topology.service(virtual_service.routes[0].targets[0][0]).port
    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualRouter",
        "metadata": {"name": virtual_service.router, "namespace": namespace},
        "spec": {
            "listeners": [{"portMapping": {"port": port, "protocol": "http"}}],
            "routes": [
                {
                    "name": route.name,
                    "httpRoute": {
                        "match": {"prefix": route.prefix},
                        "action": {
                            "weightedTargets": [
                                {"virtualNodeRef": {"name": topology.service(target).virtual_node}, "weight": weight}
                                for target, weight in route.targets
                            ]
                        },
                    },
                }
                for route in virtual_service.routes
            ],
        },
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


def virtual_gateway(gateway: Gateway, *, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualGateway",
        "metadata": {"name": gateway.name, "namespace": namespace},
        "spec": {
            "awsName": app_mesh_name(gateway.name, namespace),
            "namespaceSelector": {"matchLabels": {"gateway": gateway.name}},
            "podSelector": {"matchLabels": gateway.pod_labels},
            "listeners": [{"portMapping": {"port": gateway.port, "protocol": "http"}}],
            "logging": ACCESS_LOG,
        },
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
