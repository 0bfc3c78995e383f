"""The real charts behind the app's Helm releases, and `helm template` of each.

The CDK's kubectl handler pulls each chart from its repository (a Helm repository or an OCI
registry); neither is reachable here. The charts' source folders are, inside Go modules the module
proxy serves, and a module's content is fixed by its `h1:` hash (checked below, and by Go against
the checksum database). Each source is checked against the project's own pins: the files
the `upstream` pins (CRDs, values.yaml) must be byte-identical in the module, so the chart
rendered here is the chart the other layers judge against.

A chart's source folder carries a placeholder version (`1.0.0`, `v0.0.0`) that the projects'
release tools replace when they package it; the copy rendered here gets the pinned release's
version the same way, so `.Chart.Version` and `.Chart.AppVersion` (image tags, labels) are what the
published chart would give.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.istio import VERSION as ISTIO_VERSION

from . import pins

DOWNLOAD_TIMEOUT_S = 600
HELM_TIMEOUT_S = 120
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ChartError(Exception):
    """A chart cannot be had or rendered: one line."""


@dataclass(frozen=True)
class Module:
    path: str
    version: str
    h1: str  # the module's hash as go.sum would record it


@dataclass(frozen=True)
class ChartSource:
    module: Module
    folder: str  # the chart inside the module
    pinned: tuple[str, ...]  # upstream artifacts (the upstream package) that must match files in the module
    note: str  # what differs from the published chart, for the README


@dataclass(frozen=True)
class NoSource:
    """A chart whose source could not be had: what stands in for it, and why."""

    reason: str
    crds: str | None  # the upstream artifact with the CRDs the chart would install, applied instead


_ISTIO = Module("istio.io/istio", "v0.0.0-20260827124520-eed52ebb66ad", "h1:ui9TJjRMAV/hb5ehQaZDq7IUGxuQP6dra9lapT/VjHI=")
_EKS_CHARTS = Module(
    "github.com/aws/eks-charts", "v0.0.243-0.20260821194545-743f98a89b5b", "h1:ZgB85AeVHImIIK40RM7Hf2CGQzNeDkfAWAdpB61wL98="
)
_CERT_MANAGER = Module("github.com/cert-manager/cert-manager", "v1.21.2", "h1:UWgoYM+KLNtRlqmoWOKjKBOBUPVHeepQ6/ac3ERJW68=")
# The app deploys ISTIO_VERSION (the newest 1.31 patch); the module proxy serves Istio only as
# pseudo-versions, the newest being the release-1.31 branch three days after 1.31.0: its charts stand
# in for the deployed patch's (README, Conformance: what 1.31.1 to 1.31.4 changed is not judged).
_ISTIO_NOTE = (
    f"istio/istio's release-1.31 branch of 2026-08-27 (VERSION 1.31, requiring istio.io/api v1.31.0), the newest the "
    f"module proxy serves, standing in for {ISTIO_VERSION}"
)
_ISTIO_REPOSITORY = "https://blob.istio.io/istio-release/charts"

# (repository, chart, version) as the synthesized HelmChart resources name them.
SOURCES: dict[tuple[str, str, str], ChartSource | NoSource] = {
    (_ISTIO_REPOSITORY, "base", ISTIO_VERSION): ChartSource(
        _ISTIO, "manifests/charts/base", ("istio-crds.yaml", "istio-1.31-base-values.yaml"), _ISTIO_NOTE
    ),
    (_ISTIO_REPOSITORY, "istiod", ISTIO_VERSION): ChartSource(
        _ISTIO,
        "manifests/charts/istio-control/istio-discovery",
        ("istio-1.31-istio-discovery-values.yaml", "istio-1.31-injection-template.yaml"),
        _ISTIO_NOTE,
    ),
    (_ISTIO_REPOSITORY, "cni", ISTIO_VERSION): ChartSource(
        _ISTIO, "manifests/charts/istio-cni", ("istio-1.31-istio-cni-values.yaml",), _ISTIO_NOTE
    ),
    (_ISTIO_REPOSITORY, "gateway", ISTIO_VERSION): ChartSource(
        _ISTIO, "manifests/charts/gateway", ("istio-1.31-gateway-values.yaml",), _ISTIO_NOTE
    ),
    ("https://aws.github.io/eks-charts", "appmesh-controller", "1.13.3"): ChartSource(
        _EKS_CHARTS,
        "stable/appmesh-controller",
        ("appmesh-controller-crds.yaml", "appmesh-controller-1.13.3-values.yaml"),
        "aws/eks-charts of 2026-08-21, whose stable/appmesh-controller is 1.13.3 (the last release)",
    ),
    ("https://charts.jetstack.io", "cert-manager", "v1.21.2"): ChartSource(
        _CERT_MANAGER, "deploy/charts/cert-manager", ("cert-manager-crds.yaml",), "cert-manager v1.21.2's own source of the chart"
    ),
    (
        "oci://public.ecr.aws/aws-application-networking-k8s/aws-gateway-controller-chart",
        "aws-gateway-controller-chart",
        "v2.1.3",
    ): NoSource(
        "its source, github.com/aws/aws-application-networking-k8s (helm/), is refused by the Go module proxy "
        "(403 'This module version is not available' for the module, its version list and v2.1.3) and its OCI registry "
        "is not reachable; the controller's CRDs are applied from the pinned upstream files instead, and its "
        "Deployment, RBAC and webhook are not rendered",
        "lattice-controller-crds.yaml",
    ),
}


def source_for(repository: str | None, chart: str, version: str | None) -> ChartSource | NoSource:
    key = (repository or "", chart, version or "")
    if key not in SOURCES:
        raise ChartError(f"conformance: no source is known for chart {chart} {version} from {repository}; add it to conformance/charts.py")
    return SOURCES[key]


def module_folder(module: Module) -> Path:
    """The module's files, downloaded through the module proxy (Go's module cache)."""
    try:
        result = subprocess.run(
            ["go", "mod", "download", "-json", f"{module.path}@{module.version}"],
            capture_output=True,
            text=True,
            timeout=DOWNLOAD_TIMEOUT_S,
            check=False,
            env={**os.environ, "GOFLAGS": "-mod=mod", "GOWORK": "off"},
            cwd=Path(__file__).resolve().parent,
        )
    except FileNotFoundError:
        raise ChartError("conformance: `go` is not on PATH; the charts come from Go modules (README, Conformance)") from None
    except subprocess.TimeoutExpired:
        raise ChartError(f"conformance: downloading {module.path}@{module.version} took over {DOWNLOAD_TIMEOUT_S} s") from None
    try:
        info = json.loads(result.stdout)
    except json.JSONDecodeError:
        info = {"Error": (result.stderr.strip().splitlines() or ["no output"])[-1]}
    if info.get("Error") or result.returncode != 0:
        raise ChartError(f"conformance: the module proxy refused {module.path}@{module.version}: {info.get('Error')}")
    if info.get("Sum") != module.h1:
        raise ChartError(f"conformance: {module.path}@{module.version} has hash {info.get('Sum')}, pinned {module.h1}")
    return Path(info["Dir"])


def check_pins(source: ChartSource, root: Path) -> list[str]:
    """Each pinned upstream file that the module does not carry byte for byte (empty: all match)."""
    differences = []
    for artifact in source.pinned:
        for path, blob in pins.pinned_paths(artifact):
            local = root / path
            found = pins.git_blob_id(local.read_bytes()) if local.is_file() else "missing"
            if found != blob:
                differences.append(f"{source.module.path}@{source.module.version}: {path} is {found}, the pin is {blob}")
    return differences


def stamped_copy(source: ChartSource, version: str, workdir: Path) -> Path:
    """The chart folder, copied, with `version` and `appVersion` set as a release would set them."""
    root = module_folder(source.module)
    differences = check_pins(source, root)
    if differences:
        raise ChartError(f"conformance: the chart source is not the pinned chart: {differences[0]}")
    target = workdir / "charts" / f"{Path(source.folder).name}-{version}"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(root / source.folder, target)
    target.chmod(0o755)
    for path in target.rglob("*"):  # the module cache is read-only; the copy need not be
        path.chmod(0o755 if path.is_dir() else 0o644)
    chart_yaml = target / "Chart.yaml"
    text = chart_yaml.read_text()
    text = re.sub(r"(?m)^version:.*$", f"version: {version}", text)
    text = re.sub(r"(?m)^appVersion:.*$", f"appVersion: {version}", text)
    chart_yaml.write_text(text)
    return target


@dataclass(frozen=True)
class Rendered:
    """One document of `helm template` output."""

    source: str  # the template it came from (`# Source:` line)
    obj: dict[str, Any]

    @property
    def from_crds_folder(self) -> bool:
        return "/crds/" in self.source

    @property
    def hook(self) -> str | None:
        return (self.obj.get("metadata", {}).get("annotations") or {}).get("helm.sh/hook")


def _documents(text: str) -> Iterator[Rendered]:
    for chunk in re.split(r"(?m)^---\s*$", text):
        source = re.search(r"(?m)^# Source: (.+)$", chunk)
        obj = yaml.load(chunk, Loader=_LOADER)
        if isinstance(obj, dict) and obj.get("kind"):
            if obj["kind"].endswith("List") and "items" in obj:
                yield from (Rendered(source.group(1) if source else "", item) for item in obj["items"])
            else:
                yield Rendered(source.group(1) if source else "", obj)


def template(
    helm: Path,
    chart_folder: Path,
    *,
    release: str,
    namespace: str,
    values: dict[str, Any],
    kube_version: str,
    api_versions: list[str],
    include_crds: bool,
    workdir: Path,
) -> list[Rendered]:
    """`helm template` of a chart with the values CloudFormation would hand helm, for a cluster
    that serves exactly `api_versions` (the chart's `.Capabilities` checks see what is installed)."""
    values_file = workdir / f"values-{release}.json"
    values_file.write_text(json.dumps(values, indent=2))
    home = workdir / "helm-home"
    environment = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        "KUBECONFIG": str(workdir / "no-cluster"),  # `helm template` must not need one
    }
    command = [
        str(helm),
        "template",
        release,
        str(chart_folder),
        "--namespace",
        namespace,
        "--values",
        str(values_file),
        "--kube-version",
        kube_version,
        "--include-crds" if include_crds else "--skip-crds",
    ]
    for api_version in api_versions:
        command += ["--api-versions", api_version]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=HELM_TIMEOUT_S, check=False, env=environment)
    except subprocess.TimeoutExpired:
        raise ChartError(f"conformance: helm template {release} took over {HELM_TIMEOUT_S} s") from None
    if result.returncode != 0:
        raise ChartError(f"conformance: helm template {release} failed: {' '.join(result.stderr.split())[:600]}")
    return list(_documents(result.stdout))
