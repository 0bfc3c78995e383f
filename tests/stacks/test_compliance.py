"""cfn-lint and cdk-nag on every synthesized template; one snapshot per stack; determinism."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Synthesized, normalize_template, synthesize
from tests.stacks.support import nag_violations

BACKENDS = ["appmesh", "istio", "lattice"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_cfn_lint_reports_no_errors(synths: Any, backend: str) -> None:
    templates = sorted(str(p) for p in synths[backend].outdir.glob("*.template.json"))
    assert templates
    # Errors only: the W-level findings are CDK's own redundant DependsOn (W3005).
    result = subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), "--format", "parseable", "--ignore-checks", "W", "--", *templates],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_cdk_nag_aws_solutions_has_no_unacknowledged_findings(synths: Any, backend: str) -> None:
    assert nag_violations(synths[backend].outdir) == []
    assert synths[backend].error is None


def test_cdk_nag_catches_a_deliberately_bad_construct(tmp_path: Path) -> None:
    """Proves the nag wiring is live: an unrestricted SSH ingress and a wildcard policy must fail."""
    import aws_cdk as cdk
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_iam as iam
    from cdk_nag import AwsSolutionsChecks

    app = cdk.App(outdir=str(tmp_path))
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    stack = cdk.Stack(app, "Bad")
    vpc = ec2.Vpc(stack, "Vpc")
    group = ec2.SecurityGroup(stack, "Open", vpc=vpc)
    group.add_ingress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(22))
    role = iam.Role(stack, "Role", assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"))
    role.add_to_policy(iam.PolicyStatement(actions=["s3:*"], resources=["*"]))
    with pytest.raises(Exception, match="ValidationFailed"):
        app.synth()
    rules = {v.split(" at ")[0] for v in nag_violations(tmp_path)}
    assert "AwsSolutions-EC23" in rules
    assert "AwsSolutions-IAM5[Action::s3:*]" in rules


# The stacks each backend has (Istio needs no Route 53 zone or Cloud Map; only App Mesh a preflight).
_STACKS = {
    "appmesh": ["preflight", "network", "cluster", "discovery", "platform", "services", "routing"],
    "istio": ["network", "cluster", "platform", "services", "routing"],
    "lattice": ["network", "cluster", "discovery", "platform", "services", "routing"],
}


@pytest.mark.parametrize(("backend", "unit"), [(backend, unit) for backend, units in _STACKS.items() for unit in units])
def test_stack_snapshot(synths: Any, backend: str, unit: str, snapshot: Any) -> None:
    application = synths[backend].application
    stack = application.services[0] if unit == "services" else getattr(application, unit)
    assert normalize_template(synths[backend].template_json(stack)) == snapshot


def test_each_backend_has_exactly_its_stacks(synths: Any) -> None:
    names = {
        "preflight": "Preflight",
        "network": "Network",
        "cluster": "Cluster",
        "discovery": "Discovery",
        "platform": "MeshPlatform",
        "services": "MeshServices",
        "routing": "MeshRouting",
    }
    for backend, units in _STACKS.items():
        assert [s.stack_name for s in synths[backend].application.stacks] == [f"AppMesh-{names[unit]}" for unit in units], backend


def test_two_synths_of_the_same_config_are_byte_identical(default_synth: Synthesized, tmp_path: Path) -> None:
    again = synthesize(tmp_path / "again", nag=True)
    first = sorted(default_synth.outdir.glob("*.template.json"))
    second = sorted(again.outdir.glob("*.template.json"))
    assert [p.name for p in first] == [p.name for p in second]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
