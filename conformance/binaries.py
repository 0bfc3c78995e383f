"""The real programs of the conformance layer, built from their Go modules and cached by version.

Each program is `go build` of a package of one of the modules under `conformance/toolchain/`
(committed: go.mod, go.sum, a tools file; never a binary), with the build tags and version stamps
its project's own release build uses. The module's `require` line is the only place a version is
written. The binary goes to

    ${XDG_CACHE_HOME:-~/.cache}/appmesh-eks/conformance/<program>-<version>/<program>

with a stamp of what built it (Go version, the module's go.sum, the flags); a warm run whose stamp
matches builds nothing. Builds run one at a time (the machines have two cores, shared).

    python -m conformance.binaries build     # build what is missing, print where each is
    python -m conformance.binaries check     # exit 1 (one line) unless every program is built
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TOOLCHAIN = Path(__file__).resolve().parent / "toolchain"
# A cold build of Kubernetes' three programs is the long one; it must still fit CI's budget.
BUILD_TIMEOUT_S = 45 * 60
GO_TIMEOUT_S = 30


class BuildError(Exception):
    """A program could not be built or found: one line saying which and why."""


@dataclass(frozen=True)
class Program:
    name: str
    module: str  # folder under toolchain/
    requires: str  # the module path whose version (from go.mod) names the build
    package: str  # what `go build` builds, relative to the module folder or an import path
    ldflags: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    # Stamps read from the module's own files (so only once Go has it): called with the version.
    ldflags_from_module: Callable[[str], tuple[str, ...]] | None = None

    @property
    def folder(self) -> Path:
        return TOOLCHAIN / self.module

    def linker_flags(self) -> tuple[str, ...]:
        return self.ldflags + (self.ldflags_from_module(self.version) if self.ldflags_from_module else ())

    @property
    def version(self) -> str:
        return required_version(self.folder / "go.mod", self.requires)


def required_version(go_mod: Path, module: str) -> str:
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod.read_text(), re.MULTILINE)
    if not match:
        raise BuildError(f"conformance: {go_mod} does not require {module}")
    return match.group(1)


def _kubernetes_ldflags(version: str) -> tuple[str, ...]:
    """What Kubernetes' own build stamps (hack/lib/version.sh): without it the programs report
    v0.0.0-master, and the API server's /version, which helm and kubectl read, says so too."""
    major, minor = version.lstrip("v").split(".")[:2]
    flags = []
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {package}.gitVersion={version}",
            f"-X {package}.gitMajor={major}",
            f"-X {package}.gitMinor={minor}",
            f"-X {package}.gitTreeState=clean",
            f"-X {package}.buildDate=1970-01-01T00:00:00Z",
        ]
    return tuple(flags)


# Istio's release build (Makefile.core.mk at the pinned commit): STANDARD_TAGS for istiod and
# istioctl, AGENT_TAGS for pilot-agent (no gRPC tracing, no retry tracing: a smaller agent).
ISTIO_STANDARD_TAGS = ("vtprotobuf", "disable_pgv")
ISTIO_AGENT_TAGS = ("agent", "disable_pgv", "grpcnotrace", "retrynotrace")


def module_directory(folder: Path, module: str, version: str) -> Path:
    """Where Go's module cache holds a module the toolchain module requires (downloaded through
    the module proxy if it is not there yet; checked against go.sum)."""
    environment = {**os.environ, "GOFLAGS": "-mod=readonly", "GOWORK": "off"}
    try:
        result = subprocess.run(
            ["go", "mod", "download", "-json", f"{module}@{version}"],
            cwd=folder, env=environment, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False,
        )  # fmt: skip
    except FileNotFoundError:
        raise BuildError(
            "conformance: `go` is not on PATH; the conformance layer builds its programs with Go 1.26 (README, Conformance)"
        ) from None
    except subprocess.TimeoutExpired:
        raise BuildError(f"conformance: downloading {module}@{version} took over {BUILD_TIMEOUT_S // 60} minutes") from None
    answer = json.loads(result.stdout or "{}")
    if result.returncode != 0 or "Dir" not in answer:
        raise BuildError(f"conformance: go mod download {module}@{version} failed: {answer.get('Error') or result.stderr.strip()[-300:]}")
    return Path(answer["Dir"])


@functools.cache
def _istio_ldflags(version: str) -> tuple[str, ...]:
    """What Istio's release build stamps (common/scripts/report_build_info.sh). A build from the
    branch rather than a tag is `<VERSION file>-dev`, as Istio's Makefile names it; pilot-agent
    reports it to istiod as the proxy's version, which istiod reads as the newest patch of that
    minor (pilot/pkg/model/context.go, ParseIstioVersion). Without it the version is `unknown`."""
    release = (module_directory(TOOLCHAIN / "istio", "istio.io/istio", version) / "VERSION").read_text().strip()
    package = "istio.io/istio/pkg/version"
    return (
        f"-X {package}.buildVersion={release}-dev",
        f"-X {package}.buildGitRevision={version.rsplit('-', 1)[-1]}",
        f"-X {package}.buildStatus=Clean",
        f"-X {package}.buildTag={version}",
    )


