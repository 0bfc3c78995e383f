"""Amazon VPC Lattice: AWS's managed path off App Mesh for EKS, through the AWS Gateway API
Controller. No sidecars: Lattice routes between services itself, by name, with weights and path
prefixes, health-checks their pods, and logs access; what it cannot express (retries, timeouts,
outlier detection, connection pools, mTLS between pods, egress filtering, proxy tracing) is a
config error that lists every such setting at once (config/examples/lattice.yaml is a topology it
can express). The workshop's ingress contract (an internal NLB on 80, `/eks/` rewritten to `/`),
which Lattice cannot serve, is kept by an Envoy rendered by envoyconfig (which the local mesh uses too).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

from aws_cdk import Duration
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct, IConstruct

from charts import lattice
from charts.workloads import IMMUTABLE_ASSET_TAG, add_object, add_objects, gateway_workload, new_chart, service_account
from components.edge_envoy import ENVOY_UID, edge_envoy_image
from components.lattice import LatticeController, ServiceNetwork
from components.mesh_workload import WorkloadIdentity, attach_chart, imported_cluster
from components.namespace import application_namespace
from config.errors import ConfigError
from config.settings import AppConfig
from config.topology import Gateway, Service, Topology, VirtualService
from envoyconfig.render import render_edge_gateway
from mesh.capabilities import CapabilityTable, Feature, cannot, not_applicable, partial, yes
from mesh.names import Manifest, MeshNames, mesh_names, pod_security_labels
from mesh.parts import Injection, ServiceParts

from .base import DiscoveryNeeds, GatewayInstall, MeshBackend, Platform, PlatformContext

# What the pure render (backends/render.py) writes where a synthesized manifest has the edge Envoy
# image asset's ECR URI, a CloudFormation token (components/edge_envoy.py).
ENVOY_IMAGE_STANDIN = "123456789012.dkr.ecr.us-west-1.amazonaws.com/cdk-assets:edge-envoy"
# The controller's FAQ (docs/faq.md, v2.1.3) against 503s during rollouts.
LATTICE_DRAIN_SECONDS = 60
LATTICE_TERMINATION_GRACE_SECONDS = 150
EXAMPLE_LOG_GROUP_ARN = "arn:aws:logs:us-west-1:123456789012:log-group:/aws/vendedlogs/vpclattice/AppMesh-MeshPlatform/app-mesh:*"
CHECKOV_GATEWAY = {
    "CKV_K8S_15": IMMUTABLE_ASSET_TAG,
    "CKV_K8S_43": IMMUTABLE_ASSET_TAG,
    "CKV2_K8S_6": "the gateway only forwards to VPC Lattice services, which the service network's security group admits",
}


class LatticeBackend(MeshBackend):
    name = "lattice"
    title = "VPC Lattice"
    pod_security = "restricted"
    round_trip = frozenset(
        {
            Feature.WEIGHTED_ROUTES,
            Feature.PATH_PREFIX_ROUTES,
            Feature.HEALTH_CHECKS,
            Feature.WORKSHOP_NAMES,
            Feature.GATEWAY,
            Feature.GATEWAY_REWRITE,
        }
    )
    capabilities: ClassVar[CapabilityTable] = {
        Feature.WEIGHTED_ROUTES: yes("HTTPRoute backendRefs weights (Lattice: up to 10 target groups, weights 0-999)"),
        Feature.PATH_PREFIX_ROUTES: yes("HTTPRoute PathPrefix matches, one rule each"),
        Feature.ROUTE_TIMEOUT: cannot("the controller ignores HTTPRoute timeouts; Lattice's fixed 1-minute idle timeout applies"),
        Feature.RETRIES: cannot("VPC Lattice does not retry, and the Gateway API standard channel has no retry field"),
        Feature.SERVICE_TIMEOUT: cannot("VPC Lattice has no per-request timeout"),
        Feature.HEALTH_CHECKS: yes("TargetGroupPolicy healthCheck (active, from Lattice), plus kubelet probes"),
        Feature.OUTLIER_DETECTION: cannot("VPC Lattice has active health checks only, no passive outlier detection"),
        Feature.CONNECTION_POOL: cannot("VPC Lattice has no connection-pool limits"),
        Feature.MTLS: cannot("no client certificates between pods; Lattice's identity is IAM (SigV4-signed requests)"),
        Feature.AUTHORIZATION: partial(
            "the service network's security group admits clients from the VPC; IAM auth policies need callers that "
            "sign requests with SigV4, which the workshop's services do not",
            "no per-caller allowlist",
        ),
        Feature.EGRESS_FILTER: cannot("VPC Lattice does not limit what a pod calls (security groups or NetworkPolicies would)"),
        Feature.WORKSHOP_NAMES: yes(
            "HTTPRoute hostname as the Lattice service's custom domain; a Route 53 CNAME to its assigned domain, read back from the route"
        ),
        Feature.GATEWAY: yes(
            "an Envoy Deployment (envoyconfig, the renderer the local mesh also uses) "
            "behind the internal NLB, in front of the Lattice services"
        ),
        Feature.GATEWAY_REWRITE: yes("by that Envoy: Lattice rules cannot rewrite paths"),
        Feature.DISCOVERY: not_applicable("Lattice registers the Services' pod IPs itself; the setting is ignored"),
        Feature.TRACING: cannot("no proxy emits spans (the services pass trace headers on; Lattice adds none)"),
        Feature.ACCESS_LOGS: yes("AccessLogPolicy on the service network to a CloudWatch log group; the gateway's Envoy on stdout"),
        Feature.CANARY_ANALYSIS: cannot(
            "VPC Lattice publishes per-target-group metrics to CloudWatch (AWS/VpcLattice: RequestCount, HTTPCode_5XX_Count, "
            "RequestTime) that could judge a canary, but this project does not read them yet"
        ),
    }

    # -- AWS ---------------------------------------------------------------------------------

    def platform_pods(self, topology: Topology) -> int:
        return 2  # the controller (the chart's deployment.replicas)

    def discovery_needs(self, topology: Topology) -> DiscoveryNeeds:
        # The workshop names are CNAMEs to the Lattice services' own names; no Cloud Map.
        return DiscoveryNeeds(hosted_zone=True, cloud_map=False)

    def install_platform(self, scope: Construct, context: PlatformContext) -> Platform:
        config, cluster = context.config, context.cluster
        names = mesh_names(config)
        topology = config.mesh.topology
        controller = LatticeController(
            scope, "LatticeController", cluster=cluster, region=config.region, vpc=context.vpc, cluster_name=config.cluster.name
        )
        network = ServiceNetwork(
            scope,
            "ServiceNetwork",
            name=names.mesh,
            vpc=context.vpc,
            cluster=cluster,
            ports=lattice.listener_ports(topology),
            log_retention_days=config.cluster.log_retention_days,
        )
        labels = {**self.namespace_labels(names, topology), **pod_security_labels(self.pod_security)}
        namespace = application_namespace(scope, cluster, name=names.namespace, labels=labels, after=[controller.release])
        local_cluster = imported_cluster(scope, cluster)
        # The GatewayClass in a manifest of its own, which the Gateway's depends on: created before
        # it and deleted after it. The controller removes the Gateway's finalizer only while the
        # class exists and names it (v2.1.3 pkg/k8s/utils.go IsControlledByLatticeGatewayController);
        # with all three in one manifest, `kubectl delete -f` removed the class first, and the
        # Gateway, its namespace and the stack hung (aws/aws-application-networking-k8s#115, #105).
        class_chart = new_chart("gateway-class", None)
        add_objects(class_chart, "mesh", [lattice.gateway_class()])
        gateway_class = attach_chart(local_cluster, "GatewayClass", class_chart, after=[controller.release])
        chart = new_chart("mesh", None)
        add_objects(chart, "mesh", lattice.service_network_objects(topology, names, network.access_logs.log_group_arn))
        # The Gateway finds its service network by name: after CloudFormation has created it.
        mesh = attach_chart(
            local_cluster, "ServiceNetworkGateway", chart, after=[namespace, controller.release, gateway_class, *network.ready()]
        )
        # The deploy waits until VPC Lattice has made the access-log subscription the policy asks
        # for: a policy the controller refuses (its status says so, and nothing else would) fails
        # the deploy rather than leaving the service network silently without logs.
        subscription = eks.KubernetesObjectValue(
            scope,
            "AccessLogSubscription",
            cluster=local_cluster,
            object_type="accesslogpolicy",
            object_name=f"{names.mesh}-access-logs",
            object_namespace=names.namespace,
            json_path=".metadata.annotations." + lattice.ACCESS_LOG_SUBSCRIPTION_ANNOTATION.replace(".", "\\."),
            timeout=Duration.minutes(10),
        )
        subscription.node.add_dependency(mesh)
        return Platform(ready=[namespace, mesh])

    def check_config(self, config: AppConfig) -> None:
        for vs in config.mesh.topology.virtual_services:
            if len(vs.routes) > lattice.MAX_RULES_PER_LISTENER:
                raise ConfigError(
                    f"topology.virtual_services.{vs.name}.routes",
                    f"{len(vs.routes)} routes",
                    f"the Lattice controller re-numbers a listener's rules in one BatchUpdateRule call, which takes at most "
                    f"{lattice.MAX_RULES_PER_LISTENER}: merge routes, "
                    "or use mesh_backend=istio",
                )

    def workload_identity(self, names: MeshNames, workload: Service | Gateway, topology: Topology) -> WorkloadIdentity:
        # Lattice calls nothing in AWS for the pods: no IRSA role.
        return WorkloadIdentity(service_account=workload.name)

    def name_records(self, scope: Construct, context: PlatformContext, after: Sequence[IConstruct]) -> None:
        """`<vs>.<zone>` as a CNAME to the Lattice service's assigned domain, which the controller
        writes on the HTTPRoute once Lattice has created the service (it changes only if the
        service is recreated)."""
        assert context.discovery is not None
        local_cluster = imported_cluster(scope, context.cluster)
        for vs in context.config.mesh.topology.virtual_services:
            domain = eks.KubernetesObjectValue(
                scope,
                f"LatticeDomain-{vs.name}",
                cluster=local_cluster,
                object_type="httproute",
                object_name=vs.name,
                object_namespace=context.config.mesh.namespace,
                json_path=".metadata.annotations." + lattice.ASSIGNED_DOMAIN_ANNOTATION.replace(".", "\\."),
                timeout=Duration.minutes(10),
            )
            for dependency in after:
                domain.node.add_dependency(dependency)
            context.discovery.add_cname(scope, vs.name, domain.value)

    def install_gateway(
        self, scope: Construct, context: PlatformContext, gateway: Gateway, *, role_arn: str | None, after: Sequence[IConstruct]
    ) -> GatewayInstall:
        config = context.config
        # Envoy from the account's ECR (an image asset), not from Docker Hub.
        image = edge_envoy_image(scope).image_uri
        chart = self._gateway_chart(gateway, config.mesh.topology, mesh_names(config), config.cluster.kubernetes.cdk8s_plus(), image=image)
        manifest = attach_chart(imported_cluster(scope, context.cluster), "Gateway", chart, after=after)
        return GatewayInstall(service_name=gateway.name, installed=[manifest])

    # -- Kubernetes objects --------------------------------------------------------------------

    def platform_objects(self, names: MeshNames, topology: Topology) -> list[Manifest]:
        # As install_platform renders them, with an example log group ARN for the token.
        return lattice.platform_objects(topology, names, EXAMPLE_LOG_GROUP_ARN)

    def namespace_labels(self, names: MeshNames, topology: Topology) -> dict[str, str]:
        # Not `application-networking.k8s.aws/pod-readiness-gate-inject`: the controller's pod
        # webhook (failurePolicy Fail) then stays out of this namespace.
        return {}

    def service_parts(self, service: Service, topology: Topology, names: MeshNames) -> ServiceParts:
        if not lattice.is_lattice_target(service, topology):
            return ServiceParts()
        # The controller deregisters a target when its endpoint goes, and Lattice keeps sending to
        # it for a while after: the pod keeps serving through that gap.
        return ServiceParts(
            after=(lattice.target_group_policy(service, names),),
            drain_seconds=LATTICE_DRAIN_SECONDS,
            termination_grace_seconds=LATTICE_TERMINATION_GRACE_SECONDS,
        )

    def routing_objects(self, virtual_service: VirtualService, topology: Topology, names: MeshNames) -> list[Manifest]:
        return [lattice.http_route(virtual_service, topology, names)]

    def gateway_objects(
        self, gateway: Gateway, topology: Topology, names: MeshNames, *, role_arn: str | None, kplus: Any
    ) -> list[Manifest]:
        return list(self._gateway_chart(gateway, topology, names, kplus, image=ENVOY_IMAGE_STANDIN).to_json())

    def _gateway_chart(self, gateway: Gateway, topology: Topology, names: MeshNames, kplus: Any, *, image: str) -> Any:
        chart = new_chart("gateway", names.namespace)
        bootstrap = render_edge_gateway(topology, names.hosted_zone)
        config_map = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{gateway.name}-envoy", "namespace": names.namespace},
            "data": {"envoy.json": json.dumps(bootstrap, sort_keys=True)},
        }
        ahead = [
            add_object(chart, "service-account", service_account(gateway.name, gateway.pod_labels, names.namespace, None)),
            add_object(chart, "envoy-config", config_map),
        ]
        volume = kplus.Volume.from_config_map(
            chart, "config-volume", kplus.ConfigMap.from_config_map_name(chart, "config-ref", f"{gateway.name}-envoy"), name="envoy-config"
        )
        gateway_workload(
            chart,
            gateway,
            kplus,
            image=image,
            container="envoy",
            user=ENVOY_UID,
            # A change of routes changes this annotation, and so rolls the pods onto the new config.
            pod_annotations={"workshop/envoy-config": _digest(config_map)},
            checkov=CHECKOV_GATEWAY,
            args=["-c", "/etc/envoy/envoy.json", "--disable-hot-restart", "--service-cluster", gateway.name],
            volumes=[(volume, "/etc/envoy")],
            after=ahead,
        )
        return chart

    def injected(self, pod: Manifest, topology: Topology) -> Injection:
        # No sidecars; the controller's readiness-gate webhook skips an unlabelled namespace.
        return Injection(image_users={ENVOY_IMAGE_STANDIN: ENVOY_UID})

    def read_back(self, objects: list[Manifest], names: MeshNames) -> dict[str, Any]:
        return lattice.read_back(objects, names)


def _digest(manifest: Manifest) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]


BACKEND = LatticeBackend()
