"""Helpers for the meshdiff tests: summaries of cdk.json's context with overrides, no synth."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backends import configure
from config import merge_layers
from mesh.summary import summarize_config

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
HEADER = "Mesh app-mesh (namespace lab-appmesh)"


def cdk_json_context() -> dict[str, Any]:
    context: dict[str, Any] = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    return context


def summary_with(**overrides: Any) -> dict[str, Any]:
    """The summary of cdk.json's context with `-c`-style overrides (e.g. weights.nodejs=...)."""
    defaults = cdk_json_context()
    return summarize_config(configure(merge_layers(defaults, {**defaults, **overrides}, REPO_ROOT), {}))


def summary_of_topology(mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """The summary of cdk.json's topology after `mutate` edits (a copy of) its raw form."""
    from config.settings import patch_between

    default = cdk_json_context()["topology"]
    topology = copy.deepcopy(default)
    mutate(topology)
    # The edited topology as the merge patch a user would write (null removes).
    return summary_with(topology=patch_between(default, topology))