def programs() -> dict[str, Program]:
    kubernetes = required_version(TOOLCHAIN / "kubernetes" / "go.mod", "k8s.io/kubernetes")
    helm = required_version(TOOLCHAIN / "helm" / "go.mod", "helm.sh/helm/v4")
    listed = [
        Program("etcd", "etcd", "go.etcd.io/etcd/server/v3", "."),
        *(
            Program(name, "kubernetes", "k8s.io/kubernetes", f"k8s.io/kubernetes/cmd/{name}", _kubernetes_ldflags(kubernetes))
            for name in ("kube-apiserver", "kube-controller-manager", "kubectl")
        ),
        Program("helm", "helm", "helm.sh/helm/v4", "helm.sh/helm/v4/cmd/helm", (f"-X helm.sh/helm/v4/internal/version.version={helm}",)),
        # istiod and istioctl first: they share the tags, so the second reuses the first's packages.
        *(
            Program(name, "istio", "istio.io/istio", f"istio.io/istio/{path}", tags=tags, ldflags_from_module=_istio_ldflags)
            for name, path, tags in (
                ("pilot-discovery", "pilot/cmd/pilot-discovery", ISTIO_STANDARD_TAGS),
                ("istioctl", "istioctl/cmd/istioctl", ISTIO_STANDARD_TAGS),
                ("pilot-agent", "pilot/cmd/pilot-agent", ISTIO_AGENT_TAGS),
            )
        ),
    ]
    return {program.name: program for program in listed}


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "appmesh-eks" / "conformance"


def _go_version() -> str:
    go = shutil.which("go")
    if not go:
        raise BuildError("conformance: `go` is not on PATH; the conformance layer builds its programs with Go 1.26 (README, Conformance)")
    result = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, timeout=GO_TIMEOUT_S, check=False)
    if result.returncode != 0:
        raise BuildError(f"conformance: `go env GOVERSION` failed: {result.stderr.strip().splitlines()[-1:]}")
    return result.stdout.strip()


def _stamp(program: Program, go_version: str) -> dict[str, str]:
    """Everything that makes two builds of the same version differ: rebuild when it changes."""
    stamp = {
        "go": go_version,
        "go.sum": hashlib.sha256((program.folder / "go.sum").read_bytes()).hexdigest(),
        "package": program.package,
        "ldflags": " ".join(program.linker_flags()),
    }
    if program.tags:  # only where there are some: a stamp written before tags existed stays valid
        stamp["tags"] = ",".join(program.tags)
    return stamp


def binary_path(program: Program) -> Path:
    return cache_root() / f"{program.name}-{program.version}" / program.name


def _built(program: Program, go_version: str) -> bool:
    path = binary_path(program)
    stamp = path.with_name("stamp.json")
    return path.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == _stamp(program, go_version)


def build(program: Program, go_version: str, log: Path | None = None) -> float:
    """Builds one program into its cache folder (atomically); returns the seconds it took."""
    path = binary_path(program)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{program.name}.partial")
    # Static, reproducible binaries, as the projects' own release builds make them.
    environment = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly", "GOWORK": "off"}
    tags = ["-tags", ",".join(program.tags)] if program.tags else []
    command = [
        "go",
        "build",
        "-trimpath",
        *tags,
        "-ldflags",
        " ".join(("-s", "-w", *program.linker_flags())),
        "-o",
        str(partial),
        program.package,
    ]
    started = time.monotonic()
    try:
        result = subprocess.run(
            command, cwd=program.folder, env=environment, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise BuildError(f"conformance: building {program.name} {program.version} took over {BUILD_TIMEOUT_S // 60} minutes") from None
    if log:
        log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise BuildError(f"conformance: building {program.name} {program.version} failed: {last}")
    partial.replace(path)
    path.with_name("stamp.json").write_text(json.dumps(_stamp(program, go_version), indent=1))
    return time.monotonic() - started


def ensure(names: list[str] | None = None, *, report: bool = False) -> dict[str, Path]:
    """Every program's path, building (one at a time) those the cache lacks."""
    go_version = _go_version()
    chosen = programs() if names is None else {name: programs()[name] for name in names}
    paths = {}
    for name, program in chosen.items():
        if not _built(program, go_version):
            seconds = build(program, go_version, log=cache_root() / f"{name}-{program.version}.build.log")
            if report:
                print(f"conformance: built {name} {program.version} in {seconds:.0f} s", flush=True)
        elif report:
            print(f"conformance: {name} {program.version} (cached)", flush=True)
        paths[name] = binary_path(program)
    return paths


def built() -> dict[str, Path]:
    """Every program's path, or BuildError naming the first one missing (no building)."""
    go_version = _go_version()
    for name, program in programs().items():
        if not _built(program, go_version):
            raise BuildError(
                f"conformance: {name} {program.version} is not built; run `make conformance` (or python -m conformance.binaries build)"
            )
    return {name: binary_path(program) for name, program in programs().items()}


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "build"
    try:
        if command == "build":
            started = time.monotonic()
            paths = ensure(report=True)
            print(f"conformance: {len(paths)} programs ready in {time.monotonic() - started:.1f} s under {cache_root()}")
        elif command == "check":
            built()
        else:
            print("usage: python -m conformance.binaries [build | check]", file=sys.stderr)
            return 2
    except BuildError as error:
        print(error, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("conformance: interrupted; a program half-built is not kept (the next build starts it again)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
