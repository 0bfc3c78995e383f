"""What the app's one-shot Kubernetes Jobs share (the webhook gate, the CRD installer): a pod that
passes Pod Security `restricted` on its own, retried by the Job within a deadline, named after a
hash of its spec (a Job's template is immutable, so a changed Job is a new one), with a service
account bound to exactly the rules it needs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct, IConstruct

from charts.workloads import checkov_skips

from .manifests import kubernetes_manifest

_UID = 65532  # the nonroot user of distroless and the official kubectl image
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
# Checkov findings every such Job answers the same way; each Job adds its own.
CHECKOV_SKIPS = {
    "CKV_K8S_8": "a one-shot Job with a deadline: the Job retries a failed attempt, not a liveness probe",
    "CKV_K8S_9": "a one-shot Job: nothing routes traffic to it",
}


def job_spec(
    name: str,
    *,
    backoff_limit: int,
    deadline_seconds: int,
    containers: Sequence[Mapping[str, Any]],
    volumes: Sequence[Mapping[str, Any]],
    init_containers: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "serviceAccountName": name,
        "restartPolicy": "Never",
        "securityContext": {"runAsNonRoot": True, "runAsUser": _UID, "runAsGroup": _UID, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    if init_containers:
        pod["initContainers"] = [dict(c) for c in init_containers]
    pod["containers"] = [dict(c) for c in containers]
    pod["volumes"] = [dict(v) for v in volumes]
    return {
        "backoffLimit": backoff_limit,
        "activeDeadlineSeconds": deadline_seconds,
        "template": {"metadata": {"labels": {"app": name}}, "spec": pod},
    }


def identity(name: str, namespace: str, rules: Sequence[Mapping[str, Any]], *, role_namespace: str | None) -> list[dict[str, Any]]:
    """The Job's ServiceAccount and its (Cluster)Role and binding: a Role in `role_namespace`, or
    a ClusterRole when it is None."""
    kind = "Role" if role_namespace else "ClusterRole"
    metadata = {"name": name, "namespace": role_namespace} if role_namespace else {"name": name}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": metadata, "rules": [dict(r) for r in rules]},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": f"{kind}Binding",
            "metadata": metadata,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    ]


def job(name: str, namespace: str, spec: Mapping[str, Any], *, skips: Mapping[str, str], hashed_with: Any = None) -> dict[str, Any]:
    """The Job, named `<name>-<hash of its spec and hashed_with>`, with its Checkov answers."""
    digest = hashlib.sha256(json.dumps(spec if hashed_with is None else [spec, hashed_with], sort_keys=True).encode()).hexdigest()[:8]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"{name}-{digest}", "namespace": namespace, "annotations": checkov_skips({**skips, **CHECKOV_SKIPS})},
        "spec": dict(spec),
    }


def apply_and_wait(
    scope: Construct,
    cluster: eks.ICluster,
    objects: list[dict[str, Any]],
    *,
    deadline_seconds: int,
    after: Sequence[IConstruct],
    prune: bool = True,
) -> tuple[eks.KubernetesManifest, eks.KubernetesObjectValue]:
    """Applies `objects` (the Job last) after `after`, and returns the manifest and a value that
    resolves once the Job has succeeded: it polls `.status.succeeded`, which a Job that runs out
    of attempts or time never gets, so the deploy fails there.

    `prune`: whether an update deletes the Job it replaces (`kubectl apply --prune`). A rollback
    then applies the old manifest again, which creates the old Job anew and runs it again."""
    manifest = kubernetes_manifest(scope, "Job", cluster=cluster, manifest=objects, prune=prune)
    for dependency in after:
        manifest.node.add_dependency(dependency)
    job_metadata = objects[-1]["metadata"]
    ready = eks.KubernetesObjectValue(
        scope,
        "Succeeded",
        cluster=cluster,
        object_type="job",
        object_name=job_metadata["name"],
        object_namespace=job_metadata["namespace"],
        json_path=".status.succeeded",
        timeout=Duration.seconds(deadline_seconds + 60),
    )
    ready.node.add_dependency(manifest)
    return manifest, ready
