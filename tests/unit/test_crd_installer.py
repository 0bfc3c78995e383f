"""The CRD installer's in-Job check (components/crd_installer.py), run for real: the script the Job
carries, with the project's Python, against a loopback server laid out like
raw.githubusercontent.com. It is the last line of defence against a wrong CRD file: with the
pinned files it writes them all; with one file altered it writes nothing and fails in one line
naming that file, and the Job's apply step, which runs only after it succeeds, never starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import upstream
from components.crd_installer import installer_objects
from tests.unit.test_upstream import publish, serve
from upstream import ARTIFACTS, DEFAULT_BASE_URL

ARTIFACT = ARTIFACTS["gateway-api-standard-crds.yaml"]


def _job_pod() -> dict[str, Any]:
    jobs: list[Any] = [o for o in installer_objects("gateway-api-crds", "ns", ARTIFACT.parts) if o["kind"] == "Job"]
    (job,) = jobs
    return job["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def _run_fetch(base: str, out: Path) -> subprocess.CompletedProcess[str]:
    """The Job's fetch container as the kubelet would run it: its command and its environment,
    with the raw.githubusercontent.com URLs pointed at the loopback server and the volume at `out`."""
    (fetch,) = _job_pod()["initContainers"]
    env = {e["name"]: e["value"] for e in fetch["env"]}
    env["PARTS"] = env["PARTS"].replace(DEFAULT_BASE_URL, base)
    env["CRDS_DIR"] = str(out)
    command = [sys.executable if word == "python" else word for word in fetch["command"]]
    return subprocess.run(command, env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, list[bytes]]:
    """The pinned Gateway API files, published where the Job fetches them."""
    root = tmp_path / "raw"
    files = upstream.part_files(ARTIFACT.name)
    for part, data in zip(ARTIFACT.parts, files, strict=True):
        publish(root, part, data)
    return root, files


def test_the_pinned_files_are_verified_and_written(site: tuple[Path, list[bytes]], tmp_path: Path) -> None:
    root, files = site
    out = tmp_path / "crds"
    out.mkdir()
    with serve(root) as base:
        result = _run_fetch(base, out)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"verified {len(files)} files\n", "")
    assert [(p.name, p.read_bytes()) for p in sorted(out.iterdir())] == [(f"{i:02d}.yaml", data) for i, data in enumerate(files)]


def test_one_altered_file_stops_the_job_before_anything_is_written(site: tuple[Path, list[bytes]], tmp_path: Path) -> None:
    root, files = site
    altered = ARTIFACT.parts[4]
    assert altered.path.endswith("gateway.networking.k8s.io_httproutes.yaml")
    publish(root, altered, files[4].replace(b"maxItems: 16", b"maxItems: 64", 1))
    out = tmp_path / "crds"
    out.mkdir()
    with serve(root) as base:
        result = _run_fetch(base, out)
    assert result.returncode == 1 and result.stdout == ""
    url = altered.url(base)
    assert result.stderr.startswith(f"{url}: git blob ")
    assert result.stderr.endswith(f", pinned {altered.blob}: nothing applied\n")
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert list(out.iterdir()) == []


def test_a_file_it_cannot_fetch_is_one_line_too(tmp_path: Path) -> None:
    out = tmp_path / "crds"
    out.mkdir()
    with serve(tmp_path / "empty") as base:  # nothing published: 404 for the first file
        result = _run_fetch(base, out)
    assert result.returncode == 1
    assert result.stderr.startswith(f"{ARTIFACT.parts[0].url(base)}: HTTP Error 404")
    assert len(result.stderr.splitlines()) == 1 and list(out.iterdir()) == []


def test_the_apply_step_runs_only_after_the_check_and_reads_only_what_it_wrote() -> None:
    """The kubelet starts a pod's containers only once every init container has exited 0, and with
    restartPolicy Never a failed check fails the pod (the Job retries in a new pod, with a new
    empty volume)."""
    pod = _job_pod()
    (fetch,) = pod["initContainers"]
    (apply,) = pod["containers"]
    assert pod["restartPolicy"] == "Never"
    assert (fetch["name"], apply["name"]) == ("fetch", "apply")
    written_to = {e["name"]: e["value"] for e in fetch["env"]}["CRDS_DIR"]
    assert {"name": "crds", "mountPath": written_to} in fetch["volumeMounts"]
    assert {"name": "crds", "mountPath": written_to, "readOnly": True} in apply["volumeMounts"]
    assert apply["args"][-2:] == ["-f", f"{written_to}/"]
    assert {"name": "crds", "emptyDir": {"sizeLimit": "16Mi"}} in pod["volumes"]
    assert json.loads({e["name"]: e["value"] for e in fetch["env"]}["PARTS"]) == [
        [part.url(DEFAULT_BASE_URL), part.blob] for part in ARTIFACT.parts
    ]
