from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct, IConstruct

from charts.workloads import mesh_ca_chart, mesh_chart
from components.appmesh_controller import AppMeshController
from components.cert_manager import CertManager
from components.discovery import ServiceDiscovery
from components.mesh_workload import attach_chart, imported_cluster
from components.observability import ContainerLogs
from config.settings import AppConfig
from stacks.mesh_workload import mesh_names


class MeshPlatformStack(Stack):
    """What the mesh runs on: the App Mesh controller, the application namespace, container logs."""

    def __init__(
        self, scope: Construct, id: str, *, config: AppConfig, cluster: eks.ICluster, discovery: ServiceDiscovery, **kwargs: Any
    ) -> None:
        super().__init__(scope, id, **kwargs)
        mesh = config.mesh
        self.controller = AppMeshController(
            self,
            "AppMeshController",
            cluster=cluster,
            region=config.region,
            mesh_name=mesh.mesh_name,
            cloud_map_namespace_arn=discovery.namespace.namespace_arn,
            cloud_map_zone_id=discovery.namespace.namespace_hosted_zone_id,
        )
        labels = {
            "mesh": mesh.mesh_name,
            "appmesh.k8s.aws/sidecarInjectorWebhook": "enabled",
            # Pod Security Admission: the App Mesh injector adds an init container that needs
            # NET_ADMIN and root for its iptables redirect, which even `baseline` forbids, so
            # `privileged` is the strictest level that admits meshed pods. `restricted` is still
            # audited and warned about, so anything beyond the injected init container shows up.
            "pod-security.kubernetes.io/enforce": "privileged",
            "pod-security.kubernetes.io/audit": "restricted",
            "pod-security.kubernetes.io/warn": "restricted",
        }
        if mesh.topology.gateway:
            labels["gateway"] = mesh.topology.gateway.name
        self.namespace = self.controller.add_mesh_namespace("MeshNamespace", cluster=cluster, name=mesh.namespace, labels=labels)
        local_cluster = imported_cluster(self, cluster)
        # The Mesh is cluster-scoped and must exist before any member: the controller's webhook
        # rejects a VirtualNode whose namespace matches no mesh.
        self.mesh = attach_chart(local_cluster, "Mesh", mesh_chart(mesh_names(config), mesh.topology), after=[self.controller.release])
        # What every workload chart waits for (and is deleted before).
        self.ready: list[IConstruct] = [self.namespace, self.mesh]
        if mesh.topology.mtls == "strict":
            self.cert_manager = CertManager(self, "CertManager", cluster=cluster)
            self.mesh_ca = attach_chart(
                local_cluster, "MeshCa", mesh_ca_chart(mesh_names(config)), after=[self.namespace, self.cert_manager.release]
            )
            self.ready.append(self.mesh_ca)
        self.container_logs = ContainerLogs(
            self, "ContainerLogs", cluster=cluster, cluster_name=config.cluster.name, retention_days=config.cluster.log_retention_days
        )
