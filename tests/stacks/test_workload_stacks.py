"""The mesh's CDK wiring: identities, images, manifests and the order CloudFormation applies them."""

from __future__ import annotations

import json
from typing import Any

import pytest

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


_CANARY_STEPS = {"2:1": "nodejs:2,nodejsv2:1", "1:1": "nodejs:1,nodejsv2:1", "0:1": "nodejs:0,nodejsv2:1"}


@pytest.fixture(scope="module")
def canary_synths(default_synth: Synthesized, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Synthesized]:
    synths = {"2:1": default_synth}
    for step in ("1:1", "0:1"):
        synths[step] = synthesize(tmp_path_factory.mktemp(f"canary-{step.replace(':', '-')}"), {"weights.nodejs": _CANARY_STEPS[step]})
    return synths


@pytest.mark.parametrize(("before", "after"), [("2:1", "1:1"), ("1:1", "0:1"), ("0:1", "2:1")], ids=["shift", "complete", "rollback"])
def test_each_canary_step_changes_only_the_router(canary_synths: dict[str, Synthesized], before: str, after: str) -> None:
    old, new = canary_synths[before], canary_synths[after]
    changed = [
        stack.stack_name
        for stack, again in zip(old.application.stacks, new.application.stacks, strict=True)
        if old.template_json(stack) != new.template_json(again)
    ]
    assert changed == ["AppMesh-MeshRouting"]
    old_resources = old.template_json(old.application.routing)["Resources"]
    new_resources = new.template_json(new.application.routing)["Resources"]
    (changed_resource,) = [name for name in old_resources if old_resources[name] != new_resources[name]]
    assert changed_resource.startswith("ClusterRouting1")
    old_manifest = json.loads(old_resources[changed_resource]["Properties"]["Manifest"])
    new_manifest = json.loads(new_resources[changed_resource]["Properties"]["Manifest"])
    # Within the manifest, only the nodejs router's weights differ.
    assert [o["metadata"]["name"] for o, n in zip(old_manifest, new_manifest, strict=True) if o != n] == ["nodejs-router"]
    (router,) = [o for o in new_manifest if o["metadata"]["name"] == "nodejs-router"]
    weights = [t["weight"] for t in router["spec"]["routes"][0]["httpRoute"]["action"]["weightedTargets"]]
    assert weights == [int(w) for w in after.split(":")]


def test_workloads_wait_for_the_mesh_ca(application: Any) -> None:
    assert [c.node.path for c in application.platform.ready] == [
        "AppMesh-MeshPlatform/AppMeshController/MeshNamespace",
        "AppMesh-MeshPlatform/Cluster/Mesh",
        "AppMesh-MeshPlatform/Cluster/MeshCa",
    ]


def test_a_service_open_to_the_internet_is_flagged_at_synth(application: Any) -> None:
    from aws_cdk.assertions import Annotations, Match

    (services,) = application.services
    warnings = Annotations.from_stack(services).find_warning("*", Match.string_like_regexp("frontend is exposed to 0.0.0.0/0"))
    assert len(warnings) == 1
