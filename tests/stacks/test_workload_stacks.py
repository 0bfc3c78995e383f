"""The mesh's CDK wiring: identities, images, manifests and the order CloudFormation applies them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import Synthesized, synthesize
from tests.stacks.test_platform_stacks import _manifests, _statement


def _kinds(objects: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(o["kind"], o["metadata"]["name"]) for o in objects]


def test_one_manifest_per_service_with_its_objects(default_synth: Synthesized, application: Any) -> None:
    (services,) = application.services
    manifests = _manifests(default_synth.template(services))
    by_name = {name: objects for name, (objects, _) in manifests.items()}
    assert len(by_name) == 4
    nodejs = next(objects for objects in by_name.values() if ("VirtualNode", "nodejs-app") in _kinds(objects))
    assert sorted(_kinds(nodejs)) == [
        ("Certificate", "nodejs-tls"),
        ("Deployment", "nodejs-app"),
        ("PodDisruptionBudget", "nodejs-app"),
        ("Service", "nodejs"),
        ("ServiceAccount", "nodejs"),
        ("VirtualNode", "nodejs-app"),
    ]


def test_service_manifests_wait_for_the_namespace_and_the_mesh(application: Any) -> None:
    (services,) = application.services
    assert application.platform in services.dependencies
    assert all(stack in application.routing.dependencies for stack in application.services)
    from aws_cdk import Stack

    assert Stack.of(application.platform.mesh) is application.platform


def test_charts_depend_on_the_controller_release(default_synth: Synthesized, application: Any) -> None:
    template = default_synth.template(application.platform)
    release_id = next(iter(template.find_resources("Custom::AWSCDK-EKS-HelmChart")))
    (mesh_id,) = [name for name, (objects, _) in _manifests(template).items() if objects[0]["kind"] == "Mesh"]
    assert release_id in _manifests(template)[mesh_id][1]


def test_images_are_built_from_services_for_amd64(default_synth: Synthesized, application: Any) -> None:
    (services,) = application.services
    assets = json.loads((default_synth.outdir / f"{services.artifact_id}.assets.json").read_text())["dockerImages"]
    sources = {entry["source"].get("directory"): entry["source"] for entry in assets.values()}
    assert len(assets) == 4  # nodejs and nodejsv2 differ by build arg: two images
    for source in sources.values():
        assert source["platform"] == "linux/amd64"
    assert {json.dumps(s.get("dockerBuildArgs")) for s in sources.values()} >= {json.dumps({"APP_VERSION": "2"})}


def test_workload_roles_stream_only_their_own_virtual_node_and_write_xray(default_synth: Synthesized, application: Any) -> None:
    (services,) = application.services
    template = default_synth.template(services)
    statements = [
        s
        for policy in template.find_resources("AWS::IAM::Policy").values()
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if s.get("Sid") == "EnvoyConfiguration"
    ]
    resources = sorted(json.dumps(s["Resource"]) for s in statements)
    assert len(resources) == 4
    assert all(s["Action"] == "appmesh:StreamAggregatedResources" for s in statements)
    assert any("mesh/app-mesh/virtualNode/nodejsv2-app_lab-appmesh" in r for r in resources)
    xray = _statement(template, "XRayWrite")
    assert set(xray["Action"]) == {
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
        "xray:GetSamplingStatisticSummaries",
    }


def test_gateway_role_streams_its_virtual_gateway(default_synth: Synthesized, application: Any) -> None:
    statement = _statement(default_synth.template(application.routing), "EnvoyConfiguration")
    assert "mesh/app-mesh/virtualGateway/ingress-gw_lab-appmesh" in json.dumps(statement["Resource"])


def test_every_virtual_service_name_resolves_in_the_private_zone(default_synth: Synthesized, application: Any) -> None:
    template = default_synth.template(application.routing)
    records = template.find_resources("AWS::Route53::RecordSet")
    assert sorted((r["Properties"]["Name"], r["Properties"]["ResourceRecords"][0], r["Properties"]["Type"]) for r in records.values()) == [
        ("crystal.appmeshworkshop.hosted.local.", "crystal.appmesh.pvt.local", "CNAME"),
        ("nodejs.appmeshworkshop.hosted.local.", "nodejs.appmesh.pvt.local", "CNAME"),
    ]


def test_gateway_is_applied_after_routing(default_synth: Synthesized, application: Any) -> None:
    manifests = _manifests(default_synth.template(application.routing))
    (gateway_id,) = [name for name, (objects, _) in manifests.items() if ("VirtualGateway", "ingress-gw") in _kinds(objects)]
    routing_ids = [name for name, (objects, _) in manifests.items() if ("VirtualRouter", "nodejs-router") in _kinds(objects)]
    assert routing_ids and set(routing_ids) <= set(manifests[gateway_id][1])


def test_canary_shift_changes_only_the_routing_template(default_synth: Synthesized, application: Any, tmp_path: Path) -> None:
    shifted = synthesize(tmp_path, {"weights.nodejs": "nodejs:1,nodejsv2:1"})
    changed = [
        stack.stack_name
        for stack, again in zip(application.stacks, shifted.application.stacks, strict=True)
        if default_synth.template_json(stack) != shifted.template_json(again)
    ]
    assert changed == ["AppMesh-MeshRouting"]
    before = default_synth.template_json(application.routing)["Resources"]
    after = shifted.template_json(shifted.application.routing)["Resources"]
    assert [name for name in before if before[name] != after[name]] == [n for n in before if n.startswith("ClusterRouting1")]


def test_workloads_wait_for_the_mesh_ca(application: Any) -> None:
    assert [c.node.path for c in application.platform.ready] == [
        "AppMesh-MeshPlatform/AppMeshController/MeshNamespace",
        "AppMesh-MeshPlatform/Cluster/Mesh",
        "AppMesh-MeshPlatform/Cluster/MeshCa",
    ]
