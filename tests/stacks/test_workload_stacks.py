"""The workloads' CDK wiring, for every backend: images, manifests, the order CloudFormation applies
them, what a canary step changes, and what adding a service leaves where it was."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.conftest import BACKEND_OVERRIDES, Synthesized, cdk_json_context, synthesize
from tests.stacks.support import changes, manifest_of, manifest_with, manifests

BACKENDS = ["appmesh", "istio", "lattice"]


def test_service_stacks_wait_for_the_platform_and_routing_for_every_service_stack(synths: Any) -> None:
    for backend in BACKENDS:
        application = synths[backend].application
        for stack in application.services:
            assert application.platform in stack.dependencies
            assert stack in application.routing.dependencies


def test_routing_depends_on_every_services_stack_even_when_nothing_is_exposed(tmp_path: Any) -> None:
    """The load-balancer lookups imply the edge when a service is exposed; it must hold without."""
    topology = copy.deepcopy(cdk_json_context()["topology"])
    topology["services"]["frontend"].update(exposure="none", source_cidrs=None)
    result = synthesize(tmp_path, {"topology": topology, "services_per_stack": 2})
    application = result.application
    assert len(application.services) == 2
    assert "FrontendUrl" not in json.dumps(result.template_json(application.routing).get("Outputs", {}))
    for stack in application.services:
        assert stack in application.routing.dependencies


def test_images_are_built_from_services_for_amd64(default_synth: Synthesized, application: Any) -> None:
    (services,) = application.services
    assets = json.loads((default_synth.outdir / f"{services.artifact_id}.assets.json").read_text())["dockerImages"]
    sources = {entry["source"].get("directory"): entry["source"] for entry in assets.values()}
    assert len(assets) == 4  # nodejs and nodejsv2 differ by build arg: two images
    for source in sources.values():
        assert source["platform"] == "linux/amd64"
    assert {json.dumps(s.get("dockerBuildArgs")) for s in sources.values()} >= {json.dumps({"APP_VERSION": "2"})}


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_routing_manifest_per_virtual_service(synths: Any, backend: str) -> None:
    synth = synths[backend]
    template = synth.template(synth.application.routing)
    for vs in ("nodejs", "crystal"):
        _, objects, _ = manifest_with(template, "ConfigMap", f"weights-{vs}")
        names = {o["metadata"]["name"] for o in objects if o["kind"] != "ConfigMap"}
        assert names and all(name == vs or name.startswith(("gateway-route", vs)) for name in names), names


@pytest.mark.parametrize("backend", BACKENDS)
def test_gateway_is_applied_after_routing(synths: Any, backend: str) -> None:
    synth = synths[backend]
    template = synth.template(synth.application.routing)
    found = manifests(template)
    routing = [
        lid
        for lid, (objects, _) in found.items()
        if any(o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("weights-") for o in objects)
    ]
    assert len(routing) == 2
    gateway = [lid for lid, (objects, _) in found.items() if lid.startswith("ClusterGateway")]
    assert len(gateway) == 1
    assert set(routing) <= set(found[gateway[0]][1])


def test_a_service_open_to_the_internet_is_flagged_at_synth(application: Any) -> None:
    from aws_cdk.assertions import Annotations, Match

    (services,) = application.services
    warnings = Annotations.from_stack(services).find_warning("*", Match.string_like_regexp("frontend is exposed to 0.0.0.0/0"))
    assert len(warnings) == 1


# -- a canary step changes exactly one manifest, whatever the backend -----------------------------

_STEPS = {"2:1": "nodejs:2,nodejsv2:1", "1:1": "nodejs:1,nodejsv2:1", "0:1": "nodejs:0,nodejsv2:1"}


@pytest.fixture(scope="module", params=BACKENDS)
def canary_synths(request: pytest.FixtureRequest, synths: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Synthesized]:
    backend = request.param
    steps = {"2:1": synths[backend]}
    for step in ("1:1", "0:1"):
        outdir = tmp_path_factory.mktemp(f"canary-{backend}-{step.replace(':', '-')}")
        steps[step] = synthesize(outdir, {**BACKEND_OVERRIDES[backend], "weights.nodejs": _STEPS[step]})
    return steps


@pytest.mark.parametrize(("before", "after"), [("2:1", "1:1"), ("1:1", "0:1"), ("0:1", "2:1")], ids=["shift", "complete", "rollback"])
def test_each_canary_step_changes_one_manifest(canary_synths: dict[str, Synthesized], before: str, after: str) -> None:
    old, new = canary_synths[before], canary_synths[after]
    changed = changes(old, new)
    assert list(changed) == ["AppMesh-MeshRouting"]
    (changed_resource,) = changed["AppMesh-MeshRouting"]
    old_resources = old.template_json(old.application.routing)["Resources"]
    new_resources = new.template_json(new.application.routing)["Resources"]
    assert changed_resource.startswith("ClusterRoutingnodejs")
    old_objects = json.loads(old_resources[changed_resource]["Properties"]["Manifest"])
    new_objects = json.loads(new_resources[changed_resource]["Properties"]["Manifest"])
    weights = {name: int(weight) for name, weight in zip(("nodejs", "nodejsv2"), after.split(":"), strict=True)}
    (config_map,) = [o for o in new_objects if o["kind"] == "ConfigMap"]
    assert json.loads(config_map["data"]["weights.json"]) == weights
    assert [o["kind"] for o, n in zip(old_objects, new_objects, strict=True) if o != n]  # the route and the ConfigMap


# -- adding a service moves no other ----------------------------------------------------------------


def test_a_service_added_at_the_end_leaves_every_other_where_it_was(tmp_path: Any) -> None:
    """Services are cut into stacks in topology order: one added at the end (a config file's merge
    appends it) keeps every other service's resources in the same stack, under the same ids, and
    their manifests unchanged; CloudFormation never moves an object between custom resources."""
    before = synthesize(tmp_path / "before", {"services_per_stack": 2})
    added = {"services": {"nodejsv3": {"source": "services/nodejs", "build_args": {"APP_VERSION": "3"}}}}
    after = synthesize(tmp_path / "after", {"services_per_stack": 2, "topology": json.dumps(added)})
    assert [s.stack_name for s in before.application.services] == ["AppMesh-MeshServices", "AppMesh-MeshServices2"]
    assert [s.stack_name for s in after.application.services] == ["AppMesh-MeshServices", "AppMesh-MeshServices2", "AppMesh-MeshServices3"]
    for old, new in zip(before.application.services, after.application.services, strict=False):
        assert before.template_json(old)["Resources"] == after.template_json(new)["Resources"], old.stack_name


def test_services_stacks_deploy_later_first(tmp_path: Any) -> None:
    """Removing a service moves each later one of the following stacks back one stack. Every
    manifest is applied with overwrite and deleted by name, so the stack a service leaves must
    delete it before the stack it joins creates it: the other order would delete what the joining
    stack had just taken over (components/manifests.py)."""
    added = {"services": {"nodejsv3": {"source": "services/nodejs", "build_args": {"APP_VERSION": "3"}}}}
    three = synthesize(tmp_path, {"services_per_stack": 2, "topology": json.dumps(added)}).application.services
    assert [s.stack_name for s in three] == ["AppMesh-MeshServices", "AppMesh-MeshServices2", "AppMesh-MeshServices3"]
    assert three[1] in three[0].dependencies and three[2] in three[1].dependencies
    assert three[0] not in three[1].dependencies and three[1] not in three[2].dependencies


def test_the_first_services_stack_keeps_its_name_and_resources_at_the_41st_service(tmp_path: Any) -> None:
    """At services_per_stack (40) services there is one services stack; the 41st service opens a
    second. The first must stay what it was (name, logical ids, resources): renamed, CloudFormation
    would see a new stack re-creating every object of the old one, which would be orphaned."""
    from scripts.scale import scale_context

    context = scale_context(40)
    forty = synthesize(tmp_path / "forty", context)
    # The 41st is a service of its own, appended (a config file's merge appends it): it changes
    # nothing of the first 40, so whatever differs in the first stack is the split's doing.
    grown = copy.deepcopy(context)
    grown["topology"]["services"]["svc-extra"] = {"source": "services/nodejs", "replicas": 1}
    forty_one = synthesize(tmp_path / "forty-one", grown)
    assert [s.stack_name for s in forty.application.services] == ["AppMesh-MeshServices"]
    assert [s.stack_name for s in forty_one.application.services] == ["AppMesh-MeshServices", "AppMesh-MeshServices2"]
    second = forty_one.template_json(forty_one.application.services[1])["Resources"]
    assert [lid for lid, r in second.items() if r["Type"] == "Custom::AWSCDK-EKS-KubernetesResource"] == [
        lid for lid in second if lid.startswith("ClusterServicesvcextra")
    ]
    before = forty.template_json(forty.application.services[0])["Resources"]
    after = forty_one.template_json(forty_one.application.services[0])["Resources"]
    assert sorted(after) == sorted(before)
    assert after == before


# -- load balancer URLs follow their Service ------------------------------------------------------


def _address_digests(synth: Synthesized) -> dict[str, str | None]:
    """Each load-balancer address the routing stack reads back (by logical id) -> its ServiceDigest."""
    resources = synth.template_json(synth.application.routing)["Resources"]
    return {
        lid: r["Properties"].get("ServiceDigest")
        for lid, r in resources.items()
        if r["Type"] == "Custom::AWSCDK-EKS-KubernetesObjectValue" and lid.startswith("Address")
    }


def _service_object(synth: Synthesized, name: str) -> dict[str, Any]:
    """The Service `name` as the services stack's manifest holds it, without the prune label."""
    for stack in synth.application.services:
        for resource in synth.template_json(stack)["Resources"].values():
            if resource["Type"] != "Custom::AWSCDK-EKS-KubernetesResource":
                continue
            for o in manifest_of(resource):
                if o["kind"] == "Service" and o["metadata"]["name"] == name:
                    o["metadata"]["labels"] = {k: v for k, v in o["metadata"].get("labels", {}).items() if not k.startswith("aws.cdk.eks/")}
                    return o  # type: ignore[no-any-return]
    raise AssertionError(f"no Service {name}")


