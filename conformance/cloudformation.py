"""What a synthesized cdk.out asks the cluster to do, in the order CloudFormation would do it.

`cdk deploy --all` deploys the stacks in the order of their dependencies (cdk.out/manifest.json);
inside a stack, CloudFormation creates a resource only after every resource it names in DependsOn,
Ref, Fn::GetAtt or Fn::Sub. The Kubernetes side of the app is four kinds of custom resource of
aws-cdk-lib's aws_eks_v2, each handled by the CDK's kubectl handler (aws-cdk-lib's
custom-resource-handlers/dist/aws-eks-v2/kubectl-handler, read at 2.275.0):

- KubernetesResource: Create runs `kubectl create --save-config` unless `Overwrite` is "true",
  then `kubectl apply`; Delete runs `kubectl delete` and only logs a failure.
- HelmChart: Create runs `helm upgrade --install` (with --wait when `Wait`); Delete `helm uninstall`.
- KubernetesObjectValue: Create polls `kubectl get -o jsonpath` until the value is non-empty or
  `TimeoutSeconds` pass.
- KubernetesPatch: Create applies `ApplyPatchJson`, Delete applies `RestorePatchJson`.

Values CloudFormation only knows at deploy time (account, ARNs, imports) become fixed stand-ins:
they land in annotations and Helm values, where the API server judges their place, not their value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCOUNT = "123456789012"
PSEUDO = {"AWS::AccountId": ACCOUNT, "AWS::URLSuffix": "amazonaws.com", "AWS::Partition": "aws", "AWS::StackName": "stack"}
EKS = "Custom::AWSCDK-EKS-"


class AssemblyError(Exception):
    """The cloud assembly cannot be read as CloudFormation would: one line."""


@dataclass(frozen=True)
class Manifest:
    """A KubernetesResource: its objects, applied with the handler's verb."""

    overwrite: bool
    skip_validation: bool
    objects: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class HelmRelease:
    release: str
    chart: str
    repository: str | None
    version: str | None
    namespace: str
    values: dict[str, Any]
    wait: bool
    timeout_s: int
    create_namespace: bool
    skip_crds: bool


@dataclass(frozen=True)
class ObjectValue:
    """A KubernetesObjectValue: the deploy waits until `json_path` of the object is non-empty."""

    object_type: str
    name: str
    namespace: str
    json_path: str
    timeout_s: int


@dataclass(frozen=True)
class Patch:
    resource: str  # e.g. "deployment/coredns"
    namespace: str
    apply: dict[str, Any]
    restore: dict[str, Any]
    patch_type: str


Action = Manifest | HelmRelease | ObjectValue | Patch


@dataclass(frozen=True)
class Step:
    stack: str
    logical_id: str
    path: str  # aws:cdk:path, what a reader recognizes
    action: Action
    # Every step this one waits for, directly or not: CloudFormation's only ordering guarantee.
    after: frozenset[str] = field(default_factory=frozenset)

    @property
    def key(self) -> str:
        return f"{self.stack}/{self.logical_id}"


def _dependency_order(direct: dict[str, list[str]], what: str) -> dict[str, set[str]]:
    """Each node's transitive dependencies, keyed in an order that puts every node after what it
    depends on (the keys' own order breaks ties). A circle is one line naming a node on it."""
    closure: dict[str, set[str]] = {}
    visiting: set[str] = set()

    def visit(name: str) -> set[str]:
        if name in closure:
            return closure[name]
        if name in visiting:
            raise AssemblyError(f"cdk.out: {what} depend on each other in a circle through {name}")
        visiting.add(name)
        found: set[str] = set()
        for dependency in direct[name]:
            found |= {dependency, *visit(dependency)}
        visiting.discard(name)
        closure[name] = found
        return found

    for name in direct:
        visit(name)
    return closure


def _stack_order(manifest: dict[str, Any]) -> list[tuple[str, dict[str, Any], set[str]]]:
    """The stacks in deploy order, each with every stack it waits for (directly or not)."""
    stacks = {name: a for name, a in manifest["artifacts"].items() if a.get("type") == "aws:cloudformation:stack"}
    if not stacks:
        raise AssemblyError("cdk.out: manifest.json lists no CloudFormation stack (was the app synthesized?)")
    # Manifest order breaks ties, as the CLI's does.
    closure = _dependency_order({name: [d for d in a.get("dependencies", []) if d in stacks] for name, a in stacks.items()}, "stacks")
    return [(name, stacks[name], closure[name]) for name in closure]


