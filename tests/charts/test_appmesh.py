"""The App Mesh backend's objects: exactly the workshop's, with the policies of the topology."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from backends.render import all_objects, render
from charts.appmesh import read_back
from mesh.names import mesh_names
from tests.charts.conftest import find
from tests.conftest import cdk_json_context
from tests.unit.test_settings import config_with


def _objects(**overrides: Any) -> list[dict[str, Any]]:
    return all_objects(render(config_with(**overrides)))


def _topology(**changes: Any) -> dict[str, Any]:
    topology = copy.deepcopy(cdk_json_context()["topology"])
    topology.update(changes)
    return topology


def test_mesh_selects_the_labelled_namespace_and_drops_undeclared_egress(objects: list[dict[str, Any]]) -> None:
    mesh = find(objects, "Mesh", "app-mesh")
    assert "namespace" not in mesh["metadata"]  # cluster-scoped
    # DROP_ALL (the topology's default egress filter): a service reaches only its declared backends.
    assert mesh["spec"] == {"namespaceSelector": {"matchLabels": {"mesh": "app-mesh"}}, "egressFilter": {"type": "DROP_ALL"}}


def test_egress_filter_allow_all_is_rendered() -> None:
    assert find(_objects(topology=_topology(egress_filter="ALLOW_ALL")), "Mesh", "app-mesh")["spec"]["egressFilter"] == {
        "type": "ALLOW_ALL"
    }


def test_nodejs_virtual_node_uses_cloud_map_with_a_health_checked_listener(objects: list[dict[str, Any]]) -> None:
    node = find(objects, "VirtualNode", "nodejs-app")
    assert node["metadata"]["namespace"] == "lab-appmesh"
    assert node["spec"]["awsName"] == "nodejs-app_lab-appmesh"
    assert node["spec"]["podSelector"] == {"matchLabels": {"app": "nodejs-app"}}
    assert node["spec"]["serviceDiscovery"] == {"awsCloudMap": {"namespaceName": "appmesh.pvt.local", "serviceName": "nodejs"}}
    (listener,) = node["spec"]["listeners"]
    assert listener["portMapping"] == {"port": 3000, "protocol": "http"}
    assert listener["healthCheck"] == {
        "protocol": "http",
        "path": "/health",
        "port": 3000,
        "healthyThreshold": 2,
        "unhealthyThreshold": 2,
        "timeoutMillis": 2000,
        "intervalMillis": 5000,
    }
    assert listener["timeout"] == {"http": {"perRequest": {"unit": "ms", "value": 15000}}}
    assert listener["outlierDetection"] == {
        "maxServerErrors": 5,
        "interval": {"unit": "ms", "value": 10000},
        "baseEjectionDuration": {"unit": "ms", "value": 30000},
        "maxEjectionPercent": 50,
    }
    assert listener["connectionPool"] == {"http": {"maxConnections": 1024, "maxPendingRequests": 1024}}
    assert listener["tls"] == {
        "mode": "STRICT",
        "certificate": {"file": {"certificateChain": "/certs/tls.crt", "privateKey": "/certs/tls.key"}},
        "validation": {"trust": {"file": {"certificateChain": "/certs/ca.crt"}}},
    }
    assert node["spec"]["logging"] == {"accessLog": {"file": {"path": "/dev/stdout"}}}
    assert "backends" not in node["spec"]


def test_policies_turned_off_leave_the_fields_out() -> None:
    topology = _topology()
    topology["services"]["crystal"].update(timeout_ms="off", connection_pool="off", outlier_detection="off")
    listener = find(_objects(topology=topology), "VirtualNode", "crystal-app")["spec"]["listeners"][0]
    assert {"timeout", "connectionPool", "outlierDetection"}.isdisjoint(listener)


def _client_tls(name: str) -> dict[str, Any]:
    return {
        "tls": {
            "enforce": True,
            "certificate": {"file": {"certificateChain": "/certs/tls.crt", "privateKey": "/certs/tls.key"}},
            "validation": {
                "trust": {"file": {"certificateChain": "/certs/ca.crt"}},
                "subjectAlternativeNames": {"match": {"exact": [f"{name}.appmeshworkshop.hosted.local"]}},
            },
        }
    }


def test_frontend_declares_its_backends_with_mutual_tls(objects: list[dict[str, Any]]) -> None:
    node = find(objects, "VirtualNode", "frontend-app")
    assert node["spec"]["backends"] == [
        {"virtualService": {"virtualServiceRef": {"name": "nodejs"}, "clientPolicy": _client_tls("nodejs")}},
        {"virtualService": {"virtualServiceRef": {"name": "crystal"}, "clientPolicy": _client_tls("crystal")}},
    ]
    # Its load balancer speaks plain HTTP to it, so its own listener does not demand TLS.
    assert "tls" not in node["spec"]["listeners"][0]


def test_mtls_off_renders_no_tls_and_no_certificates() -> None:
    objects = _objects(topology=_topology(mtls="off"))
    assert not [o for o in objects if o["apiVersion"].startswith("cert-manager.io/")]
    assert "tls" not in find(objects, "VirtualNode", "nodejs-app")["spec"]["listeners"][0]
    assert "clientPolicy" not in json.dumps(find(objects, "VirtualNode", "frontend-app"))
    assert "secretMounts" not in json.dumps(find(objects, "Deployment", "nodejs-app"))


@pytest.mark.parametrize(
    ("name", "dns_names"),
    [
        # nodejsv2 serves the nodejs virtual service: its clients match that name.
        ("nodejsv2", ["nodejs.appmeshworkshop.hosted.local", "nodejsv2.appmeshworkshop.hosted.local", "nodejsv2.appmesh.pvt.local"]),
        # crystal serves the crystal virtual service, which is also its own name: listed once.
        ("crystal", ["crystal.appmeshworkshop.hosted.local", "crystal.appmesh.pvt.local"]),
        ("nodejs", ["nodejs.appmeshworkshop.hosted.local", "nodejs.appmesh.pvt.local"]),
    ],
)
def test_each_workload_gets_a_certificate_for_the_names_its_clients_match(
    objects: list[dict[str, Any]], name: str, dns_names: list[str]
) -> None:
    certificate = find(objects, "Certificate", f"{name}-tls")
    assert certificate["metadata"]["namespace"] == "lab-appmesh"
    assert certificate["spec"]["secretName"] == f"{name}-tls"
    assert certificate["spec"]["dnsNames"] == dns_names
    assert certificate["spec"]["duration"] == "8760h" and certificate["spec"]["renewBefore"] == "720h"
    assert certificate["spec"]["issuerRef"] == {"name": "app-mesh-ca", "kind": "Issuer", "group": "cert-manager.io"}
    assert set(certificate["spec"]["usages"]) >= {"server auth", "client auth"}
    pod = find(objects, "Deployment", f"{name}-app")["spec"]["template"]
    assert pod["metadata"]["annotations"] == {"appmesh.k8s.aws/ports": "3000", "appmesh.k8s.aws/secretMounts": f"{name}-tls:/certs/"}


def test_dns_discovery_certificates_carry_no_cloud_map_name() -> None:
    objects = _objects(topology=_topology(discovery="dns"))
    assert find(objects, "Certificate", "crystal-tls")["spec"]["dnsNames"] == ["crystal.appmeshworkshop.hosted.local"]
    assert find(objects, "VirtualNode", "crystal-app")["spec"]["serviceDiscovery"] == {
        "dns": {"hostname": "crystal.lab-appmesh.svc.cluster.local"}
    }


def test_gateway_presents_its_certificate_to_the_services(objects: list[dict[str, Any]]) -> None:
    gateway = find(objects, "VirtualGateway", "ingress-gw")
    assert gateway["spec"]["backendDefaults"] == {"clientPolicy": _client_tls("nodejs")}
    pod = find(objects, "Deployment", "ingress-gw")["spec"]["template"]["spec"]
    (envoy,) = pod["containers"]
    assert {"mountPath": "/certs", "name": "tls", "readOnly": True} in envoy["volumeMounts"]
    assert {"name": "tls", "secret": {"secretName": "ingress-gw-tls"}} in [
        {k: v for k, v in volume.items() if k in ("name", "secret")} for volume in pod["volumes"]
    ]


def test_mesh_ca_issues_from_a_private_ca(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["platform"]
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("Mesh", "app-mesh"),
        ("Issuer", "app-mesh-selfsigned"),
        ("Certificate", "app-mesh-ca"),
        ("Issuer", "app-mesh-ca"),
    ]
    assert objects[2]["spec"]["isCA"] is True
    assert objects[3]["spec"] == {"ca": {"secretName": "app-mesh-ca"}}


def test_routes_carry_timeout_and_retry_policy(objects: list[dict[str, Any]]) -> None:
    route = find(objects, "VirtualRouter", "crystal-router")["spec"]["routes"][0]["httpRoute"]
    assert route["timeout"] == {"perRequest": {"unit": "ms", "value": 15000}}
    assert route["retryPolicy"] == {
        "maxRetries": 2,
        "perRetryTimeout": {"unit": "ms", "value": 2000},
        "httpRetryEvents": ["server-error", "gateway-error"],
        "tcpRetryEvents": ["connection-error"],
    }


def test_retry_off_is_an_explicit_zero_retry_policy(crd_schemas: dict[Any, Any]) -> None:
    import jsonschema

    topology = _topology()
    topology["virtual_services"]["crystal"]["routes"][0]["retry"] = "off"
    router = find(_objects(topology=topology), "VirtualRouter", "crystal-router")
    assert router["spec"]["routes"][0]["httpRoute"]["retryPolicy"] == {
        "maxRetries": 0,
        "perRetryTimeout": {"unit": "ms", "value": 15000},
        "httpRetryEvents": ["server-error"],
    }
    jsonschema.validate(router, crd_schemas[("appmesh.k8s.aws/v1beta2", "VirtualRouter")], cls=jsonschema.Draft7Validator)


def test_nodejs_router_splits_two_to_one(objects: list[dict[str, Any]]) -> None:
    router = find(objects, "VirtualRouter", "nodejs-router")
    assert router["spec"]["listeners"] == [{"portMapping": {"port": 3000, "protocol": "http"}}]
    (route,) = router["spec"]["routes"]
    assert route["name"] == "route-to-nodejs-app"
    assert route["httpRoute"]["match"] == {"prefix": "/"}
    assert route["httpRoute"]["action"] == {
        "weightedTargets": [
            {"virtualNodeRef": {"name": "nodejs-app"}, "weight": 2},
            {"virtualNodeRef": {"name": "nodejsv2-app"}, "weight": 1},
        ]
    }


@pytest.mark.parametrize("name", ["nodejs", "crystal"])
def test_virtual_service_is_provided_by_its_router(objects: list[dict[str, Any]], name: str) -> None:
    assert find(objects, "VirtualService", name)["spec"] == {
        "awsName": f"{name}.appmeshworkshop.hosted.local",
        "provider": {"virtualRouter": {"virtualRouterRef": {"name": f"{name}-router"}}},
    }


def test_ingress_gateway_and_its_route(objects: list[dict[str, Any]]) -> None:
    gateway = find(objects, "VirtualGateway", "ingress-gw")
    assert gateway["spec"]["awsName"] == "ingress-gw_lab-appmesh"
    assert gateway["spec"]["namespaceSelector"] == {"matchLabels": {"gateway": "ingress-gw"}}
    assert gateway["spec"]["podSelector"] == {"matchLabels": {"app": "ingress-gw"}}
    assert gateway["spec"]["listeners"] == [{"portMapping": {"port": 8088, "protocol": "http"}}]
    assert find(objects, "GatewayRoute", "gateway-route-eks")["spec"] == {
        "httpRoute": {"match": {"prefix": "/eks/"}, "action": {"target": {"virtualService": {"virtualServiceRef": {"name": "nodejs"}}}}}
    }


def test_gateway_container_is_named_envoy_and_keeps_its_pinned_image(objects: list[dict[str, Any]]) -> None:
    template = find(objects, "Deployment", "ingress-gw")["spec"]["template"]
    (container,) = template["spec"]["containers"]
    # The controller finds the gateway's Envoy by this name, and replaces its image unless told not to.
    assert container["name"] == "envoy"
    assert container["image"] == "public.ecr.aws/appmesh/aws-appmesh-envoy:v1.29.12.3-prod"
    assert template["metadata"]["annotations"] == {"appmesh.k8s.aws/virtualGatewaySkipImageOverride": "enabled"}
    assert container["ports"] == [{"containerPort": 8088}]
    assert container["securityContext"]["runAsUser"] == 1337


def test_gateway_manifest_applies_the_virtual_gateway_before_its_pods(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The injector rejects a gateway pod that no VirtualGateway selects; routes follow the pods."""
    kinds = [o["kind"] for o in rendered["gateway"]]
    assert kinds.index("VirtualGateway") < kinds.index("Deployment") < kinds.index("GatewayRoute")
    assert kinds.index("Certificate") < kinds.index("Deployment")