def test_the_frontend_url_is_read_again_when_its_service_changes(synths: Any) -> None:
    """CloudFormation re-reads a KubernetesObjectValue only when its properties change; the NLB's
    name changes when the Service is recreated or its scheme changes. The digest of the Service's
    definition is one of the properties."""
    import hashlib

    synth = synths["appmesh"]
    (frontend,) = [lid for lid in _address_digests(synth) if lid.startswith("AddressServicefrontend")]
    expected = hashlib.sha256(json.dumps([_service_object(synth, "frontend")], sort_keys=True).encode()).hexdigest()[:16]
    assert _address_digests(synth)[frontend] == expected


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_changed_service_changes_the_address_read_and_nothing_else_does(synths: Any, backend: str, tmp_path: Any) -> None:
    before = _address_digests(synths[backend])
    assert [lid.startswith("AddressGateway") for lid in sorted(before)] == [True, False]
    assert [lid.startswith("AddressServicefrontend") for lid in sorted(before)] == [False, True]
    assert all(before.values())
    topology = {"services": {"frontend": {"source_cidrs": ["203.0.113.0/24"]}}}
    frontend_changed = synthesize(tmp_path / "frontend", {**BACKEND_OVERRIDES[backend], "topology": json.dumps(topology)})
    after = _address_digests(frontend_changed)
    assert {lid for lid in before if before[lid] != after[lid]} == {lid for lid in before if lid.startswith("AddressServicefrontend")}
    gateway_changed = synthesize(
        tmp_path / "gateway", {**BACKEND_OVERRIDES[backend], "topology": json.dumps({"gateway": {"scheme": "internet-facing"}})}
    )
    after = _address_digests(gateway_changed)
    assert {lid for lid in before if before[lid] != after[lid]} == {lid for lid in before if lid.startswith("AddressGateway")}
