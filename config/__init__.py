"""Typed, validated configuration: settings (AWS side) and the mesh topology model.

The ground floor, beside `upstream/`: it imports no other package of the project and knows no
mesh backend (whether a backend can express the topology is checked by `backends.configure`).
"""

from .errors import ConfigError
from .settings import AppConfig, build_config, merge_layers
from .topology import Topology

__all__ = ["AppConfig", "ConfigError", "Topology", "build_config", "merge_layers"]
