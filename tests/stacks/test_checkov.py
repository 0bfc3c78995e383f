"""checkov on the synthesized templates and the Kubernetes manifests they carry: 0 failed checks,
and every skipped check carries its reason next to the resource it excuses."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from scripts.export_manifests import export
from tests.conftest import PROJECT_ROOT

CHECKOV = Path(os.environ.get("CHECKOV", PROJECT_ROOT / ".venv-checkov" / "bin" / "checkov"))


def _checkov(*args: str) -> dict[str, Any]:
    assert CHECKOV.exists(), f"{CHECKOV} is missing: `make test` installs checkov into .venv-checkov"
    result = subprocess.run([str(CHECKOV), "--quiet", "--compact", "-o", "json", *args], capture_output=True, text=True, check=False)
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    assert len(reports) == 1, [r.get("check_type") for r in reports]
    return reports[0]  # type: ignore[no-any-return]


def _failures(report: dict[str, Any]) -> list[str]:
    return [f"{f['check_id']} {f['resource']} ({f['file_path']})" for f in report["results"]["failed_checks"]]


def _skips_without_reason(report: dict[str, Any]) -> list[str]:
    return [
        f"{s['check_id']} {s['resource']}" for s in report["results"].get("skipped_checks", []) if not s.get("suppress_comment", "").strip()
    ]


BACKENDS = ["appmesh", "istio", "lattice"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_kubernetes_manifests_pass_checkov(synths: Any, backend: str, tmp_path: Path) -> None:
    assert len(export(synths[backend].outdir, tmp_path)) >= 8
    report = _checkov("-d", str(tmp_path), "--framework", "kubernetes")
    assert report["summary"]["resource_count"] > 20
    assert _failures(report) == []
    assert _skips_without_reason(report) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_cloudformation_templates_pass_checkov(synths: Any, backend: str) -> None:
    templates = sorted(str(p) for p in synths[backend].outdir.glob("*.template.json"))
    report = _checkov("--framework", "cloudformation", *(arg for path in templates for arg in ("-f", path)))
    assert report["summary"]["resource_count"] > 60
    assert _failures(report) == []
    assert _skips_without_reason(report) == []


def test_checkov_catches_an_unhardened_deployment(tmp_path: Path) -> None:
    """The check is live: a privileged, root, unlimited pod fails."""
    (tmp_path / "bad.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: bad, namespace: x}\n"
        "spec:\n  selector: {matchLabels: {app: bad}}\n  template:\n    metadata: {labels: {app: bad}}\n"
        "    spec:\n      containers:\n      - name: c\n        image: nginx\n        securityContext: {privileged: true}\n"
    )
    failed = {f.split(" ")[0] for f in _failures(_checkov("-d", str(tmp_path), "--framework", "kubernetes"))}
    assert {"CKV_K8S_16", "CKV_K8S_11", "CKV_K8S_13"} <= failed  # privileged, no CPU limit, no memory limit
