"""The destroy check bites and passes once fixed: the Lattice assembly as synthesized today leaves
the Gateway waiting on its controller's finalizer (test_backends.py expects exactly that, issue 14
item 9); the same assembly with the GatewayClass in a manifest of its own, which the Gateway's
manifest depends on, is destroyed with nothing left waiting. The fix is made on the steps read
from the assembly, as the template of a fixed components/lattice.py would give them. When that fix
lands, this file goes with the expected-failure branch of test_backends.py: the real steps prove it."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from conformance import cloudformation
from conformance.cloudformation import Manifest, Step
from conformance.session import session
from tests.conformance.conftest import PROJECT_ROOT, assemblies

pytestmark = pytest.mark.conformance


def _gateway_class_first(steps: list[Step]) -> list[Step]:
    """The service-network manifest split in two: the GatewayClass first, in a step of its own that
    the rest (Gateway, AccessLogPolicy) waits for, so it is created first and deleted last."""
    (index,) = [i for i, step in enumerate(steps) if "/ServiceNetworkGateway/" in step.path]
    step = steps[index]
    assert isinstance(step.action, Manifest) and step.action.objects[0]["kind"] == "GatewayClass", "not the manifest this test expects"
    gateway_class = Step(
        step.stack,
        "ConformanceGatewayClass",
        f"{step.path} (GatewayClass)",
        replace(step.action, objects=step.action.objects[:1]),
        step.after,
    )
    rest = replace(step, action=replace(step.action, objects=step.action.objects[1:]), after=step.after | {gateway_class.key})
    return [*steps[:index], gateway_class, rest, *steps[index + 1 :]]


def test_the_lattice_destroy_leaves_nothing_waiting_once_the_gateway_class_outlives_the_gateway(
    programs: dict[str, Path],
) -> None:
    source = assemblies() / "lattice"
    if not (source / "manifest.json").is_file():
        pytest.fail(f"{source}: no manifest.json (make conformance synthesizes each backend there)", pytrace=False)
    steps = _gateway_class_first(cloudformation.read(source))
    workdir = PROJECT_ROOT / ".cache" / "conformance" / "lattice-gateway-class-first"
    shutil.rmtree(workdir, ignore_errors=True)
    with session(workdir, programs) as running:
        report = running.harness.deploy(steps)
        assert report.refusals == []
        running.harness.destroy()
    assert report.stuck == [], report.stuck
    assert "gateway.k8s.aws/resources from Gateway/lab-appmesh/app-mesh" in running.controllers.removed
