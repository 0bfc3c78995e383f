"""CustomResourceDefinitions a controller needs but its chart does not install (the Gateway API's,
for the VPC Lattice controller): applied from the cluster, verified before they are applied.

The bundle is about 1 MB, far over what a CloudFormation custom resource can carry, so a Job
fetches the pinned files from their repository at the pinned commit, refuses any whose git blob id
differs (the same pins the tests validate our objects against: scripts/upstream.py), and applies
them server-side. The deploy waits for the Job to have succeeded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct, IConstruct

from scripts.upstream import DEFAULT_BASE_URL, Part

from .webhook_gate import KUBECTL_IMAGE

# Fetches and verifies; a Python image because the check is the same few lines as
# scripts/upstream.py (the kubectl image has no shell).
FETCH_IMAGE = "public.ecr.aws/docker/library/python:3.11.7-slim-bookworm"
DEADLINE_SECONDS = 600
_UID = 65532
_FETCH = """
import hashlib, json, os, sys, urllib.request
for index, (url, blob) in enumerate(json.loads(os.environ["PARTS"])):
    data = urllib.request.urlopen(url, timeout=60).read()
    found = hashlib.sha1(b"blob %d\\0" % len(data) + data).hexdigest()
    if found != blob:
        sys.exit(f"{url}: git blob {found}, pinned {blob}: not applied")
    with open(f"/crds/{index:02d}.yaml", "wb") as out:
        out.write(data)
print(f"verified {index + 1} files")
"""


def installer_objects(name: str, namespace: str, parts: Sequence[Part]) -> list[dict[str, object]]:
    pinned = [[part.url(DEFAULT_BASE_URL), part.blob] for part in parts]
    security = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    resources = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}
    job_spec = {
        "backoffLimit": 4,
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
                "initContainers": [
                    {
                        "name": "fetch",
                        "image": FETCH_IMAGE,
                        "imagePullPolicy": "Always",
                        "command": ["python", "-c", _FETCH],
                        "env": [{"name": "PARTS", "value": json.dumps(pinned)}],
                        "volumeMounts": [{"name": "crds", "mountPath": "/crds"}],
                        "resources": resources,
                        "securityContext": security,
                    }
                ],
                "containers": [
                    {
                        "name": "apply",
                        "image": KUBECTL_IMAGE,
                        "imagePullPolicy": "Always",
                        "args": ["apply", "--server-side", "--force-conflicts", "--cache-dir=/tmp/kube", "-f", "/crds/"],
                        "volumeMounts": [{"name": "crds", "mountPath": "/crds", "readOnly": True}, {"name": "tmp", "mountPath": "/tmp"}],
                        "resources": resources,
                        "securityContext": security,
                    }
                ],
                "volumes": [{"name": "crds", "emptyDir": {"sizeLimit": "16Mi"}}, {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}],
            },
        },
    }
    digest = hashlib.sha256(json.dumps(job_spec, sort_keys=True).encode()).hexdigest()[:8]
    rules = [
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["get", "list", "create", "patch"]},
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["validatingadmissionpolicies", "validatingadmissionpolicybindings"],
            "verbs": ["get", "list", "create", "patch"],
        },
    ]
    skips = {
        "checkov.io/skip1": "CKV_K8S_14=pinned release tags of official images (kubectl, python)",
        "checkov.io/skip2": "CKV_K8S_43=pinned release tags of official images; their digests cannot be resolved offline at synth",
        "checkov.io/skip3": "CKV_K8S_38=the Job applies CRDs through the Kubernetes API: it needs its service account token",
        "checkov.io/skip4": "CKV_K8S_8=a one-shot Job with a deadline: a failed attempt is retried by the Job, not by a liveness probe",
        "checkov.io/skip5": "CKV_K8S_9=a one-shot Job: nothing routes traffic to it",
        "checkov.io/skip6": "CKV2_K8S_6=a one-shot Job that talks only to GitHub and the Kubernetes API",
        "checkov.io/skip7": "CKV_K8S_155=it installs CustomResourceDefinitions, which is what the ClusterRole grants",
        "checkov.io/skip8": "CKV_K8S_158=it installs CustomResourceDefinitions, which is what the ClusterRole grants",
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name}, "rules": rules},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": f"{name}-{digest}", "namespace": namespace, "annotations": skips},
            "spec": job_spec,
        },
    ]


class CrdInstaller(Construct):
    """`ready` completes once every pinned file has been verified and applied."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        cluster: eks.ICluster,
        name: str,
        namespace: str,
        parts: Sequence[Part],
        after: Sequence[IConstruct],
    ) -> None:
        super().__init__(scope, id)
        self.objects = installer_objects(name, namespace, parts)
        self.manifest = eks.KubernetesManifest(self, "Job", cluster=cluster, manifest=self.objects)
        for dependency in after:
            self.manifest.node.add_dependency(dependency)
        self.ready = eks.KubernetesObjectValue(
            self,
            "Succeeded",
            cluster=cluster,
            object_type="job",
            object_name=str(self.objects[-1]["metadata"]["name"]),  # type: ignore[index]
            object_namespace=namespace,
            json_path=".status.succeeded",
            timeout=Duration.seconds(DEADLINE_SECONDS + 60),
        )
        self.ready.node.add_dependency(self.manifest)
