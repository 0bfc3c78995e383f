"""Istio in sidecar mode with istio-cni: the charts `base`, `istiod`, `cni` and `gateway`, pinned,
installed in that order and waited for, and a gate that proves the sidecar injector answers.

Istio 1.31 supports Kubernetes 1.32 to 1.36 (istio.io, "Announcing Istio 1.31"); its charts are
published at blob.istio.io (nothing for 1.31 at the older storage bucket), its images at
docker.io/istio and at gcr.io/istio-release, which is where the cluster pulls them. Every value
set here is a key of the pinned chart's values.yaml (tests/unit/test_helm_values.py), because Helm
silently ignores a key a chart does not read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import aws_eks_v2 as eks
from constructs import Construct, IConstruct

from charts.istio import COLLECTOR_HOST, TRACING_PROVIDER, gateway_pod_labels
from charts.workloads import nlb_annotations, zone_spread

from .helm_addon import HelmPin, owned_namespace, pinned_release
from .webhook_gate import WebhookGate

# The one Istio version: the four charts, the images' tag, the proxies the injector adds (and so
# the README and the tests) all follow it. A constant, not a setting: the injection template, the
# charts' values and the CRD schemas the tests judge against are those of this release line, so a
# version a user picked would deploy a combination no test has seen. An upgrade is this one edit,
# reviewed with `make versions` and the tests (README, "Versions"). 1.31.4 is the newest 1.31
# patch (the Go proxy's istio.io/api tags, checked 2026-12-06); 1.32.0 exists, a new minor.
VERSION = "1.31.4"
REPOSITORY = "https://blob.istio.io/istio-release/charts"
NAMESPACE = "istio-system"
# Istio's official mirror of its images (istio.io/latest/blog/2020/docker-rate-limit/: "Istio
# provides official mirrors to Google Container Registry ... hub=gcr.io/istio-release", from 1.5):
# istiod, the CNI agent and every sidecar and gateway come from here, with no anonymous pull limit
# like Docker Hub's, which one NAT address and three nodes reach on a redeploy or a node roll.
HUB = "gcr.io/istio-release"
# A revision-based install (istio.io/latest/docs/setup/upgrade/canary/): istiod is revision
# REVISION, and the `default` revision tag points at it. The tag's webhook selects namespaces
# labelled istio-injection=enabled just as an unrevisioned istiod's would (manifests/charts/
# istio-control/istio-discovery/templates/revision-tags-mwc.yaml: for the tag `default` it adds the
# `namespace.sidecar-injector.istio.io` webhook), so the application namespace keeps its label and
# a second control plane can be installed beside this one, proven on a few pods, and the tag moved
# (README, "Upgrading istiod as a canary"). The revision names the minor line, not the patch: a
# patch upgrade rolls istiod in place behind the same Service (istiod-<revision>), so running
# proxies keep their control plane; a new minor is a new revision, installed as a canary first.
REVISION = "-".join(VERSION.split(".")[:2])
DEFAULT_TAG = "default"
# Autoscaled on CPU (the chart's HorizontalPodAutoscaler, 80 % of the request): at least two, so
# that a node drain keeps one (the chart's PodDisruptionBudget: minAvailable 1); at most the
# chart's own autoscaleMax. The node-capacity check counts the maximum (backends/istio.py).
ISTIOD_MIN_REPLICAS = 2
ISTIOD_MAX_REPLICAS = 5
# The gateway grows from its configured replicas up to this (the gateway chart's maxReplicas).
GATEWAY_MAX_REPLICAS = 5
# The taint a node starts with until the CNI agent is ready on it (the istiod chart's `taint.name`
# default): istiod's untaint controller removes it then, so no pod lands on a node whose traffic
# redirect is not in place yet. The managed node group sets it (MeshBackend.node_startup_taints).
CNI_NOT_READY_TAINT = "cni.istio.io/not-ready"
BASE = HelmPin("base", REPOSITORY, VERSION, NAMESPACE)
ISTIOD = HelmPin("istiod", REPOSITORY, VERSION, NAMESPACE)
CNI = HelmPin("cni", REPOSITORY, VERSION, NAMESPACE)
# OTLP over HTTP: a gateway speaks HTTP/1.1 to a collector port whose name does not say gRPC.
COLLECTOR_PORT = 4318
# Envoy requires a timeout on the exporter's HttpUri (`required` in envoy/config/core/v3/
# http_uri.proto), and istiod 1.31 copies the provider's `http.timeout` into every listener the
# Telemetry covers unchanged, with no default (pilot/pkg/networking/core/tracing.go, otelConfig;
# only Zipkin gets one): without it Envoy rejects every listener, the gateway's and the sidecars'.
# 3 s is the default istio.io/api documents for it (mesh/v1alpha1/config.proto, HttpService.timeout,
# v1.31.4) but istiod does not apply; it is below the 5 s between two flushes of Envoy's span
# buffer (tracing.opentelemetry.flush_interval_ms, source/extensions/tracers/opentelemetry/
# tracer.cc), so a slow collector costs one batch of spans and never queues exports. The export
# runs off the request path: a request never waits for it.
TRACER_TIMEOUT = "3s"
# The sidecars' requests and limits (Istio's defaults would reserve 2 CPUs per pod at the limit).
PROXY_RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}
GATE_NAMESPACE = "istio-webhook-gate"


def istiod_values(*, egress_registry_only: bool, tracing: bool) -> dict[str, Any]:
    mesh_config: dict[str, Any] = {
        # Envoy's access log, as JSON on stdout, which the CloudWatch add-on ships.
        "accessLogFile": "/dev/stdout",
        "accessLogEncoding": "JSON",
        # The sidecar's DNS proxy answers for ServiceEntry hosts (the workshop names), with the
        # addresses istiod allocates (PILOT_ENABLE_IP_AUTOALLOCATE is on by default in 1.31).
        "defaultConfig": {"proxyMetadata": {"ISTIO_META_DNS_CAPTURE": "true"}},
        "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY" if egress_registry_only else "ALLOW_ANY"},
    }
    if tracing:
        mesh_config["extensionProviders"] = [
            {
                "name": TRACING_PROVIDER,
                "opentelemetry": {
                    "service": COLLECTOR_HOST,
                    "port": COLLECTOR_PORT,
                    "http": {"path": "/v1/traces", "timeout": TRACER_TIMEOUT},
                },
            }
        ]
    return {
        "revision": REVISION,
        "revisionTags": [DEFAULT_TAG],
        "global": {"hub": HUB, "tag": VERSION, "proxy": {"resources": PROXY_RESOURCES}},
        # istio-cni programs the pods' traffic redirect: no injected container needs NET_ADMIN.
        "cni": {"enabled": True},
        # The chart sets no `replicas` when autoscaling: the HorizontalPodAutoscaler owns them.
        "autoscaleEnabled": True,
        "autoscaleMin": ISTIOD_MIN_REPLICAS,
        "autoscaleMax": ISTIOD_MAX_REPLICAS,
        "resources": {"requests": {"cpu": "200m", "memory": "512Mi"}},
        "topologySpreadConstraints": zone_spread(istiod_pod_labels()),
        # The untaint controller (PILOT_ENABLE_NODE_UNTAINT_CONTROLLERS): a new node's taint goes
        # once the CNI agent on it is ready. The CNI agent runs in istiod's namespace, so
        # `taint.namespace` stays unset. istiod itself tolerates the taint: it is what removes it.
        "taint": {"enabled": True},
        "tolerations": [{"key": CNI_NOT_READY_TAINT, "operator": "Exists", "effect": "NoSchedule"}],
        "meshConfig": mesh_config,
    }


def istiod_pod_labels() -> dict[str, str]:
    """What istiod's pods of this revision are labelled with, and nothing another revision's have
    (manifests/charts/istio-control/istio-discovery/templates/deployment.yaml: app, istio.io/rev)."""
    return {"app": "istiod", "istio.io/rev": REVISION}


def base_values() -> dict[str, Any]:
    """The base chart's default validating webhook goes to this revision's istiod (its Service is
    istiod-<revision>; with the value left at `default` it would call a Service named istiod, which
    a revisioned install does not have)."""
    return {"defaultRevision": REVISION}


def cni_values() -> dict[str, Any]:
    # The chart's defaults chain the plugin after the VPC CNI in /etc/cni/net.d (`chained: true`;
    # tests/unit/test_helm_values.py holds it): nothing else.
    return {"global": {"hub": HUB, "tag": VERSION}}


def gateway_values(*, name: str, port: int, replicas: int, scheme: str) -> dict[str, Any]:
    """The gateway chart's Deployment and Service, both named after the release: from `replicas`
    Envoys up (autoscaled on CPU), behind an NLB from port 80 to `port`, where the Istio Gateway's
    server listens."""
    ports = [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": port}]
    if scheme == "internal":
        # The status port (15021, /healthz/ready) stays inside the VPC: it tells whoever reaches it
        # whether the gateway is up, which an internet client has no need to know. The NLB's own
        # health checks go to the traffic port, so an internet-facing one loses nothing.
        ports.insert(0, {"name": "status-port", "port": 15021, "protocol": "TCP", "targetPort": 15021})
    return {
        # The chart sets no `replicas` when autoscaling: the HorizontalPodAutoscaler owns them.
        "autoscaling": {"enabled": True, "minReplicas": replicas, "maxReplicas": gateway_max_replicas(replicas)},
        # The namespace enforces Pod Security `restricted`, which needs a seccomp profile; the
        # injector adds the unprivileged-port sysctl (allowed: it is a baseline "safe sysctl").
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "service": {"type": "LoadBalancer", "annotations": nlb_annotations(scheme), "ports": ports},
        # As the app's Deployments have (charts/workloads.py): a node roll must not take both
        # Envoys at once. The chart labels the pods app=<release>, istio=<release less istio->.
        "podDisruptionBudget": {"minAvailable": 1},
        "topologySpreadConstraints": zone_spread(gateway_pod_labels(name)),
    }


def gateway_max_replicas(replicas: int) -> int:
    return max(replicas, GATEWAY_MAX_REPLICAS)


class IstioControlPlane(Construct):
    """base (the CRDs) -> istiod -> cni, each waited for, then the injector gate."""

    def __init__(
        self, scope: Construct, id: str, *, cluster: eks.ICluster, istiod: Mapping[str, Any], after: Sequence[IConstruct] = ()
    ) -> None:
        super().__init__(scope, id)
        # The CNI agent (hostNetwork, hostPath, NET_ADMIN) needs the privileged level: said here,
        # so that a cluster-wide default level or a policy add-on cannot stop it silently.
        self.namespace = owned_namespace(self, cluster, NAMESPACE, labels={"pod-security.kubernetes.io/enforce": "privileged"})
        self.base = pinned_release(Construct(self, "Base"), cluster, BASE, values=base_values(), after=[self.namespace, *after])
        self.istiod = pinned_release(Construct(self, "Istiod"), cluster, ISTIOD, values=dict(istiod), after=[self.base])
        # The CNI agent must run on the nodes before a meshed pod starts (its istio-validation
        # init container checks the redirect is in place).
        self.cni = pinned_release(Construct(self, "Cni"), cluster, CNI, values=cni_values(), after=[self.istiod])
        # The injector fails closed, and istiod patches its CA bundle after it is Ready: the gate
        # dry-runs a pod in a namespace labelled for injection until the webhook answers.
        self.gate = WebhookGate(
            self,
            "WebhookGate",
            cluster=cluster,
            name="istio-webhook-gate",
            namespace=NAMESPACE,
            probe={
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "webhook-gate-probe", "namespace": GATE_NAMESPACE},
                "spec": {"containers": [{"name": "probe", "image": "registry.k8s.io/pause:3.10"}]},
            },
            probe_namespace_labels={"istio-injection": "enabled"},
            rules=[{"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}],
            after=[self.cni],
        )


class IstioGateway(Construct):
    """The `gateway` chart, released as the gateway's name into the application namespace."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        cluster: eks.ICluster,
        namespace: str,
        values: Mapping[str, Any],
        name: str,
        after: Sequence[IConstruct],
    ) -> None:
        super().__init__(scope, id)
        pin = HelmPin("gateway", REPOSITORY, VERSION, namespace)
        self.release = pinned_release(self, cluster, pin, values=dict(values), after=list(after), release_name=name)
