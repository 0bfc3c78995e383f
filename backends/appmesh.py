"""App Mesh: the workshop as written, rendered faithfully, and no longer deployable.

AWS shut App Mesh down on 2026-09-30. Its user guide: "After September 30, 2026, you will no
longer be able to access the AWS App Mesh console or AWS App Mesh resources." A deploy of this
backend therefore starts with a preflight (stacks/preflight.py) that calls the App Mesh API and
stops the deploy within a minute when AWS does not answer. The rendering stays: it is the
workshop, and it is what the local mesh and the mesh-level diff show.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from aws_cdk import Aws, Duration
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from constructs import Construct, IConstruct

from charts import appmesh, certificates
from charts.workloads import add_object, add_objects, gateway_workload, new_chart
from components.appmesh_controller import ENVOY_IMAGE, ENVOY_TAG, XRAY_DAEMON_IMAGE, XRAY_DAEMON_TAG, AppMeshController
from components.cert_manager import CertManager
from components.mesh_workload import XRAY_WRITE_ACTIONS, WorkloadIdentity, attach_chart, imported_cluster
from components.namespace import application_namespace
from config.topology import Gateway, Service, Topology, VirtualService
from mesh.capabilities import CapabilityTable, Feature, cannot, partial, yes
from mesh.names import Manifest, MeshNames, mesh_names, pod_security_labels
from mesh.parts import Injection, ServiceParts

from .base import DiscoveryNeeds, GatewayInstall, MeshBackend, Platform, PlatformContext, Preflight

SHUTDOWN = (
    'AWS shut App Mesh down on 2026-09-30 (AWS App Mesh user guide: "After September 30, 2026, you will no longer be '
    'able to access the AWS App Mesh console or AWS App Mesh resources.")'
)
WARNING = (
    f"{SHUTDOWN}. A deploy of mesh_backend=appmesh cannot produce a working mesh: it stops at the preflight stack when "
    "the App Mesh API does not answer. The App Mesh rendering stays because it is the workshop (make local and make "
    "meshdiff show it); for a mesh that runs, synthesize with -c mesh_backend=istio. See README, 'App Mesh status'."
)
PREFLIGHT_MESSAGE = (
    f"{SHUTDOWN}, and this region's App Mesh API did not answer appmesh:ListMeshes. Nothing else has been created. "
    "Deploy the same topology with -c mesh_backend=istio (README: 'A mesh that runs today')"
)

# The injector's images, as far as the admission model needs them: proxyinit's (the chart's
# default, which the app does not override) has no USER and runs as root; Envoy and the X-Ray
# daemon are given runAsUser 1337 by the injector.
PROXYINIT_IMAGE = "840364872350.dkr.ecr.us-west-2.amazonaws.com/aws-appmesh-proxy-route-manager:v7-prod"
# checkov findings on the gateway's Envoy, each with its reason (annotations on the object).
CHECKOV_GATEWAY = {
    "CKV_K8S_15": "a pinned release tag of AWS's App Mesh Envoy image, which AWS does not re-tag",
    "CKV_K8S_43": "a pinned release tag of AWS's App Mesh Envoy image; its digest cannot be resolved offline at synth",
    "CKV_K8S_40": "Envoy runs as uid 1337, the uid App Mesh's images and iptables rules are built around",
    "CKV2_K8S_6": "isolation is the mesh's: mTLS STRICT listeners refuse callers without a mesh certificate, DROP_ALL egress",
}
ENVOY_UID = 1337
XRAY_NAG_REASON = (
    "X-Ray's trace and sampling APIs support no resource-level permissions; the X-Ray daemon sidecar the controller injects needs them"
)


class AppMeshBackend(MeshBackend):
    name = "appmesh"
    title = "App Mesh"
    pod_security = "privileged"  # proxyinit needs NET_ADMIN and root, which even baseline forbids
    warning = WARNING
    # What the rendered objects carry, read back for the parity test.
    round_trip = frozenset(
        {
            Feature.WEIGHTED_ROUTES,
            Feature.PATH_PREFIX_ROUTES,
            Feature.ROUTE_TIMEOUT,
            Feature.RETRIES,
            Feature.SERVICE_TIMEOUT,
            Feature.HEALTH_CHECKS,
            Feature.OUTLIER_DETECTION,
            Feature.CONNECTION_POOL,
            Feature.MTLS,
            Feature.EGRESS_FILTER,
            Feature.WORKSHOP_NAMES,
            Feature.GATEWAY,
            Feature.GATEWAY_REWRITE,
        }
    )
    capabilities: ClassVar[CapabilityTable] = {
        Feature.WEIGHTED_ROUTES: yes("VirtualRouter route weightedTargets (1-10 targets, weights 0-100)"),
        Feature.PATH_PREFIX_ROUTES: yes("VirtualRouter httpRoute match.prefix"),
        Feature.ROUTE_TIMEOUT: yes("httpRoute timeout.perRequest (off: App Mesh's default 15 s)"),
        Feature.RETRIES: yes("httpRoute retryPolicy (off: an explicit zero-retry policy, else App Mesh retries by default)"),
        Feature.SERVICE_TIMEOUT: yes("VirtualNode listener timeout.http.perRequest"),
        Feature.HEALTH_CHECKS: yes("VirtualNode listener healthCheck (active, from Envoy), plus kubelet probes"),
        Feature.OUTLIER_DETECTION: yes("VirtualNode listener outlierDetection"),
        Feature.CONNECTION_POOL: yes("VirtualNode listener connectionPool.http"),
        Feature.MTLS: yes("cert-manager certificates from a private CA, mounted with appmesh.k8s.aws/secretMounts; STRICT listeners"),
        Feature.AUTHORIZATION: partial(
            "a listener admits any caller with a mesh certificate; what a caller reaches is limited by its declared backends",
            "no per-caller allowlist on the server side",
        ),
        Feature.EGRESS_FILTER: yes("Mesh egressFilter DROP_ALL and each VirtualNode's backends"),
        Feature.WORKSHOP_NAMES: yes("VirtualService awsName; Route 53 CNAME to the Cloud Map name (A record to the ClusterIP with dns)"),
        Feature.GATEWAY: yes("VirtualGateway with an Envoy Deployment and GatewayRoutes"),
        Feature.GATEWAY_REWRITE: yes("GatewayRoute's default prefix rewrite"),
        Feature.DISCOVERY: yes("VirtualNode serviceDiscovery: awsCloudMap or dns"),
        Feature.TRACING: yes("the controller injects an X-Ray daemon next to Envoy"),
        Feature.ACCESS_LOGS: yes("Envoy access log on stdout, shipped by the CloudWatch add-on"),
        Feature.CANARY_ANALYSIS: cannot(
            "no metrics source in the cluster: App Mesh's Envoys keep their request stats on each pod's admin port, which nothing "
            "this app deploys scrapes (and AWS shut App Mesh down); judge a canary locally with `make local`, whose Envoys stand in "
            "for App Mesh's"
        ),
    }

    # -- AWS ---------------------------------------------------------------------------------

    def platform_pods(self, topology: Topology) -> int:
        # The controller (replicaCount 1 in the chart); with mTLS, cert-manager's controller,
        # webhook and CA injector.
        return 1 + (3 if topology.mtls == "strict" else 0)

    def discovery_needs(self, topology: Topology) -> DiscoveryNeeds:
        return DiscoveryNeeds(hosted_zone=True, cloud_map=topology.discovery == "cloudmap")

    def preflight(self) -> Preflight:
        return Preflight(service="appmesh", action="list_meshes", iam_action="appmesh:ListMeshes", message=PREFLIGHT_MESSAGE)

    def install_platform(self, scope: Construct, context: PlatformContext) -> Platform:
        config, cluster = context.config, context.cluster
        names = mesh_names(config)
        topology = config.mesh.topology
        cloud_map = context.discovery.namespace if context.discovery and context.discovery.namespace else None
        controller = AppMeshController(
            scope,
            "AppMeshController",
            cluster=cluster,
            region=config.region,
            tracing=topology.tracing == "on",
            mesh_name=names.mesh,
            cloud_map_namespace_arn=cloud_map.namespace_arn if cloud_map else None,
            cloud_map_zone_id=cloud_map.namespace_hosted_zone_id if cloud_map else None,
        )
        labels = {**self.namespace_labels(names, topology), **pod_security_labels(self.pod_security)}
        namespace = application_namespace(scope, cluster, name=names.namespace, labels=labels, after=[controller.gate.ready])
        local_cluster = imported_cluster(scope, cluster)
        objects = self.platform_objects(names, topology)
        mesh_chart = new_chart("mesh", None)
        add_objects(mesh_chart, "mesh", [o for o in objects if o["kind"] == "Mesh"])
        # Cluster-scoped, and before any member: the webhook rejects a VirtualNode whose
        # namespace matches no mesh.
        mesh = attach_chart(local_cluster, "Mesh", mesh_chart, after=[controller.gate.ready])
        ready: list[IConstruct] = [namespace, mesh]
        if topology.mtls == "strict":
            cert_manager = CertManager(scope, "CertManager", cluster=cluster)
            ca_chart = new_chart("mesh-ca", names.namespace)
            add_objects(ca_chart, "ca", [o for o in objects if o["kind"] != "Mesh"])
            ready.append(attach_chart(local_cluster, "MeshCa", ca_chart, after=[namespace, cert_manager.gate.ready]))
        return Platform(ready=ready)

    def platform_objects(self, names: MeshNames, topology: Topology) -> list[Manifest]:
        """The Mesh, and with mTLS the mesh's private CA (cert-manager Issuers)."""
        ca = certificates.mesh_ca(names.mesh, names.namespace) if topology.mtls == "strict" else []
        return [appmesh.mesh(names.mesh, topology.egress_filter), *ca]

    def workload_identity(self, names: MeshNames, workload: Service | Gateway, topology: Topology) -> WorkloadIdentity:
        is_service = isinstance(workload, Service)
        kind = "virtualNode" if is_service else "virtualGateway"
        aws_name = appmesh.app_mesh_name(workload.virtual_node if isinstance(workload, Service) else workload.name, names.namespace)
        statements = [
            # Envoy streams the configuration of exactly its own virtual node (or gateway).
            iam.PolicyStatement(
                sid="EnvoyConfiguration",
                actions=["appmesh:StreamAggregatedResources"],
                resources=[f"arn:{Aws.PARTITION}:appmesh:{Aws.REGION}:{Aws.ACCOUNT_ID}:mesh/{names.mesh}/{kind}/{aws_name}"],
            )
        ]
        if is_service and topology.tracing == "on":
            # The X-Ray daemon sidecar the controller injects into a service's pods (not a gateway's).
            statements.append(iam.PolicyStatement(sid="XRayWrite", actions=XRAY_WRITE_ACTIONS, resources=["*"]))
        return WorkloadIdentity(
            service_account=workload.name,
            statements=tuple(statements),
            wildcard_reason=XRAY_NAG_REASON if len(statements) > 1 else None,
        )

    def name_records(self, scope: Construct, context: PlatformContext, after: Sequence[IConstruct]) -> None:
        """Each virtual service name must resolve for the app to connect() and Envoy's iptables
        redirect to intercept; any address of the first target will do, Envoy picks the real
        destination by weight."""
        assert context.discovery is not None
        topology = context.config.mesh.topology
        local_cluster = imported_cluster(scope, context.cluster)
        for vs in topology.virtual_services:
            first = vs.routes[0].targets[0][0]
            if topology.discovery == "cloudmap":
                context.discovery.add_cname(scope, vs.name, f"{first}.{context.discovery.cloud_map_domain}")
            else:
                # No Cloud Map names to point at: the first target's ClusterIP, read back once
                # Kubernetes has assigned it (it never changes for the Service's lifetime).
                address = eks.KubernetesObjectValue(
                    scope,
                    f"ClusterIp-{vs.name}",
                    cluster=local_cluster,
                    object_type="service",
                    object_name=first,
                    object_namespace=context.config.mesh.namespace,
                    json_path=".spec.clusterIP",
                    timeout=Duration.minutes(5),
                )
                for dependency in after:
                    address.node.add_dependency(dependency)
                context.discovery.add_a_record(scope, vs.name, address.value)

    def install_gateway(
        self, scope: Construct, context: PlatformContext, gateway: Gateway, *, role_arn: str | None, after: Sequence[IConstruct]
    ) -> GatewayInstall:
        config = context.config
        chart = self._gateway_chart(gateway, config.mesh.topology, mesh_names(config), role_arn, config.cluster.kubernetes.cdk8s_plus())
        manifest = attach_chart(imported_cluster(scope, context.cluster), "Gateway", chart, after=after)
        return GatewayInstall(service_name=gateway.name, installed=[manifest])

    # -- Kubernetes objects --------------------------------------------------------------------

    def namespace_labels(self, names: MeshNames, topology: Topology) -> dict[str, str]:
        labels = {"mesh": names.mesh, "appmesh.k8s.aws/sidecarInjectorWebhook": "enabled"}
        if topology.gateway:
            labels["gateway"] = topology.gateway.name
        return labels

    def service_parts(self, service: Service, topology: Topology, names: MeshNames) -> ServiceParts:
        # Envoy intercepts only the app port; the health port stays reachable for the kubelet,
        # which has no mesh certificate for a STRICT listener.
        annotations = {appmesh.PORTS_ANNOTATION: str(service.port)}
        before: list[Manifest] = []
        if topology.mtls == "strict":
            before.append(appmesh.workload_certificate(service, topology, names))
            # The controller mounts this secret into the Envoy sidecar it injects.
            annotations[appmesh.SECRET_MOUNTS_ANNOTATION] = f"{certificates.secret_name(service.name)}:{appmesh.CERT_DIR}/"
        # The injector configures a pod from its VirtualNode: the node comes first.
        before.append(appmesh.virtual_node(service, topology, names))
        return ServiceParts(before=tuple(before), pod_annotations=annotations)

    def routing_objects(self, virtual_service: VirtualService, topology: Topology, names: MeshNames) -> list[Manifest]:
        return [appmesh.virtual_router(virtual_service, topology, names), appmesh.virtual_service_object(virtual_service, names)]

    def gateway_objects(
        self, gateway: Gateway, topology: Topology, names: MeshNames, *, role_arn: str | None, kplus: Any
    ) -> list[Manifest]:
        return list(self._gateway_chart(gateway, topology, names, role_arn, kplus).to_json())

    def _gateway_chart(self, gateway: Gateway, topology: Topology, names: MeshNames, role_arn: str | None, kplus: Any) -> Any:
        from charts.workloads import service_account

        chart = new_chart("gateway", names.namespace)
        ahead = [add_object(chart, "service-account", service_account(gateway.name, gateway.pod_labels, names.namespace, role_arn))]
        volumes = []
        if topology.mtls == "strict":
            ahead.append(
                add_object(
                    chart,
                    "certificate",
                    certificates.workload_certificate(
                        gateway.name, [names.mesh_host(gateway.name)], mesh=names.mesh, namespace=names.namespace
                    ),
                )
            )
            # The injector mounts no secret into a gateway's own Envoy container: mount it here.
            secret = kplus.Secret.from_secret_name(chart, "tls-secret", certificates.secret_name(gateway.name))
            volumes.append((kplus.Volume.from_secret(chart, "tls-volume", secret, name="tls"), appmesh.CERT_DIR))
        # The injector rejects a gateway pod that no VirtualGateway selects: the VirtualGateway
        # is applied before the Deployment, the routes after it.
        ahead.append(add_object(chart, "virtual-gateway", appmesh.virtual_gateway(gateway, topology, names)))
        deployment = gateway_workload(
            chart,
            gateway,
            kplus,
            image=f"{ENVOY_IMAGE}:{ENVOY_TAG}",
            # The controller configures the gateway's Envoy by this container name.
            container="envoy",
            user=ENVOY_UID,
            # Keep the pinned image: without this the injector swaps in its own sidecar image.
            pod_annotations={appmesh.SKIP_IMAGE_OVERRIDE_ANNOTATION: "enabled"},
            checkov=CHECKOV_GATEWAY,
            volumes=volumes,
            after=ahead,
        )
        for route in gateway.routes:
            add_object(chart, f"route-{route.name}", appmesh.gateway_route(route, names)).node.add_dependency(deployment)
        return chart

    def injected(self, pod: Manifest, topology: Topology) -> Injection:
        """pkg/inject at the pinned controller: a pod of a VirtualNode gets proxyinit (root,
        NET_ADMIN), Envoy (runAsUser 1337) first in the containers, and with tracing the X-Ray
        daemon (runAsUser 1337); a VirtualGateway's pod gets nothing added (its own `envoy`
        container is edited: image, environment, probe)."""
        labels = pod["metadata"].get("labels", {})
        if topology.gateway and labels.get("app") == topology.gateway.name:
            return Injection()
        init = {"name": "proxyinit", "image": PROXYINIT_IMAGE, "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}
        envoy: Manifest = {"name": "envoy", "image": f"{ENVOY_IMAGE}:{ENVOY_TAG}", "securityContext": {"runAsUser": ENVOY_UID}}
        xray: Manifest = {
            "name": "xray-daemon",
            "image": f"{XRAY_DAEMON_IMAGE}:{XRAY_DAEMON_TAG}",
            "securityContext": {"runAsUser": ENVOY_UID},
        }
        return Injection(
            init_containers=(init,),
            # waitUntilProxyReady puts Envoy first; the X-Ray daemon comes last, with tracing on.
            containers=(envoy, *((xray,) if topology.tracing == "on" else ())),
            image_users={PROXYINIT_IMAGE: None, envoy["image"]: ENVOY_UID, xray["image"]: None},
        )

    def read_back(self, objects: list[Manifest], names: MeshNames) -> dict[str, Any]:
        return appmesh.read_back(objects, names)


BACKEND = AppMeshBackend()
