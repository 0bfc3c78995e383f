"""Charts rendered straight from the model (no CDK app): pure and fast."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.unit.test_settings import config_with

IMAGE = "123456789012.dkr.ecr.us-west-1.amazonaws.com/app:test"
ROLE = "arn:aws:iam::123456789012:role/test"


def render(config: Any) -> dict[str, list[dict[str, Any]]]:
    from charts.workloads import gateway_chart, mesh_chart, routing_chart, service_chart
    from stacks.mesh_workload import mesh_names

    names = mesh_names(config)
    topology = config.mesh.topology
    kplus = config.cluster.kubernetes.cdk8s_plus()
    charts = {"mesh": mesh_chart(names, topology), "routing": routing_chart("routing", list(topology.virtual_services), topology, names)}
    for service in topology.services:
        charts[f"service-{service.name}"] = service_chart(service, topology, names, image=IMAGE, role_arn=ROLE, kplus=kplus)
    if topology.gateway:
        charts["gateway"] = gateway_chart(topology.gateway, topology, names, role_arn=ROLE, kplus=kplus)
    return {name: chart.to_json() for name, chart in charts.items()}


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return render(config_with())


@pytest.fixture(scope="session")
def objects(rendered: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [obj for chart in rendered.values() for obj in chart]


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


@pytest.fixture(scope="session")
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema, read from ../shared/schemas (never copied here)."""
    from scripts.fetch_crds import crds_path

    path = crds_path()
    assert path.exists(), f"{path} is missing: the CRDs come from ../shared/schemas, or `make schemas` fetches them"
    schemas = {}
    for document in yaml.safe_load_all(path.read_text()):
        if not document or document.get("kind") != "CustomResourceDefinition":
            continue
        group = document["spec"]["group"]
        kind = document["spec"]["names"]["kind"]
        for version in document["spec"]["versions"]:
            schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas
