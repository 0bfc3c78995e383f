"""Every Kubernetes object a configuration renders, as plain dicts, without a CDK app.

The stacks put the same charts into manifests (one per service, one per virtual service, the
gateway, the platform's); this renders them all at once, keyed like those manifests, for the
tests (schemas, admission model, parity) and for review.
"""

from __future__ import annotations

from typing import Any

from backends import backend_for
from backends.base import MeshBackend
from charts.workloads import routing_chart, service_chart
from config.settings import AppConfig
from mesh.names import Manifest, mesh_names

# Stand-ins for the CloudFormation tokens a synthesized manifest carries.
IMAGE = "123456789012.dkr.ecr.us-west-1.amazonaws.com/app:test"
ROLE = "arn:aws:iam::123456789012:role/test"


def render(config: AppConfig, backend: MeshBackend | None = None) -> dict[str, list[Manifest]]:
    """manifest name -> its objects: `platform`, `service-<name>`, `routing-<vs>`, `gateway`."""
    backend = backend or backend_for(config)
    names = mesh_names(config)
    topology = config.mesh.topology
    kplus = config.cluster.kubernetes.cdk8s_plus()

    def role(workload: Any) -> str | None:
        return ROLE if backend.workload_identity(names, workload, topology).statements else None

    rendered: dict[str, list[Manifest]] = {"platform": backend.platform_objects(names, topology)}
    for service in topology.services:
        parts = backend.service_parts(service, topology, names)
        chart = service_chart(service, topology, names, image=IMAGE, role_arn=role(service), kplus=kplus, parts=parts)
        rendered[f"service-{service.name}"] = list(chart.to_json())
    for vs in topology.virtual_services:
        rendered[f"routing-{vs.name}"] = list(routing_chart(vs, names, backend.routing_objects(vs, topology, names)).to_json())
    if topology.gateway:
        rendered["gateway"] = backend.gateway_objects(topology.gateway, topology, names, role_arn=role(topology.gateway), kplus=kplus)
    return rendered


def all_objects(rendered: dict[str, list[Manifest]]) -> list[Manifest]:
    return [obj for objects in rendered.values() for obj in objects]
