"""A readiness gate for an admission webhook that fails closed.

`helm --wait` returns once a release's pods are Ready, which for a controller without a readiness
probe (the App Mesh controller) is before its webhook serves, and for istiod before the API server
can reach it; the first object the webhook must admit is then refused and the deploy fails. The
gate proves the webhook answers: a Job repeats a server-side dry-run create of a probe object
(admitted by the webhook, persisted never) until it succeeds, bounded by a deadline, and the
deploy waits for the Job to have succeeded (a KubernetesObjectValue, which polls until then).
Everything that needs the webhook is ordered after `ready`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct, IConstruct

# The official kubectl image (shell-free; its entrypoint is kubectl), within one minor of every
# supported cluster version (config/kubernetes.py).
KUBECTL_IMAGE = "registry.k8s.io/kubectl:v1.35.3"
# Bounds: the webhook has this long to answer after its release is ready.
DEADLINE_SECONDS = 300
ATTEMPTS = 8  # the Job's retries, with Kubernetes' exponential back-off (10 s, 20 s, ... capped at 6 min)
_UID = 65532


def gate_objects(
    name: str, namespace: str, probe: dict[str, Any], rules: Sequence[dict[str, Any]], probe_namespace_labels: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The Job, its identity and permissions, and the probe it dry-runs. The Job's name carries a
    hash of its spec: a Job's template is immutable, so a changed gate is a new Job.

    probe_namespace_labels: the probe's namespace is created here, with these labels (a namespace
    the webhook selects), instead of being one that exists already."""
    probe_namespace = probe["metadata"].get("namespace")
    own_namespace = (
        [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": probe_namespace, "labels": probe_namespace_labels}}]
        if probe_namespace and probe_namespace_labels is not None
        else []
    )
    scope_kind = "Role" if probe_namespace else "ClusterRole"
    scope_metadata = {"name": name, "namespace": probe_namespace} if probe_namespace else {"name": name}
    job_spec = {
        "backoffLimit": ATTEMPTS,
        "activeDeadlineSeconds": DEADLINE_SECONDS,
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {
                "serviceAccountName": name,
                "restartPolicy": "Never",
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": _UID,
                    "runAsGroup": _UID,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": "dry-run",
                        "image": KUBECTL_IMAGE,
                        "imagePullPolicy": "Always",
                        # A dry run goes through every admission webhook and persists nothing.
                        "args": ["create", "--dry-run=server", "--cache-dir=/tmp/kube", "-f", "/probe/probe.json"],
                        "volumeMounts": [{"name": "probe", "mountPath": "/probe", "readOnly": True}, {"name": "tmp", "mountPath": "/tmp"}],
                        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}},
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
                "volumes": [{"name": "probe", "configMap": {"name": name}}, {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}],
            },
        },
    }
    digest = hashlib.sha256(json.dumps([job_spec, probe], sort_keys=True).encode()).hexdigest()[:8]
    return [
        *own_namespace,
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": scope_kind, "metadata": scope_metadata, "rules": list(rules)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": f"{scope_kind}Binding",
            "metadata": scope_metadata,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": scope_kind, "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace},
            "data": {"probe.json": json.dumps(probe)},
        },
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": f"{name}-{digest}",
                "namespace": namespace,
                "annotations": {
                    "checkov.io/skip1": "CKV_K8S_14=the official kubectl image is published by tag; the tag is pinned",
                    "checkov.io/skip2": "CKV_K8S_43=the official kubectl image is published by tag; no digest offline at synth",
                    "checkov.io/skip3": "CKV_K8S_38=the Job calls the Kubernetes API (a dry-run create): it needs its token",
                    "checkov.io/skip4": "CKV_K8S_8=a one-shot Job with a deadline: the Job retries a failed attempt, not a probe",
                    "checkov.io/skip5": "CKV_K8S_9=a one-shot Job: nothing routes traffic to it",
                    "checkov.io/skip6": "CKV2_K8S_6=a one-shot Job that only talks to the Kubernetes API",
                },
            },
            "spec": job_spec,
        },
    ]


class WebhookGate(Construct):
    """`ready` completes only once `probe` has been admitted (dry run) by the webhook."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        cluster: eks.ICluster,
        name: str,
        namespace: str,
        probe: dict[str, Any],
        rules: Sequence[dict[str, Any]],
        after: Sequence[IConstruct],
        probe_namespace_labels: dict[str, str] | None = None,
    ) -> None:
        super().__init__(scope, id)
        self.objects = gate_objects(name, namespace, probe, rules, probe_namespace_labels)
        self.manifest = eks.KubernetesManifest(self, "Job", cluster=cluster, manifest=self.objects)
        for dependency in after:
            self.manifest.node.add_dependency(dependency)
        job = self.objects[-1]["metadata"]["name"]
        # Polls `kubectl get job` until `.status.succeeded` has a value (the Job's one success);
        # a Job that runs out of attempts or time never gets one, and the deploy fails here.
        self.ready = eks.KubernetesObjectValue(
            self,
            "Succeeded",
            cluster=cluster,
            object_type="job",
            object_name=job,
            object_namespace=namespace,
            json_path=".status.succeeded",
            timeout=Duration.seconds(DEADLINE_SECONDS + 60),
        )
        self.ready.node.add_dependency(self.manifest)
