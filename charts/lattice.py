"""Amazon VPC Lattice objects, through the AWS Gateway API Controller: Gateway API (v1) and the
controller's own policies (application-networking.k8s.aws/v1alpha1), rendered from the topology
and read back into the neutral form. Pure; tests validate every object against the Gateway API
v1.5.0 and the controller's v2.1.3 CRDs.

* the mesh is a Lattice service network: a Gateway of class `amazon-vpc-lattice` named after it
  (the controller looks the network up by that name; CloudFormation creates it, and its VPC
  association), with one HTTP listener per port the virtual services use;
* a virtual service is an HTTPRoute on that Gateway whose hostname is the workshop name (the
  Lattice service's custom domain), with path-prefix rules and weighted backendRefs: the canary;
* a service's health check is a TargetGroupPolicy on its Kubernetes Service;
* access logs go to CloudWatch Logs through an AccessLogPolicy on the Gateway.
What Lattice cannot express is refused before this renders (backends/lattice.py).
"""

from __future__ import annotations

from typing import Any

from config.topology import Service, Topology, VirtualService
from mesh.names import Manifest, MeshNames

GATEWAY_API = "gateway.networking.k8s.io/v1"
LATTICE = "application-networking.k8s.aws/v1alpha1"
GATEWAY_CLASS = "amazon-vpc-lattice"
CONTROLLER_NAME = "application-networking.k8s.aws/gateway-api-controller"
# Where the controller publishes the Lattice service's own DNS name on the HTTPRoute.
ASSIGNED_DOMAIN_ANNOTATION = "application-networking.k8s.aws/lattice-assigned-domain-name"


def listener_name(port: int) -> str:
    return f"http-{port}"


def listener_ports(topology: Topology) -> list[int]:
    """The Gateway's listeners: one per port a virtual service listens on (80 when there is none:
    the Gateway API wants at least one listener)."""
    return sorted({topology.virtual_service_port(vs.name) for vs in topology.virtual_services}) or [80]


def gateway_class() -> Manifest:
    return {
        "apiVersion": GATEWAY_API,
        "kind": "GatewayClass",
        "metadata": {"name": GATEWAY_CLASS},
        "spec": {"controllerName": CONTROLLER_NAME},
    }


def gateway(topology: Topology, names: MeshNames) -> Manifest:
    """The service network, by its name; one listener per port a client calls a workshop name on."""
    ports = listener_ports(topology)
    return {
        "apiVersion": GATEWAY_API,
        "kind": "Gateway",
        "metadata": {"name": names.mesh, "namespace": names.namespace},
        "spec": {
            "gatewayClassName": GATEWAY_CLASS,
            "listeners": [{"name": listener_name(port), "protocol": "HTTP", "port": port} for port in ports],
        },
    }


def service_network_objects(topology: Topology, names: MeshNames, log_group_arn: str) -> list[Manifest]:
    """The Gateway and its access logs; applied after the GatewayClass, in a manifest of their own
    (backends/lattice.py says why)."""
    return [gateway(topology, names), access_log_policy(log_group_arn, names)]


def platform_objects(topology: Topology, names: MeshNames, log_group_arn: str) -> list[Manifest]:
    """The service network's objects: the class, the Gateway, its access logs."""
    return [gateway_class(), *service_network_objects(topology, names, log_group_arn)]


# The annotation the controller writes on an AccessLogPolicy once VPC Lattice has made its access-log
# subscription (v2.1.3 AccessLogSubscriptionAnnotationKey).
ACCESS_LOG_SUBSCRIPTION_ANNOTATION = "application-networking.k8s.aws/accessLogSubscription"
# The controller re-numbers a listener's rules with one BatchUpdateRule call, and that API takes at
# most 5 rules (API reference, BatchUpdateRule "Maximum number of 5 items"). The rules-per-listener
# quota itself is adjustable (quotas page), so the API bound is the one no quota increase lifts.
MAX_RULES_PER_LISTENER = 5


def access_log_policy(log_group_arn: str, names: MeshNames) -> Manifest:
    return {
        "apiVersion": LATTICE,
        "kind": "AccessLogPolicy",
        "metadata": {"name": f"{names.mesh}-access-logs", "namespace": names.namespace},
        "spec": {
            "destinationArn": log_group_arn,
            # On the Gateway: every route of the service network logs. The namespace is said: the
            # v2.1.3 controller reads a missing one as "default" (pkg/k8s/utils.go NamespaceOrDefault,
            # accesslogpolicy_controller.go) and then refuses a target outside the policy's own
            # namespace, so without it no access-log subscription would ever be made.
            "targetRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": names.mesh, "namespace": names.namespace},
        },
    }


