"""Typed, validated configuration: settings (AWS side) and the mesh topology model."""

from .errors import ConfigError
from .settings import AppConfig, build_config, merge_layers
from .topology import Topology

__all__ = ["AppConfig", "ConfigError", "Topology", "build_config", "merge_layers"]
