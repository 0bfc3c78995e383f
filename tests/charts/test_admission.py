"""The admission model on every pod we render, for every backend: once the backend's injector has
added its containers, Pod Security Admission (at the level the namespace enforces) and the
kubelet's runAsNonRoot rule must let it start. And the model itself: it refuses what the cluster
refuses, and its picture of App Mesh's injector is the pinned injector's own (../shared/reference).
Istio's injector and Pod Security on Istio's pods are the real ones' in the conformance layer
(tests/conformance/test_istio.py); here, Istio's pods get the kubelet's rule only."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

import upstream
from backends import backend_named
from backends.render import IMAGE, all_objects, render
from charts.workloads import APP_UID
from mesh.parts import Injection
from tests.charts.admission import INJECTORS_RUN_FOR_REAL, dockerfile_users, injects, kubelet_refusals, pod_templates, refusals
from tests.unit.test_settings import config_with

BACKENDS = ["appmesh", "istio", "lattice"]


def _names(config: Any) -> Any:
    from mesh.names import mesh_names

    return mesh_names(config)


def _config(backend: str) -> Any:
    from tests.unit.test_settings import backend_config

    return backend_config(backend)


@pytest.fixture(scope="module", params=BACKENDS)
def backend_render(request: pytest.FixtureRequest) -> tuple[Any, Any, dict[str, Any]]:
    config = _config(request.param)
    backend = backend_named(request.param)
    return backend, config, render(config, backend)


def test_the_images_run_as_the_uid_the_pods_ask_for() -> None:
    """Every service's image runs as APP_UID, which the pod spec also names."""
    users = dockerfile_users()
    assert users and set(users.values()) == {APP_UID}, users


def test_every_pod_starts_once_the_injector_has_added_its_containers(backend_render: tuple[Any, Any, dict[str, Any]]) -> None:
    """Pods an injector changes that no real injector judges here (App Mesh's): Pod Security on
    the injected pod, and the kubelet's rule. Every other pod gets the kubelet's rule only: the
    real API server judges its Pod Security (tests/conformance), Istio's after istiod's own
    injector, which also gets the kubelet's rule there, on the pods as injected."""
    backend, config, rendered = backend_render
    templates = pod_templates(all_objects(rendered), backend.chart_pods(config.mesh.topology, _names(config)))
    assert templates
    for name, template in templates.items():
        injection = backend.injected(template, config.mesh.topology)
        if injects(injection) and backend.name not in INJECTORS_RUN_FOR_REAL:
            assert refusals(template, injection, backend.pod_security, {IMAGE: APP_UID}) == [], name
        else:
            judged_here = Injection() if backend.name in INJECTORS_RUN_FOR_REAL else injection
            assert kubelet_refusals(template, judged_here, {IMAGE: APP_UID}) == [], name


def test_which_pods_only_the_real_components_judge() -> None:
    """The split above, pinned: App Mesh's service pods are changed by an injector that does not
    run in the conformance layer (its controller needs AWS), so the model judges them whole;
    Istio's are changed by istiod, which runs there; Lattice's are changed by none."""
    assert INJECTORS_RUN_FOR_REAL == {"istio"}
    for name, expected in (("lattice", False), ("appmesh", True), ("istio", True)):
        backend, config = backend_named(name), _config(name)
        objects = all_objects(render(config, backend))
        services = {key: template for key, template in pod_templates(objects).items() if key.endswith("-app")}
        assert services and {injects(backend.injected(t, config.mesh.topology)) for t in services.values()} == {expected}, name


def test_app_mesh_needs_privileged_because_of_proxyinit() -> None:
    """The one backend below `restricted`, and why: one level stricter refuses its pods. (Istio
    and Lattice enforce `restricted`, the strictest, and their pods start there: above.)"""
    levels = {name: backend_named(name).pod_security for name in ("appmesh", "istio", "lattice")}
    assert levels == {"appmesh": "privileged", "istio": "restricted", "lattice": "restricted"}
    backend = backend_named("appmesh")
    config = config_with()
    template = pod_templates(all_objects(render(config, backend)))["Deployment/nodejs-app"]
    assert refusals(template, backend.injected(template, config.mesh.topology), "baseline", {IMAGE: APP_UID}) == [
        "proxyinit: baseline: capabilities.add ['NET_ADMIN'] are not allowed"
    ]


