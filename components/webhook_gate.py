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

import json
from collections.abc import Sequence
from typing import Any

from aws_cdk import aws_eks_v2 as eks
from constructs import Construct, IConstruct

from .one_shot_job import CONTAINER_SECURITY, apply_and_wait, identity, job, job_spec

# The official kubectl image (shell-free; its entrypoint is kubectl), within one minor of every
# supported cluster version (config/kubernetes.py).
KUBECTL_IMAGE = "registry.k8s.io/kubectl:v1.35.3"
# Bounds: the webhook has this long to answer after its release is ready.
DEADLINE_SECONDS = 300
ATTEMPTS = 8  # the Job's retries, with Kubernetes' exponential back-off (10 s, 20 s, ... capped at 6 min)


def gate_objects(
    name: str, namespace: str, probe: dict[str, Any], rules: Sequence[dict[str, Any]], probe_namespace_labels: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The Job, its identity and permissions, and the probe it dry-runs (components/one_shot_job.py).

    probe_namespace_labels: the probe's namespace is created here, with these labels (a namespace
    the webhook selects), instead of being one that exists already."""
    probe_namespace = probe["metadata"].get("namespace")
    own_namespace = (
        [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": probe_namespace, "labels": probe_namespace_labels}}]
        if probe_namespace and probe_namespace_labels is not None
        else []
    )
    spec = job_spec(
        name,
        backoff_limit=ATTEMPTS,
        deadline_seconds=DEADLINE_SECONDS,
        containers=[
            {
                "name": "dry-run",
                "image": KUBECTL_IMAGE,
                "imagePullPolicy": "Always",
                # A dry run goes through every admission webhook and persists nothing.
                "args": ["create", "--dry-run=server", "--cache-dir=/tmp/kube", "-f", "/probe/probe.json"],
                "volumeMounts": [{"name": "probe", "mountPath": "/probe", "readOnly": True}, {"name": "tmp", "mountPath": "/tmp"}],
                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}},
                "securityContext": CONTAINER_SECURITY,
            }
        ],
        volumes=[{"name": "probe", "configMap": {"name": name}}, {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}],
    )
    skips = {
        "CKV_K8S_14": "the official kubectl image is published by tag; the tag is pinned",
        "CKV_K8S_43": "the official kubectl image is published by tag; no digest offline at synth",
        "CKV_K8S_38": "the Job calls the Kubernetes API (a dry-run create): it needs its token",
        "CKV2_K8S_6": "a one-shot Job that only talks to the Kubernetes API",
    }
    return [
        *own_namespace,
        *identity(name, namespace, rules, role_namespace=probe_namespace),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace},
            "data": {"probe.json": json.dumps(probe)},
        },
        job(name, namespace, spec, skips=skips, hashed_with=probe),
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
        # The Job's name changes with its spec (a Job's pod template is immutable: under a fixed
        # name, an update's apply, and its rollback's, would fail with "field is immutable"). The
        # Job an update replaces is kept, not pruned: when CloudFormation rolls the update back,
        # it applies the old manifest again, which then finds the old Job as it was, succeeded,
        # so the rollback reads that at once. Pruned, the old Job would be created anew and the
        # rollback would wait for a new dry run against a control plane that is itself being
        # rolled back, and fail (UPDATE_ROLLBACK_FAILED) if it does not answer within the deadline.
        # Kept Jobs (one per change of the gate, finished) go with their namespace.
        self.manifest, self.ready = apply_and_wait(self, cluster, self.objects, deadline_seconds=DEADLINE_SECONDS, after=after, prune=False)
