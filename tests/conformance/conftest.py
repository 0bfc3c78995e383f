"""Layer 8 (README, Conformance): each backend's synthesized assembly on a real API server, and for
Istio the real istiod and Envoy on top of it.

`make conformance` builds the programs and synthesizes each backend into cdk.out.conformance/<backend>
(or $CONFORMANCE_CDK_OUT/<backend>), then runs the tests marked `conformance`; plain `make test`
deselects them. Each test module gets a fresh control plane per backend, kept for the tests of
that backend (accepted objects, order, pods, proof that it bites) and destroyed by its last test.
Istio's sessions run istiod for real, with its webhooks (conformance/istio.py); test_istio.py's
also runs an Envoy per proxy.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conformance import binaries, cloudformation
from conformance.cloudformation import Step
from conformance.harness import Report
from conformance.istio import IstioError, IstioLayer
from conformance.session import Session, session
from mesh.summary import SUMMARY_FILE, load_summary, summarize_config

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ("appmesh", "istio", "lattice")
# An image asset's URI once the deploy fills it in (conformance/cloudformation.py's stand-ins): the
# whole reference, its tag the asset hash and nothing after it.
ASSET_IMAGE = re.compile(
    r"^123456789012\.dkr\.ecr\.us-west-1\.amazonaws\.com/cdk-hnb659fds-container-assets-123456789012-us-west-1:[0-9a-f]{64}$"
)


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
    istio: IstioLayer | None = None

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


def synthesized_config(backend: str) -> Any:
    """The configuration the backend's assembly was synthesized with (the Makefile's `-c` settings
    are the tests' own, tests/conftest.py BACKEND_OVERRIDES), proven by the mesh summary the
    synth wrote beside it: the topology the tests expect is the one deployed."""
    from tests.unit.test_settings import backend_config

    config = backend_config(backend)
    written = load_summary(assemblies() / backend / SUMMARY_FILE)
    if written != summarize_config(config):
        pytest.fail(f"{assemblies() / backend} was synthesized with other settings than the tests' (make conformance)", pytrace=False)
    return config


@contextmanager
def deploy(backend: str, programs: dict[str, Path], *, folder: str | None = None) -> Iterator[Deployed]:
    """A fresh control plane with the backend's cdk.out deployed (Istio's with istiod running)."""
    cdk_out = assemblies() / backend
    try:
        steps = cloudformation.read(cdk_out)
    except cloudformation.AssemblyError as error:
        pytest.fail(f"{error} (make conformance synthesizes each backend there)", pytrace=False)
    # Beside the checkout (ignored by git), so that logs outlive the run for whoever reads a failure.
    workdir = PROJECT_ROOT / ".cache" / "conformance" / (folder or backend)
    shutil.rmtree(workdir, ignore_errors=True)
    started = time.monotonic()
    layer = IstioLayer(workdir, programs) if backend == "istio" else None
    hooks: dict[str, Any] = (
        {"webhooks": layer.webhooks, "after_step": layer.after_step, "after_delete": layer.after_delete} if layer else {}
    )
    with ExitStack() as stack:
        running = stack.enter_context(session(workdir, programs, **hooks))
        if layer:
            stack.enter_context(layer.running(running))
            steps = layer.steps(steps)
        try:
            report = running.harness.deploy(steps)
        except IstioError as error:
            pytest.fail(f"{error}\n(files and logs: {workdir})", pytrace=False)
        yield Deployed(backend, running, steps, report, workdir, time.monotonic() - started, layer)


@pytest.fixture(scope="module", params=BACKENDS)
def deployed(request: pytest.FixtureRequest, programs: dict[str, Path]) -> Iterator[Deployed]:
    with deploy(request.param, programs) as found:
        yield found
