"""Run the layer on one synthesized assembly, outside pytest (to look at what it does).

    python -m conformance run CDK_OUT [--workdir DIR]   # deploy, report, destroy; exit 1 on a refusal

An assembly with Istio's istiod release runs with the real istiod and its webhooks, and an Envoy
per proxy of the application namespace (conformance/istio.py); the report says whether each took
its config. The tests (tests/conformance) run the same thing for each backend, with assertions.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from app import use_venv_node

# Before anything loads aws_cdk (charts reads the Istio values): jsii on the venv's Node, not the
# machine's Node 20, which makes it print an end-of-life banner.
use_venv_node()

from . import binaries, charts, cloudformation  # noqa: E402
from .cluster import ClusterError  # noqa: E402
from .harness import summary  # noqa: E402
from .istio import IstioError, IstioLayer, is_istiod  # noqa: E402
from .proxies import ProxyError  # noqa: E402
from .session import session  # noqa: E402


def _manifest_objects(step: cloudformation.Step) -> tuple[dict[str, Any], ...]:
    return step.action.objects if isinstance(step.action, cloudformation.Manifest) else ()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="deploy a cdk.out to a local API server, then destroy it")
    run.add_argument("cdk_out", type=Path)
    run.add_argument("--workdir", type=Path, help="keep logs and files here (default: a temporary folder)")
    arguments = parser.parse_args(argv)
    try:
        steps = cloudformation.read(arguments.cdk_out)
        workdir = arguments.workdir or Path(tempfile.mkdtemp(prefix="conformance-"))
        started = time.monotonic()
        programs = binaries.built()
        layer = IstioLayer(workdir, programs) if any(is_istiod(step) for step in steps) else None
        hooks: dict[str, Any] = (
            {"webhooks": layer.webhooks, "after_step": layer.after_step, "after_delete": layer.after_delete} if layer else {}
        )
        proxies: list[str] = []
        with ExitStack() as stack:
            running = stack.enter_context(session(workdir, programs, **hooks))
            if layer:
                stack.enter_context(layer.running(running))
                steps = layer.steps(steps)
            report = running.harness.deploy(steps)
            violations = running.harness.order_violations()
            pods = running.harness.pod_refusals() + running.harness.workloads_short()
            if layer and not report.refusals:
                namespaces = {
                    obj["metadata"]["namespace"] for step in steps for obj in _manifest_objects(step) if obj["kind"] == "Deployment"
                }
                for namespace in sorted(namespaces):
                    layer.start_proxies(running, namespace)
                proxies = layer.wait_proxies_synced() + layer.rejections()
            running.harness.destroy()
        print(summary(report))
        print(f"order: {violations or 'every namespace and CRD comes from a step waited for'}")
        print(f"pods: {pods or 'every pod admitted and ready'}")
        if layer:
            print(f"proxies: {proxies or 'every proxy took its config from istiod, nothing rejected'}")
        print(f"{len(steps)} steps in {time.monotonic() - started:.0f} s; files and logs in {workdir}")
        failed = report.refusals or violations or pods or proxies or report.stuck
        return 1 if failed else 0
    except (cloudformation.AssemblyError, binaries.BuildError, ClusterError, charts.ChartError, IstioError, ProxyError) as error:
        print(error, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("conformance: interrupted; the control plane was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
