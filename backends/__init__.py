"""Mesh backends: one module each (appmesh, istio, lattice), answering the same questions.

The stacks ask `backend_for(config)` and never branch on a backend's name. `configure` is where
the settings and the backend meet: it builds the config (config/ knows no backend) and then checks
the topology against the chosen backend's capabilities, before any construct exists. The app's
entry, the tools and the tests build their config through it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from datetime import date
from typing import TYPE_CHECKING, Any

from config.errors import ConfigError
from config.settings import MESH_BACKENDS, AppConfig, build_config, check_node_capacity
from mesh.capabilities import check_table, check_topology

if TYPE_CHECKING:
    from .base import MeshBackend

# The backend to suggest when a topology is beyond the chosen one: the one that expresses every
# feature App Mesh does and can be deployed today.
_FALLBACK = "istio"


def backend_named(name: str) -> MeshBackend:
    if name not in MESH_BACKENDS:
        raise ConfigError("mesh_backend", name, f"must be one of {', '.join(MESH_BACKENDS)}")
    module = importlib.import_module(f"backends.{name}")
    backend: MeshBackend = module.BACKEND
    check_table(name, backend.capabilities)
    return backend


def backend_for(config: AppConfig) -> MeshBackend:
    return backend_named(config.mesh.backend)


def check_backend(config: AppConfig) -> MeshBackend:
    """The configured backend, once the topology is known to be within what it can express."""
    backend = backend_for(config)
    check_topology(backend.name, backend.capabilities, config.mesh.topology, _FALLBACK if backend.name != _FALLBACK else "appmesh")
    check_node_capacity(config, mesh_pods=backend.platform_pods(config.mesh.topology), mesh_daemonsets=backend.daemonset_pods)
    backend.check_config(config)
    return backend


def configure(values: Mapping[str, Any], environ: Mapping[str, str], today: date | None = None) -> AppConfig:
    """The validated config of the merged settings, once its backend can express the topology."""
    config = build_config(values, environ, today=today)
    check_backend(config)
    return config
