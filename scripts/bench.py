"""`make bench`: figures, not pass/fail (speed targets live here, never in timed tests).

* synth time per backend as a user waits for it: `cdk synth` as a whole process, the app against
  a bare aws_eks_v2 cluster app, in alternating pairs; the median ratio and its range;
* per backend: what a canary weight step changes (stacks, resources, manifests), and the Helm
  releases and custom resources on the deploy's critical path;
* scale: synth time, largest template and manifest for 4, 50 and 200 services;
* the local mesh: the Envoy hop, the frontend under load (error rate and latency at 50, 100 and
  200 concurrent clients), bounded and on 127.0.0.1 only.

Every synth runs in its own process with its output captured: only figures are printed.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

CDK = PROJECT_ROOT / "node_modules" / ".bin" / "cdk"
PYTHON = PROJECT_ROOT / ".venv" / "bin" / "python"
# CloudFormation quotas: template body (uploaded via S3) and resources per stack.
TEMPLATE_LIMIT_BYTES = 1_000_000
RESOURCE_LIMIT = 500
PAIRS = 5
BACKENDS = {"appmesh": [], "istio": ["-c", "mesh_backend=istio"], "lattice": ["-c", "config=config/examples/lattice.yaml"]}
BARE_APP = """
import aws_cdk as cdk
from aws_cdk import aws_eks_v2 as eks
from aws_cdk.lambda_layer_kubectl_v35 import KubectlV35Layer

app = cdk.App()
stack = cdk.Stack(app, "Bare", env=cdk.Environment(region="us-west-1"))
eks.Cluster(stack, "Cluster", version=eks.KubernetesVersion.V1_35,
            kubectl_provider_options=eks.KubectlProviderOptions(kubectl_layer=KubectlV35Layer(stack, "Kubectl")))
