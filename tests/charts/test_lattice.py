"""The VPC Lattice backend's objects: the service network as a Gateway, each virtual service as an
HTTPRoute with the canary's weights, health checks and access logs as the controller's policies,
and the /eks/ gateway on Envoy."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from backends import backend_named
from backends.render import all_objects, render
from tests.charts.conftest import find
from tests.unit.test_settings import backend_config


@pytest.fixture(scope="module")
def lattice() -> dict[str, list[dict[str, Any]]]:
    return render(backend_config("lattice"), backend_named("lattice"))


def test_the_service_network_is_a_gateway_named_after_it(lattice: dict[str, list[dict[str, Any]]]) -> None:
    objects = lattice["platform"]
    assert find(objects, "GatewayClass", "amazon-vpc-lattice")["spec"] == {
        "controllerName": "application-networking.k8s.aws/gateway-api-controller"
    }
    gateway = find(objects, "Gateway", "app-mesh")
    assert gateway["spec"] == {
        "gatewayClassName": "amazon-vpc-lattice",
        "listeners": [{"name": "http-3000", "protocol": "HTTP", "port": 3000}],
    }
    policy = find(objects, "AccessLogPolicy", "app-mesh-access-logs")
    # With its namespace: the controller reads a missing one as "default" and refuses the policy.
    assert policy["spec"]["targetRef"] == {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": "app-mesh",
        "namespace": "lab-appmesh",
    }


def test_each_virtual_service_is_a_weighted_http_route_on_its_workshop_name(lattice: dict[str, list[dict[str, Any]]]) -> None:
    route = find(lattice["routing-nodejs"], "HTTPRoute", "nodejs")
    assert route["spec"] == {
        "parentRefs": [{"name": "app-mesh", "sectionName": "http-3000"}],
        "hostnames": ["nodejs.appmeshworkshop.hosted.local"],
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "backendRefs": [
                    {"name": "nodejs", "kind": "Service", "port": 3000, "weight": 2},
                    {"name": "nodejsv2", "kind": "Service", "port": 3000, "weight": 1},
                ],
            }
        ],
    }
    # No filter, no timeout: the controller would ignore them silently (capability table).
    assert "filters" not in json.dumps(route) and "timeouts" not in json.dumps(route)


def test_lattice_health_checks_come_from_the_topology(lattice: dict[str, list[dict[str, Any]]]) -> None:
    policy = find(lattice["service-nodejsv2"], "TargetGroupPolicy", "nodejsv2")
    assert policy["spec"] == {
        "targetRef": {"group": "", "kind": "Service", "name": "nodejsv2"},
        "protocol": "HTTP",
        "protocolVersion": "HTTP1",
        "healthCheck": {
            "enabled": True,
            "path": "/health",
            "port": 3000,
            "protocol": "HTTP",
            "protocolVersion": "HTTP1",
            "intervalSeconds": 5,
            "timeoutSeconds": 2,
            "healthyThresholdCount": 2,
            "unhealthyThresholdCount": 2,
            "statusMatch": "200",
        },
    }
    # The frontend is behind its own load balancer, not Lattice: no target group, no policy.
    assert not [o for o in lattice["service-frontend"] if o["kind"] == "TargetGroupPolicy"]


def test_the_gateway_is_envoy_from_the_local_mesh_renderer(lattice: dict[str, list[dict[str, Any]]]) -> None:
    objects = lattice["gateway"]
    config = find(objects, "ConfigMap", "ingress-gw-envoy")
    bootstrap = json.loads(config["data"]["envoy.json"])
    routes = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["route_config"][
        "virtual_hosts"
    ][0]["routes"]
    assert routes == [
        {
            "name": "gateway-route-eks",
            "match": {"prefix": "/eks/"},
            "route": {"cluster": "vs-nodejs", "prefix_rewrite": "/", "host_rewrite_literal": "nodejs.appmeshworkshop.hosted.local"},
        }
    ]
    deployment = find(objects, "Deployment", "ingress-gw")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    # The stand-in for the edge Envoy image asset's ECR URI (tests/stacks/test_images.py: synthesized).
    assert container["image"] == "123456789012.dkr.ecr.us-west-1.amazonaws.com/cdk-assets:edge-envoy"
    assert container["args"] == ["-c", "/etc/envoy/envoy.json", "--disable-hot-restart", "--service-cluster", "ingress-gw"]
    assert {"mountPath": "/etc/envoy", "name": "envoy-config", "readOnly": True} in container["volumeMounts"]
    # A new route is a new config: the annotation's digest rolls the pods onto it.
    assert len(pod["metadata"]["annotations"]["workshop/envoy-config"]) == 16
    service = find(objects, "Service", "ingress-gw")
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 8088}]
    assert service["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internal"


def test_nothing_is_injected_and_no_pod_carries_an_irsa_role(lattice: dict[str, list[dict[str, Any]]]) -> None:
    objects = all_objects(lattice)
    backend = backend_named("lattice")
    topology = backend_config("lattice").mesh.topology
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        injection = backend.injected(deployment["spec"]["template"], topology)
        assert injection.init_containers == () and injection.containers == ()
    assert all("annotations" not in o["metadata"] for o in objects if o["kind"] == "ServiceAccount")


def test_lattice_targets_keep_serving_while_lattice_deregisters_them(lattice: dict[str, list[dict[str, Any]]]) -> None:
    """The controller's FAQ against 503s in rollouts: a 60 s preStop sleep within a grace of at
    least 150 s, on the pods Lattice sends to; the frontend is reached through its NLB instead."""
    drains = {}
    for deployment in (o for o in all_objects(lattice) if o["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        drains[deployment["metadata"]["name"]] = (pod.get("terminationGracePeriodSeconds"), pod["containers"][0].get("lifecycle"))
    drain = (150, {"preStop": {"sleep": {"seconds": 60}}})
    default = (30, None)  # cdk8s-plus's grace period, the kubelet's default
    assert drains == {"nodejs-app": drain, "nodejsv2-app": drain, "crystal-app": drain, "frontend-app": default, "ingress-gw": default}


def _route_rule(prefix: str, target: str) -> dict[str, Any]:
    return {"prefix": prefix, "targets": {target: 1}, "timeout_ms": "off", "retry": "off"}


def test_route_rules_go_most_specific_prefix_first() -> None:
    """The controller gives rules priorities in their order, and Lattice takes the first rule by
    priority that matches: `/` ahead of `/api/` would take every `/api/` request. The topology
    lists `/` first; the HTTPRoute lists `/api/` first."""
    routes = [_route_rule("/", "nodejs"), _route_rule("/api/", "nodejsv2"), _route_rule("/api/v2/", "nodejsv2")]
    config = backend_config("lattice", topology={"virtual_services": {"nodejs": {"routes": routes}}})
    assert [route.prefix for route in config.mesh.topology.virtual_service("nodejs").routes] == ["/", "/api/", "/api/v2/"]
    route = find(render(config, backend_named("lattice"))["routing-nodejs"], "HTTPRoute", "nodejs")
    assert [(rule["matches"][0]["path"]["value"], rule["backendRefs"][0]["name"]) for rule in route["spec"]["rules"]] == [
        ("/api/v2/", "nodejsv2"),
        ("/api/", "nodejsv2"),
        ("/", "nodejs"),
    ]


def test_a_topology_without_virtual_services_still_gives_the_gateway_a_listener(crd_schemas: dict[Any, Any]) -> None:
    """The Gateway API requires at least one listener (the Gateway CRD's minItems); with no virtual
    service to listen for, the Gateway keeps one on port 80, and the service network's rules follow it."""
    config = backend_config("lattice", topology={"virtual_services": None, "gateway": None, "services": {"frontend": {"backends": []}}})
    assert config.mesh.topology.virtual_services == ()
    gateway = find(render(config, backend_named("lattice"))["platform"], "Gateway", "app-mesh")
    assert gateway["spec"]["listeners"] == [{"name": "http-80", "protocol": "HTTP", "port": 80}]
    schema = crd_schemas[("gateway.networking.k8s.io/v1", "Gateway")]
    assert schema["properties"]["spec"]["properties"]["listeners"]["minItems"] == 1
    jsonschema.validate(gateway, schema, cls=jsonschema.Draft7Validator)


def test_a_virtual_service_with_more_rules_than_a_lattice_listener_takes_is_refused() -> None:
    """5 routes are a listener's 5 rules; a 6th is refused in one line before anything is built."""
    import json as _json

    from config import ConfigError
    from tests.unit.test_settings import config_with

    def with_routes(count: int) -> Any:
        routes = [
            {"prefix": "/" if i == 0 else f"/r{i}/", "targets": {"nodejs": 1}, "timeout_ms": "off", "retry": "off"} for i in range(count)
        ]
        return config_with(
            config="config/examples/lattice.yaml", topology=_json.dumps({"virtual_services": {"nodejs": {"routes": routes}}})
        )

    assert len(with_routes(5).mesh.topology.virtual_service("nodejs").routes) == 5
    with pytest.raises(ConfigError) as caught:
        with_routes(6)
    assert str(caught.value) == (
        "config error: topology.virtual_services.nodejs.routes='6 routes': the Lattice controller re-numbers a listener's rules "
        "in one BatchUpdateRule call, which takes at most 5: merge routes, or use mesh_backend=istio"
    )