def _references(value: Any) -> Iterator[str]:
    """Logical ids a property value names (Ref, Fn::GetAtt, ${X} in Fn::Sub)."""
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str):
            yield value["Ref"]
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            yield target[0] if isinstance(target, list) else str(target).split(".")[0]
        if "Fn::Sub" in value:
            template = value["Fn::Sub"][0] if isinstance(value["Fn::Sub"], list) else value["Fn::Sub"]
            yield from (name.split(".")[0] for name in re.findall(r"\$\{([^}!]+)\}", template))
        for inner in value.values():
            yield from _references(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _references(inner)


def _resource_order(template: dict[str, Any]) -> tuple[list[str], dict[str, set[str]]]:
    """Logical ids in an order CloudFormation may create them (template order breaks ties), and
    each one's transitive dependencies."""
    resources = template.get("Resources", {})
    direct: dict[str, set[str]] = {}
    for logical_id, resource in resources.items():
        depends = resource.get("DependsOn", [])
        named = set([depends] if isinstance(depends, str) else depends)
        named |= set(_references(resource.get("Properties", {})))
        direct[logical_id] = {name for name in named if name in resources and name != logical_id}
    order = list(resources)
    closure = _dependency_order({name: sorted(names, key=order.index) for name, names in direct.items()}, "resources")
    return list(closure), closure


class Resolver:
    """Turns CloudFormation's intrinsic functions into fixed stand-in strings."""

    def __init__(self, region: str) -> None:
        self.pseudo = {**PSEUDO, "AWS::Region": region}

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self(inner) for inner in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1 or not next(iter(value)).startswith(("Ref", "Fn::")):
            return {key: self(inner) for key, inner in value.items()}
        ((function, argument),) = value.items()
        if function == "Ref":
            return self.pseudo.get(argument, f"ref-{argument.lower()}")
        if function == "Fn::GetAtt":
            name, attribute = argument if isinstance(argument, list) else str(argument).split(".", 1)
            return f"arn:aws:iam::{ACCOUNT}:role/{name}" if attribute == "Arn" else f"{attribute.lower()}-{name.lower()}"
        if function == "Fn::ImportValue":
            return f"import-{re.sub(r'[^a-z0-9]+', '-', str(self(argument)).lower())[-40:]}"
        if function == "Fn::Join":
            separator, parts = argument
            return separator.join(str(self(part)) for part in parts)
        if function == "Fn::Sub":
            template, variables = (argument, {}) if isinstance(argument, str) else argument
            names = {key: str(self(inner)) for key, inner in variables.items()}

            def substitute(match: re.Match[str]) -> str:
                name = match.group(1)
                if name in names:
                    return names[name]
                if "." in name:
                    return str(self({"Fn::GetAtt": name.split(".", 1)}))
                return str(self({"Ref": name}))

            return re.sub(r"\$\{([^}!]+)\}", substitute, template)
        if function == "Fn::Select":
            index, items = argument
            return self(items)[int(self(index))]
        if function == "Fn::Split":
            separator, text = argument
            return str(self(text)).split(separator)
        if function == "Fn::GetAZs":
            return [f"{self.pseudo['AWS::Region']}{zone}" for zone in "abc"]
        raise AssemblyError(f"cdk.out: the intrinsic function {function} is not understood by the conformance reader")


def _timeout_seconds(text: str | None, default: int) -> int:
    if not text:
        return default
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", text)
    if not match or not text:
        raise AssemblyError(f"cdk.out: cannot read the Helm timeout {text!r}")
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)


def _action(kind: str, properties: dict[str, Any], where: str) -> Action:
    def flag(name: str) -> bool:
        return str(properties.get(name, "false")).lower() == "true"

    if kind == "KubernetesResource":
        objects = json.loads(properties["Manifest"])
        return Manifest(overwrite=flag("Overwrite"), skip_validation=flag("SkipValidation"), objects=tuple(objects))
    if kind == "HelmChart":
        if "ChartAssetURL" in properties:
            raise AssemblyError(f"{where}: a Helm chart from an S3 asset is not supported by the conformance reader")
        return HelmRelease(
            release=properties["Release"],
            chart=properties["Chart"],
            repository=properties.get("Repository"),
            version=properties.get("Version"),
            namespace=properties.get("Namespace", "default"),
            values=json.loads(properties.get("Values") or "{}"),
            wait=flag("Wait"),
            timeout_s=_timeout_seconds(properties.get("Timeout"), 300),
            create_namespace=flag("CreateNamespace"),
            skip_crds=flag("SkipCrds"),
        )
    if kind == "KubernetesObjectValue":
        return ObjectValue(
            object_type=properties["ObjectType"],
            name=properties["ObjectName"],
            namespace=properties.get("ObjectNamespace", "default"),
            json_path=properties["JsonPath"],
            timeout_s=int(properties.get("TimeoutSeconds", 300)),
        )
    if kind == "KubernetesPatch":
        return Patch(
            resource=properties["ResourceName"],
            namespace=properties.get("ResourceNamespace", "default"),
            apply=json.loads(properties["ApplyPatchJson"]),
            restore=json.loads(properties["RestorePatchJson"]),
            patch_type=properties.get("PatchType", "strategic"),
        )
    raise AssemblyError(f"{where}: {EKS}{kind} is a custom resource the conformance reader does not know")


def read(cdk_out: Path) -> list[Step]:
    """Every Kubernetes step of the assembly, in a deploy order CloudFormation could take."""
    manifest_file = cdk_out / "manifest.json"
    if not manifest_file.is_file():
        raise AssemblyError(f"{cdk_out}: no manifest.json; synthesize first (make synth, or cdk synth --output {cdk_out})")
    manifest = json.loads(manifest_file.read_text())
    steps: list[Step] = []
    for stack, artifact, earlier_stacks in _stack_order(manifest):
        earlier = {step.key for step in steps if step.stack in earlier_stacks}
        template_file = cdk_out / artifact["properties"]["templateFile"]
        template = json.loads(template_file.read_text())
        region = artifact.get("environment", "aws://unknown-account/us-west-1").rsplit("/", 1)[-1]
        resolve = Resolver("us-west-1" if region.startswith("unknown") else region)
        ordered, closure = _resource_order(template)
        for logical_id in ordered:
            resource = template["Resources"][logical_id]
            if not resource["Type"].startswith(EKS):
                continue
            path = resource.get("Metadata", {}).get("aws:cdk:path", logical_id)
            action = _action(resource["Type"][len(EKS) :], resolve(resource.get("Properties", {})), f"{stack}/{path}")
            same_stack = {f"{stack}/{name}" for name in closure[logical_id] if template["Resources"][name]["Type"].startswith(EKS)}
            after = frozenset(earlier | same_stack)
            steps.append(Step(stack, logical_id, path, action, after))
    return steps