def http_route(virtual_service: VirtualService, topology: Topology, names: MeshNames) -> Manifest:
    port = topology.virtual_service_port(virtual_service.name)
    rules = [
        {
            "matches": [{"path": {"type": "PathPrefix", "value": route.prefix}}],
            "backendRefs": [
                {"name": target, "kind": "Service", "port": topology.service(target).port, "weight": weight}
                for target, weight in route.targets
            ],
        }
        # The controller numbers rules in order; Lattice matches by priority: most specific first.
        for route in sorted(virtual_service.routes, key=lambda route: -len(route.prefix))
    ]
    return {
        "apiVersion": GATEWAY_API,
        "kind": "HTTPRoute",
        "metadata": {"name": virtual_service.name, "namespace": names.namespace},
        "spec": {
            "parentRefs": [{"name": names.mesh, "sectionName": listener_name(port)}],
            # The Lattice service's custom domain: the name clients call.
            "hostnames": [names.mesh_host(virtual_service.name)],
            "rules": rules,
        },
    }


def target_group_policy(service: Service, names: MeshNames) -> Manifest:
    """Lattice's active health checks of the service's pods, from the topology's health check."""
    check = service.health_check
    return {
        "apiVersion": LATTICE,
        "kind": "TargetGroupPolicy",
        "metadata": {"name": service.name, "namespace": names.namespace},
        "spec": {
            "targetRef": {"group": "", "kind": "Service", "name": service.name},
            "protocol": "HTTP",
            "protocolVersion": "HTTP1",
            "healthCheck": {
                "enabled": True,
                "path": service.health_path,
                "port": service.port,
                "protocol": "HTTP",
                "protocolVersion": "HTTP1",
                "intervalSeconds": check.interval_ms // 1000,
                "timeoutSeconds": check.timeout_ms // 1000,
                "healthyThresholdCount": check.healthy_threshold,
                "unhealthyThresholdCount": check.unhealthy_threshold,
                "statusMatch": "200",
            },
        },
    }


def is_lattice_target(service: Service, topology: Topology) -> bool:
    return bool(topology.served_by(service.name))


# --------------------------------------------------------------------------------------------
# Read back: Lattice objects (and the gateway's Envoy configuration) -> the neutral form


def read_back(objects: list[Manifest], names: MeshNames) -> dict[str, Any]:
    import json

    by_kind: dict[str, list[Manifest]] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    virtual_services = {}
    for route in by_kind.get("HTTPRoute", []):
        rules = sorted(route["spec"]["rules"], key=lambda rule: rule["matches"][0]["path"]["value"])
        virtual_services[route["metadata"]["name"]] = {
            "host": route["spec"]["hostnames"][0],
            "routes": [
                {"prefix": rule["matches"][0]["path"]["value"], "targets": {ref["name"]: ref["weight"] for ref in rule["backendRefs"]}}
                for rule in rules
            ],
        }
    policies = {p["spec"]["targetRef"]["name"]: p["spec"]["healthCheck"] for p in by_kind.get("TargetGroupPolicy", [])}
    services: dict[str, Any] = {}
    for deployment in by_kind.get("Deployment", []):
        name = deployment["metadata"]["name"].removesuffix("-app")
        if name == deployment["metadata"]["name"]:
            continue  # the gateway
        if name in policies:
            check = policies[name]
            form = {
                "path": check["path"],
                "interval_ms": check["intervalSeconds"] * 1000,
                "timeout_ms": check["timeoutSeconds"] * 1000,
                "healthy_threshold": check["healthyThresholdCount"],
                "unhealthy_threshold": check["unhealthyThresholdCount"],
            }
        else:  # not behind Lattice (the exposed frontend): the kubelet's readiness probe
            probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
            form = {
                "path": probe["httpGet"]["path"],
                "interval_ms": probe["periodSeconds"] * 1000,
                "timeout_ms": probe["timeoutSeconds"] * 1000,
                "healthy_threshold": probe["successThreshold"],
                "unhealthy_threshold": probe["failureThreshold"],
            }
        services[name] = {"health_check": form}
    gateway_routes = []
    for config_map in by_kind.get("ConfigMap", []):
        if "envoy.json" not in config_map.get("data", {}):
            continue
        bootstrap = json.loads(config_map["data"]["envoy.json"])
        manager = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        for route in manager["route_config"]["virtual_hosts"][0]["routes"]:
            action = route["route"]
            gateway_routes.append(
                {
                    "prefix": route["match"]["prefix"],
                    "virtual_service": action["host_rewrite_literal"].removesuffix(f".{names.hosted_zone}"),
                    "rewrite": action["prefix_rewrite"],
                }
            )
    return {"virtual_services": virtual_services, "services": services, "gateway_routes": sorted(gateway_routes, key=lambda r: r["prefix"])}
