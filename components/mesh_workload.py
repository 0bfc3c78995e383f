"""Constructs that put the mesh's workloads on the cluster: identities, images, manifests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cdk8s
from aws_cdk import Stack
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from constructs import Construct, IConstruct

from config.topology import Service

from .irsa import IrsaRole
from .nag import acknowledge

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# CloudFormation hands a custom resource's properties to the kubectl provider's Lambda in an
# asynchronous invocation (256 KiB payload limit), and an update carries the old and the new
# manifest; a manifest therefore stays under this, with headroom for the rest of the event.
MAX_MANIFEST_BYTES = 100 * 1024
XRAY_WRITE_ACTIONS = [
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "xray:GetSamplingStatisticSummaries",
]


class MeshWorkloadRole(Construct):
    """IRSA role for a meshed pod: its Envoy may stream the configuration of exactly its own
    virtual node (or gateway), and its X-Ray daemon sidecar may write traces. Nothing else."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        cluster: eks.ICluster,
        namespace: str,
        service_account: str,
        mesh_name: str,
        mesh_resource: str,
    ) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        self.irsa = IrsaRole(self, "Identity", cluster=cluster, namespace=namespace, service_account=service_account)
        self.role = self.irsa.role
        self.irsa.add_to_policy(
            iam.PolicyStatement(
                sid="EnvoyConfiguration",
                actions=["appmesh:StreamAggregatedResources"],
                resources=[stack.format_arn(service="appmesh", resource="mesh", resource_name=f"{mesh_name}/{mesh_resource}")],
            )
        )
        self.irsa.add_to_policy(iam.PolicyStatement(sid="XRayWrite", actions=XRAY_WRITE_ACTIONS, resources=["*"]))
        acknowledge(
            self.role,
            "X-Ray's trace and sampling APIs support no resource-level permissions; the X-Ray daemon "
            "sidecar the controller injects needs them to send this pod's traces.",
            "IAM5[Resource::*]",
        )


def service_image(scope: Construct, service: Service) -> ecr_assets.DockerImageAsset:
    """The service's image, built from services/ by `cdk deploy` (cdk-assets) for linux/amd64.

    Synth only stages the folder and hashes it, so no Docker engine is needed to synthesize.
    """
    return ecr_assets.DockerImageAsset(
        scope,
        f"Image-{service.name}",
        directory=str(PROJECT_ROOT / service.source),
        platform=ecr_assets.Platform.LINUX_AMD64,
        build_args=dict(service.build_args) or None,
        display_name=f"{service.name} image",
    )


def imported_cluster(scope: Construct, cluster: eks.ICluster) -> eks.ICluster:
    """The cluster seen from this stack, so `add_cdk8s_chart` puts the manifests here, not in
    the cluster's stack (which would put every workload against one stack's 500 resources)."""
    return eks.Cluster.from_cluster_attributes(
        scope,
        "Cluster",
        cluster_name=cluster.cluster_name,
        kubectl_provider=cluster.kubectl_provider,
    )


def attach_chart(cluster: eks.ICluster, id: str, chart: cdk8s.Chart, *, after: list[IConstruct]) -> eks.KubernetesManifest:
    """Apply a chart as one manifest, after `after` (created before it, deleted after it)."""
    size = manifest_bytes(chart)
    if size > MAX_MANIFEST_BYTES:
        raise ValueError(f"chart {id} renders {size} bytes, over the {MAX_MANIFEST_BYTES}-byte manifest budget; split it")
    manifest = cluster.add_cdk8s_chart(id, chart)
    for dependency in after:
        manifest.node.add_dependency(dependency)
    return manifest


def manifest_bytes(chart: cdk8s.Chart) -> int:
    return len(json.dumps(chart.to_json(), separators=(",", ":")))


def chunk_by_size(items: list[Any], size_of: Any, budget: int) -> list[list[Any]]:
    """Greedy, order-preserving split of `items` into lists whose sizes stay within `budget`."""
    chunks: list[list[Any]] = [[]]
    used = 0
    for item in items:
        size = size_of(item)
        if chunks[-1] and used + size > budget:
            chunks.append([])
            used = 0
        chunks[-1].append(item)
        used += size
    return [chunk for chunk in chunks if chunk]
