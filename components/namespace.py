"""The application namespace: created once the mesh's platform is ready to admit its pods."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import aws_eks_v2 as eks
from constructs import Construct, IConstruct

from .manifests import kubernetes_manifest


def application_namespace(
    scope: Construct, cluster: eks.ICluster, *, name: str, labels: Mapping[str, str], after: Sequence[IConstruct]
) -> eks.KubernetesManifest:
    """The namespace with the mesh's labels. Its labels opt its pods into a webhook that fails
    closed, so it is created after `after` (the webhook answering) and deleted before it."""
    namespace = kubernetes_manifest(
        scope,
        "ApplicationNamespace",
        cluster=cluster,
        manifest=[{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": dict(labels)}}],
    )
    for dependency in after:
        namespace.node.add_dependency(dependency)
    return namespace
