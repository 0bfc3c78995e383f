"""Helm add-ons the way this app installs them: pinned, in a namespace the app owns, waited for."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct, IConstruct

from .manifests import kubernetes_manifest


@dataclass(frozen=True)
class HelmPin:
    """A chart at one version: pinned with the add-on that installs it, bumped deliberately."""

    chart: str
    repository: str
    version: str
    namespace: str


def owned_namespace(
    scope: Construct, cluster: eks.ICluster, name: str, *, labels: Mapping[str, str] | None = None
) -> eks.KubernetesManifest:
    """The add-on's namespace as a manifest of ours (not Helm's `--create-namespace`), so that
    objects can be put in it before the release and `cdk destroy` removes it."""
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = dict(labels)
    return kubernetes_manifest(
        scope, "Namespace", cluster=cluster, manifest=[{"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}]
    )


def pinned_release(
    scope: Construct,
    cluster: eks.ICluster,
    pin: HelmPin,
    *,
    values: dict[str, Any],
    after: list[IConstruct],
    release_name: str | None = None,
) -> eks.HelmChart:
    release = eks.HelmChart(
        scope,
        "Release",
        cluster=cluster,
        chart=pin.chart,
        repository=pin.repository,
        version=pin.version,
        release=release_name or pin.chart,
        namespace=pin.namespace,
        create_namespace=False,
        # The release succeeds only once its workloads, webhooks included, are ready: what
        # everything downstream of an add-on relies on.
        wait=True,
        timeout=Duration.minutes(10),
        values=values,
    )
    for dependency in after:
        release.node.add_dependency(dependency)
    return release