@pytest.mark.parametrize("name", ["frontend", "nodejs", "crystal"])
def test_the_virtual_node_and_certificate_are_applied_before_the_deployment(rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    kinds = [o["kind"] for o in rendered[f"service-{name}"]]
    assert kinds.index("VirtualNode") < kinds.index("Deployment")
    assert kinds.index("Certificate") < kinds.index("Deployment")
    assert kinds.index("ServiceAccount") < kinds.index("Deployment")


def test_each_pod_template_is_matched_by_exactly_one_mesh_selector(objects: list[dict[str, Any]]) -> None:
    selectors = [
        (o["kind"], o["metadata"]["name"], o["spec"]["podSelector"]["matchLabels"])
        for o in objects
        if o["kind"] in ("VirtualNode", "VirtualGateway")
    ]
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    assert len(deployments) == 5
    for deployment in deployments:
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        matched = [(kind, name) for kind, name, selector in selectors if selector.items() <= labels.items()]
        assert len(matched) == 1, (deployment["metadata"]["name"], matched)


def test_every_reference_resolves(objects: list[dict[str, Any]]) -> None:
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for obj in objects:
        spec = obj.get("spec", {})
        if obj["kind"] == "VirtualRouter":
            for route in spec["routes"]:
                for target in route["httpRoute"]["action"]["weightedTargets"]:
                    assert ("VirtualNode", target["virtualNodeRef"]["name"]) in names
        if obj["kind"] == "VirtualService" and obj["apiVersion"].startswith("appmesh"):
            assert ("VirtualRouter", spec["provider"]["virtualRouter"]["virtualRouterRef"]["name"]) in names
        if obj["kind"] == "VirtualNode":
            for backend in spec.get("backends", []):
                assert ("VirtualService", backend["virtualService"]["virtualServiceRef"]["name"]) in names
        if obj["kind"] == "GatewayRoute":
            assert ("VirtualService", spec["httpRoute"]["action"]["target"]["virtualService"]["virtualServiceRef"]["name"]) in names


def test_service_accounts_carry_their_irsa_role(objects: list[dict[str, Any]]) -> None:
    for name in ("frontend", "nodejs", "nodejsv2", "crystal", "ingress-gw"):
        account = find(objects, "ServiceAccount", name)
        assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/test"}


def test_the_gateway_accepts_every_virtual_service_its_routes_target() -> None:
    """The VirtualGateway is a client of each virtual service a gateway route targets: its client
    TLS must accept each one's name, or the routes after the first fail their TLS handshake."""
    topology = _topology()
    topology["gateway"]["routes"] = [
        {"name": "gateway-route-eks", "prefix": "/eks/", "virtual_service": "nodejs"},
        {"name": "gateway-route-crystal", "prefix": "/crystal/", "virtual_service": "crystal"},
    ]
    objects = _objects(topology=topology)
    gateway = find(objects, "VirtualGateway", "ingress-gw")
    validation = gateway["spec"]["backendDefaults"]["clientPolicy"]["tls"]["validation"]
    assert validation["subjectAlternativeNames"] == {
        "match": {"exact": ["crystal.appmeshworkshop.hosted.local", "nodejs.appmeshworkshop.hosted.local"]}
    }


def _strip_listener_tls(objects: list[dict[str, Any]]) -> None:
    find(objects, "VirtualNode", "crystal-app")["spec"]["listeners"][0].pop("tls")


def _strip_client_tls(objects: list[dict[str, Any]]) -> None:
    find(objects, "VirtualNode", "frontend-app")["spec"]["backends"][1]["virtualService"].pop("clientPolicy")


def _strip_gateway_tls(objects: list[dict[str, Any]]) -> None:
    find(objects, "VirtualGateway", "ingress-gw")["spec"].pop("backendDefaults")


@pytest.mark.parametrize("strip", [_strip_listener_tls, _strip_client_tls, _strip_gateway_tls])
def test_the_read_back_calls_mtls_with_one_plain_hop_partly(strip: Any) -> None:
    """The parity test's oracle: mTLS is `strict` only if every in-mesh listener, every backend call
    and the gateway's calls use it; one hop without it is `partly`, not `strict`."""
    config = config_with()
    objects = all_objects(render(config))
    assert read_back(copy.deepcopy(objects), mesh_names(config))["mtls"] == "strict"
    strip(objects)
    assert read_back(objects, mesh_names(config))["mtls"] == "partly"
    plain = config_with(topology=_topology(mtls="off"))
    assert read_back(all_objects(render(plain)), mesh_names(plain))["mtls"] == "off"
