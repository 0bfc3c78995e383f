"""The mesh's Kubernetes objects: schema-valid, cross-referenced, and exactly the seed's."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tests.charts.conftest import find, render
from tests.unit.test_settings import config_with

APPMESH = "appmesh.k8s.aws/v1beta2"


def test_every_custom_object_validates_against_the_controller_crds(objects: list[dict[str, Any]], crd_schemas: dict[Any, Any]) -> None:
    custom = [o for o in objects if o["apiVersion"] == APPMESH]
    assert {o["kind"] for o in custom} == {"Mesh", "VirtualNode", "VirtualRouter", "VirtualService", "VirtualGateway", "GatewayRoute"}
    for obj in custom:
        schema = crd_schemas[(obj["apiVersion"], obj["kind"])]
        jsonschema.validate(obj, schema, cls=jsonschema.Draft7Validator)


def test_crd_validation_rejects_a_broken_object(crd_schemas: dict[Any, Any], objects: list[dict[str, Any]]) -> None:
    router = dict(find(objects, "VirtualRouter", "nodejs-router"))
    broken = {**router, "spec": {**router["spec"], "listeners": [{"portMapping": {"port": 3000, "protocol": "carrier-pigeon"}}]}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, crd_schemas[(APPMESH, "VirtualRouter")], cls=jsonschema.Draft7Validator)


@pytest.mark.parametrize("version", ["1.34", "1.35", "1.36"])
def test_every_core_object_validates_against_the_cluster_version_schema(version: str) -> None:
    rendered = render(config_with(kubernetes_version=version))
    core = [o for chart in rendered.values() for o in chart if not o["apiVersion"].startswith(("appmesh.k8s.aws/", "cert-manager.io/"))]
    assert {o["kind"] for o in core} == {"ServiceAccount", "Deployment", "Service", "PodDisruptionBudget"}
    for obj in core:
        kubernetes_validate.validate(obj, f"{version}.0", strict=True)


def test_every_reference_resolves(objects: list[dict[str, Any]]) -> None:
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for obj in objects:
        spec = obj.get("spec", {})
        if obj["kind"] == "VirtualRouter":
            for route in spec["routes"]:
                for target in route["httpRoute"]["action"]["weightedTargets"]:
                    assert ("VirtualNode", target["virtualNodeRef"]["name"]) in names
        if obj["kind"] == "VirtualService":
            assert ("VirtualRouter", spec["provider"]["virtualRouter"]["virtualRouterRef"]["name"]) in names
        if obj["kind"] == "VirtualNode":
            for backend in spec.get("backends", []):
                assert ("VirtualService", backend["virtualService"]["virtualServiceRef"]["name"]) in names
        if obj["kind"] == "GatewayRoute":
            assert ("VirtualService", spec["httpRoute"]["action"]["target"]["virtualService"]["virtualServiceRef"]["name"]) in names
        if obj["kind"] == "Deployment":
            assert ("ServiceAccount", obj["spec"]["template"]["spec"]["serviceAccountName"]) in names


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


def test_gateway_container_is_named_envoy_and_pinned(objects: list[dict[str, Any]]) -> None:
    (container,) = find(objects, "Deployment", "ingress-gw")["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "envoy"
    assert container["image"] == "public.ecr.aws/appmesh/aws-appmesh-envoy:v1.29.12.1-prod"
    assert container["ports"] == [{"containerPort": 8088}]


def test_mesh_selects_the_labelled_namespace(objects: list[dict[str, Any]]) -> None:
    mesh = find(objects, "Mesh", "app-mesh")
    assert "namespace" not in mesh["metadata"]  # cluster-scoped
    # DROP_ALL: a service reaches only the virtual services it declares as backends.
    assert mesh["spec"] == {"namespaceSelector": {"matchLabels": {"mesh": "app-mesh"}}, "egressFilter": {"type": "DROP_ALL"}}


def test_nodejs_virtual_node_uses_cloud_map_with_a_health_checked_listener(objects: list[dict[str, Any]]) -> None:
    node = find(objects, "VirtualNode", "nodejs-app")
    assert node["metadata"]["namespace"] == "lab-appmesh"
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
    import copy

    from tests.conftest import cdk_json_context

    topology = copy.deepcopy(cdk_json_context()["topology"])
    topology["mtls"] = "off"
    objects = [o for chart in render(config_with(topology=topology)).values() for o in chart]
    assert not [o for o in objects if o["apiVersion"].startswith("cert-manager.io/")]
    assert "tls" not in find(objects, "VirtualNode", "nodejs-app")["spec"]["listeners"][0]
    assert "clientPolicy" not in json.dumps(find(objects, "VirtualNode", "frontend-app"))
    assert "secretMounts" not in json.dumps(find(objects, "Deployment", "nodejs-app"))


def test_each_workload_gets_a_certificate_for_the_names_its_clients_match(objects: list[dict[str, Any]]) -> None:
    certificate = find(objects, "Certificate", "nodejsv2-tls")
    assert certificate["metadata"]["namespace"] == "lab-appmesh"
    assert certificate["spec"]["secretName"] == "nodejsv2-tls"
    # nodejsv2 serves the nodejs virtual service: clients match that name.
    assert certificate["spec"]["dnsNames"] == [
        "nodejs.appmeshworkshop.hosted.local",
        "nodejsv2.appmeshworkshop.hosted.local",
        # App Mesh matches the Cloud Map name when discovery is Cloud Map.
        "nodejsv2.appmesh.pvt.local",
    ]
    assert certificate["spec"]["duration"] == "8760h" and certificate["spec"]["renewBefore"] == "720h"
    assert certificate["spec"]["issuerRef"] == {"name": "app-mesh-ca", "kind": "Issuer", "group": "cert-manager.io"}
    assert set(certificate["spec"]["usages"]) >= {"server auth", "client auth"}
    pod = find(objects, "Deployment", "nodejsv2-app")["spec"]["template"]
    assert pod["metadata"]["annotations"] == {"appmesh.k8s.aws/ports": "3000", "appmesh.k8s.aws/secretMounts": "nodejsv2-tls:/certs/"}


def test_gateway_presents_its_certificate_to_the_services(objects: list[dict[str, Any]]) -> None:
    gateway = find(objects, "VirtualGateway", "ingress-gw")
    assert gateway["spec"]["backendDefaults"] == {"clientPolicy": _client_tls("nodejs")}
    pod = find(objects, "Deployment", "ingress-gw")["spec"]["template"]["spec"]
    (envoy,) = pod["containers"]
    assert {"mountPath": "/certs", "name": "tls", "readOnly": True} in envoy["volumeMounts"]
    assert {"name": "tls", "secret": {"secretName": "ingress-gw-tls"}} in [
        {k: v for k, v in volume.items() if k in ("name", "secret")} for volume in pod["volumes"]
    ]


def test_mesh_ca_chart_issues_from_a_private_ca() -> None:
    from charts.workloads import mesh_ca_chart
    from stacks.mesh_workload import mesh_names

    objects = mesh_ca_chart(mesh_names(config_with())).to_json()
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("Issuer", "app-mesh-selfsigned"),
        ("Certificate", "app-mesh-ca"),
        ("Issuer", "app-mesh-ca"),
    ]
    assert objects[1]["spec"]["isCA"] is True
    assert objects[2]["spec"] == {"ca": {"secretName": "app-mesh-ca"}}


def test_routes_carry_timeout_and_retry_policy(objects: list[dict[str, Any]]) -> None:
    route = find(objects, "VirtualRouter", "crystal-router")["spec"]["routes"][0]["httpRoute"]
    assert route["timeout"] == {"perRequest": {"unit": "ms", "value": 15000}}
    assert route["retryPolicy"] == {
        "maxRetries": 2,
        "perRetryTimeout": {"unit": "ms", "value": 2000},
        "httpRetryEvents": ["server-error", "gateway-error"],
        "tcpRetryEvents": ["connection-error"],
    }


@pytest.mark.parametrize("name", ["frontend-app", "nodejs-app", "nodejsv2-app", "crystal-app", "ingress-gw"])
def test_workloads_are_hardened(objects: list[dict[str, Any]], name: str) -> None:
    deployment = find(objects, "Deployment", name)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["privileged"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert {"mountPath": "/tmp", "name": "tmp"} in [{k: m[k] for k in ("mountPath", "name")} for m in container["volumeMounts"]]
    labels = deployment["spec"]["selector"]["matchLabels"]
    assert pod["topologySpreadConstraints"] == [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": labels},
        }
    ]
    budget = find(objects, "PodDisruptionBudget", name)
    assert budget["spec"] == {"minAvailable": 1, "selector": {"matchLabels": labels}}


@pytest.mark.parametrize("name", ["frontend", "nodejs", "nodejsv2", "crystal"])
def test_probes_reach_the_app_on_its_health_port_around_envoy(objects: list[dict[str, Any]], name: str) -> None:
    """Envoy intercepts only the app port, whose mTLS listener would refuse the kubelet."""
    pod = find(objects, "Deployment", f"{name}-app")["spec"]["template"]
    assert pod["metadata"]["annotations"]["appmesh.k8s.aws/ports"] == "3000"
    (container,) = pod["spec"]["containers"]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
        assert container[probe]["httpGet"]["port"] == 3001, probe
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert (env["PORT"], env["HEALTH_PORT"]) == ("3000", "3001")
    listener = find(objects, "VirtualNode", f"{name}-app")["spec"]["listeners"][0]
    assert listener["portMapping"]["port"] == 3000


@pytest.mark.parametrize("name", ["frontend", "nodejs", "crystal"])
def test_the_virtual_node_and_certificate_are_applied_before_the_deployment(rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    kinds = [o["kind"] for o in rendered[f"service-{name}"]]
    assert kinds.index("VirtualNode") < kinds.index("Deployment")
    assert kinds.index("Certificate") < kinds.index("Deployment")
    assert kinds.index("ServiceAccount") < kinds.index("Deployment")


def test_dns_discovery_mode() -> None:
    from dataclasses import replace

    from charts.appmesh import virtual_node

    dns = replace(config_with().mesh.topology, discovery="dns")
    node = virtual_node(
        dns.service("crystal"),
        dns,
        namespace="lab-appmesh",
        cloud_map_namespace="appmesh.pvt.local",
        hosted_zone="appmeshworkshop.hosted.local",
    )
    assert node["spec"]["serviceDiscovery"] == {"dns": {"hostname": "crystal.lab-appmesh.svc.cluster.local"}}


def test_nodejs_router_splits_two_to_one(objects: list[dict[str, Any]]) -> None:
    router = find(objects, "VirtualRouter", "nodejs-router")
    assert router["spec"] == {
        "listeners": [{"portMapping": {"port": 3000, "protocol": "http"}}],
        "routes": [
            {
                "name": "route-to-nodejs-app",
                "httpRoute": {
                    "match": {"prefix": "/"},
                    "action": {
                        "weightedTargets": [
                            {"virtualNodeRef": {"name": "nodejs-app"}, "weight": 2},
                            {"virtualNodeRef": {"name": "nodejsv2-app"}, "weight": 1},
                        ]
                    },
                    "timeout": {"perRequest": {"unit": "ms", "value": 15000}},
                    "retryPolicy": {
                        "maxRetries": 2,
                        "perRetryTimeout": {"unit": "ms", "value": 2000},
                        "httpRetryEvents": ["server-error", "gateway-error"],
                        "tcpRetryEvents": ["connection-error"],
                    },
                },
            }
        ],
    }


@pytest.mark.parametrize("name", ["nodejs", "crystal"])
def test_virtual_service_is_provided_by_its_router(objects: list[dict[str, Any]], name: str) -> None:
    assert find(objects, "VirtualService", name)["spec"] == {
        "awsName": f"{name}.appmeshworkshop.hosted.local",
        "provider": {"virtualRouter": {"virtualRouterRef": {"name": f"{name}-router"}}},
    }


def test_ingress_gateway_and_its_route(objects: list[dict[str, Any]]) -> None:
    gateway = find(objects, "VirtualGateway", "ingress-gw")
    assert gateway["spec"]["namespaceSelector"] == {"matchLabels": {"gateway": "ingress-gw"}}
    assert gateway["spec"]["podSelector"] == {"matchLabels": {"app": "ingress-gw"}}
    assert gateway["spec"]["listeners"] == [{"portMapping": {"port": 8088, "protocol": "http"}}]
    assert find(objects, "GatewayRoute", "gateway-route-eks")["spec"] == {
        "httpRoute": {"match": {"prefix": "/eks/"}, "action": {"target": {"virtualService": {"virtualServiceRef": {"name": "nodejs"}}}}}
    }
    deployment = find(objects, "Deployment", "ingress-gw")
    assert deployment["spec"]["replicas"] == 2
    service = find(objects, "Service", "ingress-gw")
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 8088}]
    assert service["metadata"]["annotations"] == {
        "service.beta.kubernetes.io/aws-load-balancer-type": "nlb",
        "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal",
        "service.beta.kubernetes.io/aws-load-balancer-internal": "true",
    }


def test_frontend_is_exposed_by_an_external_load_balancer_with_an_allowlist(objects: list[dict[str, Any]]) -> None:
    service = find(objects, "Service", "frontend")
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["loadBalancerSourceRanges"] == ["0.0.0.0/0"]
    assert service["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internet-facing"
    assert find(objects, "Service", "nodejs")["spec"]["type"] == "ClusterIP"


def test_deployment_labels_probes_resources_and_backend_urls(objects: list[dict[str, Any]]) -> None:
    deployment = find(objects, "Deployment", "frontend-app")
    assert deployment["spec"]["selector"] == {"matchLabels": {"app": "frontend-app"}}
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["labels"]["app"] == "frontend-app"
    assert pod["spec"]["serviceAccountName"] == "frontend"
    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["NODEJS_URL"] == "http://nodejs.appmeshworkshop.hosted.local:3000"
    assert env["CRYSTAL_URL"] == "http://crystal.appmeshworkshop.hosted.local:3000"
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["AVAILABILITY_ZONE"] == {"fieldRef": {"fieldPath": "metadata.labels['topology.kubernetes.io/zone']"}}
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["resources"] == {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}}


def test_service_accounts_carry_their_irsa_role(objects: list[dict[str, Any]]) -> None:
    for name in ("frontend", "nodejs", "nodejsv2", "crystal", "ingress-gw"):
        account = find(objects, "ServiceAccount", name)
        assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/test"}


def test_canary_shift_changes_only_the_router_weights(rendered: dict[str, list[dict[str, Any]]]) -> None:
    shifted = render(config_with(**{"weights.nodejs": "nodejs:1,nodejsv2:1"}))
    changed = {name for name in rendered if rendered[name] != shifted[name]}
    assert changed == {"routing"}
    before = {o["metadata"]["name"]: o for o in rendered["routing"]}
    after = {o["metadata"]["name"]: o for o in shifted["routing"]}
    assert {name for name in before if before[name] != after[name]} == {"nodejs-router"}
    targets = after["nodejs-router"]["spec"]["routes"][0]["httpRoute"]["action"]["weightedTargets"]
    assert [t["weight"] for t in targets] == [1, 1]


def test_chart_snapshot(rendered: dict[str, list[dict[str, Any]]], snapshot: Any) -> None:
    assert rendered == snapshot


def test_retry_off_is_an_explicit_zero_retry_policy(crd_schemas: dict[Any, Any]) -> None:
    import copy

    from tests.conftest import cdk_json_context

    topology = copy.deepcopy(cdk_json_context()["topology"])
    topology["virtual_services"]["crystal"]["routes"][0]["retry"] = "off"
    objects = [o for chart in render(config_with(topology=topology)).values() for o in chart]
    router = find(objects, "VirtualRouter", "crystal-router")
    assert router["spec"]["routes"][0]["httpRoute"]["retryPolicy"] == {
        "maxRetries": 0,
        "perRetryTimeout": {"unit": "ms", "value": 15000},
        "httpRetryEvents": ["server-error"],
    }
    jsonschema.validate(router, crd_schemas[(APPMESH, "VirtualRouter")], cls=jsonschema.Draft7Validator)
