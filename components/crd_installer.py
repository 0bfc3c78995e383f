"""CustomResourceDefinitions a controller needs but its chart does not install (the Gateway API's,
for the VPC Lattice controller): applied from the cluster, verified before they are applied.

The bundle is about 1 MB, far over what a CloudFormation custom resource can carry, so a Job
fetches the pinned files from their repository at the pinned commit, refuses any whose git blob id
differs (the same pins the tests validate our objects against: the package upstream/), and applies
them server-side. The deploy waits for the Job to have succeeded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from aws_cdk import aws_eks_v2 as eks
from constructs import Construct, IConstruct

from upstream import DEFAULT_BASE_URL, Part

from .one_shot_job import CONTAINER_SECURITY, apply_and_wait, identity, job, job_spec
from .webhook_gate import KUBECTL_IMAGE

# Fetches and verifies; a Python image because the check is the same few lines as
# upstream/ (the kubectl image has no shell).
FETCH_IMAGE = "public.ecr.aws/docker/library/python:3.11.7-slim-bookworm"
DEADLINE_SECONDS = 600
CRDS_DIR = "/crds"
# Every file is verified before any is written, so a mismatch leaves the volume empty; the apply
# step is the pod's container, which the kubelet starts only once this init container has exited
# 0, and a retry is a new pod with a new volume. One line on any failure, naming the file.
_FETCH = """
import hashlib, json, os, sys, urllib.request
files = []
for url, blob in json.loads(os.environ["PARTS"]):
    try:
        data = urllib.request.urlopen(url, timeout=60).read()
    except OSError as error:
        sys.exit(f"{url}: {error}: nothing applied")
    found = hashlib.sha1(b"blob %d\\0" % len(data) + data).hexdigest()
    if found != blob:
        sys.exit(f"{url}: git blob {found}, pinned {blob}: nothing applied")
    files.append(data)
for index, data in enumerate(files):
    with open(os.path.join(os.environ["CRDS_DIR"], f"{index:02d}.yaml"), "wb") as out:
        out.write(data)
print(f"verified {len(files)} files")
"""


def installer_objects(name: str, namespace: str, parts: Sequence[Part]) -> list[dict[str, object]]:
    pinned = [[part.url(DEFAULT_BASE_URL), part.blob] for part in parts]
    resources = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}
    spec = job_spec(
        name,
        backoff_limit=4,
        deadline_seconds=DEADLINE_SECONDS,
        init_containers=[
            {
                "name": "fetch",
                "image": FETCH_IMAGE,
                "imagePullPolicy": "Always",
                "command": ["python", "-c", _FETCH],
                "env": [{"name": "PARTS", "value": json.dumps(pinned)}, {"name": "CRDS_DIR", "value": CRDS_DIR}],
                "volumeMounts": [{"name": "crds", "mountPath": CRDS_DIR}],
                "resources": resources,
                "securityContext": CONTAINER_SECURITY,
            }
        ],
        containers=[
            {
                "name": "apply",
                "image": KUBECTL_IMAGE,
                "imagePullPolicy": "Always",
                "args": ["apply", "--server-side", "--force-conflicts", "--cache-dir=/tmp/kube", "-f", f"{CRDS_DIR}/"],
                "volumeMounts": [{"name": "crds", "mountPath": CRDS_DIR, "readOnly": True}, {"name": "tmp", "mountPath": "/tmp"}],
                "resources": resources,
                "securityContext": CONTAINER_SECURITY,
            }
        ],
        volumes=[{"name": "crds", "emptyDir": {"sizeLimit": "16Mi"}}, {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}],
    )
    rules = [
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["get", "list", "create", "patch"]},
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["validatingadmissionpolicies", "validatingadmissionpolicybindings"],
            "verbs": ["get", "list", "create", "patch"],
        },
    ]
    skips = {
        "CKV_K8S_14": "pinned release tags of official images (kubectl, python)",
        "CKV_K8S_43": "pinned release tags of official images; their digests cannot be resolved offline at synth",
        "CKV_K8S_38": "the Job applies CRDs through the Kubernetes API: it needs its service account token",
        "CKV2_K8S_6": "a one-shot Job that talks only to GitHub and the Kubernetes API",
        "CKV_K8S_155": "it installs CustomResourceDefinitions, which is what the ClusterRole grants",
        "CKV_K8S_158": "it installs CustomResourceDefinitions, which is what the ClusterRole grants",
    }
    return [*identity(name, namespace, rules, role_namespace=None), job(name, namespace, spec, skips=skips)]


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
        self.manifest, self.ready = apply_and_wait(self, cluster, self.objects, deadline_seconds=DEADLINE_SECONDS, after=after)
