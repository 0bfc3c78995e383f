"""Layer 8 (README, Conformance): each backend's synthesized assembly on a real API server.

`make conformance` builds the programs and synthesizes each backend into cdk.out.conformance/<backend>
(or $CONFORMANCE_CDK_OUT/<backend>), then runs the tests marked `conformance`; plain `make test`
deselects them. Each backend gets its own fresh control plane, kept for the tests of that backend
(accepted objects, order, pods, proof that it bites) and destroyed by its last test.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conformance import binaries, cloudformation
from conformance.cloudformation import Step
from conformance.harness import Report
from conformance.session import Session, session

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ("appmesh", "istio", "lattice")


def assemblies() -> Path:
    return Path(os.environ.get("CONFORMANCE_CDK_OUT") or PROJECT_ROOT / "cdk.out.conformance")


@dataclass
class Deployed:
    backend: str
    running: Session
    steps: list[Step]
    report: Report
    workdir: Path
    seconds: float

    def step(self, predicate: str) -> Step:
        """The one step whose construct path contains `predicate`."""
        (found,) = [step for step in self.steps if predicate in step.path]
        return found


@pytest.fixture(scope="session")
def programs() -> dict[str, Path]:
    try:
        return binaries.built()
    except binaries.BuildError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="module", params=BACKENDS)
def deployed(request: pytest.FixtureRequest, programs: dict[str, Path]) -> Iterator[Deployed]:
    backend = request.param
    cdk_out = assemblies() / backend
    try:
        steps = cloudformation.read(cdk_out)
    except cloudformation.AssemblyError as error:
        pytest.fail(f"{error} (make conformance synthesizes each backend there)", pytrace=False)
    # Beside the checkout (ignored by git), so that logs outlive the run for whoever reads a failure.
    workdir = PROJECT_ROOT / ".cache" / "conformance" / backend
    shutil.rmtree(workdir, ignore_errors=True)
    started = time.monotonic()
    with session(workdir, programs) as running:
        report = running.harness.deploy(steps)
        yield Deployed(backend, running, steps, report, workdir, time.monotonic() - started)
