"""Apply a synthesized cdk.out to the real control plane the way CloudFormation and the CDK's
kubectl handler would, record what the API server refuses, then delete it the way `cdk destroy`
would and record what is left waiting.

    harness = Harness(plane, node, controllers, workdir)
    report = harness.deploy(cloudformation.read(cdk_out))   # every step, in order
    harness.destroy()                                        # the reverse

What it does with each step (conformance/cloudformation.py says what the handler does):
- a manifest: the handler's own file (its objects as a stream of JSON documents) and verb:
  `kubectl create --save-config` or, with Overwrite, `kubectl apply`; field validation Strict
  (kubectl's default, which the handler keeps unless SkipValidation).
- a Helm release: `helm template` of the real chart (conformance/charts.py) for a cluster that
  serves what this one serves, then what Helm 4 does on install: CRDs from the chart's crds/ first
  (waited until established), then pre-install hooks, the templates in Helm's order, post-install
  hooks, each by server-side apply with field manager `helm` and field validation Strict; with
  `Wait`, its workloads must become ready (pods admitted, bound and reported Running by the
  stand-ins). Webhook configurations go through `webhooks` (a policy: left out here, with a reason,
  because the servers behind them do not run; issue 16's layer supplies one that keeps istiod's).
- an object value: the handler's `kubectl get -o jsonpath`, repeated until non-empty; values that
  only a controller calling AWS fills (a load balancer's address, a Lattice domain name) are read
  once, to prove the object and the path exist, and reported as needing AWS.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import charts, pins
from .cloudformation import HelmRelease, Manifest, ObjectValue, Patch, Step
from .cluster import ApiError, ControlPlane
from .controllers import Controllers
from .kubelet import Node, wait_for

# Helm 4's install order (pkg/release/v1/util/kind_sorter.go); kinds not listed go last.
HELM_INSTALL_ORDER = (
    "PriorityClass Namespace NetworkPolicy ResourceQuota LimitRange PodSecurityPolicy PodDisruptionBudget ServiceAccount Secret "
    "SecretList ConfigMap StorageClass PersistentVolume PersistentVolumeClaim CustomResourceDefinition ClusterRole ClusterRoleList "
    "ClusterRoleBinding ClusterRoleBindingList Role RoleList RoleBinding RoleBindingList Service DaemonSet Pod ReplicationController "
    "ReplicaSet Deployment HorizontalPodAutoscaler StatefulSet Job CronJob IngressClass Ingress APIService MutatingWebhookConfiguration "
    "ValidatingWebhookConfiguration"
).split()
PREEXISTING_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})
WAIT_CAP_S = 180  # no step here needs more; a deploy's own timeouts (5-11 min) are for image pulls
DELETE_TIMEOUT_S = 60  # a manifest whose objects are not gone by then waits on something that will not come
SETTLE_S = 300  # a CRD's instances are emptied by the API server in polls of up to a minute
STALLED_S = 75
# The API server's CRD finalizer retries a CRD it could not empty with exponential backoff (its
# workqueue's default controller rate limiter, up to 1000 s). Right after a CRD's storage is rebuilt
# the list it needs fails ("storage is (re)initializing"), and a few quick failures put the next try
# minutes away: a destroy then waited 299 s on cert-manager's CRDs, in 2 of 4 runs. An update to a
# terminating CRD queues it again at once (crd_finalizer.go updateCustomResourceDefinition), so the
# destroy touches an annotation of each terminating CRD this often. Only the timing changes.
NUDGE_S = 10.0
NUDGE_ANNOTATION = "conformance.appmesh-eks/requeue"
# Values a controller fills only by calling AWS: (object type, start of the JSON path) -> who.
NEEDS_AWS = {
    ("service", ".status.loadBalancer"): "a load balancer's address, which the AWS Load Balancer Controller (or EKS's cloud provider) sets",
    (
        "httproute",
        ".metadata.annotations.application-networking",
    ): "the Lattice domain name, which the VPC Lattice controller sets once VPC Lattice has made the service",
    (
        "accesslogpolicy",
        ".metadata.annotations.application-networking",
    ): "the access-log subscription, which the VPC Lattice controller sets once VPC Lattice has made it",
}


@dataclass(frozen=True)
class Refusal:
    step: str
    message: str


@dataclass(frozen=True)
class LeftOut:
    step: str
    what: str
    reason: str


@dataclass
class Applied:
    step: Step
    objects: list[dict[str, Any]]  # as sent (after the webhook policy)
    verb: str
    release_objects: list[dict[str, Any]] = field(default_factory=list)  # what `helm uninstall` deletes, in install order
    manifest_file: Path | None = None


@dataclass
class Report:
    refusals: list[Refusal] = field(default_factory=list)
    left_out: list[LeftOut] = field(default_factory=list)
    needs_aws: list[str] = field(default_factory=list)
    applied: list[Applied] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    # filled by destroy()
    delete_problems: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    remaining_by_design: list[str] = field(default_factory=list)


WebhookPolicy = Callable[[Step, dict[str, Any]], tuple[dict[str, Any] | None, str]]

_WEBHOOK_KINDS = {"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "APIService"}


def leave_out_webhooks(step: Step, obj: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The policy of this layer: no admission webhook and no aggregated API. Their servers are
    controllers' pods, which do not run here; the API server would call them at a Service's
    ClusterIP, which is not on loopback, and fail (or, with failurePolicy Ignore, skip) every
    object they select."""
    if obj.get("kind") not in _WEBHOOK_KINDS:
        return obj, ""
    configs = [webhook.get("clientConfig", {}) for webhook in obj.get("webhooks", [])] + [obj.get("spec", {})]
    services = sorted({f"{c['service']['namespace']}/{c['service']['name']}" for c in configs if c.get("service")})
    owner = step.action.chart if isinstance(step.action, HelmRelease) else step.path
    return None, f"calls Service {', '.join(services) or '(none)'} of {owner}, whose pods do not run here"


