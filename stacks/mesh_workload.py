from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import Annotations, CfnOutput, CfnResource, Duration, Stack
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct, IConstruct

from backends.base import MeshBackend, MetricsWorkspace, PlatformContext
from charts.workloads import routing_chart, service_chart
from components.canary_analysis import CanaryAnalysis
from components.manifests import object_digest
from components.mesh_workload import WorkloadRole, attach_chart, imported_cluster, service_image
from components.smoke_test import SmokeTest
from config.settings import AppConfig
from config.topology import Service
from mesh.canary import canary_spec, canary_virtual_service
from mesh.names import mesh_names


class MeshServicesStack(Stack):
    """A slice of the services: image, IRSA role (when the backend needs one) and one manifest
    each (ServiceAccount, the backend's objects, Deployment, Service). Slices keep every stack
    far from CloudFormation's limits; they are cut in topology order, so a service added at the
    end never moves another (README: "Adding services")."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: AppConfig,
        backend: MeshBackend,
        services: list[Service],
        cluster: eks.ICluster,
        after: list[IConstruct],
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id, **kwargs)
        mesh = config.mesh
        names = mesh_names(config)
        kplus = config.cluster.kubernetes.cdk8s_plus()
        local_cluster = imported_cluster(self, cluster)
        self.manifests: dict[str, eks.KubernetesManifest] = {}
        self.images = {}
        for service in services:
            if "0.0.0.0/0" in service.source_cidrs:
                Annotations.of(self).add_warning_v2(
                    f"appmesh-eks:open-to-internet-{service.name}",
                    f"{service.name} is exposed to 0.0.0.0/0 (the workshop's default, to open it in a browser); "
                    f"limit it with topology.services.{service.name}.source_cidrs",
                )
            identity = backend.workload_identity(names, service, mesh.topology)
            role_arn = None
            if identity.statements:
                role_arn = WorkloadRole(
                    self, f"Role-{service.name}", cluster=cluster, namespace=mesh.namespace, identity=identity
                ).role.role_arn
            image = service_image(self, service)
            self.images[service.name] = image
            chart = service_chart(
                service,
                mesh.topology,
                names,
                image=image.image_uri,
                role_arn=role_arn,
                kplus=kplus,
                parts=backend.service_parts(service, mesh.topology, names),
            )
            # After the namespace (its webhook must be answering) and whatever the backend's
            # platform readies; deleted before both, so no finalizer waits on a missing controller.
            self.manifests[service.name] = attach_chart(local_cluster, f"Service-{service.name}", chart, after=after)


class MeshRoutingStack(Stack):
    """One manifest per virtual service (its routing and its weights), the names clients call,
    and the ingress gateway.

    Depends on every services stack: created after the workloads it routes to and deleted before
    them, so a mesh never sees a route to a node that is already gone.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        context: PlatformContext,
        backend: MeshBackend,
        after: list[IConstruct],
        service_manifests: Mapping[str, eks.KubernetesManifest],
        metrics: MetricsWorkspace | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id, **kwargs)
        config = context.config
        mesh = config.mesh
        topology = mesh.topology
        names = mesh_names(config)
        local_cluster = imported_cluster(self, context.cluster)
        # One manifest each: a canary step, or a new virtual service, changes exactly one.
        self.routing = {
            vs.name: attach_chart(
                local_cluster,
                f"Routing-{vs.name}",
                routing_chart(vs, names, backend.routing_objects(vs, topology, names), mesh.canary_verdict),
                after=after,
            )
            for vs in topology.virtual_services
        }
        backend.name_records(self, context, after=[*after, *service_manifests.values(), *self.routing.values()])

        self.gateway = None
        self.urls: dict[str, str] = {}
        if topology.gateway:
            identity = backend.workload_identity(names, topology.gateway, topology)
            role_arn = None
            if identity.statements:
                role_arn = WorkloadRole(
                    self, "GatewayRole", cluster=context.cluster, namespace=mesh.namespace, identity=identity
                ).role.role_arn
            # Gateway routes target virtual services: created after them, deleted before them.
            self.gateway = backend.install_gateway(
                self, context, topology.gateway, role_arn=role_arn, after=[*after, *self.routing.values()]
            )
            # Load balancer addresses exist only once Kubernetes has provisioned them; read them
            # back through the kubectl provider so they become stack outputs and smoke-test inputs.
            self.urls["gateway"] = self._load_balancer_url(
                local_cluster, "Gateway", self.gateway.service_name, mesh.namespace, self.gateway.installed, *self.gateway.installed
            )
            CfnOutput(self, "GatewayUrl", value=self.urls["gateway"], description="Internal NLB of the gateway: <url>/eks/")
        for service in topology.services:
            if service.exposure != "none":
                url = self._load_balancer_url(
                    local_cluster,
                    f"Service-{service.name}",
                    service.name,
                    mesh.namespace,
                    [service_manifests[service.name]],
                    *service_manifests.values(),
                )
                self.urls[service.name] = url
                CfnOutput(self, f"{_camel(service.name)}Url", value=url, description=f"The {service.name} service's {service.exposure} NLB")
        self.smoke_test = SmokeTest(
            self,
            "SmokeTest",
            vpc=context.vpc,
            gateway_url=self.urls.get("gateway"),
            gateway_prefixes=[route.prefix for route in topology.gateway.routes] if topology.gateway else [],
            frontend_url=self.urls.get("frontend"),
            log_retention_days=config.cluster.log_retention_days,
        )
        self.smoke_test_project = CfnOutput(
            self,
            "SmokeTestProject",
            value=self.smoke_test.project.project_name,
            description="start-build it to smoke-test",
        )
        self.canary_analysis_project: CfnOutput | None = None
        self.canary_analysis = self._canary_analysis(context, backend, metrics)

    def _canary_analysis(self, context: PlatformContext, backend: MeshBackend, metrics: MetricsWorkspace | None) -> CanaryAnalysis | None:
        """The in-VPC judge of the topology's canary, where the backend's metrics can be queried
        (the capability check has refused a canary on any other backend)."""
        config = context.config
        virtual_service = canary_virtual_service(config.mesh.topology.virtual_services)
        if virtual_service is None or virtual_service.canary is None or metrics is None:
            return None
        prometheus = backend.canary_prometheus(mesh_names(config), config.mesh.topology, virtual_service)
        if prometheus is None:
            return None
        analysis = CanaryAnalysis(
            self,
            "CanaryAnalysis",
            vpc=context.vpc,
            spec=canary_spec(virtual_service, prometheus=prometheus),
            workspace_arn=metrics.arn,
            prometheus_url=metrics.prometheus_url,
            settle_seconds=virtual_service.canary.settle_seconds,
            max_waits=virtual_service.canary.max_waits,
            timeout_minutes=virtual_service.canary.analysis_timeout_minutes,
            log_retention_days=config.cluster.log_retention_days,
        )
        self.canary_analysis_project = CfnOutput(
            self, "CanaryAnalysisProject", value=analysis.project.project_name, description="start-build it (STEP=n) to judge canary step n"
        )
        return analysis

    def _load_balancer_url(
        self, cluster: eks.ICluster, id: str, name: str, namespace: str, definers: Sequence[IConstruct], *after: IConstruct
    ) -> str:
        """The load balancer's address, read back once Kubernetes has provisioned it.

        `definers`: the manifest or Helm release that renders the Service. CloudFormation reads
        the address again only when this value's properties change, and a changed Service (its
        scheme, its source ranges) can mean a new NLB with a new name: the digest of the Service's
        definition is a property, so the output follows the Service."""
        value = eks.KubernetesObjectValue(
            self,
            f"Address-{id}",
            cluster=cluster,
            object_type="service",
            object_name=name,
            object_namespace=namespace,
            json_path=".status.loadBalancer.ingress[0].hostname",
            timeout=Duration.minutes(10),
        )
        for dependency in after:
            value.node.add_dependency(dependency)
        (resource,) = [child for child in value.node.find_all() if isinstance(child, CfnResource)]
        # Read by no handler (the kubectl provider's reads only its own properties): it is there to change.
        resource.add_property_override("ServiceDigest", object_digest(definers, kind="Service", name=name, namespace=namespace))
        return f"http://{value.value}"


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("-"))
