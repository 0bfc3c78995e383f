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
from mesh.canary import canary_spec, canary_virtual_service
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
        chart = routing_chart(vs, names, backend.routing_objects(vs, topology, names), config.mesh.canary_verdict)
        rendered[f"routing-{vs.name}"] = list(chart.to_json())
    if topology.gateway:
        rendered["gateway"] = backend.gateway_objects(topology.gateway, topology, names, role_arn=role(topology.gateway), kplus=kplus)
    return rendered


def all_objects(rendered: dict[str, list[Manifest]]) -> list[Manifest]:
    return [obj for objects in rendered.values() for obj in objects]


def canary_spec_for(config: AppConfig) -> dict[str, Any] | None:
    """The topology's canary as `python -m canary` reads it, with the backend's Prometheus labels
    (synth writes it to cdk.out/canary-<virtual service>.json); None without a canary."""
    virtual_service = canary_virtual_service(config.mesh.topology.virtual_services)
    if virtual_service is None:
        return None
    prometheus = backend_for(config).canary_prometheus(mesh_names(config), config.mesh.topology, virtual_service)
    return canary_spec(virtual_service, prometheus=prometheus)
