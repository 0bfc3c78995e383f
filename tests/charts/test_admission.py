"""The admission model on every pod we render, for every backend: once the backend's injector has
added its containers, Pod Security Admission (at the level the namespace enforces) and the
kubelet's runAsNonRoot rule must let it start. And the model itself: it refuses what the cluster
refuses, and its picture of each injector is the pinned injector's own (../shared/reference)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

import upstream
from backends import backend_named
from backends.render import IMAGE, all_objects, render
from charts.workloads import APP_UID
from tests.charts.admission import dockerfile_users, injects, kubelet_refusals, pod_templates, refusals
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
    """Pods an injector changes: Pod Security on the injected pod, and the kubelet's rule. A pod
    no injector changes (all of Lattice's) gets the kubelet's rule only: the real API server judges
    its Pod Security (tests/conformance, test_every_pod_is_admitted_and_running)."""
    backend, config, rendered = backend_render
    templates = pod_templates(all_objects(rendered), backend.chart_pods(config.mesh.topology, _names(config)))
    assert templates
    for name, template in templates.items():
        injection = backend.injected(template, config.mesh.topology)
        if injects(injection):
            assert refusals(template, injection, backend.pod_security, {IMAGE: APP_UID}) == [], name
        else:
            assert kubelet_refusals(template, injection, {IMAGE: APP_UID}) == [], name


def test_which_pods_only_the_api_server_judges() -> None:
    """The split above, pinned: every Lattice pod is unchanged by an injector (so the model's Pod
    Security rules no longer judge it); every App Mesh and Istio service pod is changed."""
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
    backend = backend_named("istio")
    config = _config("istio")
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


# -- Istio: the injection template, rendered with the values the app gives istiod -----------------


def _merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        return {**base, **{key: _merge(base.get(key), value) for key, value in patch.items()}}
    return patch


def _security_context(template: str, container: str) -> str:
    """The securityContext block that follows `- name: <container>` in the injection template:
    its lines, and the template actions between them, up to the next key at its own level."""
    lines = template.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"- name: {container}")
    begin = next(i for i in range(start, len(lines)) if lines[i].strip() == "securityContext:")
    indent = len(lines[begin]) - len(lines[begin].lstrip())
    block = [lines[begin]]
    for line in lines[begin + 1 :]:
        depth = len(line) - len(line.lstrip())
        stripped = line.strip()
        action = stripped.startswith("{{") and stripped.endswith("}}")
        if stripped and not (depth > indent or (action and depth >= indent)):
            break
        block.append(line)
    return "\n".join(line[indent:] for line in block)


def _render_injection_security(container: str, istiod: dict[str, Any], *, native: bool = True) -> dict[str, Any]:
    import yaml

    from tests.charts.gotemplate import Template

    defaults = yaml.safe_load(upstream.text("istio-1.31-istio-discovery-values.yaml"))["_internal_defaults_do_not_set"]
    values = _merge(defaults, istiod)
    # What the istiod chart hands the injector: its injector ConfigMap re-exports `cni` as `pilot.cni`.
    data = {
        "Values": {"global": values["global"], "pilot": {"cni": values["cni"]}},
        "ProxyUID": None,
        "ProxyGID": None,
        "ProxyConfig": {"ProxyMetadata": values["meshConfig"].get("defaultConfig", {}).get("proxyMetadata", {})},
    }
    variables = {"$tproxy": False, "$capNetBindService": False, "$nativeSidecar": native}
    text = Template(_security_context(upstream.text("istio-1.31-injection-template.yaml"), container)).render(data, variables)
    return yaml.safe_load(text)["securityContext"]  # type: ignore[no-any-return]


def _istiod_values() -> dict[str, Any]:
    from components.istio import EXAMPLE_IMAGES, istiod_values

    return istiod_values(egress_registry_only=True, tracing=True, images=EXAMPLE_IMAGES)


def _image_block(template: str, container: str) -> str:
    """The `{{ if contains "/" ... }} image: ... {{ else }} image: ... {{ end }}` that follows
    `- name: <container>` in the injection template."""
    lines = template.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"- name: {container}")
    begin = next(i for i in range(start, len(lines)) if 'contains "/"' in lines[i])
    end = next(i for i in range(begin, len(lines)) if lines[i].strip() == "{{- end }}")
    return "\n".join(lines[begin : end + 1])


def _render_injection_image(container: str, istiod: dict[str, Any], annotations: dict[str, str] | None = None) -> str:
    """The image the injector gives `container`, with the chart's defaults under our values. The
    injector's own .ProxyImage/.ProxyInitImage (hub/image:tag, computed by istiod) are given as
    markers: they are what a value without a "/" would get."""
    import yaml

    from tests.charts.gotemplate import Template

    defaults = yaml.safe_load(upstream.text("istio-1.31-istio-discovery-values.yaml"))["_internal_defaults_do_not_set"]
    values = _merge(defaults, istiod)
    data = {
        "Values": {"global": values["global"]},
        "ObjectMeta": {"Annotations": annotations or {}},
        "ProxyImage": "<ProxyImage>",
        "ProxyInitImage": "<ProxyInitImage>",
    }
    text = Template(_image_block(upstream.text("istio-1.31-injection-template.yaml"), container)).render(data, {})
    return yaml.safe_load(text)["image"]  # type: ignore[no-any-return]


def test_istio_injected_images_are_our_mirror_as_it_is() -> None:
    """Both containers the injector adds run the proxyv2 mirror given in `global.proxy.image` and
    `global.proxy_init.image`, word for word: the template uses a value with a "/" as it is
    (istio-1.31-injection-template.yaml lines 87-88 and 188-189), so no hub goes before it and no
    tag after it. And the check is live: the chart's default name takes the other branch."""
    from components.istio import EXAMPLE_IMAGES

    values = _istiod_values()
    assert _render_injection_image("istio-validation", values) == EXAMPLE_IMAGES.proxy
    assert _render_injection_image("istio-proxy", values) == EXAMPLE_IMAGES.proxy
    backend = backend_named("istio")
    config = _config("istio")
    template = pod_templates(all_objects(render(config, backend)))["Deployment/nodejs-app"]
    assert {c["image"] for c in backend.injected(template, config.mesh.topology).init_containers} == {EXAMPLE_IMAGES.proxy}
    defaults = _merge(values, {"global": {"proxy": {"image": "proxyv2"}, "proxy_init": {"image": "proxyv2"}}})
    assert _render_injection_image("istio-proxy", defaults) == "<ProxyImage>"
    assert _render_injection_image("istio-validation", defaults) == "<ProxyInitImage>"
    # A pod may still name its own proxy image (sidecar.istio.io/proxyImage); none of ours does.
    annotated = {"sidecar.istio.io/proxyImage": "example.com/proxy:1"}
    assert _render_injection_image("istio-proxy", values, annotated) == "example.com/proxy:1"
    assert "sidecar.istio.io/proxyImage" not in json.dumps(all_objects(render(config, backend)))


def test_istio_injected_containers_are_the_injection_template_rendered_with_our_values() -> None:
    backend = backend_named("istio")
    config = _config("istio")
    template = pod_templates(all_objects(render(config, backend)))["Deployment/nodejs-app"]
    injection = backend.injected(template, config.mesh.topology)
    validation, proxy = injection.init_containers
    assert (validation["name"], proxy["name"], proxy["restartPolicy"]) == ("istio-validation", "istio-proxy", "Always")
    assert validation["securityContext"] == _render_injection_security("istio-validation", _istiod_values())
    assert proxy["securityContext"] == _render_injection_security("istio-proxy", _istiod_values())


def test_without_istio_cni_the_injected_init_container_would_need_root_and_net_admin() -> None:
    """What istio-cni buys: with it off, istio-init runs as root with NET_ADMIN and NET_RAW, which
    Pod Security `restricted` (and even baseline) refuses."""
    values = _merge(_istiod_values(), {"cni": {"enabled": False}})
    context = _render_injection_security("istio-validation", values)
    assert context["runAsUser"] == 0 and context["capabilities"]["add"] == ["NET_ADMIN", "NET_RAW"]
    backend = backend_named("istio")
    config = _config("istio")
    template = pod_templates(all_objects(render(config, backend)))["Deployment/nodejs-app"]
    from mesh.parts import Injection

    root = Injection(
        init_containers=({"name": "istio-init", "image": "proxyv2", "securityContext": context},), image_users={"proxyv2": 1337}
    )
    assert "istio-init: baseline: capabilities.add ['NET_ADMIN', 'NET_RAW'] are not allowed" in refusals(
        template, root, "restricted", {IMAGE: APP_UID}
    )


def test_istio_gateway_pods_from_the_chart_run_restricted() -> None:
    """The gateway chart's pod, with the `gateway` injection template's additions (uid 1337, the
    unprivileged-port sysctl, a baseline safe sysctl) and our seccomp profile."""
    backend = backend_named("istio")
    config = _config("istio")
    pods = backend.chart_pods(config.mesh.topology, _names(config))
    (name,) = pods
    assert refusals(pods[name], backend.injected(pods[name], config.mesh.topology), "restricted", {}) == []
    # Without our seccomp profile (the chart sets none), restricted would refuse it.
    bare = json.loads(json.dumps(pods[name]))
    bare["spec"]["securityContext"] = {}
    assert "istio-proxy: restricted: seccompProfile must be RuntimeDefault or Localhost (pod or container)" in refusals(
        bare, backend.injected(bare, config.mesh.topology), "restricted", {}
    )
