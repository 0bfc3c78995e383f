"""Charts rendered straight from the model (no CDK app): pure and fast."""

from __future__ import annotations

from typing import Any

import pytest

import upstream
from backends.render import all_objects, render
from tests.unit.test_settings import config_with

# Every CRD schema the rendered objects are validated against, read from ../shared/schemas or
# the verified cache (upstream/), never copied here.
CRD_ARTIFACTS = (
    "appmesh-controller-crds.yaml",
    "istio-crds.yaml",
    "cert-manager-crds.yaml",
    "gateway-api-standard-crds.yaml",
    "lattice-controller-crds.yaml",
)


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return render(config_with())


@pytest.fixture(scope="session")
def objects(rendered: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return all_objects(rendered)


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


@pytest.fixture(scope="session")
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema of every CRD the backends' objects use."""
    return upstream.crd_schemas(*CRD_ARTIFACTS)
