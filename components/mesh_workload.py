"""Constructs that put the mesh's workloads on the cluster: identities, images, manifests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cdk8s
from aws_cdk import Stack
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from constructs import Construct, IConstruct

from config.topology import Service

from .irsa import IrsaRole
from .manifests import with_overwrite
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


@dataclass(frozen=True)
class WorkloadIdentity:
    """Who a pod is to the mesh: its service account name and the IAM statements it needs
    (none: no IRSA role and no role annotation). A backend answers it for each workload."""

    service_account: str
    statements: tuple[iam.PolicyStatement, ...] = ()
    # Why a statement on `*` is needed, for cdk-nag's IAM5[Resource::*] (None: there is none).
    wildcard_reason: str | None = None


class WorkloadRole(Construct):
    """IRSA role for a meshed pod, with exactly the statements its mesh backend asks for (for App
    Mesh: Envoy may stream its own virtual node's configuration, the X-Ray daemon may write)."""

    def __init__(self, scope: Construct, id: str, *, cluster: eks.ICluster, namespace: str, identity: WorkloadIdentity) -> None:
        super().__init__(scope, id)
        self.irsa = IrsaRole(self, "Identity", cluster=cluster, namespace=namespace, service_account=identity.service_account)
        self.role = self.irsa.role
        for statement in identity.statements:
            self.irsa.add_to_policy(statement)
        if identity.wildcard_reason:
            acknowledge(self.role, identity.wildcard_reason, "IAM5[Resource::*]")


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
    the cluster's stack (which would put every workload against one stack's 500 resources).
    One per stack, however many constructs ask."""
    stack = Stack.of(scope)
    existing = stack.node.try_find_child("Cluster")
    if existing is not None:
        return existing  # type: ignore[return-value]
    return eks.Cluster.from_cluster_attributes(
        stack,
        "Cluster",
        cluster_name=cluster.cluster_name,
        kubectl_provider=cluster.kubectl_provider,
    )


def attach_chart(cluster: eks.ICluster, id: str, chart: cdk8s.Chart, *, after: Sequence[IConstruct]) -> eks.KubernetesManifest:
    """Apply a chart as one manifest, after `after` (created before it, deleted after it)."""
    size = manifest_bytes(chart)
    if size > MAX_MANIFEST_BYTES:
        raise ValueError(f"chart {id} renders {size} bytes, over the {MAX_MANIFEST_BYTES}-byte manifest budget; split it")
    manifest = with_overwrite(cluster.add_cdk8s_chart(id, chart))
    for dependency in after:
        manifest.node.add_dependency(dependency)
    return manifest


def manifest_bytes(chart: cdk8s.Chart) -> int:
    return len(json.dumps(chart.to_json(), separators=(",", ":")))
