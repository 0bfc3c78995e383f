"""Istio in sidecar mode with istio-cni: the charts `base`, `istiod`, `cni` and `gateway`, pinned,
installed in that order and waited for, and a gate that proves the sidecar injector answers.

Istio 1.31 supports Kubernetes 1.32 to 1.36 (istio.io, "Announcing Istio 1.31"); its charts are
published at blob.istio.io (nothing for 1.31 at the older storage bucket), its images only at
docker.io/istio, which the cluster never pulls from: they are mirrored into the account's ECR
(IstioImages). Every value set here is a key of the pinned chart's values.yaml
(tests/unit/test_helm_values.py), because Helm silently ignores a key a chart does not read.

Chart lines cited below are those of the chart sources the conformance layer renders (istio/istio's
release-1.31 branch, module istio.io/istio v0.0.0-20260827124520-eed52ebb66ad: conformance/
charts.py), whose values.yaml files and injection template are byte-identical to the pinned ones in
../shared/reference (commit a8d7012).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aws_cdk import aws_eks_v2 as eks
from constructs import Construct, IConstruct

from charts.istio import COLLECTOR_HOST, TRACING_PROVIDER, gateway_pod_labels
from charts.workloads import nlb_annotations, zone_spread

from .helm_addon import HelmPin, owned_namespace, pinned_release
from .mirror import MIRROR_ARCHITECTURE, example_asset_uri, mirrored_image
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
# Where Istio publishes its images, from 1.31 on only (istio.io blog, 2026-08-21: "Starting with
# Istio 1.31, we will only publish Istio container images to docker.io/istio"; gcr.io/istio-release,
# the mirror this app used before, has no 1.31 image). Only the source of the mirrors: the deployer's
# Docker pulls from here at `cdk deploy`, the nodes pull the mirrors from ECR, because Docker Hub's
# anonymous pull limit is reached by one NAT address and three nodes on a redeploy or a node roll.
UPSTREAM_HUB = "docker.io/istio"


@dataclass(frozen=True)
class IstioImages:
    """Every image the pinned charts make the cluster pull with our values, as full references.

    A value with a "/" is used as it is, with no hub before it and no tag after it (so the tag is
    never appended twice), in every template that renders one of these images:
    - istiod: `image`, manifests/charts/istio-control/istio-discovery/templates/deployment.yaml
      lines 98-99 (`{{- if contains "/" .Values.image }}` / `image: "{{ .Values.image }}"`; the
      hub/image:tag form is line 101). The 1.31 chart reads `image` at its top level (values.yaml
      line 17, "Can be a full hub/image:tag"); `pilot.image`, an older chart's key, is not in it
      and would be ignored.
    - the sidecar: `global.proxy.image` (values.yaml line 334), files/injection-template.yaml lines
      188-189 (istio-proxy); its istio-validation init container (istio-cni on): `global.proxy_init.
      image` (values.yaml line 416), lines 87-88. The injector's own `.ProxyImage`/`.ProxyInitImage`
      (hub/image:tag) are only the else branches, lines 191 and 90.
    - the gateway chart's pod (`image: auto`, templates/deployment.yaml line 73): the injector's
      files/gateway-injection-template.yaml lines 28-29, `global.proxy.image` again; so do
      files/kube-gateway.yaml lines 88-89 and files/waypoint.yaml lines 103-104, which this app does
      not use.
    - the CNI agent: the cni chart's `image` (values.yaml line 7), templates/daemonset.yaml lines
      93-94 (line 96 the hub/image:tag form).
    The base chart deploys no container. ztunnel (ambient) is not installed.
    """

    pilot: str
    proxy: str
    install_cni: str


# IstioImages field -> the image's name under UPSTREAM_HUB.
IMAGE_NAMES = {"pilot": "pilot", "proxy": "proxyv2", "install_cni": "install-cni"}


def upstream_image(name: str) -> str:
    """An Istio image at the pinned version where Istio publishes it: what a mirror is built FROM."""
    return f"{UPSTREAM_HUB}/{name}:{VERSION}"


def mirrored_images(scope: Construct) -> IstioImages:
    """The three images as ECR image assets (components/mirror.py), at VERSION: a new VERSION is a
    new build argument, so new assets, pushed by the next `cdk deploy` before the charts move."""
    uris = {
        field: mirrored_image(
            scope, f"{field.title().replace('_', '')}Image", upstream=upstream_image(name), display_name=f"Istio {name} {VERSION} image"
        ).image_uri
        for field, name in IMAGE_NAMES.items()
    }
    return IstioImages(**uris)


# The images where no deploy fills in the account and the asset hash: what the model of the cluster
# (the backend's injected containers) and the unit tests put where the asset URIs go.
EXAMPLE_IMAGES = IstioImages(**{field: example_asset_uri(f"istio-{name}-{VERSION}") for field, name in IMAGE_NAMES.items()})

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


def istiod_values(*, egress_registry_only: bool, tracing: bool, images: IstioImages) -> dict[str, Any]:
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
        # Full references (IstioImages says where the chart uses them as they are), so no `hub`:
        # the chart's default hub is never used. No `tag` either: nothing else in the chart reads it.
        "image": images.pilot,
        "global": {"proxy": {"image": images.proxy, "resources": PROXY_RESOURCES}, "proxy_init": {"image": images.proxy}},
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


def cni_values(*, images: IstioImages) -> dict[str, Any]:
    """The chart's defaults chain the plugin after the VPC CNI in /etc/cni/net.d (`chained: true`;
    tests/unit/test_helm_values.py holds it). The agent's image is the mirror, a full reference
    (IstioImages)."""
    return {
        "image": images.install_cni,
        # The agent's version as the chart records it (templates/configmap-cni.yaml line 16,
        # CURRENT_AGENT_VERSION: `.Values.tag | default .Values.global.tag`): read from the tag
        # alone, now that the image is a full reference.
        "global": {"tag": VERSION},
        # The mirror is built for one architecture (components/mirror.py) and the DaemonSet
        # tolerates every taint: on Auto Mode, whose `system` node pool may launch arm64 nodes, the
        # agent would crash there and Helm's wait would fail the release. Those nodes run only the
        # add-ons that tolerate CriticalAddonsOnly, never a meshed pod, so they need no agent.
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": [MIRROR_ARCHITECTURE]}]}
                    ]
                }
            }
        },
    }


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
        self,
        scope: Construct,
        id: str,
        *,
        cluster: eks.ICluster,
        egress_registry_only: bool,
        tracing: bool,
        after: Sequence[IConstruct] = (),
    ) -> None:
        super().__init__(scope, id)
        # Pushed by `cdk deploy` before this stack's template runs, so the images are in ECR
        # before a release asks for them; the nodes pull them with the ECR read policy on their
        # role (components/cluster.py; Auto Mode's node role carries it too).
        self.images = mirrored_images(Construct(self, "Images"))
        istiod = istiod_values(egress_registry_only=egress_registry_only, tracing=tracing, images=self.images)
        # The CNI agent (hostNetwork, hostPath, NET_ADMIN) needs the privileged level: said here,
        # so that a cluster-wide default level or a policy add-on cannot stop it silently.
        self.namespace = owned_namespace(self, cluster, NAMESPACE, labels={"pod-security.kubernetes.io/enforce": "privileged"})
        self.base = pinned_release(Construct(self, "Base"), cluster, BASE, values=base_values(), after=[self.namespace, *after])
        self.istiod = pinned_release(Construct(self, "Istiod"), cluster, ISTIOD, values=istiod, after=[self.base])
        # The CNI agent must run on the nodes before a meshed pod starts (its istio-validation
        # init container checks the redirect is in place).
        self.cni = pinned_release(Construct(self, "Cni"), cluster, CNI, values=cni_values(images=self.images), after=[self.istiod])
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
