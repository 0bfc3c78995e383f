"""How the app applies a Kubernetes manifest: always with `overwrite` (kubectl apply on Create).

The kubectl provider's handler (aws-cdk-lib 2.275.0, custom-resource-handlers/dist/aws-eks-v2/
kubectl-handler/apply/__init__.py) runs `kubectl create --save-config` on Create unless the
manifest has `Overwrite`, and `kubectl apply` on every Update. A Create that fails part-way (a
webhook refuses the fifth object) leaves the first four in the cluster, and nothing removes them:
CloudFormation's rollback of a failed Create reaches the provider framework as a Delete it skips
(custom-resources/lib/provider-framework/runtime/cfn-response.js, "ignoring DELETE event caused by
a failed CREATE event"). Every retry then fails with AlreadyExists, in a namespace another stack
owns. With overwrite, Create is `kubectl apply` as well, which takes over what an earlier attempt
left.

What apply would do that create refuses: take over an object of the same name that another
manifest owns. No two manifests hold the same object (tests/stacks/test_manifests.py), so that
cannot happen here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import CfnResource
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct


def kubernetes_manifest(
    scope: Construct, id: str, *, cluster: eks.ICluster, manifest: Sequence[dict[str, Any]], prune: bool | None = None
) -> eks.KubernetesManifest:
    return eks.KubernetesManifest(scope, id, cluster=cluster, manifest=list(manifest), overwrite=True, prune=prune)


def with_overwrite(manifest: eks.KubernetesManifest) -> eks.KubernetesManifest:
    """The same for a manifest built by `cluster.add_cdk8s_chart`, whose Python signature takes
    no `overwrite`: the property it would render, set on the custom resource."""
    (resource,) = [child for child in manifest.node.find_all() if isinstance(child, CfnResource)]
    resource.add_property_override("Overwrite", True)
    return manifest
