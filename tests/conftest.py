"""Shared fixtures: the app is built the way `cdk synth` builds it (cdk.json context), once."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from app import use_venv_node  # noqa: E402

use_venv_node()


def cdk_json_context() -> dict[str, Any]:
    return json.loads((PROJECT_ROOT / "cdk.json").read_text())["context"]  # type: ignore[no-any-return]


@dataclass
class Synthesized:
    app: Any
    application: Any
    outdir: Path
    error: Exception | None

    def template(self, stack: Any) -> Any:
        from aws_cdk.assertions import Template

        return Template.from_stack(stack)

    def template_json(self, stack: Any) -> dict[str, Any]:
        # A stage's stacks live in the stage's nested assembly (assembly-<stage>/).
        (path,) = (
            [self.outdir / stack.template_file]
            if (self.outdir / stack.template_file).exists()
            else self.outdir.glob(f"assembly-*/{stack.template_file}")
        )
        return json.loads(path.read_text())  # type: ignore[no-any-return]


def synthesize(
    outdir: Path,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    nag: bool = False,
) -> Synthesized:
    """Build and synthesize the app with cdk.json's context plus `-c`-style overrides."""
    import aws_cdk as cdk

    from backends import configure
    from config import merge_layers

    defaults = cdk_json_context()
    context = {**defaults, **(overrides or {})}
    app = cdk.App(context=context, outdir=str(outdir))
    if nag:
        from cdk_nag import AwsSolutionsChecks

        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    merged = merge_layers(defaults, context, PROJECT_ROOT)
    config = configure(merged, environ or {})
    from config.settings import changed_settings
    from stacks.entry import build_app

    application = build_app(app, config, synth_context=changed_settings(defaults, merged))
    error = None
    try:
        app.synth()
    except Exception as exc:  # nag failures surface here; the nag test reads the report
        error = exc
    return Synthesized(app, application, outdir, error)


@pytest.fixture(scope="session")
def default_synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory.mktemp("cdk-default"), nag=True)


@pytest.fixture(scope="session")
def application(default_synth: Synthesized) -> Any:
    return default_synth.application


# How each backend is synthesized in the tests: the default topology, except for Lattice, which
# cannot express it (config/examples/lattice.yaml is the topology it can).
BACKEND_OVERRIDES: dict[str, dict[str, Any]] = {
    "appmesh": {},
    "istio": {"mesh_backend": "istio"},
    "lattice": {"config": "config/examples/lattice.yaml"},
}


class Synths:
    """Each backend's app, synthesized (with cdk-nag) the first time a test asks for it."""

    def __init__(self, default: Synthesized, factory: pytest.TempPathFactory) -> None:
        self._done = {"appmesh": default}
        self._factory = factory

    def __getitem__(self, backend: str) -> Synthesized:
        if backend not in self._done:
            self._done[backend] = synthesize(self._factory.mktemp(f"cdk-{backend}"), BACKEND_OVERRIDES[backend], nag=True)
        return self._done[backend]


@pytest.fixture(scope="session")
def synths(default_synth: Synthesized, tmp_path_factory: pytest.TempPathFactory) -> Synths:
    return Synths(default_synth, tmp_path_factory)


_HASH = re.compile(r"[0-9a-f]{64}")


def normalize_template(template: dict[str, Any]) -> dict[str, Any]:
    """Asset hashes change with every dependency bump; the rest of the template must not."""
    text = _HASH.sub("<asset-hash>", json.dumps(template, sort_keys=True))
    data = json.loads(text)
    data.get("Parameters", {}).pop("BootstrapVersion", None)
    data.get("Rules", {}).pop("CheckBootstrapVersion", None)
    return data  # type: ignore[no-any-return]
