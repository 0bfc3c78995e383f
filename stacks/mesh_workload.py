from __future__ import annotations

import json
from typing import Any

from aws_cdk import Annotations, CfnOutput, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct, IConstruct

from charts.appmesh import app_mesh_name
from charts.workloads import MeshNames, gateway_chart, routing_chart, service_chart
from components.discovery import ServiceDiscovery
from components.mesh_workload import MAX_MANIFEST_BYTES, MeshWorkloadRole, attach_chart, chunk_by_size, imported_cluster, service_image
from components.smoke_test import SmokeTest
from config.settings import AppConfig
from config.topology import Service


class MeshServicesStack(Stack):
    """A slice of the services: image, IRSA role and one manifest (ServiceAccount, Deployment,
    Service, VirtualNode) each. Slices keep every stack far from CloudFormation's limits."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: AppConfig,
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
            role = MeshWorkloadRole(
                self,
                f"Role-{service.name}",
                cluster=cluster,
                namespace=mesh.namespace,
                service_account=service.name,
                mesh_name=mesh.mesh_name,
                mesh_resource=f"virtualNode/{app_mesh_name(service.virtual_node, mesh.namespace)}",
            )
            image = service_image(self, service)
            self.images[service.name] = image
            chart = service_chart(service, mesh.topology, names, image=image.image_uri, role_arn=role.role.role_arn, kplus=kplus)
            # After the namespace (the controller's webhook must be ready) and the Mesh (members
            # look it up); deleted before both, so the Mesh's finalizer never waits on them.
            self.manifests[service.name] = attach_chart(local_cluster, f"Service-{service.name}", chart, after=after)


class MeshRoutingStack(Stack):
    """Virtual routers and services, their DNS names, and the ingress gateway.

    Depends on every services stack: created after the virtual nodes it routes to and deleted
    before them, so App Mesh never sees a route to a node that is already gone.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: AppConfig,
        cluster: eks.ICluster,
        discovery: ServiceDiscovery,
        vpc: ec2.IVpc,
        after: list[IConstruct],
        service_manifests: list[eks.KubernetesManifest],
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id, **kwargs)
        mesh = config.mesh
        topology = mesh.topology
        names = mesh_names(config)
        local_cluster = imported_cluster(self, cluster)

        def size(virtual_service: Any) -> int:
            return len(json.dumps(routing_chart("probe", [virtual_service], topology, names).to_json()))

        chunks = chunk_by_size(list(topology.virtual_services), size, MAX_MANIFEST_BYTES // 2)
        self.routing = [
            attach_chart(local_cluster, f"Routing-{index + 1}", routing_chart(f"routing-{index + 1}", chunk, topology, names), after=after)
            for index, chunk in enumerate(chunks)
        ]
        for virtual_service in topology.virtual_services:
            # The name must resolve for the app to connect and Envoy to intercept; any instance
            # of the first target will do, Envoy picks the real destination by weight.
            discovery.add_service_name(self, virtual_service.name, virtual_service.routes[0].targets[0][0])

        self.gateway = None
        if topology.gateway:
            gateway = topology.gateway
            role = MeshWorkloadRole(
                self,
                "GatewayRole",
                cluster=cluster,
                namespace=mesh.namespace,
                service_account=gateway.name,
                mesh_name=mesh.mesh_name,
                mesh_resource=f"virtualGateway/{app_mesh_name(gateway.name, mesh.namespace)}",
            )
            chart = gateway_chart(gateway, topology, names, role_arn=role.role.role_arn, kplus=config.cluster.kubernetes.cdk8s_plus())
            # Gateway routes target virtual services: created after them, deleted before them.
            self.gateway = attach_chart(local_cluster, "Gateway", chart, after=[*after, *self.routing])

        # Load balancer addresses exist only once Kubernetes has provisioned them; read them back
        # through the kubectl provider so they become stack outputs (and smoke-test inputs).
        self.urls: dict[str, str] = {}
        if topology.gateway and self.gateway:
            self.urls["gateway"] = self._load_balancer_url(local_cluster, "Gateway", topology.gateway.name, mesh.namespace, self.gateway)
            CfnOutput(self, "GatewayUrl", value=self.urls["gateway"], description="Internal NLB of the gateway: <url>/eks/")
        for service in topology.services:
            if service.exposure != "none":
                url = self._load_balancer_url(local_cluster, f"Service-{service.name}", service.name, mesh.namespace, *service_manifests)
                self.urls[service.name] = url
                CfnOutput(self, f"{_camel(service.name)}Url", value=url, description=f"The {service.name} service's {service.exposure} NLB")
        self.smoke_test = SmokeTest(
            self,
            "SmokeTest",
            vpc=vpc,
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

    def _load_balancer_url(self, cluster: eks.ICluster, id: str, name: str, namespace: str, *after: IConstruct) -> str:
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
        return f"http://{value.value}"


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("-"))


def mesh_names(config: AppConfig) -> MeshNames:
    return MeshNames(
        mesh=config.mesh.mesh_name,
        namespace=config.mesh.namespace,
        hosted_zone=config.discovery.hosted_zone,
        cloud_map_namespace=config.discovery.cloud_map_namespace,
    )
