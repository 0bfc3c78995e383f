"""The names every backend's objects share, and the plain form of a Kubernetes object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from config.settings import AppConfig

PodSecurityLevel = Literal["privileged", "baseline", "restricted"]
# A Kubernetes object as the renderers produce it and a manifest carries it.
Manifest = dict[str, Any]


@dataclass(frozen=True)
class MeshNames:
    """Names every backend's objects share."""

    mesh: str
    namespace: str
    hosted_zone: str
    cloud_map_namespace: str

    def mesh_host(self, virtual_service: str) -> str:
        """The workshop name a client calls: `<virtual service>.<hosted zone>`."""
        return f"{virtual_service}.{self.hosted_zone}"


def mesh_names(config: AppConfig) -> MeshNames:
    return MeshNames(
        mesh=config.mesh.mesh_name,
        namespace=config.mesh.namespace,
        hosted_zone=config.discovery.hosted_zone,
        cloud_map_namespace=config.discovery.cloud_map_namespace,
    )


def pod_security_labels(level: PodSecurityLevel) -> dict[str, str]:
    """Enforce `level`; audit and warn at restricted, so anything short of it shows up."""
    return {
        "pod-security.kubernetes.io/enforce": level,
        "pod-security.kubernetes.io/audit": "restricted",
        "pod-security.kubernetes.io/warn": "restricted",
    }
