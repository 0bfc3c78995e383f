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

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from aws_cdk import CfnResource, Stack
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct, IConstruct

PRUNE_LABEL_PREFIX = "aws.cdk.eks/prune-"
# What identifies a Helm release's content; the cluster's name and the provider are where it goes.
_RELEASE_CONTENT = ("Chart", "Repository", "Version", "Release", "Namespace", "Values")


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


def object_digest(definers: Sequence[IConstruct], *, kind: str, name: str, namespace: str) -> str:
    """A digest of how `definers` (the manifests and Helm releases that render it) define the
    Kubernetes object `kind` `namespace`/`name`: the object itself where a manifest holds it, else
    what the Helm releases among them install (chart, version, values), which renders it.

    Computed from their CloudFormation properties as resolved in their own stacks, so it is the
    same wherever the app is synthesized (a pipeline stage included), and without the prune labels,
    which are a hash of a construct's path."""
    objects, releases = [], []
    for definer in definers:
        for resource in definer.node.find_all():
            if not isinstance(resource, CfnResource):
                continue
            properties = Stack.of(resource).resolve(resource._cfn_properties)
            if resource.cfn_resource_type == eks.KubernetesManifest.RESOURCE_TYPE:
                for candidate in json.loads(_text(properties["Manifest"])):
                    metadata = candidate.get("metadata", {})
                    if (candidate.get("kind"), metadata.get("name"), metadata.get("namespace")) == (kind, name, namespace):
                        objects.append(_without_prune_labels(candidate))
            elif resource.cfn_resource_type == eks.HelmChart.RESOURCE_TYPE:
                releases.append({key: properties[key] for key in _RELEASE_CONTENT if key in properties})
    definition = objects or releases
    if not definition:
        raise ValueError(f"no manifest or Helm release among {[d.node.path for d in definers]} defines {kind} {namespace}/{name}")
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:16]


def _text(value: Any) -> str:
    """A resolved string property: a string, or an Fn::Join of strings and tokens (each token
    becomes TOKEN, so the JSON around it still parses)."""
    if isinstance(value, str):
        return value
    return "".join(part if isinstance(part, str) else "TOKEN" for part in value["Fn::Join"][1])


def _without_prune_labels(manifest_object: dict[str, Any]) -> dict[str, Any]:
    metadata = dict(manifest_object.get("metadata", {}))
    labels = {key: value for key, value in metadata.get("labels", {}).items() if not key.startswith(PRUNE_LABEL_PREFIX)}
    metadata["labels"] = labels
    return {**manifest_object, "metadata": metadata}