def _objects_text(objects: Iterable[dict[str, Any]]) -> str:
    # Exactly what the handler writes: one JSON document after another.
    return "".join(json.dumps(obj) for obj in objects)


def _kind_rank(obj: dict[str, Any]) -> int:
    kind = obj.get("kind", "")
    return HELM_INSTALL_ORDER.index(kind) if kind in HELM_INSTALL_ORDER else len(HELM_INSTALL_ORDER)


def _name(obj: dict[str, Any]) -> str:
    metadata = obj.get("metadata", {})
    namespace = metadata.get("namespace")
    return f"{obj.get('kind')}/{namespace + '/' if namespace else ''}{metadata.get('name')}"


def _errors(output: str) -> list[str]:
    """kubectl's complaints, one per refused object (it goes on with the others); an error's
    continuation lines (the API server's field causes) are joined to it."""
    found: list[str] = []
    for line in output.splitlines():
        if line.startswith(("Error from server", "error:", "The ", "Error ")):
            found.append(line.strip())
        elif found and line.strip() and not line.startswith("Warning:"):
            found[-1] += " " + line.strip()
    return found or ([output.strip()[-800:]] if output.strip() else [])


class Harness:
    def __init__(
        self,
        plane: ControlPlane,
        node: Node,
        controllers: Controllers,
        workdir: Path,
        *,
        webhooks: WebhookPolicy = leave_out_webhooks,
        after_step: Callable[[Step, Harness], None] | None = None,
        after_delete: Callable[[Step, Harness], None] | None = None,
    ) -> None:
        self.plane = plane
        self.node = node
        self.controllers = controllers
        self.workdir = workdir
        self.webhooks = webhooks
        self.after_step = after_step  # the Istio layer starts istiod here, once its release is in
        self.after_delete = after_delete  # and stops it here, once its release is uninstalled
        self.api = plane.api()
        self.report = Report()
        self.providers: dict[str, str] = {}  # "ns/<name>" or "crd/<name>" -> the step after which it exists
        self._helm = plane.binaries["helm"]
        # What `.Capabilities.KubeVersion` says to the charts: the API server's own version.
        self.kube_version = str(self.api.get("/version")["gitVersion"])

    # -- deploy --------------------------------------------------------------------------------
    def deploy(self, steps: list[Step]) -> Report:
        self.providers = {f"ns/{name}": "(cluster)" for name in self._namespaces()}
        for step in steps:
            started = time.monotonic()
            action = step.action
            if isinstance(action, Manifest):
                self._manifest(step, action)
            elif isinstance(action, HelmRelease):
                self._release(step, action)
            elif isinstance(action, ObjectValue):
                self._object_value(step, action)
            elif isinstance(action, Patch):
                self._patch(step, action)
            self._note_providers(step)
            if self.after_step:
                self.after_step(step, self)
            self.report.seconds[step.key] = time.monotonic() - started
        return self.report

    def refuse(self, step: Step, messages: Iterable[str]) -> None:
        self.report.refusals += [Refusal(step.path, message) for message in messages]

    def apply_manifest(self, step: Step, action: Manifest, *, dry_run: bool = False, record: bool = True) -> list[str]:
        """The handler's Create of one manifest; returns kubectl's complaints (empty: accepted).
        `record`: destroy() deletes it again (a probe of a test deletes its own)."""
        kept = []
        for obj in action.objects:
            sent, reason = self.webhooks(step, obj)
            if sent is None:
                self.report.left_out.append(LeftOut(step.path, _name(obj), reason))
            else:
                kept.append(sent)
        path = self.workdir / "manifests" / f"{step.stack}-{step.logical_id}{'-dry-run' if dry_run else ''}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_objects_text(kept))
        options = ["--validate=false"] if action.skip_validation else ["--validate=strict"]
        options += ["--dry-run=server"] if dry_run else []
        verb = ["apply"] if action.overwrite else ["create", "--save-config"]
        result = self.plane.kubectl(*verb, "-f", str(path), *options)
        if record and not dry_run:
            self.report.applied.append(Applied(step, kept, " ".join(verb), manifest_file=path))
        return _errors(result.stderr) if result.returncode else []

    def _manifest(self, step: Step, action: Manifest) -> None:
        self.refuse(step, self.apply_manifest(step, action))

    def _in_namespace(self, objects: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
        """What Helm sends: a namespaced object the chart left without a namespace gets the
        release's; a chart's explicit namespace (cert-manager's kube-system Roles) stays."""
        scopes = self._builtin_scopes()
        for crd in [*self._crds().values(), *(obj for obj in objects if obj["kind"] == "CustomResourceDefinition")]:
            scopes[(crd["spec"]["group"], crd["spec"]["names"]["kind"])] = crd["spec"]["scope"] == "Namespaced"
        placed = []
        for obj in objects:
            group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
            if scopes.get((group, obj["kind"]), True) and not obj["metadata"].get("namespace"):
                obj = {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
            placed.append(obj)
        return placed

    def _server_side(self, step: Step, objects: list[dict[str, Any]], label: str) -> None:
        if not objects:
            return
        path = self.workdir / "releases" / f"{step.logical_id}-{label}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_objects_text(objects))
        result = self.plane.kubectl("apply", "--server-side", "--field-manager=helm", "--validate=strict", "-f", str(path))
        if result.returncode:
            self.refuse(step, _errors(result.stderr))

    def api_versions(self) -> list[str]:
        """What helm's `.Capabilities.APIVersions` holds on this cluster: group/version and
        group/version/Kind of everything served."""
        found: list[str] = []
        group_versions = ["v1"] + [version["groupVersion"] for group in self.api.get("/apis")["groups"] for version in group["versions"]]
        for group_version in group_versions:
            path = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
            try:
                resources = self.api.get(path)["resources"]
            except ApiError:
                continue
            found.append(group_version)
            found += sorted({f"{group_version}/{resource['kind']}" for resource in resources if "/" not in resource["name"]})
        return found

    def _release(self, step: Step, action: HelmRelease) -> None:
        applied = Applied(step, [], "helm install (server-side apply)")
        self.report.applied.append(applied)
        try:
            source = charts.source_for(action.repository, action.chart, action.version)
            if isinstance(source, charts.NoSource):
                self.report.left_out.append(LeftOut(step.path, f"chart {action.chart} {action.version}", source.reason))
                if source.crds:
                    crds = [doc for doc in pins.documents(source.crds) if doc.get("kind") == "CustomResourceDefinition"]
                    self._server_side(step, crds, "crds")
                    self._established(step, crds)
                    applied.objects += crds
                self.controllers.running.add(action.chart)
                return
            rendered = self.render(source, action)
        except (charts.ChartError, pins.Missing, pins.Mismatch) as error:
            self.refuse(step, [str(error)])
            return
        kept: list[charts.Rendered] = []
        for document in rendered:
            sent, reason = self.webhooks(step, document.obj)
            if sent is None:
                self.report.left_out.append(LeftOut(step.path, _name(document.obj), reason))
            else:
                kept.append(charts.Rendered(document.source, sent))
        crds = [d.obj for d in kept if d.from_crds_folder]
        self._server_side(step, crds, "crds")
        self._established(step, crds)
        rest = [d for d in kept if not d.from_crds_folder]
        phases: dict[str, list[dict[str, Any]]] = {"pre-install": [], "templates": [], "post-install": []}
        for document, obj in zip(rest, self._in_namespace([d.obj for d in rest], action.namespace), strict=True):
            hooks = [hook.strip() for hook in (document.hook or "").split(",") if hook.strip()]
            phase = "templates" if not hooks else next((hook for hook in hooks if hook in phases), None)
            if phase is None:  # e.g. a `helm test` pod: install does not make it
                self.report.left_out.append(LeftOut(step.path, _name(obj), f"a Helm {'/'.join(hooks)} hook, which install does not run"))
            else:
                phases[phase].append(obj)
        pre, main, post = (sorted(phases[name], key=_kind_rank) for name in ("pre-install", "templates", "post-install"))
        self._server_side(step, pre, "pre-install")
        self._server_side(step, main, "templates")
        self._server_side(step, post, "post-install")
        applied.objects = crds + pre + main + post
        # Helm deletes on uninstall what the release's templates made, never crds/ nor hooks.
        applied.release_objects = main
        self.controllers.running.add(action.chart)
        if action.wait:
            self._wait_ready(step, action, main)

    def render(self, source: charts.ChartSource, action: HelmRelease) -> list[charts.Rendered]:
        """`helm template` of the release's chart with its values, for this cluster."""
        folder = charts.stamped_copy(source, action.version or "0.0.0", self.workdir)
        return charts.template(
            self._helm,
            folder,
            release=action.release,
            namespace=action.namespace,
            values=action.values,
            kube_version=self.kube_version,
            api_versions=self.api_versions(),
            include_crds=not action.skip_crds,
            workdir=self.workdir,
        )

    def _established(self, step: Step, crds: list[dict[str, Any]]) -> None:
        if not crds:
            return
        names = [f"crd/{crd['metadata']['name']}" for crd in crds]
        result = self.plane.kubectl("wait", "--for=condition=Established", f"--timeout={WAIT_CAP_S}s", *names, timeout=WAIT_CAP_S + 30)
        if result.returncode:
            self.refuse(step, _errors(result.stderr))

    def _wait_ready(self, step: Step, action: HelmRelease, objects: list[dict[str, Any]]) -> None:
        """Helm's --wait for the workloads: every Deployment, StatefulSet and DaemonSet ready."""
        paths = {
            "Deployment": "/apis/apps/v1/namespaces/{}/deployments/{}",
            "StatefulSet": "/apis/apps/v1/namespaces/{}/statefulsets/{}",
            "DaemonSet": "/apis/apps/v1/namespaces/{}/daemonsets/{}",
        }
        workloads = [
            paths[obj["kind"]].format(obj["metadata"].get("namespace") or action.namespace, obj["metadata"]["name"])
            for obj in objects
            if obj["kind"] in paths
        ]

        def ready(path: str) -> bool:
            try:
                obj = self.api.get(path)
            except ApiError:
                return False
            status, spec = obj.get("status", {}), obj["spec"]
            if obj["kind"] == "DaemonSet":
                wanted = status.get("desiredNumberScheduled", 0)
                return bool(wanted) and status.get("numberReady", 0) == wanted
            return bool(
                status.get("readyReplicas", 0) >= spec.get("replicas", 1)
                and status.get("observedGeneration", 0) >= obj["metadata"]["generation"]
            )

        for path in workloads:
            if not wait_for(functools.partial(ready, path), min(action.timeout_s, WAIT_CAP_S)):
                self.refuse(
                    step,
                    [f"{path.split('/')[-2]}/{path.split('/')[-1]} not ready within {min(action.timeout_s, WAIT_CAP_S)} s (helm --wait)"],
                )

    def _object_value(self, step: Step, action: ObjectValue) -> None:
        arguments = ["get", "-n", action.namespace, action.object_type, action.name, f"-o=jsonpath={{{action.json_path}}}"]
        need = next(
            (who for (kind, prefix), who in NEEDS_AWS.items() if kind == action.object_type and action.json_path.startswith(prefix)), None
        )
        if need:
            result = self.plane.kubectl(*arguments)
            if result.returncode:
                self.refuse(step, _errors(result.stderr))
            else:
                self.report.needs_aws.append(f"{step.path}: {action.object_type}/{action.name} {action.json_path}: {need}")
            return
        timeout = min(action.timeout_s, WAIT_CAP_S)
        last: list[str] = []

        def filled() -> bool:
            result = self.plane.kubectl(*arguments)
            last[:] = [result.stderr.strip() or result.stdout.strip()]
            return result.returncode == 0 and bool(result.stdout.strip())

        if not wait_for(filled, timeout, interval_s=1.0):
            runs = [
                f"{run.container}: exit {run.exit_code}: {run.output.strip()[-300:]}"
                for uid, record in self.node.jobs.items()
                if self.node.job_pods.get(uid) == f"{action.namespace}/{action.name}"
                for run in record.runs
            ]
            self.refuse(
                step,
                [
                    f"{action.object_type}/{action.name} {action.json_path} still empty after {timeout} s "
                    f"({last[0][:200] if last else ''})",
                    *runs[-2:],
                ],
            )

    def _patch(self, step: Step, action: Patch) -> None:
        result = self.plane.kubectl(
            "patch", action.resource, "-n", action.namespace, f"--type={action.patch_type}", "-p", json.dumps(action.apply)
        )
        if result.returncode:
            self.refuse(step, _errors(result.stderr))

    # -- what came before what -----------------------------------------------------------------
    def _namespaces(self) -> list[str]:
        return [item["metadata"]["name"] for item in self.api.get("/api/v1/namespaces")["items"]]

    def _crds(self) -> dict[str, dict[str, Any]]:
        return {item["metadata"]["name"]: item for item in self.api.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")["items"]}

    def _note_providers(self, step: Step) -> None:
        """Which step each namespace and CRD exists after. A CRD that a Job applied is credited to
        the step that waits for that Job's success (the only thing CloudFormation waits for)."""
        job_made = {
            touched.split("/", 1)[1]: job
            for uid, record in self.node.jobs.items()
            for touched in record.touched
            if touched.startswith("customresourcedefinition.") and (job := self.node.job_pods.get(uid))
        }
        waiter = isinstance(step.action, ObjectValue) and step.action.object_type == "job"
        for name in self._namespaces():
            self.providers.setdefault(f"ns/{name}", step.key)
        for name in self._crds():
            job = job_made.get(name)
            if job is None:
                self.providers.setdefault(f"crd/{name}", step.key)
            elif waiter and job == f"{step.action.namespace}/{step.action.name}":  # type: ignore[union-attr]
                self.providers[f"crd/{name}"] = step.key
            else:
                self.providers.setdefault(f"crd/{name}", f"(the Job {job}, which no step has waited for yet)")

    def order_violations(self) -> list[str]:
        """Objects whose namespace or CRD comes from a step that CloudFormation need not finish
        first (it would make them in parallel, in any order): one line each."""
        crds = self._crds()
        by_kind = {(crd["spec"]["group"], crd["spec"]["names"]["kind"]): crd for crd in crds.values()}
        namespaced_builtin = self._builtin_scopes()
        problems = []
        for applied in self.report.applied:
            step = applied.step
            allowed = set(step.after) | {"(cluster)"}
            made_here: set[str] = set()
            for obj in applied.objects:
                group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
                crd = by_kind.get((group, obj["kind"]))
                needs = []
                if crd is not None:
                    needs.append(f"crd/{crd['metadata']['name']}")
                namespaced = crd["spec"]["scope"] == "Namespaced" if crd else namespaced_builtin.get((group, obj["kind"]), True)
                if namespaced:
                    namespace = obj["metadata"].get("namespace") or (
                        step.action.namespace if isinstance(step.action, HelmRelease) else "default"
                    )
                    needs.append(f"ns/{namespace}")
                for need in needs:
                    provider = self.providers.get(need, "(never)")
                    if provider not in allowed and need not in made_here:
                        problems.append(f"{step.path}: {_name(obj)} needs {need}, which comes from {provider}, not a step it waits for")
                if obj["kind"] == "Namespace":
                    made_here.add(f"ns/{obj['metadata']['name']}")
                if obj["kind"] == "CustomResourceDefinition":
                    made_here.add(f"crd/{obj['metadata']['name']}")
        return problems

    def _builtin_scopes(self) -> dict[tuple[str, str], bool]:
        scopes: dict[tuple[str, str], bool] = {}
        for resource in self.api.get("/api/v1")["resources"]:
            scopes[("", resource["kind"])] = resource["namespaced"]
        for group in self.api.get("/apis")["groups"]:
            try:
                resources = self.api.get(f"/apis/{group['preferredVersion']['groupVersion']}")["resources"]
            except ApiError:
                continue
            for resource in resources:
                scopes.setdefault((group["name"], resource["kind"]), resource["namespaced"])
        return scopes

    # -- pods ----------------------------------------------------------------------------------
    def pod_refusals(self) -> list[str]:
        """Every pod the controllers tried to create and the API server refused (FailedCreate
        events of ReplicaSets, Jobs, DaemonSets and StatefulSets), one line each."""
        events = self.api.get("/api/v1/events", fieldSelector="reason=FailedCreate")["items"]
        seen = {}
        for event in events:
            involved = event["involvedObject"]
            key = f"{involved['kind']}/{involved.get('namespace', '')}/{involved['name']}"
            seen[key] = " ".join(event.get("message", "").split())[:600]
        return [f"{key}: {message}" for key, message in sorted(seen.items())]

    def workloads_short(self, settle_s: float = 60) -> list[str]:
        """Deployments and DaemonSets of the applied objects with fewer ready pods than they want,
        once they have had `settle_s` to get there."""
        short: list[str] = []

        def check() -> bool:
            short[:] = self._short_now()
            return not short

        wait_for(check, settle_s)
        return short

    def _short_now(self) -> list[str]:
        short = []
        paths = {"Deployment": "/apis/apps/v1/namespaces/{}/deployments/{}", "DaemonSet": "/apis/apps/v1/namespaces/{}/daemonsets/{}"}
        for applied in self.report.applied:
            for obj in applied.objects:
                kind, metadata = obj["kind"], obj["metadata"]
                if kind not in paths:
                    continue
                namespace = metadata.get("namespace", "default")
                try:
                    live = self.api.get(paths[kind].format(namespace, metadata["name"]))
                except ApiError as error:
                    short.append(f"{kind}/{namespace}/{metadata['name']}: {error}")
                    continue
                status = live.get("status", {})
                wanted = live["spec"].get("replicas", 1) if kind == "Deployment" else status.get("desiredNumberScheduled", 0)
                have = status.get("readyReplicas", 0) if kind == "Deployment" else status.get("numberReady", 0)
                if have < wanted or not wanted:
                    short.append(f"{kind}/{namespace}/{metadata['name']}: {have} of {wanted} pods ready")
        return short

    # -- destroy -------------------------------------------------------------------------------
    def destroy(self) -> Report:
        """`cdk destroy`: every step in reverse, with the handler's verbs; then what is left."""
        started = time.monotonic()
        with self._requeuing_terminating_crds():
            self._destroy_steps()
            self._settle()
        self.report.seconds["destroy"] = time.monotonic() - started
        return self.report

    @contextlib.contextmanager
    def _requeuing_terminating_crds(self) -> Iterator[None]:
        """While the destroy runs: every NUDGE_S, a new annotation on each CRD being deleted (see NUDGE_S)."""
        stop = threading.Event()

        def requeue() -> None:
            count = 0
            while not stop.wait(NUDGE_S):
                count += 1
                with contextlib.suppress(ApiError, OSError):
                    for name, crd in self._crds().items():
                        if crd["metadata"].get("deletionTimestamp"):
                            with contextlib.suppress(ApiError):  # gone meanwhile
                                self.api.request(
                                    "PATCH",
                                    f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}",
                                    {"metadata": {"annotations": {NUDGE_ANNOTATION: str(count)}}},
                                    content_type="application/merge-patch+json",
                                )

        thread = threading.Thread(target=requeue, name="crd-requeue", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=30)

    def _destroy_steps(self) -> None:
        for applied in reversed(self.report.applied):
            step, action = applied.step, applied.step.action
            if isinstance(action, Manifest) and applied.manifest_file:
                # The handler runs a plain `kubectl delete -f`, which waits for the objects to be
                # gone; it logs a failure and reports success to CloudFormation.
                result = self.plane.kubectl(
                    "delete", "-f", str(applied.manifest_file), f"--timeout={DELETE_TIMEOUT_S}s", timeout=DELETE_TIMEOUT_S + 30
                )
                if result.returncode:
                    self.report.delete_problems += [f"{step.path}: {line}" for line in _errors(result.stderr)]
            elif isinstance(action, HelmRelease):
                self._uninstall(applied, action)
                self.controllers.running.discard(action.chart)
            elif isinstance(action, Patch):
                self.plane.kubectl(
                    "patch", action.resource, "-n", action.namespace, f"--type={action.patch_type}", "-p", json.dumps(action.restore)
                )
            if self.after_delete:
                self.after_delete(step, self)

    def _uninstall(self, applied: Applied, action: HelmRelease) -> None:
        kept = [
            obj for obj in applied.release_objects if (obj["metadata"].get("annotations") or {}).get("helm.sh/resource-policy") != "keep"
        ]
        if not kept:
            return
        path = self.workdir / "releases" / f"{applied.step.logical_id}-uninstall.yaml"
        # Helm deletes in the reverse of its install order and, with --wait, until they are gone.
        path.write_text(_objects_text(sorted(kept, key=_kind_rank, reverse=True)))
        # The release's own timeout bounds helm's wait; CRDs among the objects (cert-manager's chart
        # makes its CRDs templates) take the API server up to a minute each to empty and remove.
        timeout = min(action.timeout_s, SETTLE_S)
        result = self.plane.kubectl("delete", "-f", str(path), "--ignore-not-found", f"--timeout={timeout}s", timeout=timeout + 30)
        if result.returncode:
            self.report.delete_problems += [f"{applied.step.path}: {line}" for line in _errors(result.stderr)]

    def _settle(self) -> None:
        """Waits (bounded) for every namespace the deploy made, and everything being deleted, to be
        gone; then lists what still waits on a finalizer, and what stays by design (CRDs that
        nothing deletes: the Jobs' and the charts' crds/ folders')."""
        made = {key[3:] for key, provider in self.providers.items() if key.startswith("ns/") and provider != "(cluster)"}
        waiting: list[str] = []
        changed = [time.monotonic()]

        def settled() -> bool:
            now = [f"Namespace/{name}" for name in sorted(made & set(self._namespaces()))] + self._deleting()
            if now != waiting:
                waiting[:], changed[0] = now, time.monotonic()
            # Stuck for good once nothing has moved for a while (a CRD's own wait is one minute).
            return not waiting or time.monotonic() - changed[0] > STALLED_S

        wait_for(settled, SETTLE_S, interval_s=1.0)
        for namespace in sorted(made & set(self._namespaces())):
            live = self.api.get(f"/api/v1/namespaces/{namespace}")
            conditions = [
                f"{c['type']}: {c.get('message', '')}" for c in live.get("status", {}).get("conditions", []) if c.get("status") == "True"
            ]
            self.report.stuck.append(f"Namespace/{namespace} is {live['status'].get('phase')}: {'; '.join(conditions)[:600]}")
        self.report.stuck += self._deleting()
        self.report.remaining_by_design += [f"CustomResourceDefinition/{name}" for name in sorted(self._crds())]

    def _deleting(self) -> list[str]:
        """Custom resources and CRDs that have been deleted but are still there, and why."""
        found = []
        for name, crd in self._crds().items():
            if crd["metadata"].get("deletionTimestamp"):
                conditions = [c.get("message", "") for c in crd.get("status", {}).get("conditions", []) if c["type"] == "Terminating"]
                found.append(f"CustomResourceDefinition/{name} is being deleted: {'; '.join(conditions)[:300]}")
            plural, group = crd["spec"]["names"]["plural"], crd["spec"]["group"]
            version = next(v["name"] for v in crd["spec"]["versions"] if v.get("storage"))
            try:
                items = self.api.get(f"/apis/{group}/{version}/{plural}")["items"]
            except ApiError:
                continue
            for item in items:
                metadata = item["metadata"]
                if metadata.get("deletionTimestamp"):
                    found.append(f"{item['kind']}/{metadata.get('namespace', '')}/{metadata['name']} waits on {metadata.get('finalizers')}")
        return found


def summary(report: Report) -> str:
    """The report as text for a reader (and a failing assertion)."""
    lines = [f"refused ({len(report.refusals)}):", *(f"  {r.step}: {r.message}" for r in report.refusals)]
    lines += [f"left out ({len(report.left_out)}):", *(f"  {o.step}: {o.what}: {o.reason}" for o in report.left_out)]
    lines += [f"needs AWS ({len(report.needs_aws)}):", *(f"  {line}" for line in report.needs_aws)]
    if report.stuck or report.delete_problems:
        lines += ["stuck:", *(f"  {line}" for line in report.stuck), "delete problems:", *(f"  {line}" for line in report.delete_problems)]
    return "\n".join(lines)


def dump_yaml(objects: Iterable[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(list(objects), sort_keys=False)
