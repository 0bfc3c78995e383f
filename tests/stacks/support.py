"""Reading synthesized templates: manifests, Helm values, IAM statements."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DOCKER_HUB = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


def registry(reference: str) -> str:
    """The registry a container runtime pulls `reference` from. As containerd and Docker normalize
    a name (distribution/reference, ParseNormalizedNamed): the first path component is a registry
    only when it has a dot or a port or is `localhost`; otherwise, and for a name with no path at
    all, the registry is Docker Hub."""
    first, slash, _ = reference.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def statement(template: Any, sid: str) -> dict[str, Any]:
    found = [
        s
        for p in template.find_resources("AWS::IAM::Policy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if s.get("Sid") == sid
    ]
    assert len(found) == 1, f"{len(found)} statements {sid}"
    return found[0]  # type: ignore[no-any-return]


def _text(value: Any) -> str:
    """A property that is a string, or an Fn::Join of strings and tokens (tokens become TOKEN)."""
    if isinstance(value, str):
        return value
    return "".join(part if isinstance(part, str) else "TOKEN" for part in value["Fn::Join"][1])


def manifest_of(resource: dict[str, Any]) -> list[dict[str, Any]]:
    return json.loads(_text(resource["Properties"]["Manifest"]))  # type: ignore[no-any-return]


def manifests(template: Any) -> dict[str, tuple[list[dict[str, Any]], list[str]]]:
    """logical id -> (objects, DependsOn) of every Kubernetes manifest in the template."""
    return {
        name: (manifest_of(resource), resource.get("DependsOn", []))
        for name, resource in template.find_resources("Custom::AWSCDK-EKS-KubernetesResource").items()
    }


def manifest_with(template: Any, kind: str, name: str) -> tuple[str, list[dict[str, Any]], list[str]]:
    """The one manifest holding <kind>/<name>: (logical id, objects, DependsOn)."""
    found = [
        (lid, objects, deps)
        for lid, (objects, deps) in manifests(template).items()
        if any(o["kind"] == kind and o["metadata"]["name"] == name for o in objects)
    ]
    assert len(found) == 1, f"{kind}/{name} is in {len(found)} manifests"
    return found[0]


def releases(template: Any) -> dict[str, tuple[str, dict[str, Any]]]:
    """chart -> (logical id, resource) of every Helm release."""
    return {r["Properties"]["Chart"]: (lid, r) for lid, r in template.find_resources("Custom::AWSCDK-EKS-HelmChart").items()}


def helm_values(resource: dict[str, Any]) -> dict[str, Any]:
    values = resource["Properties"].get("Values")
    return {} if values is None else json.loads(_text(values))  # type: ignore[no-any-return]


def object_value(template: Any, depends_on: str) -> str:
    """The KubernetesObjectValue (a wait) that depends on `depends_on`."""
    (found,) = [
        lid
        for lid, r in template.find_resources("Custom::AWSCDK-EKS-KubernetesObjectValue").items()
        if depends_on in r.get("DependsOn", [])
    ]
    return found


def nag_violations(outdir: Path) -> list[str]:
    """cdk-nag's AwsSolutions findings nobody acknowledged, as `<rule> at <construct path>`."""
    report = json.loads((outdir / "validation-report.json").read_text())
    return [
        f"{violation['ruleName']} at {construct['constructPath']}"
        for plugin in report["pluginReports"]
        if plugin["pluginName"] == "AwsSolutions"
        for violation in plugin.get("violations", [])
        for construct in violation["violatingConstructs"]
    ]


def changes(old: Any, new: Any) -> dict[str, list[str]]:
    """Between two synths of the same stacks: stack name -> the logical ids of the resources that
    differ, for each stack whose template differs (a stack changed outside Resources maps to [])."""
    found = {}
    for stack, again in zip(old.application.stacks, new.application.stacks, strict=True):
        before, after = old.template_json(stack), new.template_json(again)
        if before != after:
            resources = before["Resources"]
            found[stack.stack_name] = [name for name in resources if resources[name] != after["Resources"].get(name)]
    return found