app.synth()
"""


def _environment() -> dict[str, str]:
    from app import use_venv_node

    use_venv_node()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDK_")}
    env["PATH"] = f"{PROJECT_ROOT / '.venv' / 'bin'}:{env['PATH']}"
    return env


def cdk_synth(args: list[str], outdir: Path, app: str | None = None) -> float:
    """One `cdk synth` process, output captured; seconds it took."""
    command = [str(CDK), "synth", "--quiet", "--output", str(outdir), *(["--app", app] if app else []), *args]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=_environment(), capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return elapsed


def synth_ratio(args: list[str]) -> tuple[float, float, float, float, float]:
    """(median app s, median bare s, median ratio, min ratio, max ratio) over alternating pairs."""
    bare_app = Path(tempfile.mkdtemp(prefix="bench-bare-")) / "bare.py"
    bare_app.write_text(BARE_APP)
    apps, bares, ratios = [], [], []
    for _ in range(PAIRS):
        app_seconds = cdk_synth(args, Path(tempfile.mkdtemp(prefix="bench-app-")))
        bare_seconds = cdk_synth([], Path(tempfile.mkdtemp(prefix="bench-bare-out-")), app=f"{PYTHON} {bare_app}")
        apps.append(app_seconds)
        bares.append(bare_seconds)
        ratios.append(app_seconds / bare_seconds)
    return statistics.median(apps), statistics.median(bares), statistics.median(ratios), min(ratios), max(ratios)


def templates(outdir: Path) -> dict[str, dict[str, Any]]:
    return {path.name.removesuffix(".template.json"): json.loads(path.read_text()) for path in outdir.glob("*.template.json")}


def _manifest_bytes(resource: Mapping[str, Any]) -> int:
    return len(json.dumps(resource["Properties"]["Manifest"], separators=(",", ":")))


def canary_changes(before: Path, after: Path) -> tuple[list[str], int, int]:
    """(stacks changed, resources changed, Kubernetes manifests changed) between two synths."""
    old, new = templates(before), templates(after)
    stacks, resources, manifests = [], 0, 0
    for name in sorted(old):
        if old[name] == new[name]:
            continue
        stacks.append(name)
        for logical_id, resource in old[name]["Resources"].items():
            if new[name]["Resources"].get(logical_id) != resource:
                resources += 1
                manifests += resource["Type"] == "Custom::AWSCDK-EKS-KubernetesResource"
    return stacks, resources, manifests


def _references(value: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        if "Ref" in value:
            found.add(value["Ref"])
        if "Fn::GetAtt" in value:
            found.add(value["Fn::GetAtt"][0])
        for item in value.values():
            found |= _references(item)
    elif isinstance(value, list):
        for item in value:
            found |= _references(item)
    return found


def critical_path(outdir: Path) -> tuple[int, int]:
    """(Helm releases, custom resources) on the longest chain a deploy must walk: stacks in their
    dependency order, and within a stack the chain of DependsOn and references."""
    manifest = json.loads((outdir / "manifest.json").read_text())
    stacks = {name: a for name, a in manifest["artifacts"].items() if a["type"] == "aws:cloudformation:stack"}
    all_templates = templates(outdir)

    def longest_within(template: dict[str, Any]) -> tuple[int, int]:
        resources = template.get("Resources", {})
        memo: dict[str, tuple[int, int]] = {}

        def walk(logical_id: str) -> tuple[int, int]:
            if logical_id not in memo:
                resource = resources[logical_id]
                before = {*resource.get("DependsOn", []), *(_references(resource.get("Properties", {})) & set(resources))}
                best = max((walk(dep) for dep in before), default=(0, 0), key=lambda pair: (pair[1], pair[0]))
                kind = resource["Type"]
                memo[logical_id] = (best[0] + (kind == "Custom::AWSCDK-EKS-HelmChart"), best[1] + kind.startswith("Custom::"))
            return memo[logical_id]

        return max((walk(r) for r in resources), default=(0, 0), key=lambda pair: (pair[1], pair[0]))

    memo: dict[str, tuple[int, int]] = {}

    def chain(stack: str) -> tuple[int, int]:
        if stack not in memo:
            before = [d for d in stacks[stack].get("dependencies", []) if d in stacks]
            best = max((chain(d) for d in before), default=(0, 0), key=lambda pair: (pair[1], pair[0]))
            own = longest_within(all_templates[stack])
            memo[stack] = (best[0] + own[0], best[1] + own[1])
        return memo[stack]

    return max((chain(s) for s in stacks), key=lambda pair: (pair[1], pair[0]))


def largest(outdir: Path) -> tuple[int, int, int]:
    sizes, counts, manifests = [], [], [0]
    for path in outdir.glob("*.template.json"):
        template = json.loads(path.read_text())
        sizes.append(path.stat().st_size)
        counts.append(len(template.get("Resources", {})))
        kubernetes = [r for r in template.get("Resources", {}).values() if r["Type"] == "Custom::AWSCDK-EKS-KubernetesResource"]
        manifests += [_manifest_bytes(r) for r in kubernetes]
    return max(sizes), max(counts), max(manifests)


def main() -> int:
    from app import use_venv_node

    use_venv_node()  # before anything imports aws-cdk-lib: jsii then runs on the venv's Node
    from components.mesh_workload import MAX_MANIFEST_BYTES
    from scripts.scale import scale_context

    print(f"== synth time: `cdk synth` processes, the app vs a bare aws_eks_v2 cluster app, {PAIRS} alternating pairs ==")
    print(f"{'backend':<9} {'app (median)':>13} {'bare (median)':>14} {'ratio median':>13} {'ratio range':>14}")
    outdirs = {}
    for backend, args in BACKENDS.items():
        app, bare, ratio, low, high = synth_ratio(args)
        print(f"{backend:<9} {app:>12.2f}s {bare:>13.2f}s {ratio:>12.2f}x {low:>6.2f}-{high:.2f}x")
        outdirs[backend] = Path(tempfile.mkdtemp(prefix=f"bench-{backend}-"))
        cdk_synth(args, outdirs[backend])

    print("\n== a canary step (weights.nodejs 2:1 -> 1:1), and the deploy's critical path ==")
    print(f"{'backend':<9} {'stacks changed':<22} {'resources':>9} {'manifests':>9}   {'Helm releases':>13} {'custom resources':>16}")
    for backend, args in BACKENDS.items():
        shifted = Path(tempfile.mkdtemp(prefix=f"bench-{backend}-shift-"))
        cdk_synth([*args, "-c", "weights.nodejs=nodejs:1,nodejsv2:1"], shifted)
        stacks, resources, manifests = canary_changes(outdirs[backend], shifted)
        releases, customs = critical_path(outdirs[backend])
        print(f"{backend:<9} {', '.join(stacks):<22} {resources:>9} {manifests:>9}   {releases:>13} {customs:>16}")

    print("\n== scale: generated topologies (App Mesh) ==")
    print(f"{'N':>4}  {'synth':>7}  {'largest template':>22}  {'most resources':>16}  {'largest manifest':>22}")
    for services in (4, 50, 200):
        context = {} if services == 4 else scale_context(services)
        args = [arg for key, value in context.items() for arg in ("-c", f"{key}={json.dumps(value) if isinstance(value, dict) else value}")]
        outdir = Path(tempfile.mkdtemp(prefix=f"bench-scale-{services}-"))
        elapsed = cdk_synth(args, outdir)
        size, count, manifest = largest(outdir)
        print(
            f"{services:>4}  {elapsed:6.2f}s  {size / 1024:7.1f} KiB / {TEMPLATE_LIMIT_BYTES / 1024:.0f} KiB  "
            f"{count:>5} / {RESOURCE_LIMIT}  {manifest / 1024:7.1f} KiB / {MAX_MANIFEST_BYTES / 1024:.0f} KiB"
        )

    from localmesh.bench import run_benchmarks

    print("\n== local mesh (real services behind real Envoy, 127.0.0.1) ==")
    for label, figure in run_benchmarks():
        print(f"{label:<60} {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
