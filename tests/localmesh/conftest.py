"""Local-mesh fixtures: each mesh configuration starts once for the whole package."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from localmesh.runner import LocalMesh  # noqa: E402

MISSING_RUNTIMES = [program for program in ("ruby", "crystal") if shutil.which(program) is None]


def _mesh(overrides: dict[str, str]) -> Iterator[LocalMesh]:
    if MISSING_RUNTIMES:
        pytest.skip(f"{', '.join(MISSING_RUNTIMES)} not installed: run scripts/install-runtimes.sh")
    with LocalMesh(overrides) as mesh:
        yield mesh


@pytest.fixture(scope="package")
def mesh() -> Iterator[LocalMesh]:
    """cdk.json's topology: nodejs:2, nodejsv2:1."""
    yield from _mesh({})


@pytest.fixture(scope="package")
def mesh_even() -> Iterator[LocalMesh]:
    yield from _mesh({"weights.nodejs": "nodejs:1,nodejsv2:1"})


@pytest.fixture(scope="package")
def mesh_canary_only() -> Iterator[LocalMesh]:
    yield from _mesh({"weights.nodejs": "nodejs:0,nodejsv2:1"})
