from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct

from components.cluster import MeshCluster
from config.settings import ClusterConfig


class ClusterStack(Stack):
    """EKS: control plane, nodes, kubectl provider."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: ClusterConfig,
        vpc: ec2.IVpc,
        startup_taints: Sequence[tuple[str, str]] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id, **kwargs)
        self.mesh_cluster = MeshCluster(self, "Eks", config=config, vpc=vpc, startup_taints=startup_taints)
        # Typed as the interface the other stacks use (jsii's Python stubs do not let mypy see
        # that Cluster satisfies ICluster).
        self.cluster = cast(eks.ICluster, self.mesh_cluster.cluster)
