"""`make bench`: synth time against a bare aws_eks_v2 app, scale figures, local mesh figures.

Figures, not pass/fail: speed targets live here, never in timed tests.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

# CloudFormation quotas: template body (uploaded via S3) and resources per stack.
TEMPLATE_LIMIT_BYTES = 1_000_000
RESOURCE_LIMIT = 500


def _timed_synth(build: Any, runs: int = 7) -> float:
    """Median of `runs` warm synths (the first, which starts the jsii runtime, is discarded)."""
    durations = []
    for _ in range(runs + 1):
        start = time.perf_counter()
        build()
        durations.append(time.perf_counter() - start)
    return statistics.median(durations[1:])


def _synth_app(overrides: dict[str, Any] | None = None) -> Path:
    from tests.conftest import synthesize

    outdir = Path(tempfile.mkdtemp(prefix="bench-"))
    result = synthesize(outdir, overrides)
    if result.error:
        raise result.error
    return outdir


def _bare_cluster() -> None:
    import aws_cdk as cdk
    from aws_cdk import aws_eks_v2 as eks
    from aws_cdk.lambda_layer_kubectl_v35 import KubectlV35Layer

    app = cdk.App(outdir=tempfile.mkdtemp(prefix="bench-bare-"))
    stack = cdk.Stack(app, "Bare", env=cdk.Environment(region="us-west-1"))
    eks.Cluster(
        stack,
        "Cluster",
        version=eks.KubernetesVersion.V1_35,
        kubectl_provider_options=eks.KubectlProviderOptions(kubectl_layer=KubectlV35Layer(stack, "Kubectl")),
    )
    app.synth()


def _largest(outdir: Path) -> tuple[tuple[int, str], tuple[int, str], tuple[int, str]]:
    sizes, counts, manifests = [], [], []
    for path in outdir.glob("*.template.json"):
        template = json.loads(path.read_text())
        sizes.append((path.stat().st_size, path.name))
        counts.append((len(template.get("Resources", {})), path.name))
        for name, resource in template.get("Resources", {}).items():
            if resource["Type"] == "Custom::AWSCDK-EKS-KubernetesResource":
                manifests.append((len(json.dumps(resource["Properties"]["Manifest"], separators=(",", ":"))), f"{path.name}:{name}"))
    return max(sizes), max(counts), max(manifests)


def main() -> int:
    from app import use_venv_node

    use_venv_node()
    from components.mesh_workload import MAX_MANIFEST_BYTES
    from scripts.scale import scale_context

    print("== synth time (warm, median of 7) ==")
    whole = _timed_synth(lambda: _synth_app())
    bare = _timed_synth(_bare_cluster)
    print(f"whole app (default config)       {whole:6.2f} s")
    print(f"bare aws_eks_v2 cluster app      {bare:6.2f} s")
    print(f"ratio                            {whole / bare:6.2f} x")

    print("\n== scale: generated topologies ==")
    print(f"{'N':>4}  {'synth':>7}  {'largest template':>22}  {'most resources':>16}  {'largest manifest':>22}")
    for services in (4, 50, 200):
        overrides = None if services == 4 else scale_context(services)
        start = time.perf_counter()
        outdir = _synth_app(overrides)
        elapsed = time.perf_counter() - start
        (size, _), (count, _), (manifest, _) = _largest(outdir)
        print(
            f"{services:>4}  {elapsed:6.2f}s  {size / 1024:7.1f} KiB / {TEMPLATE_LIMIT_BYTES / 1024:.0f} KiB  "
            f"{count:>5} / {RESOURCE_LIMIT}  {manifest / 1024:7.1f} KiB / {MAX_MANIFEST_BYTES / 1024:.0f} KiB"
        )

    try:
        from localmesh.bench import run_benchmarks
    except ImportError:
        return 0
    print("\n== local mesh (real services behind real Envoy) ==")
    for label, figure in run_benchmarks():
        print(f"{label:<55} {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
