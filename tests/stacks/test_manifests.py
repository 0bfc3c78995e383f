"""Every Kubernetes manifest, in every stack of every backend, is applied with overwrite, and no
object is in two manifests (what overwrite would otherwise let one manifest take from another)."""

from __future__ import annotations

import tarfile
from collections import Counter
from pathlib import Path
from typing import Any

import aws_cdk
import pytest

from tests.stacks.support import manifest_of

BACKENDS = ["appmesh", "istio", "lattice"]


def _manifests(synth: Any) -> dict[str, dict[str, Any]]:
    """`<stack>/<logical id>` -> resource, for every Kubernetes manifest of the app."""
    return {
        f"{stack.stack_name}/{lid}": resource
        for stack in synth.application.stacks
        for lid, resource in synth.template_json(stack)["Resources"].items()
        if resource["Type"] == "Custom::AWSCDK-EKS-KubernetesResource"
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_manifest_is_applied_with_overwrite(synths: Any, backend: str) -> None:
    """Without it, a Create that fails part-way leaves objects that make every retry fail with
    AlreadyExists (components/manifests.py)."""
    found = _manifests(synths[backend])
    assert found
    assert {name: resource["Properties"].get("Overwrite") for name, resource in found.items()} == dict.fromkeys(found, True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_object_is_in_two_manifests(synths: Any, backend: str) -> None:
    """kubectl apply would take over an object another manifest owns (and the first manifest's
    delete would then remove it from under the second): each object has one manifest."""
    objects = Counter(
        (o["apiVersion"].split("/")[0] if "/" in o["apiVersion"] else "", o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])
        for resource in _manifests(synths[backend]).values()
        for o in manifest_of(resource)
    )
    assert objects
    assert [key for key, count in objects.items() if count > 1] == []


def test_the_kubectl_handler_applies_on_create_only_with_overwrite() -> None:
    """What the pinned aws-cdk-lib's handler does, read from its own source: Create is `kubectl
    create` unless the manifest has Overwrite, then `kubectl apply` (so a bump that changes this is
    seen here)."""
    tarball = next((Path(aws_cdk.__file__).parent / "_jsii").glob("aws-cdk-lib@*.jsii.tgz"))
    with tarfile.open(tarball) as archive:
        member = archive.extractfile("package/custom-resource-handlers/dist/aws-eks-v2/kubectl-handler/apply/__init__.py")
        assert member is not None
        source = member.read().decode()
    assert "overwrite     = props.get('Overwrite', 'false').lower() == 'true'" in source
    create = source[source.index("if request_type == 'Create':") : source.index("elif request_type == 'Update':")]
    assert create.index("if overwrite:") < create.index("kubectl('apply', manifest_file, *kubectl_opts)") < create.index("else:")
    assert create.index("else:") < create.index("kubectl('create', manifest_file, *kubectl_opts)")


def _jobs(resource: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o in manifest_of(resource) if o["kind"] == "Job"]


def _is_gate(job: dict[str, Any]) -> bool:
    """A webhook gate's Job (components/webhook_gate.py): its one container dry-runs the probe."""
    return [c["name"] for c in job["spec"]["template"]["spec"]["containers"]] == ["dry-run"]


# Each backend's gates, by the name their Job carries before its hash.
_GATES = {"appmesh": ["appmesh-webhook-gate", "cert-manager-webhook-gate"], "istio": ["istio-webhook-gate"], "lattice": []}


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_gate_keeps_the_job_an_update_replaces_so_a_rollback_finds_it_done(synths: Any, backend: str) -> None:
    """A gate's Job is renamed when it changes (its pod template is immutable). Pruned on update,
    the old Job would be created anew by the rollback's apply, which would then wait for a new dry
    run against a control plane that is itself rolling back (components/webhook_gate.py)."""
    gates = {name: resource for name, resource in _manifests(synths[backend]).items() if any(_is_gate(job) for job in _jobs(resource))}
    names = sorted(job["metadata"]["name"].rsplit("-", 1)[0] for resource in gates.values() for job in _jobs(resource))
    assert names == _GATES[backend]
    for name, resource in gates.items():
        assert "PruneLabel" not in resource["Properties"], name
        labels = [key for o in manifest_of(resource) for key in o["metadata"].get("labels", {})]
        assert not [key for key in labels if key.startswith("aws.cdk.eks/prune-")], name


def test_the_crd_installer_still_prunes_the_job_it_replaces(synths: Any) -> None:
    """Its rollback should run the old Job again: that applies the CRD files the old stack had."""
    installers = [resource for resource in _manifests(synths["lattice"]).values() if any(not _is_gate(job) for job in _jobs(resource))]
    assert len(installers) == 1
    assert installers[0]["Properties"]["PruneLabel"].startswith("aws.cdk.eks/prune-")
