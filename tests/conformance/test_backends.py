"""Each backend's cdk.out applied to a real kube-apiserver (1.35) with its controller manager, in the
order CloudFormation applies it, then destroyed in reverse (conformance/harness.py says how each
step is applied). For every backend: every object accepted (schemas, CEL rules, unknown fields
refused), each object's namespace and CRD made by a step it waits for, every pod admitted at its
namespace's Pod Security level and Running, and nothing left waiting on a finalizer after the
destroy. Istio's run has istiod running with its webhooks (conformance/istio.py), so its pods are
admitted once its real injector has changed them; test_istio.py judges the rest of Istio. And proof that it bites: what the API server refuses, shown on copies of our own objects
with one thing broken, and accepted once that thing is fixed.

The tests of one backend share its control plane and run in this file's order; the last destroys."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest

from conformance import charts
from conformance.cloudformation import HelmRelease, Manifest, Step
from conformance.harness import summary
from conformance.kubelet import wait_for
from tests.conformance.conftest import ASSET_IMAGE, Deployed
from tests.stacks.support import DOCKER_HUB, registry

pytestmark = pytest.mark.conformance

# Pod Security levels the app's namespaces enforce, by backend (backends/*.py `pod_security`):
# only these refuse a root container at admission; App Mesh's namespace is privileged.
RESTRICTED = {"istio", "lattice"}


def _fail_with(deployed: Deployed, problems: list[str], what: str) -> None:
    if problems:
        lines = "\n  ".join(problems)
        pytest.fail(f"{deployed.backend}: {what}:\n  {lines}\n(files and logs: {deployed.workdir})", pytrace=False)


# -- what the API server took ------------------------------------------------------------------


def test_every_object_is_accepted(deployed: Deployed) -> None:
    _fail_with(deployed, [f"{r.step}: {r.message}" for r in deployed.report.refusals], "refused\n" + summary(deployed.report))


def test_every_object_comes_after_its_namespace_and_its_crd(deployed: Deployed) -> None:
    """CloudFormation makes resources that do not wait for each other in parallel: an object whose
    namespace or CRD comes from a step it does not wait for works only by luck of timing."""
    _fail_with(deployed, deployed.running.harness.order_violations(), "ordered by luck")


def test_only_webhooks_and_the_unavailable_lattice_chart_are_left_out(deployed: Deployed) -> None:
    """What this layer cannot apply, each for a stated reason: the README lists the same. Istio's
    webhooks are kept (pointed at the local istiod), so nothing of Istio is left out."""
    if deployed.backend == "istio":
        assert [f"{item.step}: {item.what}" for item in deployed.report.left_out] == []
    unexpected = [
        f"{item.step}: {item.what}"
        for item in deployed.report.left_out
        if not item.what.startswith(("MutatingWebhookConfiguration/", "ValidatingWebhookConfiguration/"))
        and item.what != "chart aws-gateway-controller-chart v2.1.3"
    ]
    assert unexpected == []
    assert all(item.reason for item in deployed.report.left_out)


def test_only_load_balancer_and_lattice_addresses_need_aws(deployed: Deployed) -> None:
    expected = {"appmesh": 2, "istio": 2, "lattice": 5}[deployed.backend]
    assert len(deployed.report.needs_aws) == expected, deployed.report.needs_aws


def test_each_chart_rendered_is_the_pinned_chart(deployed: Deployed) -> None:
    """The chart sources (Go modules) carry, byte for byte, the files the other layers pin."""
    for step in deployed.steps:
        if isinstance(step.action, HelmRelease):
            source = charts.source_for(step.action.repository, step.action.chart, step.action.version)
            if isinstance(source, charts.ChartSource):
                assert charts.check_pins(source, charts.module_folder(source.module)) == [], step.path


def test_service_account_tokens_are_signed(deployed: Deployed) -> None:
    result = deployed.running.plane.kubectl("create", "token", "default", "-n", "default", "--duration=10m")
    assert result.returncode == 0 and result.stdout.count(".") == 2, result.stderr


# -- pods --------------------------------------------------------------------------------------


def test_every_pod_is_admitted_and_running(deployed: Deployed) -> None:
    """The controller manager makes the pods of our Deployments, Jobs and DaemonSets (charts'
    included); Pod Security admission judges each at its namespace's level. Istio's meshed pods are
    judged as istiod's own injector changed them; App Mesh's without their sidecars (its injector
    is its controller, which needs AWS: README)."""
    harness = deployed.running.harness
    _fail_with(deployed, harness.pod_refusals() + harness.workloads_short(), "pods refused or not running")
    _fail_with(deployed, deployed.running.background_errors(), "the node and controller stand-ins failed")


def test_no_pod_pulls_from_docker_hub_and_istio_runs_its_mirrors(deployed: Deployed) -> None:
    """The pods the real charts render (Helm, the pinned chart sources) with our values, as the
    controllers create them: no image from Docker Hub (tests/stacks/test_images.py models the same
    from the values). For Istio, istiod's and the CNI agent's containers run the mirrors exactly as
    given: the charts use a value with a "/" as it is (istio-discovery deployment.yaml lines 98-99,
    istio-cni daemonset.yaml lines 93-94), with no hub put before it and no tag after it. A
    gateway's `image: auto` is the injector's to fill (with the mirrored proxy)."""
    pods = deployed.running.plane.api().get("/api/v1/pods")["items"]
    images = {
        f"{pod['metadata']['namespace']}/{pod['metadata']['name']}/{container['name']}": container["image"]
        for pod in pods
        for container in [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]
        if not (container["image"] == "auto" and pod["metadata"].get("annotations", {}).get("inject.istio.io/templates") == "gateway")
    }
    assert {where: image for where, image in images.items() if registry(image) in DOCKER_HUB} == {}
    if deployed.backend == "istio":
        ours = ("discovery", "install-cni")  # istiod's container, the CNI agent's
        istio = {where: image for where, image in images.items() if where.startswith("istio-system/") and where.endswith(ours)}
        assert {where.rsplit("/", 1)[1] for where in istio} == set(ours), images
        assert {where: image for where, image in istio.items() if not ASSET_IMAGE.match(image)} == {}


def test_the_one_shot_jobs_ran_and_succeeded_with_their_own_rights(deployed: Deployed) -> None:
    """The webhook gates and the CRD installer (our Jobs) ran their real commands (kubectl with the
    Job's own service-account token; the installer's own verification script), and succeeded. A
    chart's hook Job (cert-manager's startupapicheck) is admitted and Running, but not run: its
    image is not a program this layer has (README)."""
    jobs = [
        obj
        for applied in deployed.report.applied
        if isinstance(applied.step.action, Manifest)
        for obj in applied.objects
        if obj["kind"] == "Job"
    ]
    assert jobs
    ran = set(deployed.running.node.job_pods.values())
    assert {f"{job['metadata']['namespace']}/{job['metadata']['name']}" for job in jobs} <= ran
    for record in deployed.running.node.jobs.values():
        assert [run.exit_code for run in record.runs] == [0] * len(record.runs), [run.output for run in record.runs]


# -- proof that it bites -----------------------------------------------------------------------


def _probe(step: Step, *objects: dict[str, Any]) -> tuple[Step, Manifest]:
    probe = Step(step.stack, f"{step.logical_id}Probe", f"{step.path} (probe)", Manifest(False, False, tuple(objects)), step.after)
    assert isinstance(probe.action, Manifest)
    return probe, probe.action


def _object(step: Step, kind: str) -> dict[str, Any]:
    assert isinstance(step.action, Manifest)
    (found,) = [obj for obj in step.action.objects if obj["kind"] == kind]
    renamed = copy.deepcopy(found)
    renamed["metadata"]["name"] += "-probe"
    return renamed


def test_a_route_with_both_a_redirect_and_a_rewrite_is_refused(deployed: Deployed) -> None:
    """A CEL rule of the Gateway API CRDs: a rule's filters may redirect or rewrite, not both."""
    if deployed.backend != "lattice":
        pytest.skip("HTTPRoutes are the Lattice backend's")
    step = deployed.step("/Routing-nodejs/")
    route = _object(step, "HTTPRoute")
    broken = copy.deepcopy(route)
    broken["spec"]["rules"][0]["filters"] = [
        {"type": "RequestRedirect", "requestRedirect": {"statusCode": 302}},
        {"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}},
    ]
    harness = deployed.running.harness
    refused = harness.apply_manifest(*_probe(step, broken), dry_run=True)
    assert any(
        "May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, but not both" in line for line in refused
    ), refused
    assert harness.apply_manifest(*_probe(step, route), dry_run=True) == []


def test_an_unknown_field_in_a_custom_resource_is_refused(deployed: Deployed) -> None:
    """Strict field validation, as the handler's kubectl asks for it: a misspelt field is an error,
    not silently dropped."""
    step = deployed.step("/Routing-nodejs/")
    assert isinstance(step.action, Manifest)
    kind = next(obj["kind"] for obj in step.action.objects if "." in obj["apiVersion"].split("/")[0])
    custom = _object(step, kind)
    broken = copy.deepcopy(custom)
    broken["spec"]["weightedTargetz"] = []
    harness = deployed.running.harness
    refused = harness.apply_manifest(*_probe(step, broken), dry_run=True)
    assert any('unknown field "spec.weightedTargetz"' in line for line in refused), (kind, refused)
    assert harness.apply_manifest(*_probe(step, custom), dry_run=True) == []


def test_a_root_container_under_pod_level_run_as_non_root_is_refused_in_a_restricted_namespace(deployed: Deployed) -> None:
    """The first deploy-breaking bug of this project, shown where the API server judges it: the
    Deployment is accepted, but the ReplicaSet controller's pods are refused by Pod Security
    admission, which the layer's pod check reports. (An image that runs as root without saying so
    is the kubelet's refusal, not the API server's: tests/charts/admission.py keeps that rule.)"""
    if deployed.backend not in RESTRICTED:
        pytest.skip("App Mesh's namespace is privileged: its proxyinit needs NET_ADMIN")
    step = deployed.step("/Service-nodejs/")
    fixed = _object(step, "Deployment")
    for labels in (fixed["spec"]["selector"]["matchLabels"], fixed["spec"]["template"]["metadata"]["labels"]):
        labels["app"] = fixed["metadata"]["name"]
    broken = copy.deepcopy(fixed)
    broken["metadata"]["name"] = broken["metadata"]["name"].replace("-probe", "-root")
    broken["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] = True
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUser"] = 0
    harness = deployed.running.harness
    probe_step, manifest = _probe(step, broken, fixed)
    assert harness.apply_manifest(probe_step, manifest, record=False) == []  # a Deployment is only a template
    try:
        refused: list[str] = []

        def refused_now() -> bool:
            refused[:] = [line for line in harness.pod_refusals() if broken["metadata"]["name"] in line]
            return bool(refused)

        assert wait_for(refused_now, 60), "no FailedCreate for the root container's pods"
        assert 'violates PodSecurity "restricted:latest"' in refused[0] and "runAsUser=0" in refused[0], refused
        namespace = fixed["metadata"]["namespace"]

        def fixed_ready() -> bool:
            live = harness.api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{fixed['metadata']['name']}")
            return bool(live.get("status", {}).get("readyReplicas", 0) == live["spec"]["replicas"])

        assert wait_for(fixed_ready, 60), "the fixed copy's pods are not running"
        assert not [line for line in harness.pod_refusals() if fixed["metadata"]["name"] + "-" in line]
    finally:
        path = deployed.workdir / "bite-deployments.json"
        path.write_text("".join(json.dumps(obj) for obj in (broken, fixed)))
        deployed.running.plane.kubectl("delete", "-f", str(path), "--ignore-not-found", "--timeout=60s")


# -- destroy -----------------------------------------------------------------------------------


def test_z_destroy_leaves_nothing_waiting_on_a_finalizer(deployed: Deployed) -> None:
    """`cdk destroy`: every step in reverse with the handler's verbs (Helm releases uninstalled,
    their controllers stopped with them), then nothing may wait on a finalizer, and every namespace
    the deploy made must be gone (for Lattice this holds because the GatewayClass has a manifest of
    its own that the Gateway's waits for: the controller's finalizer needs the class to outlive the
    Gateway). Runs last: the backend's control plane is done after it."""
    started = time.monotonic()
    report = deployed.running.harness.destroy()
    print(f"{deployed.backend}: deploy and checks {deployed.seconds:.0f} s, destroy {time.monotonic() - started:.0f} s")
    _fail_with(deployed, report.stuck, "left waiting after the destroy")
