"""One run of the layer: a fresh control plane, the node and controller stand-ins, a harness.

    with session(workdir) as running:
        report = running.harness.deploy(cloudformation.read(cdk_out))
        ...
        running.harness.destroy()

Later layers add to a session rather than replace it (conformance/istio.py: istiod and Envoy against
this API server): `after_step` sees each step once it is applied and `after_delete` once it is
deleted again, and `webhooks` decides which webhook configurations reach the API server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import binaries as programs
from .cloudformation import Step
from .cluster import ControlPlane
from .controllers import Controllers
from .harness import Harness, WebhookPolicy, leave_out_webhooks
from .kubelet import Node


@dataclass
class Session:
    plane: ControlPlane
    node: Node
    controllers: Controllers
    harness: Harness

    def background_errors(self) -> list[str]:
        """What the stand-ins could not do (an API call that failed), which a test should see."""
        return [*self.node.errors, *self.controllers.errors]


@contextmanager
def session(
    workdir: Path,
    binaries: Mapping[str, Path] | None = None,
    *,
    webhooks: WebhookPolicy = leave_out_webhooks,
    after_step: Callable[[Step, Harness], None] | None = None,
    after_delete: Callable[[Step, Harness], None] | None = None,
) -> Iterator[Session]:
    plane = ControlPlane(workdir, binaries or programs.built())
    node: Node | None = None
    controllers: Controllers | None = None
    try:
        plane.start()
        node = Node(plane, workdir)
        node.register()
        node.start()
        controllers = Controllers(plane.api())
        controllers.start()
        harness = Harness(plane, node, controllers, workdir, webhooks=webhooks, after_step=after_step, after_delete=after_delete)
        yield Session(plane, node, controllers, harness)
    finally:
        # The control plane is stopped whatever the stand-ins do on their way out: its processes
        # must never outlive the run.
        try:
            if controllers is not None:
                controllers.stop()
            if node is not None:
                node.stop()
        finally:
            plane.stop()
