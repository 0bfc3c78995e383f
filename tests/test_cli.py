"""The app as `cdk synth` runs it: bad config is one line, exit 2, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT


def run_app(tmp_path: Path, *context: str) -> subprocess.CompletedProcess[str]:
    """Run app.py the way the CDK CLI does: context in CDK_CONTEXT_JSON, output in CDK_OUTDIR."""
    import json

    defaults = json.loads((PROJECT_ROOT / "cdk.json").read_text())["context"]
    for pair in context:
        key, _, value = pair.partition("=")
        defaults[key] = value
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDK_")}
    env.update({"CDK_CONTEXT_JSON": json.dumps(defaults), "CDK_OUTDIR": str(tmp_path)})
    return subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "app.py")], capture_output=True, text=True, env=env, cwd=tmp_path, check=False
    )


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("kubernetes_version=1.25", "config error: kubernetes_version='1.25': Kubernetes 1.25 is past the end of EKS support"),
        ("node_instance_type=t2.micro", "config error: node_instance_type='t2.micro': holds 4 pods per node"),
        ("clustr_name=x", "config error: clustr_name='x': unknown setting (did you mean cluster_name?)"),
        ("mesh_backend=linkerd", "config error: mesh_backend='linkerd': must be one of appmesh, istio, lattice"),
        (
            "mesh_backend=lattice",
            "config error: mesh_backend='lattice': cannot express 19 setting(s) of this topology: per-route request timeout at ",
        ),
        (
            'topology={"services": {"crystal": {"source": "services/crystall"}}}',
            "config error: topology.services.crystal.source='services/crystall': has no Dockerfile",
        ),
    ],
)
def test_invalid_config_prints_one_line_and_writes_nothing(tmp_path: Path, setting: str, message: str) -> None:
    result = run_app(tmp_path, setting)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_valid_config_writes_templates_and_the_mesh_summary(tmp_path: Path) -> None:
    import json

    result = run_app(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Node 20 is end-of-life" not in result.stderr  # jsii runs on the venv's Node
    assert sorted(p.name for p in tmp_path.glob("*.template.json")) == [
        "AppMesh-Cluster.template.json",
        "AppMesh-Discovery.template.json",
        "AppMesh-MeshPlatform.template.json",
        "AppMesh-MeshRouting.template.json",
        "AppMesh-MeshServices.template.json",
        "AppMesh-Network.template.json",
        "AppMesh-Preflight.template.json",
    ]
    summary = json.loads((tmp_path / "mesh-topology.json").read_text())
    assert summary["mesh"] == "app-mesh"


def test_a_synth_warning_is_acknowledged_by_its_id(tmp_path: Path) -> None:
    """`-c acknowledge_warnings=<id>` silences exactly that warning."""
    for name in ("shown", "quiet"):
        (tmp_path / name).mkdir()
    shown = run_app(tmp_path / "shown")
    assert "frontend is exposed to 0.0.0.0/0" in shown.stdout + shown.stderr
    quiet = run_app(tmp_path / "quiet", "acknowledge_warnings=appmesh-eks:open-to-internet-frontend")
    assert quiet.returncode == 0, quiet.stderr
    assert "frontend is exposed to 0.0.0.0/0" not in quiet.stdout + quiet.stderr
    assert "AWS shut App Mesh down" in quiet.stdout + quiet.stderr


def test_synth_prints_no_deprecation_warning_even_without_cdk_json_feature_flags(tmp_path: Path) -> None:
    """IRSA reads the cluster's OIDC provider; without the `useNativeOidcProvider` flag aws-cdk-lib
    creates the deprecated OpenIdConnectProvider (a custom resource) and warns. The cluster sets
    the flag for itself, so the native AWS::IAM::OIDCProvider is what any synth gets."""
    import json

    settings = {k: v for k, v in json.loads((PROJECT_ROOT / "cdk.json").read_text())["context"].items() if not k.startswith("@")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDK_")}
    env.update({"CDK_CONTEXT_JSON": json.dumps(settings), "CDK_OUTDIR": str(tmp_path)})
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "app.py")], capture_output=True, text=True, env=env, cwd=tmp_path, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "deprecated" not in (result.stdout + result.stderr).lower(), result.stderr
    cluster = json.loads((tmp_path / "AppMesh-Cluster.template.json").read_text())["Resources"]
    types = sorted({r["Type"] for r in cluster.values() if "OIDC" in r["Type"].upper() or "OpenIdConnect" in r["Type"]})
    assert types == ["AWS::IAM::OIDCProvider"]


def test_synth_with_cdk_json_prints_no_deprecation_warning(tmp_path: Path) -> None:
    result = run_app(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "deprecated" not in (result.stdout + result.stderr).lower(), result.stderr


def test_two_synths_are_byte_identical_in_every_file(tmp_path: Path) -> None:
    """Two processes, as two `cdk synth` runs are: each jsii kernel runs from its own temporary
    folder, which stack traces in the metadata would carry (cdk.json turns them off)."""
    first, second = tmp_path / "first", tmp_path / "second"
    for outdir in (first, second):
        outdir.mkdir()
        result = run_app(outdir)
        assert result.returncode == 0, result.stderr
    files = sorted(str(p.relative_to(first)) for p in first.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(second)) for p in second.rglob("*") if p.is_file())
    assert any(name.endswith(".metadata.json") for name in files)
    assert [name for name in files if (first / name).read_bytes() != (second / name).read_bytes()] == []
