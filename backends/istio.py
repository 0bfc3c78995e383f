"""Istio: the mesh to deploy today. Envoy sidecars like App Mesh's, configured by istiod; every App
Mesh feature the workshop uses has an Istio equivalent (the capability table says where the two
differ). Sidecar mode with istio-cni, so no meshed pod needs NET_ADMIN and the application
namespace enforces Pod Security `restricted`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from constructs import Construct, IConstruct

from charts import istio
from charts.workloads import add_objects, new_chart
from components.istio import (
    CNI_NOT_READY_TAINT,
    EXAMPLE_IMAGES,
    ISTIOD_MAX_REPLICAS,
    IstioControlPlane,
    IstioGateway,
    gateway_max_replicas,
    gateway_values,
)
from components.mesh_workload import WorkloadIdentity, attach_chart, imported_cluster
from components.metrics_server import PODS as METRICS_SERVER_PODS
from components.metrics_server import MetricsServer
from components.namespace import application_namespace
from components.prometheus import ManagedPrometheus
from config.errors import ConfigError
from config.settings import AppConfig
from config.topology import Gateway, Service, Topology, VirtualService
from mesh.capabilities import CapabilityTable, Feature, not_applicable, partial, yes
from mesh.names import Manifest, MeshNames, mesh_names, pod_security_labels
from mesh.parity import callers
from mesh.parts import Injection, ServiceParts

from .base import DiscoveryNeeds, GatewayInstall, MeshBackend, MetricsWorkspace, Platform, PlatformContext

# The proxy image the injector adds, as the model writes it: the mirror of proxyv2 (an image asset,
# whose URI only a deploy fills in), at an example account. Its user is Istio's 1337.
PROXY_IMAGE = EXAMPLE_IMAGES.proxy
ISTIO_UID = 1337
# A stopping pod keeps serving this long before SIGTERM: its callers' sidecars drop the endpoint
# only when istiod pushes them the change, and istiod batches endpoint changes for up to
# PILOT_DEBOUNCE_MAX (10 s, pilot/pkg/features/tuning.go). The app's own drain (up to 10 s) and the
# proxy's (5 s) follow within the grace period.
ISTIO_DRAIN_SECONDS = 10
ISTIO_TERMINATION_GRACE_SECONDS = 30
# What the injection template renders with istio-cni on (istio-1.31-injection-template.yaml):
# both containers non-root, read-only, every capability dropped (tests/conformance/test_istio.py
# compares it with the pods istiod's own injector makes).
_NON_ROOT = {
    "allowPrivilegeEscalation": False,
    "privileged": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
    "runAsGroup": ISTIO_UID,
    "runAsNonRoot": True,
    "runAsUser": ISTIO_UID,
}


class IstioBackend(MeshBackend):
    name = "istio"
    title = "Istio"
    pod_security = "restricted"
    round_trip = frozenset(
        {
            Feature.WEIGHTED_ROUTES,
            Feature.PATH_PREFIX_ROUTES,
            Feature.ROUTE_TIMEOUT,
            Feature.RETRIES,
            Feature.HEALTH_CHECKS,
            Feature.OUTLIER_DETECTION,
            Feature.CONNECTION_POOL,
            Feature.MTLS,
            Feature.AUTHORIZATION,
            Feature.EGRESS_FILTER,
            Feature.WORKSHOP_NAMES,
            Feature.GATEWAY,
            Feature.GATEWAY_REWRITE,
        }
    )
    capabilities: ClassVar[CapabilityTable] = {
        Feature.WEIGHTED_ROUTES: yes("VirtualService route weights to the targets' Kubernetes Services"),
        Feature.PATH_PREFIX_ROUTES: yes("VirtualService match.uri.prefix, longest first"),
        Feature.ROUTE_TIMEOUT: yes("VirtualService http timeout", "off means no timeout (App Mesh: its default 15 s)"),
        Feature.RETRIES: yes(
            "VirtualService retries: attempts, perTryTimeout, retryOn from the events (README: retry events)",
            "off is attempts 0 (Istio's default is 2 retries)",
        ),
        Feature.SERVICE_TIMEOUT: partial(
            "the per-route timeouts bound every call through a virtual service",
            "no server-side per-request timeout",
        ),
        Feature.HEALTH_CHECKS: partial(
            "kubelet readiness probes from the same settings, and outlier detection",
            "no active health checks from Envoy",
        ),
        Feature.OUTLIER_DETECTION: yes("DestinationRule outlierDetection (consecutive5xxErrors)"),
        Feature.CONNECTION_POOL: yes("DestinationRule connectionPool (tcp.maxConnections, http.http1MaxPendingRequests)"),
        Feature.MTLS: yes(
            "PeerAuthentication STRICT; certificates from istiod's CA",
            "certificates rotate automatically: no cert-manager, no restarts",
        ),
        Feature.AUTHORIZATION: yes("AuthorizationPolicy per service: only its declared callers' service accounts"),
        Feature.EGRESS_FILTER: yes(
            "outboundTrafficPolicy REGISTRY_ONLY and a Sidecar per workload listing its backends",
            "a gateway reaches what its gateway routes name (istiod applies no Sidecar to gateways)",
        ),
        Feature.WORKSHOP_NAMES: yes(
            "ServiceEntry per virtual service, answered by the sidecar's DNS proxy",
            "the names resolve only inside pods with a sidecar (no Route 53 zone)",
        ),
        Feature.GATEWAY: yes("the istio gateway chart's Deployment and NLB, an Istio Gateway on the gateway port"),
        Feature.GATEWAY_REWRITE: yes("gateway VirtualService rewrite.uri"),
        Feature.DISCOVERY: not_applicable("Istio discovers endpoints from Kubernetes; the setting is ignored"),
        Feature.TRACING: yes("Telemetry with an OpenTelemetry provider: the CloudWatch agent sends spans to X-Ray", "W3C trace context"),
        Feature.ACCESS_LOGS: yes("meshConfig accessLogFile /dev/stdout as JSON, shipped by the CloudWatch add-on"),
        Feature.CANARY_ANALYSIS: yes(
            "Istio's request metrics in Amazon Managed Service for Prometheus (istio_requests_total and "
            "istio_request_duration_milliseconds as the destination reports them, PromQL signed with SigV4); a pipeline stage per step"
        ),
    }

    # -- AWS ---------------------------------------------------------------------------------

    daemonset_pods = 1  # istio-cni
    node_startup_taints = ((CNI_NOT_READY_TAINT, "NoSchedule"),)

    def platform_pods(self, topology: Topology) -> int:
        """istiod at its autoscaler's maximum, the metrics server its autoscalers read, and the
        gateway's pods above its configured replicas (those are counted with the gateway)."""
        gateway = topology.gateway
        extra_gateway_pods = gateway_max_replicas(gateway.replicas) - gateway.replicas if gateway else 0
        return ISTIOD_MAX_REPLICAS + METRICS_SERVER_PODS + extra_gateway_pods

    def discovery_needs(self, topology: Topology) -> DiscoveryNeeds:
        # The workshop names resolve in the sidecars' DNS proxy: no Route 53 zone, no Cloud Map.
        return DiscoveryNeeds(hosted_zone=False, cloud_map=False)

    def install_platform(self, scope: Construct, context: PlatformContext) -> Platform:
        config, cluster = context.config, context.cluster
        names = mesh_names(config)
        topology = config.mesh.topology
        control_plane = IstioControlPlane(
            scope,
            "Istio",
            cluster=cluster,
            egress_registry_only=topology.egress_filter == "DROP_ALL",
            tracing=topology.tracing == "on",
        )
        labels = {**self.namespace_labels(names, topology), **pod_security_labels(self.pod_security)}
        namespace = application_namespace(scope, cluster, name=names.namespace, labels=labels, after=[control_plane.gate.ready])
        ready: list[IConstruct] = [namespace]
        objects = self.platform_objects(names, topology)
        if objects:
            chart = new_chart("mesh", names.namespace)
            add_objects(chart, "mesh", objects)
            ready.append(attach_chart(imported_cluster(scope, cluster), "MeshPolicies", chart, after=[namespace]))
        # Request rate, 5xx rate and latency per destination and version, for judging a canary.
        prometheus = ManagedPrometheus(
            scope, "Metrics", cluster=cluster, vpc=context.vpc, alias=f"{config.cluster.name}-mesh", namespace=names.namespace
        )
        workspace = MetricsWorkspace(arn=prometheus.workspace.attr_arn, prometheus_url=prometheus.workspace.attr_prometheus_endpoint)
        # A new node is tainted until the CNI agent on it is ready, and the gate's Job runs only
        # once istiod has removed the taint from some node: what any other pod waits for.
        schedulable: list[IConstruct] = [control_plane.gate.ready]
        # What istiod's and the gateway's autoscalers read CPU from.
        MetricsServer(scope, "MetricsServer", cluster=cluster, after=schedulable)
        return Platform(ready=ready, metrics=workspace, schedulable=schedulable)

    def canary_prometheus(self, names: MeshNames, topology: Topology, virtual_service: VirtualService) -> dict[str, Any] | None:
        """Istio's standard metrics as the destination's sidecar reports them, by the Deployment
        that answered (destination_workload: the pod's own, where a destination's service name
        depends on the Host header the client sent)."""
        canary = virtual_service.canary
        assert canary is not None
        return {
            "label": "destination_workload",
            "values": {version: topology.service(version).virtual_node for version in (canary.baseline, canary.candidate)},
            "matchers": f'reporter="destination",destination_workload_namespace="{names.namespace}"',
        }

    def check_config(self, config: AppConfig) -> None:
        if config.cluster.endpoint_access == "public":
            raise ConfigError(
                "endpoint_access",
                config.cluster.endpoint_access,
                "the Istio backend's metrics scraper (Amazon Managed Service for Prometheus) needs the cluster's private "
                "endpoint; use public_and_private (the default) or private",
            )

    def workload_identity(self, names: MeshNames, workload: Service | Gateway, topology: Topology) -> WorkloadIdentity:
        # Neither the apps nor their sidecars call AWS: no IRSA role.
        return WorkloadIdentity(service_account=workload.name)

    def name_records(self, scope: Construct, context: PlatformContext, after: Sequence[IConstruct]) -> None:
        """Nothing in Route 53: the ServiceEntries give the names addresses the DNS proxy answers."""

    def install_gateway(
        self, scope: Construct, context: PlatformContext, gateway: Gateway, *, role_arn: str | None, after: Sequence[IConstruct]
    ) -> GatewayInstall:
        names = mesh_names(context.config)
        cluster = context.cluster
        release = IstioGateway(
            scope,
            "GatewayRelease",
            cluster=cluster,
            namespace=names.namespace,
            name=gateway.name,
            values=gateway_values(name=gateway.name, port=gateway.port, replicas=gateway.replicas, scheme=gateway.scheme),
            after=after,
        )
        chart = new_chart("gateway", names.namespace)
        add_objects(chart, "gateway", self.gateway_objects(gateway, context.config.mesh.topology, names, role_arn=role_arn, kplus=None))
        manifest = attach_chart(imported_cluster(scope, cluster), "Gateway", chart, after=[*after, release.release])
        return GatewayInstall(service_name=gateway.name, installed=[release.release, manifest])

    # -- Kubernetes objects --------------------------------------------------------------------

    def platform_objects(self, names: MeshNames, topology: Topology) -> list[Manifest]:
        return istio.platform_objects(topology, names)

    def namespace_labels(self, names: MeshNames, topology: Topology) -> dict[str, str]:
        return {"istio-injection": "enabled"}

    def service_parts(self, service: Service, topology: Topology, names: MeshNames) -> ServiceParts:
        # The health port stays inside the mesh (STRICT mTLS, the service's authorization): the
        # injector rewrites the kubelet's HTTP probes to the agent's :15020/app-health/, which
        # calls the app from 127.0.0.6, an address the redirect lets through.
        return ServiceParts(
            after=tuple(istio.service_objects(service, topology, names, callers(topology)[service.name])),
            pod_labels=istio.version_label(service),
            drain_seconds=ISTIO_DRAIN_SECONDS,
            termination_grace_seconds=ISTIO_TERMINATION_GRACE_SECONDS,
        )

    def routing_objects(self, virtual_service: VirtualService, topology: Topology, names: MeshNames) -> list[Manifest]:
        return istio.routing_objects(virtual_service, topology, names)

    def gateway_objects(
        self, gateway: Gateway, topology: Topology, names: MeshNames, *, role_arn: str | None, kplus: Any
    ) -> list[Manifest]:
        return istio.gateway_objects(gateway, names)

    def injected(self, pod: Manifest, topology: Topology) -> Injection:
        """With istio-cni: `istio-validation` (an init container that only checks the redirect)
        and `istio-proxy`, a native sidecar (an init container with restartPolicy Always, on
        kubelets from 1.33). A gateway pod gets the `gateway` template instead: its own istio-proxy
        container runs as 1337, and the pod the unprivileged-port sysctl. Checked against istiod's
        own injection, and judged by the real Pod Security, in the conformance layer."""
        if pod["metadata"].get("annotations", {}).get("inject.istio.io/templates") == "gateway":
            return Injection(
                containers=(
                    {"name": "istio-proxy", "image": PROXY_IMAGE, "securityContext": {"runAsUser": ISTIO_UID, "runAsGroup": ISTIO_UID}},
                ),
                pod_security_context={"sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]},
                image_users={PROXY_IMAGE: ISTIO_UID, "auto": ISTIO_UID},
            )
        return Injection(
            init_containers=(
                {"name": "istio-validation", "image": PROXY_IMAGE, "securityContext": dict(_NON_ROOT)},
                {"name": "istio-proxy", "image": PROXY_IMAGE, "restartPolicy": "Always", "securityContext": dict(_NON_ROOT)},
            ),
            image_users={PROXY_IMAGE: ISTIO_UID},
        )

    def read_back(self, objects: list[Manifest], names: MeshNames) -> dict[str, Any]:
        return istio.read_back(objects, names)


BACKEND = IstioBackend()
