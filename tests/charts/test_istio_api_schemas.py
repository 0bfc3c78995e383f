"""The Istio objects we render against the CRD schemas of the Istio release we deploy.

The pinned schemas (upstream/: istio/istio's crd-all.gen.yaml) are those of the release-1.31
branch on the 1.31.0 release day, the closest file the istio/istio mirror has; istio.io/api, which
generates them, is tagged for every release and its Go module carries the same CRDs
(kubernetes/customresourcedefinitions.gen.yaml). These tests read that file at the deployed
version, from the Go module cache or through the Go module proxy, and are skipped, in one line,
where neither is reachable.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from backends import backend_named
from backends.render import all_objects, render
from components.istio import VERSION
from tests.charts.test_schemas import EXPECTED_CUSTOM
from tests.unit.test_settings import backend_config

# istio.io/api is tagged with each Istio release (v1.31.4 for Istio 1.31.4).
API_MODULE = f"istio.io/api@v{VERSION}"
CRDS = "kubernetes/customresourcedefinitions.gen.yaml"
RENDERED = {(api, kind) for api, kinds in EXPECTED_CUSTOM["istio"].items() for kind in kinds}


def _module_dir() -> Path:
    """Where the Go toolchain keeps istio.io/api at the deployed version: downloaded into the module
    cache if it is not there already (GOFLAGS=-mod=mod, GOPROXY as configured)."""
    go = shutil.which("go")
    if go is None:
        pytest.skip(f"{API_MODULE}: no Go toolchain to read the module cache or the Go proxy")
    try:
        result = subprocess.run([go, "mod", "download", "-json", API_MODULE], capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        pytest.skip(f"{API_MODULE}: the Go module proxy did not answer within 120 s")
    info = json.loads(result.stdout or "{}")
    if result.returncode != 0 or "Dir" not in info:
        reason = (info.get("Error") or result.stderr.strip() or "unknown error").splitlines()[0]
        pytest.skip(f"{API_MODULE}: not in the module cache and not fetched ({reason})")
    return Path(info["Dir"])


def _schemas(documents: list[Any]) -> dict[tuple[str, str], dict[str, Any]]:
    schemas = {}
    for document in documents:
        if not document or document.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = document["spec"]["group"], document["spec"]["names"]["kind"]
        for version in document["spec"]["versions"]:
            schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas


@pytest.fixture(scope="module")
def release_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    return _schemas(list(yaml.safe_load_all((_module_dir() / CRDS).read_text())))


def test_the_pinned_schemas_of_what_we_render_are_those_of_the_deployed_release(
    release_schemas: dict[tuple[str, str], dict[str, Any]], crd_schemas: dict[Any, Any]
) -> None:
    """Checked 2026-12-06: for istio.io/api v1.31.4 all 33 Istio CRD versions equal the pinned
    1.31.0-day file; a difference here means the pin must move with the version."""
    differ = sorted(key for key in RENDERED if release_schemas[key] != crd_schemas[key])
    assert differ == []


def test_every_istio_object_validates_against_the_deployed_release(release_schemas: dict[tuple[str, str], dict[str, Any]]) -> None:
    objects = [o for o in all_objects(render(backend_config("istio"), backend_named("istio"))) if (o["apiVersion"], o["kind"]) in RENDERED]
    assert {(o["apiVersion"], o["kind"]) for o in objects} == RENDERED
    for obj in objects:
        jsonschema.validate(obj, release_schemas[(obj["apiVersion"], obj["kind"])], cls=jsonschema.Draft7Validator)
