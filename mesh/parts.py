"""What a backend adds to the mesh-neutral workloads: its share of a service's manifest, and what
its admission webhook adds to a pod."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .names import Manifest


@dataclass(frozen=True)
class ServiceParts:
    """A backend's share of one service's manifest."""

    # Applied before the Deployment, in this order (an injector configures a pod from these).
    before: tuple[Manifest, ...] = ()
    after: tuple[Manifest, ...] = ()
    pod_annotations: Mapping[str, str] = field(default_factory=dict)
    # Labels on the pods only: the Deployment's selector stays the service's own labels.
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    # How long a stopping pod keeps serving before it is sent SIGTERM: a data plane outside the
    # cluster (VPC Lattice) deregisters targets some time after Kubernetes removes the endpoint.
    drain_seconds: int = 0
    termination_grace_seconds: int | None = None


@dataclass(frozen=True)
class Injection:
    """What a mesh's admission webhook adds to a pod, as the pinned injector does (see
    ../shared/reference): init containers (in order, after the pod's own), containers, and the
    user each added image runs as when the container does not say (None: root, or unknown)."""

    init_containers: tuple[Manifest, ...] = ()
    # A container with the name of one the pod has is merged into it (strategic merge by name).
    containers: tuple[Manifest, ...] = ()
    pod_security_context: Mapping[str, Any] = field(default_factory=dict)
    image_users: Mapping[str, int | None] = field(default_factory=dict)
