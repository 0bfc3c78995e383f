"""The Kubernetes Metrics Server as an EKS add-on: what a HorizontalPodAutoscaler reads CPU from.

EKS does not deploy it ("it isn't deployed by default in Amazon EKS clusters", EKS user guide,
metrics-server.html); without it an autoscaler never scales. The add-on's images come from EKS's
own registries, and its version is left to EKS (the default for the cluster's Kubernetes version),
as the CloudWatch add-on's is: a pin would need describe-addon-versions, which synth cannot call.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_eks_v2 as eks
from constructs import Construct, IConstruct

ADDON = "metrics-server"
# Pods it runs (two replicas), counted by the node-capacity check of the backend that installs it.
PODS = 2


class MetricsServer(Construct):
    def __init__(self, scope: Construct, id: str, *, cluster: eks.ICluster, after: Sequence[IConstruct] = ()) -> None:
        super().__init__(scope, id)
        self.addon = eks.CfnAddon(
            self,
            "Addon",
            addon_name=ADDON,
            # The token (not the configured name) makes the add-on wait for the cluster.
            cluster_name=cluster.cluster_name,
            resolve_conflicts="OVERWRITE",
        )
        for dependency in after:
            self.addon.node.add_dependency(dependency)