def test_the_model_refuses_a_pod_level_run_as_non_root_under_app_mesh() -> None:
    """The bug of the first version: runAsNonRoot on the pod binds the injected proxyinit, which
    has no runAsUser and an image that runs as root; the kubelet refuses it."""
    backend = backend_named("appmesh")
    config = config_with()
    template = pod_templates(all_objects(render(config, backend)))["Deployment/frontend-app"]
    assert "runAsNonRoot" not in template["spec"].get("securityContext", {})
    broken = json.loads(json.dumps(template))
    broken["spec"]["securityContext"]["runAsNonRoot"] = True
    assert refusals(broken, backend.injected(broken, config.mesh.topology), "privileged", {IMAGE: APP_UID}) == [
        "proxyinit: kubelet: container has runAsNonRoot and image will run as root"
    ]


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ({"privileged": True}, "app: baseline: privileged must be false"),
        ({"allowPrivilegeEscalation": True}, "app: restricted: allowPrivilegeEscalation must be false"),
        ({"capabilities": {"drop": []}}, "app: restricted: capabilities must drop ALL"),
        ({"capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}}, "app: baseline: capabilities.add ['SYS_ADMIN'] are not allowed"),
        ({"runAsUser": 0, "runAsNonRoot": False}, "app: restricted: runAsNonRoot must be true (pod or container)"),
        ({"seccompProfile": {"type": "Unconfined"}}, "app: baseline: seccompProfile must not be Unconfined"),
    ],
)
def test_the_model_refuses_each_restricted_violation(change: dict[str, Any], refusal: str) -> None:
    backend = backend_named("lattice")
    config = _config("lattice")
    template = json.loads(json.dumps(pod_templates(all_objects(render(config, backend)))["Deployment/crystal-app"]))
    template["spec"]["containers"][0]["securityContext"].update(change)
    assert refusal in refusals(template, backend.injected(template, config.mesh.topology), "restricted", {IMAGE: APP_UID})


# -- the injectors, as the pinned references document them -------------------------------------


def _go_json_template(source: str, constant: str) -> dict[str, Any]:
    """A container template from the App Mesh injector's Go source, placeholders filled in."""
    match = re.search(rf"const {constant} = `(.*?)`", source, re.DOTALL)
    assert match, constant
    text = re.sub(r'"\{\{[^}]*\}\}"', '"x"', match.group(1))
    return json.loads(re.sub(r"\{\{[^}]*\}\}", "0", text))  # type: ignore[no-any-return]


def test_app_mesh_injected_containers_are_the_injectors_own() -> None:
    backend = backend_named("appmesh")
    config = config_with()
    template = pod_templates(all_objects(render(config, backend)))["Deployment/nodejs-app"]
    injection = backend.injected(template, config.mesh.topology)
    (proxyinit,) = injection.init_containers
    reference = _go_json_template(upstream.text("appmesh-inject-init_proxy.go.txt"), "proxyInitContainerTemplate")
    assert proxyinit["name"] == reference["name"] and proxyinit["securityContext"] == reference["securityContext"]
    assert injection.image_users[proxyinit["image"]] is None  # no runAsUser, and the image's user is root
    xray = next(c for c in injection.containers if c["name"] == "xray-daemon")
    reference = _go_json_template(upstream.text("appmesh-inject-xray.go.txt"), "xrayDaemonContainerTemplate")
    assert xray["securityContext"] == reference["securityContext"] == {"runAsUser": 1337}
    # waitUntilProxyReady (our chart value) puts Envoy first among the containers.
    envoy_source = upstream.text("appmesh-inject-envoy.go.txt")
    assert "if m.mutatorConfig.waitUntilProxyReady {\n\t\tpod.Spec.Containers = append([]corev1.Container{container}" in envoy_source
    assert injection.containers[0]["name"] == "envoy" and injection.containers[0]["securityContext"] == {"runAsUser": 1337}


def test_app_mesh_gateway_pods_get_nothing_injected_and_keep_their_image() -> None:
    backend = backend_named("appmesh")
    config = config_with()
    objects = all_objects(render(config, backend))
    template = pod_templates(objects)["Deployment/ingress-gw"]
    assert backend.injected(template, config.mesh.topology).containers == ()
    source = upstream.text("appmesh-inject-virtualgateway_envoy.go.txt")
    # The injector overrides the gateway's image unless the pod says "enabled" to this annotation.
    assert 'gatewayImageSkipOverrideModeEnabled = "enabled"' in source
    assert template["metadata"]["annotations"]["appmesh.k8s.aws/virtualGatewaySkipImageOverride"] == "enabled"
