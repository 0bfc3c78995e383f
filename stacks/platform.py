from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct

from backends.base import MeshBackend, PlatformContext
from components.discovery import ServiceDiscovery
from components.observability import ContainerLogs
from config.settings import AppConfig


class MeshPlatformStack(Stack):
    """What the mesh runs on: the backend's control plane and application namespace, and the
    CloudWatch add-on that ships every container's logs (the proxies' access logs included)."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: AppConfig,
        backend: MeshBackend,
        cluster: eks.ICluster,
        vpc: ec2.IVpc,
        discovery: ServiceDiscovery | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id, **kwargs)
        self.context = PlatformContext(config=config, cluster=cluster, vpc=vpc, discovery=discovery)
        self.platform = backend.install_platform(self, self.context)
        # What every workload manifest waits for, and is deleted before.
        self.ready = self.platform.ready
        # Where the mesh's request metrics can be queried, for the canary analysis (None: nowhere).
        self.metrics = self.platform.metrics
        self.container_logs = ContainerLogs(
            self,
            "ContainerLogs",
            cluster=cluster,
            cluster_name=config.cluster.name,
            retention_days=config.cluster.log_retention_days,
            retain_legacy=config.cluster.retain_legacy_log_groups,
        )
        # Its pods cannot be scheduled before the backend's startup taints are gone.
        for dependency in self.platform.schedulable:
            self.container_logs.addon.node.add_dependency(dependency)
