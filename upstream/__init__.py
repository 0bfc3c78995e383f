"""The upstream files the deploy and the tests rely on: CRD schemas, injector templates, chart
values and IAM policies, each pinned to a commit of its public repository and to its git blob id.
On the ground floor, importing nothing of the project, so constructs, tests and tools all read it.

Nothing here is committed to this repository. The files are read, in this order, from:

1. `../shared/` (or `$SHARED_DIR`), the team's folder of verbatim copies with provenance, when it
   is beside the checkout; each copy is checked against the pinned blob ids before it is used;
2. `.cache/upstream/<owner>/<repo>/<commit>/<path>`, where `fetch` puts them;
3. nowhere: `Missing`, one line that says what is missing and how to get it.

    python -m upstream fetch          # download what neither ../shared nor the cache has
    python -m upstream seed DIR       # fill the cache from a shared folder, as fetch would
    python -m upstream check          # exit 1 (one line) unless every file is available

`fetch` reads `https://raw.githubusercontent.com/<owner>/<repo>/<commit>/<path>` (the base URL can
be overridden with `$UPSTREAM_BASE_URL`, which the tests point at a loopback server) and refuses
any file whose git blob id differs from the pinned one.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CACHE = PROJECT_ROOT / ".cache" / "upstream"
DEFAULT_BASE_URL = "https://raw.githubusercontent.com"
FETCH_TIMEOUT_S = 60


class Missing(Exception):
    """An upstream file is neither in ../shared nor cached (or cannot be fetched): one line."""


class Mismatch(Exception):
    """A copy exists but is not the pinned file (a different version, or edited)."""


@dataclass(frozen=True)
class Part:
    """One file of a public repository at one commit, identified by its git blob id."""

    repo: str  # owner/name
    commit: str
    path: str
    blob: str

    def url(self, base: str) -> str:
        return f"{base.rstrip('/')}/{self.repo}/{self.commit}/{self.path}"

    @property
    def cached(self) -> Path:
        return CACHE / self.repo / self.commit / self.path


@dataclass(frozen=True)
class Artifact:
    """What the tests read, under the name it has in ../shared/<folder>/. A multi-part artifact is
    a concatenation there (separator comment lines between verbatim files) and separate files in
    the cache."""

    name: str
    folder: str  # "schemas" or "reference"
    parts: tuple[Part, ...]
    what: str


def shown(path: Path) -> str:
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


_APPMESH = "aws/aws-app-mesh-controller-for-k8s", "7588d122c3c45e1f873d7d016a30922f049764bf"
_EKS_CHARTS = "aws/eks-charts", "5239609242f3430be50fb0b714a24d3ef2b47983"
_ISTIO = "istio/istio", "a8d7012191ebf42bacd48fa72b32a05828e4c564"
_LATTICE_TAG = "aws/aws-application-networking-k8s", "e3fb86ea0573aa299458b9b022c59a364584b6e8"
_LATTICE_CRDS = "aws/aws-application-networking-k8s", "03d6abecad555845b9a78988f7bfedf9085e0bc4"
_GATEWAY_API = "kubernetes-sigs/gateway-api", "3797b631d20f9ff4e2b4571f62d91d84a1fbdf5a"
_CERT_MANAGER = "cert-manager/cert-manager", "24e33194fb39488eff2bbf10c6dc640f407cad44"


def _one(name: str, folder: str, source: tuple[str, str], path: str, blob: str, what: str) -> Artifact:
    return Artifact(name, folder, (Part(source[0], source[1], path, blob),), what)


def _many(name: str, folder: str, source: tuple[str, str], files: Iterable[tuple[str, str]], what: str) -> Artifact:
    return Artifact(name, folder, tuple(Part(source[0], source[1], path, blob) for path, blob in files), what)


ARTIFACTS: dict[str, Artifact] = {
    a.name: a
    for a in (
        # -- CRD schemas ---------------------------------------------------------------------
        _one(
            "appmesh-controller-crds.yaml",
            "schemas",
            _EKS_CHARTS,
            "stable/appmesh-controller/crds/crds.yaml",
            "90537e3204d242bd72386e15b2f9297f92111f2b",
            "App Mesh controller CRDs (chart appmesh-controller 1.13.3)",
        ),
        _one(
            "istio-crds.yaml",
            "schemas",
            _ISTIO,
            "manifests/charts/base/files/crd-all.gen.yaml",
            "bffa3d19398bc778ed154f32f94db52f4a82da62",
            "Istio 1.31 CRDs",
        ),
        _many(
            "cert-manager-crds.yaml",
            "schemas",
            _CERT_MANAGER,
            [
                ("deploy/crds/acme.cert-manager.io_challenges.yaml", "a0add06b1dca62f50a5c16ccf1b0afd71d9d27a1"),
                ("deploy/crds/acme.cert-manager.io_orders.yaml", "9938939fec864054515a2e7fb4db68041897a300"),
                ("deploy/crds/cert-manager.io_certificaterequests.yaml", "9b5f18c7807948dfbca2fded3b4e58db2a375f2c"),
                ("deploy/crds/cert-manager.io_certificates.yaml", "1eb46fbeed2127650fe4ec06ddc7289163f75e3b"),
                ("deploy/crds/cert-manager.io_clusterissuers.yaml", "f24cab2d55ebe37a8c000d10d7f9de19636027f9"),
                ("deploy/crds/cert-manager.io_issuers.yaml", "bfa8262b5628e1d8ea7cc398cf1ad321a2bedc62"),
            ],
            "cert-manager v1.21.1 CRDs",
        ),
        _many(
            "gateway-api-standard-crds.yaml",
            "schemas",
            _GATEWAY_API,
            [
                ("config/crd/standard/gateway.networking.k8s.io_backendtlspolicies.yaml", "58e4bf49e5f6438acea926625ae4888d1a17935b"),
                ("config/crd/standard/gateway.networking.k8s.io_gatewayclasses.yaml", "15412b8699b70baf8b4fb6d50a57e11e3b860a92"),
                ("config/crd/standard/gateway.networking.k8s.io_gateways.yaml", "169e74fcbab066f1b08ecaf44232bb8e0c32a672"),
                ("config/crd/standard/gateway.networking.k8s.io_grpcroutes.yaml", "3920e60bc306ee5f879665ef10abff00671749dd"),
                ("config/crd/standard/gateway.networking.k8s.io_httproutes.yaml", "3c52501aa2d1f153b8c3cffc35260d8269fa2683"),
                ("config/crd/standard/gateway.networking.k8s.io_listenersets.yaml", "de494f518e1ab54d8f6f9669ff87b602638273b3"),
                ("config/crd/standard/gateway.networking.k8s.io_referencegrants.yaml", "56ff28f52932d173ced487d5a3bfcb265969041c"),
                ("config/crd/standard/gateway.networking.k8s.io_tlsroutes.yaml", "3b9e163deccc4a38bda6b9b0dfa85cc6f8f7ba3a"),
                ("config/crd/standard/gateway.networking.k8s.io_vap_safeupgrades.yaml", "e2c8c8a4c9adc0aee328ae1a932760489d6bc14d"),
            ],
            "Gateway API v1.5.0 standard-channel CRDs",
        ),
        _many(
            "lattice-controller-crds.yaml",
            "schemas",
            _LATTICE_CRDS,
            [
                ("config/crds/bases/application-networking.k8s.aws_accesslogpolicies.yaml", "e480b9b854df880f23a6ce992597b39ab249ac07"),
                ("config/crds/bases/application-networking.k8s.aws_iamauthpolicies.yaml", "d1ebf2510772580b2dc7cba2d6de24341190d95d"),
                ("config/crds/bases/application-networking.k8s.aws_serviceexports.yaml", "8b6c63889f4b14d0f2f7543bc4d5acdf13438257"),
                ("config/crds/bases/application-networking.k8s.aws_serviceimports.yaml", "65bd26a2b3e3ae8f9526af5679de6185ea49f683"),
                ("config/crds/bases/application-networking.k8s.aws_servicenetworks.yaml", "278ee2ab664b6ce5fc1454cada19075f642d0af1"),
                ("config/crds/bases/application-networking.k8s.aws_targetgrouppolicies.yaml", "ab7a0595809ef60f048ea17fe1a36bc1de43924c"),
                (
                    "config/crds/bases/application-networking.k8s.aws_vpcassociationpolicies.yaml",
                    "1179e1f1bc14befd57cea22c9f6003668206f2a2",
                ),
            ],
            "VPC Lattice controller v2.1.3 CRDs",
        ),
        # -- what injectors add, and what charts read ----------------------------------------
        _one(
            "appmesh-inject-init_proxy.go.txt",
            "reference",
            _APPMESH,
            "pkg/inject/init_proxy.go",
            "2a83eaf6694bc9d4b5385137b4a966d2cd0553cf",
            "App Mesh injector: proxyinit",
        ),
        _one(
            "appmesh-inject-envoy.go.txt",
            "reference",
            _APPMESH,
            "pkg/inject/envoy.go",
            "e56bc226da0d11071b8570b272675305a4273a8e",
            "App Mesh injector: Envoy sidecar",
        ),
        _one(
            "appmesh-inject-xray.go.txt",
            "reference",
            _APPMESH,
            "pkg/inject/xray.go",
            "7c8b6ea434430c5ff0e5551c0d5a770b82fb8b2f",
            "App Mesh injector: X-Ray daemon",
        ),
        _one(
            "appmesh-inject-virtualgateway_envoy.go.txt",
            "reference",
            _APPMESH,
            "pkg/inject/virtualgateway_envoy.go",
            "0f4b9d9f6b8ea9a93742025758a32e1d27708c4d",
            "App Mesh injector: virtual gateway Envoy",
        ),
        _one(
            "appmesh-controller-1.13.3-values.yaml",
            "reference",
            _EKS_CHARTS,
            "stable/appmesh-controller/values.yaml",
            "afd1c5897180ddb75d9840f9ba41a73cd0d008de",
            "appmesh-controller chart 1.13.3 values",
        ),
        _one(
            "istio-1.31-injection-template.yaml",
            "reference",
            _ISTIO,
            "manifests/charts/istio-control/istio-discovery/files/injection-template.yaml",
            "bca92d4385e778b26eb104655c983fa104c78e57",
            "Istio 1.31 sidecar injection template",
        ),
        _one(
            "istio-1.31-base-values.yaml",
            "reference",
            _ISTIO,
            "manifests/charts/base/values.yaml",
            "29e7b91bb9492ae11f59a2298ba6ef858efc0662",
            "Istio 1.31 base chart values",
        ),
        _one(
            "istio-1.31-istio-discovery-values.yaml",
            "reference",
            _ISTIO,
            "manifests/charts/istio-control/istio-discovery/values.yaml",
            "8c15eaea19d1f105c83fe9a6f6eb26779299ae3b",
            "Istio 1.31 istiod chart values",
        ),
        _one(
            "istio-1.31-gateway-values.yaml",
            "reference",
            _ISTIO,
            "manifests/charts/gateway/values.yaml",
            "4dae8746c7f4af9d7b4d1829d46d90997056448e",
            "Istio 1.31 gateway chart values",
        ),
        _one(
            "istio-1.31-istio-cni-values.yaml",
            "reference",
            _ISTIO,
            "manifests/charts/istio-cni/values.yaml",
            "8cfd6595c5c708dcb48905761d37b6c1908006b8",
            "Istio 1.31 cni chart values",
        ),
        _one(
            "lattice-gateway-controller-v2.1.3-values.yaml",
            "reference",
            _LATTICE_TAG,
            "helm/values.yaml",
            "7c1925b0b720ece16641d8b2b3b6e57868e0bc17",
            "VPC Lattice controller chart v2.1.3 values",
        ),
        _one(
            "lattice-gateway-controller-v2.1.3-recommended-inline-policy.json",
            "reference",
            _LATTICE_TAG,
            "files/controller-installation/recommended-inline-policy.json",
            "5fc9e6c6dca4229cddaa150c07b48a43330d219a",
            "VPC Lattice controller's documented IAM policy",
        ),
    )
}


def shared_dir() -> Path:
    return Path(os.environ.get("SHARED_DIR") or PROJECT_ROOT.parent / "shared")


def _marker_path(line: bytes) -> str | None:
    """The path a marker line of a shared concatenation names (`# ---- file: <path>` or
    `# source: <path> (git blob ...)`), or None for any other line."""
    for marker in (b"# ---- file:", b"# source:"):
        if line.startswith(marker):
            words = line[len(marker) :].split()
            return words[0].decode() if words else None
    return None


def split_shared(artifact: Artifact, data: bytes) -> list[bytes]:
    """The verbatim files inside a shared copy, each checked against its pinned blob id.

    A single-part artifact is the file itself. A concatenation has one marker comment line per
    file (`# ---- file: <path>` or `# source: <path> ...`), followed by a `---` separator that is
    either ours or the file's own first line; whichever reading has the pinned blob id is the file.
    The markers must name each pinned path exactly once: counting them would let a file copied
    twice stand in for a missing one.
    """
    if len(artifact.parts) == 1:
        if git_blob_id(data) != artifact.parts[0].blob:
            raise Mismatch(f"{artifact.name}: the copy is not the pinned file (blob {git_blob_id(data)}, pinned {artifact.parts[0].blob})")
        return [data]
    lines = data.splitlines(keepends=True)
    by_path = {part.path: part for part in artifact.parts}
    named = [(index, _marker_path(line)) for index, line in enumerate(lines)]
    markers = {index: by_path[path] for index, path in named if path in by_path}
    found = [part.path for part in markers.values()]
    missing = sorted(set(by_path) - set(found))
    twice = sorted({path for path in found if found.count(path) > 1})
    if missing or twice:
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if twice:
            problems.append(f"more than once: {', '.join(twice)}")
        raise Mismatch(f"{artifact.name}: the copy does not hold exactly the pinned files ({'; '.join(problems)})")
    starts = sorted(markers)
    files = []
    for position, start in enumerate(starts):
        end = starts[position + 1] if position + 1 < len(starts) else len(lines)
        part = markers[start]
        readings = [b"".join(lines[start + skip : end]) for skip in (1, 2)]
        match = [reading for reading in readings if git_blob_id(reading) == part.blob]
        if not match:
            raise Mismatch(f"{artifact.name}: {part.path} is not the pinned file (blob {part.blob})")
        files.append(match[0])
    return files


def part_files(name: str) -> list[bytes]:
    """The verbatim upstream files of an artifact, from ../shared or the cache."""
    artifact = ARTIFACTS[name]
    shared = shared_dir() / artifact.folder / artifact.name
    if shared.is_file():
        return split_shared(artifact, shared.read_bytes())
    files = []
    for part in artifact.parts:
        if not part.cached.is_file():
            raise Missing(
                f"upstream: {artifact.name} ({artifact.what}) is needed by the tests but {shared.parent} does not have it "
                f"and {shown(CACHE)} holds no copy; run `make upstream` with network access "
                f"(fetches {part.repo}@{part.commit[:12]} from raw.githubusercontent.com), or put ../shared beside the checkout"
            )
        data = part.cached.read_bytes()
        if git_blob_id(data) != part.blob:
            raise Mismatch(
                f"{part.cached}: not the pinned file (blob {git_blob_id(data)}, pinned {part.blob}); `make upstream` fetches it again"
            )
        files.append(data)
    return files


def text(name: str) -> str:
    """A single-file artifact (a template, a values file, a policy) as text."""
    (data,) = part_files(name)
    return data.decode()


def documents(name: str) -> list[Any]:
    """Every YAML document of an artifact (a multi-file artifact's files in pinned order)."""
    import yaml

    # libyaml's safe loader when PyYAML was built with it: the CRD bundles are about 1 MB.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [document for data in part_files(name) for document in yaml.load_all(data, Loader=loader) if document]


def crd_schemas(*names: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema of every served version of every CRD in the artifacts."""
    schemas = {}
    for name in names:
        for document in documents(name):
            if document.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = document["spec"]["group"], document["spec"]["names"]["kind"]
            for version in document["spec"]["versions"]:
                if version.get("served", True):
                    schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas


def _write(part: Part, data: bytes) -> None:
    part.cached.parent.mkdir(parents=True, exist_ok=True)
    temporary = part.cached.with_suffix(part.cached.suffix + ".partial")
    temporary.write_bytes(data)
    temporary.replace(part.cached)


def fetch(base_url: str | None = None, artifacts: Iterable[Artifact] | None = None) -> list[Part]:
    """Download every part that neither ../shared nor the cache has as pinned; returns what was
    written. A cached part is verified again, and fetched again when it is not the pinned file (a
    write cut short, an edit): a bad cache is repaired, not kept. A copy in ../shared is checked
    but never replaced: the tests read it first, so a wrong one is refused here, in one line."""
    base = base_url or os.environ.get("UPSTREAM_BASE_URL") or DEFAULT_BASE_URL
    written = []
    for artifact in artifacts if artifacts is not None else ARTIFACTS.values():
        shared = shared_dir() / artifact.folder / artifact.name
        if shared.is_file():
            split_shared(artifact, shared.read_bytes())
            continue
        for part in artifact.parts:
            if part.cached.is_file() and git_blob_id(part.cached.read_bytes()) == part.blob:
                continue
            url = part.url(base)
            try:
                with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as response:
                    data = response.read()
            except (urllib.error.URLError, OSError) as error:
                reason = getattr(error, "reason", error)
                raise Missing(
                    f"upstream: cannot fetch {artifact.name} from {url} ({reason}); "
                    "put ../shared beside the checkout, or retry with network access"
                ) from None
            if git_blob_id(data) != part.blob:
                raise Mismatch(f"upstream: {url} is not the pinned file (blob {git_blob_id(data)}, pinned {part.blob}); nothing written")
            _write(part, data)
            written.append(part)
    return written


def seed(shared: Path) -> list[Part]:
    """Fill the cache from a shared folder exactly as `fetch` would (one verified file per part)."""
    written = []
    for artifact in ARTIFACTS.values():
        source = shared / artifact.folder / artifact.name
        if not source.is_file():
            raise Missing(f"upstream: {source} is missing; cannot seed the cache from {shared}")
        for part, data in zip(artifact.parts, split_shared(artifact, source.read_bytes()), strict=True):
            _write(part, data)
            written.append(part)
    return written
