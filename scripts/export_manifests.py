"""Write the Kubernetes manifests a synthesized app hands to the kubectl provider as YAML files.

Reads each `Custom::AWSCDK-EKS-KubernetesResource` from the templates in a cdk.out folder; the
CloudFormation tokens inside (image URIs, role ARNs) become readable placeholders. Used by the
checkov test and handy for reviewing exactly what `cdk deploy` will apply.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml


def _text(value: Any) -> str:
    """A manifest property: a JSON string, or an Fn::Join of strings and tokens."""
    if isinstance(value, str):
        return value
    separator, parts = value["Fn::Join"]
    return str(separator).join(p if isinstance(p, str) else f"TOKEN-{_token_name(p)}" for p in parts)


def _token_name(token: dict[str, Any]) -> str:
    if "Fn::GetAtt" in token:
        return ".".join(token["Fn::GetAtt"])
    if "Ref" in token:
        return str(token["Ref"])
    return next(iter(token))


def export(outdir: Path, target: Path) -> list[Path]:
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for template_path in sorted(outdir.glob("*.template.json")):
        template = json.loads(template_path.read_text())
        for name, resource in template.get("Resources", {}).items():
            if resource["Type"] != "Custom::AWSCDK-EKS-KubernetesResource":
                continue
            objects = json.loads(_text(resource["Properties"]["Manifest"]))
            path = target / f"{template_path.name.removesuffix('.template.json')}.{name}.yaml"
            path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
            written.append(path)
    return written


if __name__ == "__main__":
    paths = export(Path(sys.argv[1] if len(sys.argv) > 1 else "cdk.out"), Path(sys.argv[2] if len(sys.argv) > 2 else "cdk.out/manifests"))
    print(f"{len(paths)} manifests written")
