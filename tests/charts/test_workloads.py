"""The mesh-neutral workloads, the same under every backend: hardened pods, probes around the
proxy, workshop names in the services' environment, the weights the frontend shows, and a
canary step that changes one manifest."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from backends import backend_named
from backends.render import all_objects, render
from tests.charts.conftest import find
from tests.conftest import cdk_json_context
from tests.unit.test_settings import backend_config

BACKENDS = ["appmesh", "istio", "lattice"]


@pytest.fixture(scope="module", params=BACKENDS)
def backend_rendered(request: pytest.FixtureRequest) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    return request.param, render(backend_config(request.param), backend_named(request.param))


def _objects(backend_rendered: tuple[str, dict[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    return all_objects(backend_rendered[1])


@pytest.mark.parametrize("name", ["frontend-app", "nodejs-app", "nodejsv2-app", "crystal-app", "ingress-gw"])
def test_workloads_are_hardened_per_container_not_per_pod(backend_rendered: Any, name: str) -> None:
    """runAsNonRoot sits on each container we render, never on the pod, where it would also bind
    the containers an injector adds (App Mesh's proxyinit runs as root)."""
    objects = _objects(backend_rendered)
    deployments = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name]
    if not deployments:
        assert backend_rendered[0] == "istio" and name == "ingress-gw"  # Istio's gateway chart renders it
        return
    (deployment,) = deployments
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"fsGroupChangePolicy": "Always", "seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["runAsNonRoot"] is True and context["runAsUser"] == context["runAsGroup"] != 0
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["privileged"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
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
    assert find(objects, "PodDisruptionBudget", name)["spec"] == {"minAvailable": 1, "selector": {"matchLabels": labels}}


@pytest.mark.parametrize("name", ["frontend", "nodejs", "nodejsv2", "crystal"])
def test_probes_reach_the_app_on_its_health_port_with_the_topology_health_check(backend_rendered: Any, name: str) -> None:
    pod = find(_objects(backend_rendered), "Deployment", f"{name}-app")["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": 3001, "scheme": "HTTP"}, probe
    readiness = container["readinessProbe"]
    # The topology's health check (5 s interval, 2 s timeout, 2/2 thresholds) decides readiness.
    assert (readiness["periodSeconds"], readiness["timeoutSeconds"], readiness["successThreshold"], readiness["failureThreshold"]) == (
        5,
        2,
        2,
        2,
    )
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert (env["PORT"], env["HEALTH_PORT"]) == ("3000", "3001")


def test_frontend_calls_its_backends_by_their_workshop_names_and_reads_their_weights(backend_rendered: Any) -> None:
    deployment = find(_objects(backend_rendered), "Deployment", "frontend-app")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["NODEJS_URL"] == "http://nodejs.appmeshworkshop.hosted.local:3000"
    assert env["CRYSTAL_URL"] == "http://crystal.appmeshworkshop.hosted.local:3000"
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["AVAILABILITY_ZONE"] == {"fieldRef": {"fieldPath": "metadata.labels['topology.kubernetes.io/zone']"}}
    assert env["MESH_WEIGHTS_DIR"] == "/etc/mesh/weights"
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == "mesh-weights"]
    assert volume["projected"]["sources"] == [
        {"configMap": {"name": f"weights-{vs}", "optional": True, "items": [{"key": "weights.json", "path": f"{vs}.json"}]}}
        for vs in ("nodejs", "crystal")
    ]
    assert {"name": "mesh-weights", "mountPath": "/etc/mesh/weights", "readOnly": True} in container["volumeMounts"]


def test_each_routing_manifest_carries_its_weights(backend_rendered: Any) -> None:
    _, rendered = backend_rendered
    (config_map,) = [o for o in rendered["routing-nodejs"] if o["kind"] == "ConfigMap"]
    assert config_map["metadata"] == {"name": "weights-nodejs", "namespace": "lab-appmesh"}
    assert json.loads(config_map["data"]["weights.json"]) == {"nodejs": 2, "nodejsv2": 1}


def test_a_backend_on_another_port_is_called_on_that_port() -> None:
    topology = copy.deepcopy(cdk_json_context()["topology"])
    topology["services"]["crystal"].update(port=8080, health_port=8081)
    for backend in ("appmesh", "istio"):
        rendered = render(backend_config(backend, topology=topology), backend_named(backend))
        (container,) = find(all_objects(rendered), "Deployment", "frontend-app")["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["CRYSTAL_URL"] == "http://crystal.appmeshworkshop.hosted.local:8080", backend
        assert env["NODEJS_URL"] == "http://nodejs.appmeshworkshop.hosted.local:3000", backend


def test_frontend_is_exposed_by_an_external_load_balancer_with_an_allowlist(backend_rendered: Any) -> None:
    objects = _objects(backend_rendered)
    service = find(objects, "Service", "frontend")
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["loadBalancerSourceRanges"] == ["0.0.0.0/0"]
    assert service["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internet-facing"
    assert find(objects, "Service", "nodejs")["spec"]["type"] == "ClusterIP"


def test_each_pod_template_is_selected_by_its_service_and_no_other(backend_rendered: Any) -> None:
    objects = _objects(backend_rendered)
    services = [o for o in objects if o["kind"] == "Service" and o["apiVersion"] == "v1"]
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selecting = [s["metadata"]["name"] for s in services if s["spec"]["selector"].items() <= labels.items()]
        assert len(selecting) == 1, (deployment["metadata"]["name"], selecting)
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] in {
            o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"
        }


def test_a_canary_step_changes_only_the_virtual_services_routing_manifest(backend_rendered: Any) -> None:
    backend, rendered = backend_rendered
    shifted = render(backend_config(backend, **{"weights.nodejs": "nodejs:1,nodejsv2:1"}), backend_named(backend))
    assert {name for name in rendered if rendered[name] != shifted[name]} == {"routing-nodejs"}
