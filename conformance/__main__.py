"""Run the layer on one synthesized assembly, outside pytest (to look at what it does).

    python -m conformance run CDK_OUT [--workdir DIR]   # deploy, report, destroy; exit 1 on a refusal

The tests (tests/conformance) run the same thing for each backend, with assertions.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from . import binaries, charts, cloudformation
from .cluster import ClusterError
from .harness import summary
from .session import session


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
        with session(workdir) as running:
            report = running.harness.deploy(steps)
            violations = running.harness.order_violations()
            pods = running.harness.pod_refusals() + running.harness.workloads_short()
            running.harness.destroy()
        print(summary(report))
        print(f"order: {violations or 'every namespace and CRD comes from a step waited for'}")
        print(f"pods: {pods or 'every pod admitted and ready'}")
        print(f"{len(steps)} steps in {time.monotonic() - started:.0f} s; files and logs in {workdir}")
        failed = report.refusals or violations or pods or report.stuck
        return 1 if failed else 0
    except (cloudformation.AssemblyError, binaries.BuildError, ClusterError, charts.ChartError) as error:
        print(error, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("conformance: interrupted; the control plane was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
